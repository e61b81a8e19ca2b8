package kvblock

import (
	"context"
	"testing"
)

// A pod taking and dropping a second reference to keys another pod holds
// (kvcache's speculative entries) must not rewrite the shard each time.
func TestAddRemoveChurnDoesNotCompactEveryTime(t *testing.T) {
	x, err := NewMemIndex(MemIndexConfig{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := make([]Key, 200)
	for i := range keys {
		keys[i] = Key(i*7919 + 1)
	}
	a, b := Pod{Addr: "a:1"}, Pod{Addr: "b:1"}
	if err := x.Add(ctx, a, TierGPU, keys); err != nil {
		t.Fatal(err)
	}
	churn := func() {
		x.Add(ctx, b, TierGPU, keys)
		x.Remove(ctx, b, TierGPU, keys)
	}
	churn()
	if allocs := testing.AllocsPerRun(50, churn); allocs > 1 {
		t.Errorf("%.1f allocations per add/remove cycle of 200 keys, want at most 1: the shard is being rewritten", allocs)
	}
}
