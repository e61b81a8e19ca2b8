package kvcache

import (
	"context"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testredis"
	"github.com/kvtrack/kvtrack/internal/testwait"
)

// TestSpeculativeEntriesOfACrashedReplicaExpireInRedis: a replica records
// speculative entries in the shared Redis index and stops before removing
// them (it never runs its expiry). Another replica sees them, then sees
// them go after the speculative TTL, not the index's hour: Redis expires
// them on its own as replicas write.
func TestSpeculativeEntriesOfACrashedReplicaExpireInRedis(t *testing.T) {
	cfg := Config{
		Index:       IndexConfig{Backend: IndexRedis},
		Redis:       redisConfig(testredis.Start(t)),
		Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(200 * time.Millisecond)},
	}
	crashed, other := newIndexer(t, cfg), newIndexer(t, cfg)
	ctx := context.Background()
	req := Request{TokenIDs: seq(1, 65), Pods: []string{"a:1", "b:1"}}
	res, err := crashed.Score(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := crashed.Speculate(ctx, "b:1", res.Keys); err != nil {
		t.Fatal(err)
	}
	// From here on the crashed replica makes no call: its own expiry never
	// runs.
	if res, err := other.Score(ctx, req); err != nil || res.Pods[1].Matched != 4 {
		t.Fatalf("the other replica's score = %+v, %v; want b's 4 speculative blocks", res.Pods, err)
	}
	unrelated, err := other.Score(ctx, Request{TokenIDs: seq(1000, 17), Pods: []string{"c:1"}})
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the crashed replica's speculative entries to expire in Redis", func() bool {
		// Redis expires entries as replicas write; the other replica's
		// own speculation is such a write.
		if err := other.Speculate(ctx, "c:1", unrelated.Keys); err != nil {
			t.Fatal(err)
		}
		res, err := other.Score(ctx, req)
		return err == nil && res.Pods[1].Matched == 0
	})
}
