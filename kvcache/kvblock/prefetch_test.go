package kvblock

import (
	"context"
	"slices"
	"testing"
)

// Prefetching is a hint: whatever state a shard's view is in, including
// one a reader could see torn (a run handle beyond the slab), it neither
// faults nor changes anything a reader or writer relies on (slot words,
// CLOCK bits included).
func TestPrefetchIsOnlyAHint(t *testing.T) {
	ctx := context.Background()
	newShard := func(t *testing.T, holders int) (*MemIndex, *shard, uint64) {
		x, err := NewMemIndex(MemIndexConfig{Shards: 1})
		if err != nil {
			t.Fatal(err)
		}
		for p := range holders {
			if err := x.Add(ctx, Pod{Addr: "10.0.0.1:8000", Rank: p}, TierGPU, []Key{7}); err != nil {
				t.Fatal(err)
			}
		}
		h := mix(7)
		return x, x.shardOf(h), h
	}
	for _, tc := range []struct {
		name    string
		holders int                      // pods holding key 7
		mangle  func(s *shard, h uint64) // makes the view odd
		key     uint64                   // the key prefetched, mixed
	}{
		{name: "empty shard", key: mix(7)},
		{name: "absent key", holders: 1, key: mix(8)},
		{name: "inline entry", holders: 1, key: mix(7)},
		{name: "run of entries", holders: 5, key: mix(7)},
		{name: "run handle beyond the slab", holders: 5, key: mix(7), mangle: func(s *shard, h uint64) {
			i, _ := s.findLocked(h)
			s.slots[i].v = clockBit | runHandle(uint32(len(s.slab)+100), 3, 8)
		}},
		{name: "cleared index", holders: 5, key: mix(7), mangle: func(s *shard, _ uint64) {
			s.view.Store(nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, s, h := newShard(t, tc.holders)
			if tc.mangle != nil {
				tc.mangle(s, h)
			}
			var slots []slot
			if v := s.view.Load(); v != nil {
				slots = slices.Clone(v.slots)
			}
			s.prefetchSlot(tc.key)
			s.prefetchRun(tc.key)
			x.prefetch([]Key{7, 8, 9}, 0)
			if v := s.view.Load(); v != nil && !slices.Equal(v.slots, slots) {
				t.Errorf("prefetching changed the slots:\n got %v\nwant %v", v.slots, slots)
			}
		})
	}
}
