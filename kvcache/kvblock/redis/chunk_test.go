package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// The write scripts read and write the buckets they touch with MGET, MSET
// and DEL of at most 4000 names each. A call of 4096 keys, and an expiry
// that drains two such batches, touch more buckets than that: every one of
// them must be read and written.
func TestWritesSpanningSeveralBucketCommands(t *testing.T) {
	ix := newTestIndex(t, func(c *redis.Config) { c.TTL = time.Duration(time.Second) })
	ctx := context.Background()
	ks := keyRange(0, 8192)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:4096])
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[4096:])
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:4096])
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 8192, 4096)

	mustRemove(t, ix, podB, kvblock.TierGPU, ks[:4096])
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 8192, 0)
	if s := mustStats(t, ix); s.Entries != 8192 || s.Keys != 8192 || s.Pods != 1 {
		t.Fatalf("stats = %+v, want 8192 entries on 8192 keys of 1 pod", s)
	}

	// An add of 4096 keys may expire 8192: both of podA's batches once
	// their TTL is over.
	other := keyRange(1<<20, 1<<20+4096)
	testwait.For(t, "podA's 8192 entries to expire", func() bool {
		mustAdd(t, ix, podC, kvblock.TierGPU, other)
		got, err := ix.Score(ctx, ks, []kvblock.Pod{podA}, nil)
		return err == nil && got[0].Matched == 0
	})
	s := mustStats(t, ix)
	if s.Evictions < 8192 {
		t.Errorf("stats = %+v, want at least podA's 8192 evictions", s)
	}
	// Nothing of podA is left in any bucket: only podC's keys remain.
	if s.Keys != int64(len(other)) && s.Keys != 0 {
		t.Errorf("stats = %+v, want podC's %d keys (or none, expired too)", s, len(other))
	}
}
