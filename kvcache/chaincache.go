package kvcache

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// chainCache remembers, for recently keyed prompt prefixes, the vLLM key and
// Digest of each prefix's last block, so that a new prompt sharing a prefix
// with earlier ones (a system prompt, the previous turns of a chat) is
// SHA-256 hashed only from where it diverges. vLLM's hash costs about
// 220 ns a block; the prefix's own identity costs one XXH3 a block.
//
// A prefix is identified by a chain of seeded XXH3-128 hashes, one per
// block: block i's hash is seeded with block i-1's low 64 bits, and the
// chain's root seed mixes the cache's random seed with the request's LoRA
// name and cache salt (the request-level values vLLM folds into the blocks'
// extra keys), so a different adapter or salt shares no entry. The low 64
// bits are the entry's tag and the next block's seed; 32 bits of the high
// half are stored beside the tag as an independent check.
//
// Collisions: a false hit needs a 64-bit tag match with a resident entry
// and a 32-bit check match: with N entries resident, about N*2^-96 a block
// looked up (2^-78 for 300,000 entries; about 2^-39 a day at 10,000 scored
// 8k-token prompts a second). The seed is random per process, so inputs
// cannot be crafted to collide. A false hit makes one prompt's keys from
// that block on wrong: that prompt is mis-scored, nothing else is. Tags
// also chain only 64 bits of their parent; two prefixes whose tags collide
// at some block would share the children's entries, but the walk checks
// every block from the root and stops at the first mismatch, so that needs
// the same 2^-96 event.
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

// chainRecord is one cached block: 56 bytes.
type chainRecord struct {
	tag    uint64 // 0 marks an empty record; tags are never 0
	key    kvblock.Key
	check  uint32
	stamp  uint32 // shard clock at the last use, for LRU within the set
	digest kvblock.Digest
}

// chainRecordBytes is what one record costs, for the byte budget.
const chainRecordBytes = 56

type chainShard struct {
	mu    sync.Mutex // guards the fields below
	clock uint32
	recs  []chainRecord // sets * chainWays, nil until the first put
	_     [24]byte      // one shard a 64-byte cache line: no false sharing of locks
}

// newChainCache returns a cache of at most maxBytes of records (but at
// least one set of chainWays records).
func newChainCache(maxBytes int) *chainCache {
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails
	sets := max(maxBytes/chainRecordBytes/chainWays, 1)
	nshards := 1
	for nshards < 16 && sets >= 2*nshards {
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

// root returns the seed of the chain of a request with these extra keys.
func (c *chainCache) root(lora, salt string) uint64 {
	s := xxh3.HashStringSeed(lora, c.seed)
	return xxh3.HashStringSeed(salt, s^0x9e3779b97f4a7c15)
}

// blockID returns the tag and check of the block after the prefix whose
// tag (or root seed) is parent.
func blockID(parent uint64, block []uint32) (tag uint64, check uint32) {
	h := xxh3.Hash128Seed(tokenBytes(block), parent)
	tag = h.Lo
	if tag == 0 {
		tag = 1
	}
	return tag, uint32(h.Hi)
}

func (c *chainCache) shard(tag uint64) *chainShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[tag>>c.shift]
}

// get returns the key and Digest cached for the block with this tag and
// check.
func (c *chainCache) get(tag uint64, check uint32) (kvblock.Key, kvblock.Digest, bool) {
	sh := c.shard(tag)
	sh.mu.Lock()
	if sh.recs != nil {
		set := sh.recs[(tag&c.setMask)*chainWays:][:chainWays]
		for i := range set {
			r := &set[i]
			if r.tag == tag && r.check == check {
				sh.clock++
				r.stamp = sh.clock
				key, d := r.key, r.digest
				sh.mu.Unlock()
				return key, d, true
			}
		}
	}
	sh.mu.Unlock()
	return 0, kvblock.Digest{}, false
}

// put caches a block's key and Digest, replacing the least recently used
// record of its set when the set is full.
func (c *chainCache) put(tag uint64, check uint32, key kvblock.Key, d *kvblock.Digest) {
	sh := c.shard(tag)
	sh.mu.Lock()
	if sh.recs == nil {
		sh.recs = make([]chainRecord, int(c.setMask+1)*chainWays)
	}
	set := sh.recs[(tag&c.setMask)*chainWays:][:chainWays]
	victim := &set[0]
	for i := range set {
		r := &set[i]
		if r.tag == tag || r.tag == 0 {
			victim = r
			break
		}
		// Ages count modulo 2^32, so the clock may wrap.
		if sh.clock-r.stamp > sh.clock-victim.stamp {
			victim = r
		}
	}
	sh.clock++
	*victim = chainRecord{tag: tag, key: key, check: check, stamp: sh.clock, digest: *d}
	sh.mu.Unlock()
}

// len returns how many records are in use; for tests.
func (c *chainCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, r := range sh.recs {
			if r.tag != 0 {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// digestScratch holds the Digests of one request's newly hashed blocks.
var digestScratch = sync.Pool{New: func() any { s := make([]kvblock.Digest, 0, 512); return &s }}

// keys appends the vLLM keys of tokens' full blocks to dst: those of the
// longest cached prefix from the cache, the rest hashed from its last
// Digest with h and then cached.
func (c *chainCache) keys(h *kvblock.Hasher, blockSize int, dst []kvblock.Key, tokens []uint32, lora, salt string) ([]kvblock.Key, error) {
	n := len(tokens) / blockSize
	parent := h.Root()
	seed := c.root(lora, salt)
	m := 0
	var tag uint64
	var check uint32
	for ; m < n; m++ {
		tag, check = blockID(seed, tokens[m*blockSize:(m+1)*blockSize])
		key, d, ok := c.get(tag, check)
		if !ok {
			break
		}
		dst, parent, seed = append(dst, key), d, tag
	}
	c.hits.Add(uint64(m))
	if m == n {
		return dst, nil
	}
	c.misses.Add(uint64(n - m))

	extra := kvblock.RequestExtras{LoRAName: lora, CacheSalt: salt}.PerBlock(n)
	if extra != nil {
		extra = extra[m:]
	}
	start := len(dst)
	sp := digestScratch.Get().(*[]kvblock.Digest)
	dst, digs, err := h.BlockDigests(dst, (*sp)[:0], parent, tokens[m*blockSize:n*blockSize], extra)
	if err == nil {
		// tag and check are already block m's: the walk stopped there.
		for j := range digs {
			if j > 0 {
				b := m + j
				tag, check = blockID(seed, tokens[b*blockSize:(b+1)*blockSize])
			}
			c.put(tag, check, dst[start+j], &digs[j])
			seed = tag
		}
	}
	*sp = digs
	digestScratch.Put(sp)
	return dst, err
}
