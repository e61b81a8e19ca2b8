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
// index included, against one server; each subtest gets its own key prefix,
// which keeps indexes on one server apart.
func TestConformance(t *testing.T) {
	srv := startServer(t)
	var n atomic.Int64
	indextest.Run(t, func(t *testing.T) kvblock.Index {
		prefix := fmt.Sprintf("conformance%d:", n.Add(1))
		return newIndexOn(t, srv, func(c *redis.Config) { c.KeyPrefix = prefix }).Index
	})
}
