package kvblock_test

import (
	"context"
	"errors"
	"maps"
	"math"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/internal/fielderr"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/indextest"
)

func newMemIndex(t testing.TB, cfg kvblock.MemIndexConfig) *kvblock.MemIndex {
	t.Helper()
	idx, err := kvblock.NewMemIndex(cfg)
	if err != nil {
		t.Fatalf("NewMemIndex(%+v): %v", cfg, err)
	}
	return idx
}

func TestMemIndexConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kvblock.MemIndexConfig
	}{
		{"defaults", kvblock.MemIndexConfig{}},
		// One shard: tables grow large, runs share one slab, and sweeps
		// cross chunk boundaries.
		{"shards=1", kvblock.MemIndexConfig{Shards: 1}},
		{"shards=4", kvblock.MemIndexConfig{Shards: 4, Capacity: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			indextest.Run(t, func(t *testing.T) kvblock.Index { return newMemIndex(t, tc.cfg) })
		})
	}
}

func TestNewMemIndexRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kvblock.MemIndexConfig
		want string // what the error must say: the field, as spelled in JSON, and its fault
	}{
		{"negative capacity", kvblock.MemIndexConfig{Capacity: -1}, "capacity: -1 is below shards"},
		{"capacity below shards", kvblock.MemIndexConfig{Capacity: 8, Shards: 16}, "capacity: 8 is below shards (16)"},
		{"negative shards", kvblock.MemIndexConfig{Shards: -4}, "shards: -4 out of range"},
		{"shards not a power of two", kvblock.MemIndexConfig{Shards: 12}, "shards: 12 out of range (valid: a power of two"},
		{"too many shards", kvblock.MemIndexConfig{Shards: 1 << 17}, "shards: 131072 out of range"},
		{"negative weight", kvblock.MemIndexConfig{TierWeights: kvblock.TierWeights{"CPU": -0.5}}, "tierWeights.CPU: -0.5 (valid: a finite number >= 0)"},
		{"NaN weight", kvblock.MemIndexConfig{TierWeights: kvblock.TierWeights{"GPU": math.NaN()}}, "tierWeights.GPU: NaN"},
		{"infinite weight", kvblock.MemIndexConfig{TierWeights: kvblock.TierWeights{"GPU": math.Inf(1)}}, "tierWeights.GPU: +Inf"},
		{"empty medium", kvblock.MemIndexConfig{TierWeights: kvblock.TierWeights{"": 1}}, "tierWeights: an empty medium name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := kvblock.NewMemIndex(tc.cfg)
			if err == nil {
				t.Fatalf("NewMemIndex(%+v) = %v, nil; want an error", tc.cfg, idx)
			}
			if !errors.Is(err, kvblock.ErrInvalidConfig) {
				t.Errorf("error %q does not wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			var fe *fielderr.Error
			if !errors.As(err, &fe) {
				t.Errorf("error %q holds no *fielderr.Error", err)
			}
		})
	}
}

func TestMemIndexConfigDefaults(t *testing.T) {
	got := newMemIndex(t, kvblock.MemIndexConfig{}).Config()
	if got.Capacity != kvblock.DefaultCapacity || got.Shards != kvblock.DefaultShards {
		t.Errorf("Config() capacity/shards = %d/%d, want %d/%d", got.Capacity, got.Shards, kvblock.DefaultCapacity, kvblock.DefaultShards)
	}
	if !maps.Equal(got.TierWeights, kvblock.DefaultTierWeights()) {
		t.Errorf("Config().TierWeights = %v, want %v", got.TierWeights, kvblock.DefaultTierWeights())
	}
}

func TestMemIndexUsesConfiguredTierWeights(t *testing.T) {
	ctx := context.Background()
	idx := newMemIndex(t, kvblock.MemIndexConfig{TierWeights: kvblock.TierWeights{"GPU": 2, "CPU": 0.5}})
	if err := idx.Add(ctx, podA, kvblock.TierCPU, keys(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := idx.Add(ctx, podA, kvblock.TierGPU, keys(2)); err != nil {
		t.Fatal(err)
	}
	if err := idx.Add(ctx, podA, kvblock.TierStorage, keys(3)); err != nil { // STORAGE is unweighted here
		t.Fatal(err)
	}
	got, err := idx.Score(ctx, keys(1, 2, 3), []kvblock.Pod{podA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := 0.5 + 2 + 0.5; got[0].Matched != 3 || math.Abs(got[0].Weighted-want) > 1e-12 {
		t.Errorf("Score = %+v, want matched 3 weighted %v", got[0], want)
	}
}

func TestMemIndexFoldsOutOfRangeTiers(t *testing.T) {
	ctx := context.Background()
	idx := newMemIndex(t, kvblock.MemIndexConfig{})
	if err := idx.Add(ctx, podA, kvblock.Tier(200), keys(1)); err != nil {
		t.Fatal(err)
	}
	// Tier 200 and tier MaxTiers-1 are the same entry.
	if err := idx.Remove(ctx, podA, kvblock.MaxTiers-1, keys(1)); err != nil {
		t.Fatal(err)
	}
	if st, _ := idx.Stats(ctx); st.Entries != 0 {
		t.Errorf("after removing the folded tier, %d entries remain, want 0", st.Entries)
	}
}

func TestCapacityEvictsColdKeysFirst(t *testing.T) {
	ctx := context.Background()
	const capacity = 64
	idx := newMemIndex(t, kvblock.MemIndexConfig{Shards: 1, Capacity: capacity})
	hot := make([]kvblock.Key, 8)
	for i := range hot {
		hot[i] = kvblock.Key(1000 + i)
	}
	if err := idx.Add(ctx, podA, kvblock.TierGPU, hot); err != nil {
		t.Fatal(err)
	}
	// Stream cold keys through, scoring the hot ones between inserts as a
	// popular system prompt would be.
	const cold = 1000
	for i := range cold {
		if err := idx.Add(ctx, podB, kvblock.TierGPU, keys(kvblock.Key(i))); err != nil {
			t.Fatal(err)
		}
		if _, err := idx.Score(ctx, hot, []kvblock.Pod{podA}, nil); err != nil {
			t.Fatal(err)
		}
		if st, _ := idx.Stats(ctx); st.Entries > capacity {
			t.Fatalf("after %d inserts the index holds %d entries, over its capacity %d", i+1, st.Entries, capacity)
		}
	}
	got, err := idx.Score(ctx, hot, []kvblock.Pod{podA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Matched != len(hot) {
		t.Errorf("hot prefix matched %d of %d keys after the cold stream; the CLOCK evicted hot keys", got[0].Matched, len(hot))
	}
	st, _ := idx.Stats(ctx)
	if want := uint64(len(hot) + cold - capacity); st.Evictions != want || st.Entries != capacity {
		t.Errorf("Stats evictions/entries = %d/%d, want %d/%d", st.Evictions, st.Entries, want, capacity)
	}
	if err := idx.Verify(); err != nil {
		t.Error(err)
	}
}

func TestClearPodSweepsALargeShardInChunks(t *testing.T) {
	// One shard of 50k keys: the sweep needs many chunks, and a run of
	// Adds on another pod between chunks cannot make it miss entries.
	ctx := context.Background()
	idx := newMemIndex(t, kvblock.MemIndexConfig{Shards: 1})
	const n = 50000
	ks := make([]kvblock.Key, n)
	for i := range ks {
		ks[i] = kvblock.Key(i * 7919)
	}
	if err := idx.Add(ctx, podA, kvblock.TierGPU, ks); err != nil {
		t.Fatal(err)
	}
	if err := idx.Add(ctx, podB, kvblock.TierGPU, ks[:n/2]); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		more := make([]kvblock.Key, n)
		for i := range more {
			more[i] = kvblock.Key(1<<40 + i)
		}
		done <- idx.Add(ctx, podB, kvblock.TierCPU, more) // grows the table mid-sweep
	}()
	if err := idx.ClearPod(ctx, podA); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := idx.ClearPod(ctx, podA); err != nil { // nothing left: a no-op
		t.Fatal(err)
	}
	st, _ := idx.Stats(ctx)
	if st.Entries != n/2+n || st.Pods != 1 {
		t.Errorf("after ClearPod(podA): %d entries %d pods, want %d and 1", st.Entries, st.Pods, n/2+n)
	}
	if err := idx.Verify(); err != nil {
		t.Error(err)
	}
}

func TestClearPodStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	idx := newMemIndex(t, kvblock.MemIndexConfig{})
	if err := idx.Add(ctx, podA, kvblock.TierGPU, keys(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := idx.ClearPod(ctx, podA); !errors.Is(err, context.Canceled) {
		t.Errorf("ClearPod with a cancelled context = %v, want context.Canceled", err)
	}
	if err := idx.Clear(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Clear with a cancelled context = %v, want context.Canceled", err)
	}
}
