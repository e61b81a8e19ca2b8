package kvblock_test

import (
	"testing"

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
