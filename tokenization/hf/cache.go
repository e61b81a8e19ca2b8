package hf

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
)

// wordCache memoises the BPE result of pre-tokenized words. It is sharded by
// hash, and each shard keeps its entries in one byte arena indexed by a
// map[uint64]uint32, so the cache holds no pointers per entry for the GC to
// scan. A shard whose arena is full is emptied: cheaper than LRU bookkeeping
// on a path this hot, and the working set refills within a few prompts.
type wordCache struct {
	seed     maphash.Seed
	maxBytes int // per shard
	shards   [wordCacheShards]cacheShard
}

// 16 shards keep lock contention low on the machines kvtrack runs on
// (a handful of encoding goroutines) at a negligible memory cost.
const wordCacheShards = 16

type cacheShard struct {
	mu    sync.RWMutex
	index map[uint64]uint32 // mu guards index and arena
	arena []byte            // entries: keyLen u32, idCount u32, key, ids (u32 LE)
	_     [40]byte          // keep shards on separate cache lines
}

func newWordCache(totalBytes int) *wordCache {
	c := &wordCache{seed: maphash.MakeSeed(), maxBytes: max(totalBytes/wordCacheShards, 1024)}
	for i := range c.shards {
		c.shards[i].index = make(map[uint64]uint32)
	}
	return c
}

// get appends the cached IDs of word to dst.
func (c *wordCache) get(dst []uint32, word string) ([]uint32, bool) {
	h := maphash.String(c.seed, word)
	s := &c.shards[h%wordCacheShards]
	s.mu.RLock()
	off, ok := s.index[h]
	if ok {
		a := s.arena[off:]
		kl := int(binary.LittleEndian.Uint32(a))
		n := int(binary.LittleEndian.Uint32(a[4:]))
		if kl == len(word) && string(a[8:8+kl]) == word {
			ids := a[8+kl : 8+kl+4*n]
			for i := 0; i < len(ids); i += 4 {
				dst = append(dst, binary.LittleEndian.Uint32(ids[i:]))
			}
		} else {
			ok = false // a hash collision: treat as a miss
		}
	}
	s.mu.RUnlock()
	return dst, ok
}

func (c *wordCache) put(word string, ids []uint32) {
	h := maphash.String(c.seed, word)
	s := &c.shards[h%wordCacheShards]
	size := 8 + len(word) + 4*len(ids)
	if size > c.maxBytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[h]; ok {
		return
	}
	if len(s.arena)+size > c.maxBytes {
		clear(s.index)
		s.arena = s.arena[:0]
	}
	if s.arena == nil {
		s.arena = make([]byte, 0, c.maxBytes)
	}
	off := len(s.arena)
	s.arena = binary.LittleEndian.AppendUint32(s.arena, uint32(len(word)))
	s.arena = binary.LittleEndian.AppendUint32(s.arena, uint32(len(ids)))
	s.arena = append(s.arena, word...)
	for _, id := range ids {
		s.arena = binary.LittleEndian.AppendUint32(s.arena, id)
	}
	s.index[h] = uint32(off)
}
