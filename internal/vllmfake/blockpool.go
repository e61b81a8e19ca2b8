package vllmfake

import (
	"errors"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// BlockPool is a vLLM-like GPU block pool of fixed capacity: blocks held by
// running requests are reference-counted; a full block that has been
// computed is cached under its hash; cached blocks that no request holds sit
// in an LRU free queue and are evicted, oldest first, when new blocks are
// needed. Evictions and new cached blocks are reported as the events vLLM
// would publish for them.
//
// Like vLLM's BlockPool, the cache does not de-duplicate: a block computed
// while its hash is already cached (the prompt's last block, which vLLM
// always recomputes, or a block two requests computed at once) is cached
// as another copy and published in a BlockStored; each copy is evicted on
// its own, with its own BlockRemoved, and lookups find the oldest copy.
//
// The zero value is not usable; call NewBlockPool. Not safe for concurrent
// use.
type BlockPool struct {
	capacity int
	// held counts the physical blocks requests hold: cached ones with a
	// reference (once, however many requests share them) plus unhashed ones.
	// held + nlru <= capacity.
	held int

	slots []slot
	free  []int32 // unused slot indexes
	// byKey holds each cached hash's copies, oldest first.
	byKey map[kvblock.Key][]int32
	lru   int32 // sentinel slot 0 heads the circular LRU list of unreferenced cached blocks
	nlru  int

	events []Event // since the last TakeEvents
}

type slot struct {
	key        kvblock.Key
	ref        int32
	prev, next int32
	cached     bool // in byKey; false for a block a Reset uncached while held
}

// ErrNoSpace reports an allocation larger than the blocks not held by
// requests; the caller waits for running requests to finish.
var ErrNoSpace = errors.New("vllmfake: not enough free KV-cache blocks")

// NewBlockPool returns a pool of capacity blocks.
func NewBlockPool(capacity int) *BlockPool {
	p := &BlockPool{capacity: capacity, byKey: make(map[kvblock.Key][]int32, capacity)}
	p.slots = append(p.slots, slot{}) // sentinel
	return p
}

// Capacity returns the pool's size in blocks.
func (p *BlockPool) Capacity() int { return p.capacity }

// Held returns the number of blocks held by requests.
func (p *BlockPool) Held() int { return p.held }

// Cached returns the number of distinct cached hashes, held or not
// (copies of one hash count once).
func (p *BlockPool) Cached() int { return len(p.byKey) }

// Contains reports whether key is cached.
func (p *BlockPool) Contains(key kvblock.Key) bool {
	_, ok := p.byKey[key]
	return ok
}

// PrefixLen returns how many of keys, from the first, are cached: what
// vLLM's prefix-cache lookup finds. It changes nothing.
func (p *BlockPool) PrefixLen(keys []kvblock.Key) int {
	for i, k := range keys {
		if _, ok := p.byKey[k]; !ok {
			return i
		}
	}
	return len(keys)
}

// Allocation is what a request holds in the pool.
type Allocation struct {
	// Hit is the number of leading prompt blocks found in the cache.
	Hit int
	// slots held by reference (cached blocks, or blocks a Reset uncached
	// while held), in order.
	held []int32
	// anon is the number of blocks held without a hash.
	anon int
}

// Allocate gives a request blocks for total blocks of KV cache, the first
// len(keys) of which are its full prompt blocks with those keys. At most
// maxHit leading keys are taken from the cache (vLLM always recomputes the
// last prompt token). Cached blocks it does not need are evicted LRU-first
// to make room, each reported as a BlockRemoved. It returns ErrNoSpace and
// changes nothing when the blocks not held by requests are too few.
func (p *BlockPool) Allocate(keys []kvblock.Key, maxHit, total int) (*Allocation, error) {
	hit := min(p.PrefixLen(keys), maxHit, total)
	// Hit blocks that sit in the free queue become held.
	reclaim := 0
	for _, k := range keys[:hit] {
		if p.slots[p.byKey[k][0]].ref == 0 {
			reclaim++
		}
	}
	need := total - hit
	if p.held+reclaim+need > p.capacity {
		return nil, ErrNoSpace
	}
	a := &Allocation{Hit: hit, held: make([]int32, 0, len(keys)), anon: need}
	for _, k := range keys[:hit] {
		i := p.byKey[k][0]
		if p.slots[i].ref == 0 {
			p.unlink(i)
		}
		p.slots[i].ref++
		a.held = append(a.held, i)
	}
	p.held += reclaim + need
	for p.held+p.nlru > p.capacity {
		p.evictOldest()
	}
	return a, nil
}

func (p *BlockPool) evictOldest() {
	i := p.slots[p.lru].next
	p.unlink(i)
	k := p.slots[i].key
	p.uncache(i)
	p.free = append(p.free, i)
	p.events = append(p.events, Event{Kind: BlockRemoved, Hashes: []kvblock.Key{k}})
}

// uncache drops slot i from its hash's copies.
func (p *BlockPool) uncache(i int32) {
	s := &p.slots[i]
	if !s.cached {
		return
	}
	s.cached = false
	copies := p.byKey[s.key]
	if len(copies) == 1 {
		delete(p.byKey, s.key)
		return
	}
	for j, c := range copies {
		if c == i {
			p.byKey[s.key] = append(copies[:j:j], copies[j+1:]...)
			return
		}
	}
}

// Cache registers computed full blocks of a request under their keys, in
// chain order: keys[i] is the request's block first+i, and tokens holds
// exactly their tokens. Blocks move from the allocation's unhashed ones to
// cached ones and are reported in one BlockStored. A key already cached
// (computed meanwhile by another request, or the prompt's recomputed last
// block) becomes another cached copy and is reported too, as vLLM does.
func (p *BlockPool) Cache(a *Allocation, keys []kvblock.Key, parent kvblock.Key, hasParent bool, tokens []uint32, blockSize int) {
	n := min(len(keys), a.anon)
	for _, k := range keys[:n] {
		var i int32
		if f := len(p.free); f > 0 {
			i, p.free = p.free[f-1], p.free[:f-1]
		} else {
			p.slots = append(p.slots, slot{})
			i = int32(len(p.slots) - 1)
		}
		p.slots[i] = slot{key: k, ref: 1, cached: true}
		p.byKey[k] = append(p.byKey[k], i)
		a.held = append(a.held, i)
	}
	a.anon -= n
	if n > 0 {
		p.events = append(p.events, Event{Kind: BlockStored, Hashes: keys[:n], Tokens: tokens[:n*blockSize], BlockSize: blockSize, Parent: parent, HasParent: hasParent})
	}
}

// Release returns a finished request's blocks. Cached ones no other request
// holds join the free queue, the request's last block first, so that its
// tail is evicted before its prefix (vLLM frees in reverse order).
func (p *BlockPool) Release(a *Allocation) {
	for j := len(a.held) - 1; j >= 0; j-- {
		i := a.held[j]
		if p.slots[i].ref--; p.slots[i].ref > 0 {
			continue
		}
		p.held--
		if p.slots[i].cached {
			p.pushBack(i)
		} else {
			p.free = append(p.free, i) // uncached by a Reset while held
		}
	}
	p.held -= a.anon
	a.held, a.anon = nil, 0
}

// Reset drops the whole prefix cache, as vLLM's reset_prefix_cache or an
// engine restart does, and reports one AllBlocksCleared. Blocks held by
// running requests stay theirs but are no longer cached: no later request
// can hit them, and they are freed, not cached, when released.
func (p *BlockPool) Reset() {
	for k, copies := range p.byKey {
		for _, i := range copies {
			p.slots[i].cached = false
			if p.slots[i].ref == 0 {
				p.unlink(i)
				p.free = append(p.free, i)
			}
		}
		delete(p.byKey, k)
	}
	p.events = append(p.events, Event{Kind: AllBlocksCleared})
}

// TakeEvents returns the events since the last call, in order, and forgets
// them. The slice is valid until the next call into the pool.
func (p *BlockPool) TakeEvents() []Event {
	ev := p.events
	p.events = p.events[:0]
	return ev
}

// Keys appends every cached key to dst.
func (p *BlockPool) Keys(dst []kvblock.Key) []kvblock.Key {
	for k := range p.byKey {
		dst = append(dst, k)
	}
	return dst
}

func (p *BlockPool) unlink(i int32) {
	s := &p.slots[i]
	p.slots[s.prev].next = s.next
	p.slots[s.next].prev = s.prev
	s.prev, s.next = 0, 0
	p.nlru--
}

func (p *BlockPool) pushBack(i int32) {
	tail := p.slots[p.lru].prev
	p.slots[i].prev, p.slots[i].next = tail, p.lru
	p.slots[tail].next = i
	p.slots[p.lru].prev = i
	p.nlru++
}
