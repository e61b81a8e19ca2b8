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

	// An add of 4096 keys may expire 8192: podA's two batches once their
	// TTL is over. podC's keys, stored again by every add, stay.
	other := keyRange(1<<20, 1<<20+4096)
	testwait.For(t, "podA's 8192 entries to expire", func() bool {
		mustAdd(t, ix, podC, kvblock.TierGPU, other)
		s, err := ix.Stats(ctx)
		return err == nil && s.Evictions >= 8192
	})
	if s := mustStats(t, ix); s.Evictions != 8192 || s.Entries != 4096 || s.Keys != 4096 || s.Pods != 1 {
		t.Errorf("stats = %+v, want podA's 8192 evictions and only podC's 4096 entries on 4096 keys left", s)
	}
	wantMatched(t, mustScore(t, ix, ks, podA), 0)
	wantMatched(t, mustScore(t, ix, other, podC), 4096)

	// No bucket kept a record of podA's: storing its blocks again makes
	// 8192 new blocks and entries.
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:4096])
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[4096:])
	if s := mustStats(t, ix); s.Entries != 4096+8192 || s.Keys != 4096+8192 {
		t.Errorf("stats = %+v, want 12288 entries on 12288 keys after podA stores its blocks again", s)
	}
}
