package vllmfake

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func keys(ks ...uint64) []kvblock.Key {
	out := make([]kvblock.Key, len(ks))
	for i, k := range ks {
		out[i] = kvblock.Key(k)
	}
	return out
}

func toks(nblocks, bs int) []uint32 { return make([]uint32, nblocks*bs) }

// run allocates, caches every prompt block and releases, as one request.
func run(t *testing.T, p *BlockPool, ks []kvblock.Key, total int) *Allocation {
	t.Helper()
	a, err := p.Allocate(ks, len(ks), total)
	if err != nil {
		t.Fatalf("Allocate(%v, %d): %v", ks, total, err)
	}
	p.Cache(a, ks[a.Hit:], 0, false, toks(len(ks)-a.Hit, 1), 1)
	return a
}

func TestBlockPoolHitsCachedPrefix(t *testing.T) {
	p := NewBlockPool(10)
	p.Release(run(t, p, keys(1, 2, 3), 4))
	a, err := p.Allocate(keys(1, 2, 9), 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if a.Hit != 2 {
		t.Errorf("hit = %d, want 2", a.Hit)
	}
}

func TestBlockPoolMaxHitCapsReuse(t *testing.T) {
	p := NewBlockPool(10)
	p.Release(run(t, p, keys(1, 2, 3), 3))
	a, _ := p.Allocate(keys(1, 2, 3), 2, 3)
	if a.Hit != 2 {
		t.Errorf("hit = %d, want 2 (capped)", a.Hit)
	}
}

func TestBlockPoolEvictsLeastRecentlyFreedTailFirst(t *testing.T) {
	p := NewBlockPool(4)
	p.Release(run(t, p, keys(1, 2), 2))
	p.Release(run(t, p, keys(3, 4), 2))
	p.TakeEvents()
	// Free queue: 2, 1, 4, 3 (each request's tail first). Two new blocks
	// evict 2 then 1.
	a, err := p.Allocate(keys(7, 8), 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	var removed []kvblock.Key
	for _, e := range p.TakeEvents() {
		if e.Kind == BlockRemoved {
			removed = append(removed, e.Hashes...)
		}
	}
	if len(removed) != 2 || removed[0] != 2 || removed[1] != 1 {
		t.Errorf("removed %v, want [2 1]", removed)
	}
	_ = a
}

func TestBlockPoolHeldBlocksAreNeverEvicted(t *testing.T) {
	p := NewBlockPool(3)
	run(t, p, keys(1, 2), 2) // still running
	if _, err := p.Allocate(keys(5, 6), 2, 2); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("err = %v, want ErrNoSpace", err)
	}
	if !p.Contains(1) || !p.Contains(2) {
		t.Error("held blocks evicted")
	}
}

func TestBlockPoolSharedBlocksCountOnce(t *testing.T) {
	p := NewBlockPool(4)
	a := run(t, p, keys(1, 2), 2)
	b, err := p.Allocate(keys(1, 2), 2, 3) // shares 1, 2 and takes one more
	if err != nil {
		t.Fatal(err)
	}
	if p.Held() != 3 {
		t.Errorf("held = %d, want 3", p.Held())
	}
	p.Release(a)
	p.Release(b)
	if p.Held() != 0 || p.Cached() != 2 {
		t.Errorf("after release held %d cached %d, want 0 and 2", p.Held(), p.Cached())
	}
}

func TestBlockPoolStoredEventsChain(t *testing.T) {
	p := NewBlockPool(10)
	p.Release(run(t, p, keys(1, 2), 2))
	p.TakeEvents()
	a, _ := p.Allocate(keys(1, 2, 3, 4), 4, 4)
	p.Cache(a, keys(3, 4), 2, true, toks(2, 1), 1)
	ev := p.TakeEvents()
	if len(ev) != 1 || ev[0].Kind != BlockStored || !ev[0].HasParent || ev[0].Parent != 2 || len(ev[0].Hashes) != 2 {
		t.Errorf("events = %+v, want one BlockStored [3 4] with parent 2", ev)
	}
}

// A random run against the invariants: capacity is never exceeded, and the
// events replayed into reference counts (as kvtrack's index keeps them)
// reproduce the cache's contents, copies of one block included.
func TestBlockPoolEventsReproduceContents(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := NewBlockPool(64)
	shadow := map[kvblock.Key]int{}
	var running []*Allocation
	for range 5000 {
		if len(running) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(running))
			p.Release(running[i])
			running = append(running[:i], running[i+1:]...)
		} else {
			group := uint64(rng.IntN(8))
			n := 1 + rng.IntN(12)
			ks := make([]kvblock.Key, n)
			for j := range ks {
				ks[j] = kvblock.Key(group*1000 + uint64(j))
				if j > 6 {
					ks[j] = kvblock.Key(rng.Uint64())
				}
			}
			// Sometimes vLLM's cap: the last prompt block is recomputed,
			// a second copy when it is cached.
			a, err := p.Allocate(ks, n-rng.IntN(2), n+rng.IntN(3))
			if err == nil {
				p.Cache(a, ks[a.Hit:], 0, false, toks(n-a.Hit, 1), 1)
				running = append(running, a)
			}
		}
		if p.Held()+p.nlru > p.Capacity() {
			t.Fatalf("held %d + free cached %d > capacity %d", p.Held(), p.nlru, p.Capacity())
		}
		for _, e := range p.TakeEvents() {
			for _, k := range e.Hashes {
				switch e.Kind {
				case BlockStored:
					shadow[k]++
				case BlockRemoved:
					if shadow[k]--; shadow[k] == 0 {
						delete(shadow, k)
					}
				}
			}
		}
	}
	if len(shadow) != p.Cached() {
		t.Fatalf("events say %d cached blocks, pool has %d", len(shadow), p.Cached())
	}
	for k := range shadow {
		if !p.Contains(k) {
			t.Fatalf("events say %d is cached, pool disagrees", k)
		}
	}
}

// vLLM does not de-duplicate its cache: the prompt's last block, which it
// always recomputes, is cached again as a second copy and published, and
// each copy's eviction is published on its own.
func TestBlockPoolRecomputedBlockIsAnotherCopy(t *testing.T) {
	p := NewBlockPool(4)
	p.Release(run(t, p, keys(1, 2), 2))
	p.TakeEvents()
	a, err := p.Allocate(keys(1, 2), 1, 2) // block 2 is cached but recomputed
	if err != nil {
		t.Fatal(err)
	}
	p.Cache(a, keys(2), 1, true, toks(1, 1), 1)
	ev := p.TakeEvents()
	if len(ev) != 1 || ev[0].Kind != BlockStored || !slices.Equal(ev[0].Hashes, keys(2)) || ev[0].Parent != 1 {
		t.Fatalf("events %+v, want BlockStored [2] with parent 1", ev)
	}
	p.Release(a)
	if p.Cached() != 2 || p.Held() != 0 {
		t.Fatalf("cached %d held %d, want 2 distinct hashes and nothing held", p.Cached(), p.Held())
	}
	// The free queue holds 2, its copy, then 1 (released tail first). Two
	// new blocks evict the oldest copy of 2 alone: the other still hits.
	if _, err := p.Allocate(keys(7, 8), 2, 2); err != nil {
		t.Fatal(err)
	}
	ev = p.TakeEvents()
	if len(ev) != 1 || ev[0].Kind != BlockRemoved || !slices.Equal(ev[0].Hashes, keys(2)) {
		t.Fatalf("events %+v, want one BlockRemoved [2]", ev)
	}
	if p.PrefixLen(keys(1, 2)) != 2 {
		t.Errorf("after one copy's eviction the prefix [1 2] hits %d blocks, want 2", p.PrefixLen(keys(1, 2)))
	}
}

func TestBlockPoolResetDropsEveryCachedBlock(t *testing.T) {
	p := NewBlockPool(6)
	p.Release(run(t, p, keys(1, 2), 2)) // cached, free
	held := run(t, p, keys(3, 4), 3)    // cached, still running
	p.TakeEvents()
	p.Reset()
	ev := p.TakeEvents()
	if len(ev) != 1 || ev[0].Kind != AllBlocksCleared {
		t.Fatalf("events %+v, want one AllBlocksCleared", ev)
	}
	if p.Cached() != 0 || p.PrefixLen(keys(1, 2)) != 0 || p.PrefixLen(keys(3, 4)) != 0 {
		t.Fatalf("after Reset: %d cached, want 0", p.Cached())
	}
	if p.Held() != 3 {
		t.Fatalf("held %d, want the running request's 3", p.Held())
	}
	// The running request's blocks are recomputed by a new request while it
	// still holds its old, uncached copies; releasing the old ones must not
	// touch the new cached ones.
	again := run(t, p, keys(3, 4), 2)
	p.Release(held)
	if p.Held() != 2 || !p.Contains(3) || !p.Contains(4) {
		t.Fatalf("after releasing the pre-Reset request: held %d, cached 3 %v 4 %v; want 2, true, true", p.Held(), p.Contains(3), p.Contains(4))
	}
	p.Release(again)
	if p.Held() != 0 || p.Cached() != 2 {
		t.Fatalf("all released: held %d cached %d, want 0 and 2", p.Held(), p.Cached())
	}
	// Every slot is usable again: the whole capacity can be allocated.
	if _, err := p.Allocate(keys(9), 0, 6); err != nil {
		t.Fatalf("allocating the whole pool after Reset: %v", err)
	}
}
