package kvblock

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func init() {
	// Every test in this package checks that the published arrays change
	// only inside a seq-odd window.
	checkChanges = true
}

// TestLookupNeverSeesATornShard keeps a few keys present with fixed GPU
// entries in one shard while a writer churns around them: keys inserted and
// deleted on the fixed keys' probe paths, a growing table, and CPU entries
// added to and removed from the fixed keys themselves, which moves their
// runs between size classes and through the free lists. Readers, which take
// no lock, must always see exactly the fixed GPU entries.
func TestLookupNeverSeesATornShard(t *testing.T) {
	x, err := NewMemIndex(MemIndexConfig{Shards: 1, Capacity: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pods := make([]Pod, 6)
	for i := range pods {
		pods[i] = Pod{Addr: "10.0.0.1:8000", Rank: i}
	}
	// fixed[i] is held by pods[0..i]: one inline entry, runs of 2 to 6.
	fixed := make([]Key, len(pods))
	want := make([][]uint64, len(pods))
	for i := range fixed {
		fixed[i] = Key(1000 + i)
		for p := 0; p <= i; p++ {
			if err := x.Add(ctx, pods[p], TierGPU, fixed[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, k := range fixed {
		h := mix(uint64(k))
		want[i] = sortedIDs(x.shardOf(h).lookup(h, nil))
		if len(want[i]) != i+1 {
			t.Fatalf("key %d holds %d entries before the churn, want %d", k, len(want[i]), i+1)
		}
	}

	rounds := 20000
	if testing.Short() {
		rounds = 2000
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer done.Store(true)
		rng := rand.New(rand.NewPCG(1, 2))
		var live []Key
		for r := range rounds {
			k := clusterKey(rng, fixed[rng.IntN(len(fixed))])
			n := 1 + rng.IntN(len(pods))
			for p := range n {
				if err := x.Add(ctx, pods[p], TierCPU, []Key{k}); err != nil {
					t.Error(err)
					return
				}
			}
			live = append(live, k)
			// Grow and shrink a fixed key's run with CPU entries.
			f := fixed[rng.IntN(len(fixed))]
			extra := 1 + rng.IntN(len(pods))
			for p := range extra {
				if err := x.Add(ctx, pods[p], TierCPU, []Key{f}); err != nil {
					t.Error(err)
					return
				}
			}
			for p := range extra {
				if err := x.Remove(ctx, pods[p], TierCPU, []Key{f}); err != nil {
					t.Error(err)
					return
				}
			}
			// Keep a hundred or so keys: the table grows, then churns.
			for len(live) > 120 || (r%500 == 0 && len(live) > 0) {
				j := rng.IntN(len(live))
				for p := range pods {
					if err := x.Remove(ctx, pods[p], TierCPU, live[j:j+1]); err != nil {
						t.Error(err)
						return
					}
				}
				live = slices.Delete(live, j, j+1)
			}
		}
	}()
	var reads atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []uint64
			for !done.Load() {
				for i, k := range fixed {
					h := mix(uint64(k))
					buf = x.shardOf(h).lookup(h, buf)
					if got := sortedIDs(gpuOnly(buf)); !slices.Equal(got, want[i]) {
						t.Errorf("lookup(%d) = %x, want %x", k, got, want[i])
						return
					}
				}
				reads.Add(1)
			}
		}()
	}
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("readers never ran")
	}
	if err := x.Verify(); err != nil {
		t.Fatal(err)
	}
}

// clusterKey returns a random key whose home slot, in tables of 256 to 1024
// slots, lies just before target's, so that inserting and deleting it
// shifts target along its probe path.
func clusterKey(rng *rand.Rand, target Key) Key {
	home := mix(uint64(target)) & 1023
	for {
		k := Key(rng.Uint64())
		if d := (home - mix(uint64(k))&1023) & 1023; d < 4 {
			return k
		}
	}
}

func gpuOnly(es []uint64) []uint64 {
	var gpu []uint64
	for _, e := range es {
		if entryTier(e) == TierGPU {
			gpu = append(gpu, e)
		}
	}
	return gpu
}

func sortedIDs(es []uint64) []uint64 {
	ids := make([]uint64, len(es))
	for i, e := range es {
		ids[i] = e & entryIDMask
	}
	slices.Sort(ids)
	return ids
}
