package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// tierTTLIndex is an Index on srv with the default one-hour TTL and a short
// one for SPECULATIVE entries.
func tierTTLIndex(t *testing.T, srv *server, ttl time.Duration) *redis.Index {
	t.Helper()
	cfg := redis.DefaultConfig()
	cfg.Addr = srv.Addr()
	ix, err := redis.New(cfg, redis.WithRegisterer(prometheus.NewRegistry()), redis.WithTierTTL("SPECULATIVE", ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ix.Close() })
	return ix
}

// TestTierTTLExpiresEntriesWithoutTheirWriter: a replica stores speculative
// entries and crashes before removing them. They expire in Redis after
// their own short TTL, dropped by another replica's writes, while the
// entries it stored on other tiers keep the one-hour TTL.
func TestTierTTLExpiresEntriesWithoutTheirWriter(t *testing.T) {
	srv := startServer(t)
	spec := kvblock.TierSpeculative
	ks := keyRange(0, 8)
	crashed := tierTTLIndex(t, srv, 200*time.Millisecond)
	ctx := context.Background()
	mustAdd(t, crashed, podA, spec, ks)
	mustAdd(t, crashed, podB, kvblock.TierGPU, ks)
	mustAdd(t, crashed, podC, spec, ks[:4])
	mustAdd(t, crashed, podC, kvblock.TierGPU, ks) // podC also holds them for real
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}

	other := tierTTLIndex(t, srv, 200*time.Millisecond)
	wantMatched(t, mustScore(t, other, ks, podA, podB, podC), 8, 8, 8)
	unrelated := keyRange(100, 101)
	testwait.For(t, "the crashed replica's speculative entries to expire", func() bool {
		// Expiry runs on writes: any replica's, to any pod.
		if err := other.Add(ctx, podC, kvblock.TierCPU, unrelated); err != nil {
			t.Fatal(err)
		}
		got := mustScore(t, other, ks, podA, podB, podC)
		return got[0].Matched == 0
	})
	got := mustScore(t, other, ks, podA, podB, podC)
	wantMatched(t, got, 0, 8, 8)
	if want := 8 * kvblock.DefaultTierWeights()["GPU"]; got[2].Weighted != want {
		t.Errorf("podC Weighted = %v, want %v: its GPU entries alone", got[2].Weighted, want)
	}
	if s := mustStats(t, other); s.Evictions != 12 || s.Entries != 8+8+1 {
		t.Errorf("stats = %+v, want 12 evictions (the speculative entries) leaving 17 entries", s)
	}
}
