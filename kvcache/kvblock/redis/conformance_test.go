package redis_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/indextest"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// TestConformance runs the suite every kvblock.Index passes, the in-memory
// index included, against one server of each program (Redis, Valkey); each
// subtest gets its own key prefix, which keeps indexes on one server apart.
// It runs with the default buckets (a block mostly alone in its bucket) and
// with 16 (every bucket packing many blocks).
func TestConformance(t *testing.T) {
	onEachServer(t, func(t *testing.T, srv *server) {
		var n atomic.Int64
		for _, buckets := range []int{0, 16} {
			t.Run(fmt.Sprintf("buckets=%d", buckets), func(t *testing.T) {
				indextest.Run(t, func(t *testing.T) kvblock.Index {
					prefix := fmt.Sprintf("conformance%d:", n.Add(1))
					return newIndexOn(t, srv, func(c *redis.Config) { c.KeyPrefix, c.Buckets = prefix, buckets }).Index
				})
			})
		}
	})
}
