package kvcache

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// chainCache remembers, for recently keyed prompt prefixes, the vLLM key and
// Digest of each prefix's last block, so that a new prompt sharing a prefix
// with earlier ones (a system prompt, the previous turns of a chat) is
// SHA-256 hashed only from where it diverges. vLLM's hash costs about
// 220 ns a block; the prefix's own identity costs one XXH3 a block.
//
// A prefix is identified by a 128-bit chain state (tag, hist), advanced one
// block at a time with a seeded XXH3-128 of the block's tokens: the new tag
// is the hash's low half, seeded with the parent's tag; the new hist is the
// high half xor a bijective mix of the parent's hist, so hist depends on
// every block from the root and not only on the parent's 64-bit tag. The
// root state mixes the cache's random seed with the request's LoRA name and
// cache salt (the request-level values vLLM folds into the blocks' extra
// keys), so a different adapter or salt shares no entry. The tag finds the
// entry; 32 bits of hist are stored beside it as an independent check.
//
// Collisions: a false hit needs a query's 64-bit tag to equal a resident
// entry's and the 32-bit checks to agree, about N*2^-96 a block looked up
// with N entries resident (2^-78 for the default's 300,000; about 2^-39 a
// day at 10,000 scored 8k-token prompts a second). Two prefixes whose tags
// collide at some block (N*2^-64 a new block) give their continuations
// with equal tokens equal tags too, but their hists, and so their checks,
// still differ, so that also needs a 2^-32 check match. The seed is random
// per process, so inputs cannot be crafted to collide. The residual risk
// of a false hit is one prompt's keys being wrong from that block on: that
// prompt is mis-scored (routed as if its prefix were elsewhere); the index
// and every other request are unaffected.
//
// The cache is set-associative: each shard is a fixed array of sets of
// chainWays records, allocated on first use; a tag's set is its low bits
// and its shard its high bits. Inserting into a full set replaces the least
// recently used record. Memory is bounded by construction and there are no
// per-entry heap objects.
type chainCache struct {
	seed    uint64
	shards  []chainShard
	shift   uint   // tag >> shift picks the shard
	setMask uint64 // tag & setMask picks the set within a shard

	hits, misses atomic.Uint64 // blocks
}

// chainWays is the associativity: records per set.
const chainWays = 4

// maxChainShards bounds the shards, each with its own lock.
const maxChainShards = 16

// chainSet holds one set's tags, checks and recency stamps in one 64-byte
// cache line, so a lookup reads one line to find its way and one more for
// the way's chainBlock.
type chainSet struct {
	tags   [chainWays]uint64 // 0 marks an empty way; tags are never 0
	checks [chainWays]uint32
	stamps [chainWays]uint32 // shard clock at the way's last use, for LRU
}

// chainBlock is what a way caches: the block's vLLM key and Digest.
type chainBlock struct {
	key    kvblock.Key
	digest blockhash.Digest
}

// chainRecordBytes is what one way costs, for the byte budget: its share of
// a chainSet and its chainBlock.
const chainRecordBytes = 16 + 40

type chainShard struct {
	mu     sync.Mutex // guards the fields below
	clock  uint32
	sets   []chainSet                 // nil until the first put
	blocks []chainBlock               // way w of set i is blocks[i*chainWays+w]
	_      [64 - 8 - 8 - 24 - 24]byte // a shard per cache line: no false sharing of locks
}

// newChainCache returns a cache of at most maxBytes of records (but at
// least one set of chainWays records).
func newChainCache(maxBytes int) *chainCache {
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails
	sets := max(maxBytes/chainRecordBytes/chainWays, 1)
	nshards := 1
	for nshards < maxChainShards && sets >= 2*nshards {
		nshards *= 2
	}
	perShard := 1
	for perShard*2 <= sets/nshards {
		perShard *= 2
	}
	shift := uint(64)
	for s := nshards; s > 1; s /= 2 {
		shift--
	}
	return &chainCache{
		seed:    binary.LittleEndian.Uint64(seed[:]),
		shards:  make([]chainShard, nshards),
		shift:   shift,
		setMask: uint64(perShard - 1),
	}
}

// capacity returns how many records the cache can hold.
func (c *chainCache) capacity() int {
	return len(c.shards) * int(c.setMask+1) * chainWays
}

// chainID is a prefix's chain state: tag finds its entry, hist's low 32
// bits check it.
type chainID struct{ tag, hist uint64 }

// root returns the state of the empty prefix of a request with these extra
// keys.
func (c *chainCache) root(lora, salt string) chainID {
	l := xxh3.HashString128Seed(lora, c.seed)
	s := xxh3.HashString128Seed(salt, l.Lo^0x9e3779b97f4a7c15)
	return chainID{tag: s.Lo, hist: s.Hi ^ l.Hi}
}

// next returns the state of the prefix p extended by block.
func (p chainID) next(block []uint32) chainID {
	h := xxh3.Hash128Seed(tokenBytes(block), p.tag)
	tag := h.Lo
	if tag == 0 {
		tag = 1
	}
	return chainID{tag: tag, hist: h.Hi ^ bits.RotateLeft64(p.hist*0x9e3779b97f4a7c15, 31)}
}

func (id chainID) check() uint32 { return uint32(id.hist) }

func (c *chainCache) shardIndex(tag uint64) int {
	if len(c.shards) == 1 {
		return 0
	}
	return int(tag >> c.shift)
}

func (c *chainCache) shard(tag uint64) *chainShard { return &c.shards[c.shardIndex(tag)] }

// lookupLocked returns the index in sh.blocks of the way holding tag and
// check, marking it used, or -1.
func (c *chainCache) lookupLocked(sh *chainShard, tag uint64, check uint32) int {
	if sh.sets == nil {
		return -1
	}
	i := tag & c.setMask
	set := &sh.sets[i]
	for w := range chainWays {
		if set.tags[w] == tag && set.checks[w] == check {
			sh.clock++
			set.stamps[w] = sh.clock
			return int(i)*chainWays + w
		}
	}
	return -1
}

// holdsLocked reports whether way idx of sh still holds tag and check.
func (c *chainCache) holdsLocked(sh *chainShard, idx int, tag uint64, check uint32) bool {
	set := &sh.sets[idx/chainWays]
	return set.tags[idx%chainWays] == tag && set.checks[idx%chainWays] == check
}

// put caches a block's key and Digest, replacing the least recently used
// way of its set when the set is full.
func (c *chainCache) put(tag uint64, check uint32, key kvblock.Key, d *blockhash.Digest) {
	sh := c.shard(tag)
	sh.mu.Lock()
	if sh.sets == nil {
		sh.sets = make([]chainSet, c.setMask+1)
		sh.blocks = make([]chainBlock, int(c.setMask+1)*chainWays)
	}
	i := tag & c.setMask
	set := &sh.sets[i]
	victim := 0
	for w := range chainWays {
		if set.tags[w] == tag || set.tags[w] == 0 {
			victim = w
			break
		}
		// Ages count modulo 2^32, so the clock may wrap.
		if sh.clock-set.stamps[w] > sh.clock-set.stamps[victim] {
			victim = w
		}
	}
	sh.clock++
	set.tags[victim], set.checks[victim], set.stamps[victim] = tag, check, sh.clock
	sh.blocks[int(i)*chainWays+victim] = chainBlock{key: key, digest: *d}
	sh.mu.Unlock()
}

// len returns how many records are in use; for tests.
func (c *chainCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, set := range sh.sets {
			for _, tag := range set.tags {
				if tag != 0 {
					n++
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// chainScratch is one request's working memory, pooled.
type chainScratch struct {
	ids   []chainID
	ways  []int32 // per block: its way's index in its shard's blocks, or -1
	order []int32 // block numbers grouped by shard
	digs  []blockhash.Digest
}

var chainScratchPool = sync.Pool{New: func() any { return new(chainScratch) }}

// keys appends the vLLM keys of tokens' full blocks to dst: those of the
// longest cached prefix from the cache, the rest hashed from its last
// Digest with h and then cached.
//
// Every block is looked up, grouped by shard so that a request takes each
// shard's lock once rather than once a block; the prefix served is the
// blocks before the first miss.
func (c *chainCache) keys(h *blockhash.Hasher, blockSize int, dst []kvblock.Key, tokens []uint32, lora, salt string) ([]kvblock.Key, error) {
	n := len(tokens) / blockSize
	if n == 0 {
		return dst, nil
	}
	s := chainScratchPool.Get().(*chainScratch)
	defer chainScratchPool.Put(s)
	s.ids, s.ways, s.order = s.ids[:0], s.ways[:0], slices.Grow(s.order[:0], n)[:n]
	var count [maxChainShards + 1]int32
	prev := c.root(lora, salt)
	for i := range n {
		prev = prev.next(tokens[i*blockSize : (i+1)*blockSize])
		s.ids = append(s.ids, prev)
		s.ways = append(s.ways, -1)
		count[c.shardIndex(prev.tag)+1]++
	}
	for i := 1; i < len(count); i++ {
		count[i] += count[i-1]
	}
	next := count
	for i, id := range s.ids {
		si := c.shardIndex(id.tag)
		s.order[next[si]] = int32(i)
		next[si]++
	}

	base := len(dst)
	dst = slices.Grow(dst, n)[:base+n]
	for si := range c.shards {
		blocks := s.order[count[si]:count[si+1]]
		if len(blocks) == 0 {
			continue
		}
		sh := &c.shards[si]
		sh.mu.Lock()
		for _, b := range blocks {
			id := s.ids[b]
			if w := c.lookupLocked(sh, id.tag, id.check()); w >= 0 {
				s.ways[b] = int32(w)
				dst[base+int(b)] = sh.blocks[w].key
			}
		}
		sh.mu.Unlock()
	}
	m := slices.Index(s.ways, -1)
	if m < 0 {
		m = n
	}
	// Resume from the Digest of block m-1; if another request evicted it
	// meanwhile, from the block before.
	parent := h.Root()
	for ; m > 0; m-- {
		id := s.ids[m-1]
		sh := c.shard(id.tag)
		sh.mu.Lock()
		ok := c.holdsLocked(sh, int(s.ways[m-1]), id.tag, id.check())
		if ok {
			parent = sh.blocks[s.ways[m-1]].digest
		}
		sh.mu.Unlock()
		if ok {
			break
		}
	}
	c.hits.Add(uint64(m))
	if m == n {
		return dst, nil
	}
	c.misses.Add(uint64(n - m))

	extra := blockhash.RequestExtras{LoRAName: lora, CacheSalt: salt}.PerBlock(n)
	if extra != nil {
		extra = extra[m:]
	}
	dst = dst[:base+m]
	var err error
	dst, s.digs, err = h.BlockDigests(dst, s.digs[:0], parent, tokens[m*blockSize:n*blockSize], extra)
	if err != nil {
		return dst, err
	}
	for j := range s.digs {
		id := s.ids[m+j]
		c.put(id.tag, id.check(), dst[base+m+j], &s.digs[j])
	}
	return dst, nil
}
