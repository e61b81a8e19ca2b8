package redis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// serverClock returns the server's clock in ms, the one the scripts read
// epochs from.
func serverClock(t *testing.T, addr string) func() int64 {
	t.Helper()
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = rc.Close() })
	return func() int64 {
		tm, err := rc.Time(context.Background()).Result()
		if err != nil {
			t.Fatalf("TIME: %v", err)
		}
		return tm.UnixMilli()
	}
}

// TestTierTTLKeepsAFreshEntryAcrossAnEpochWrap: a record carries its epoch
// mod 256. A pod stores a block, nobody writes for 128 to 255 epochs, and
// the pod stores the block again: the add expires the old store's log, and
// the fresh record, whose epoch byte then looks older than the log's, must
// survive it. A 4 ms tier TTL makes epochs 1 ms long, so the byte wraps
// every 256 ms.
func TestTierTTLKeepsAFreshEntryAcrossAnEpochWrap(t *testing.T) {
	srv := startServer(t)
	ix := tierTTLIndex(t, srv, 4*time.Millisecond)
	clock := serverClock(t, srv.Addr())
	spec := kvblock.TierSpeculative
	attempt := 0
	testwait.For(t, "a store 128-255 epochs after the pod's previous one", func() bool {
		attempt++
		pod := kvblock.Pod{Addr: fmt.Sprintf("10.1.0.%d:8000", attempt)}
		ks := keyRange(10*attempt, 10*attempt+1)
		before := clock()
		mustAdd(t, ix, pod, spec, ks)
		after := clock()
		testwait.For(t, "140 idle epochs", func() bool { return clock() >= after+140 })
		from := clock()
		mustAdd(t, ix, pod, spec, ks)
		to := clock()
		if from-after < 128 || to-before > 255 {
			return false // the machine was too slow to land in the window: again
		}
		if got := mustScore(t, ix, ks, pod); got[0].Matched != 1 {
			t.Fatalf("a store %d-%d epochs after the previous one: the pod holds %d of 1 block, want 1", from-after, to-before, got[0].Matched)
		}
		return true
	})
}

// TestAddOverTheReferenceLimitStoresNothing: a block holds at most 65535
// records. An add that would go over fails whole, storing none of its
// blocks, rather than leaving the blocks before the full one stored but
// unlogged (never expired, unknown to ClearPod).
func TestAddOverTheReferenceLimitStoresNothing(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 2)
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[1:])
	rc := ix.rawClient(t)
	ctx := context.Background()
	buckets, err := rc.Keys(ctx, ix.cfg.KeyPrefix+"{0}k*").Result()
	if err != nil || len(buckets) != 1 {
		t.Fatalf("bucket keys = %q (err %v), want one", buckets, err)
	}
	v, err := rc.Get(ctx, buckets[0]).Result()
	if err != nil || len(v) != 15 {
		t.Fatalf("bucket = %x (err %v), want one block of one record", v, err)
	}
	// podB stored the block 65535 times.
	full := v[:8] + "\xff\xff" + strings.Repeat(v[10:15], 65535)
	if err := rc.Set(ctx, buckets[0], full, 0).Err(); err != nil {
		t.Fatal(err)
	}

	err = ix.Add(ctx, podA, kvblock.TierGPU, ks)
	if err == nil || !strings.Contains(err.Error(), "65535") {
		t.Fatalf("Add onto a full block: err = %v, want the reference limit", err)
	}
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 0, 0)
	wantMatched(t, mustScore(t, ix, ks[1:], podA, podB), 0, 1)
	if s := mustStats(t, ix); s.Keys != 1 || s.Entries != 1 || s.Pods != 1 {
		t.Errorf("stats = %+v, want podB's one entry alone", s)
	}
	if n, err := rc.Keys(ctx, ix.cfg.KeyPrefix+"{0}k*").Result(); err != nil || len(n) != 1 {
		t.Errorf("bucket keys = %q (err %v), want the full block's alone", n, err)
	}
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1])
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 1, 0)
}
