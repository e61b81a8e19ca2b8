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

// TestTierTTLKeepsAFreshEntryBehindABacklogOfOldLogs: after an idle gap of
// 128-255 epochs an add drains at most 8 expired logs, so a pod's old log
// can outlast the add that stored its block again. The next epoch's add
// drains it while the fresh record's epoch byte looks older than the log's:
// the record stays, and once it has expired in turn a write drops it.
// Epochs are 10 ms (a 40 ms tier TTL).
func TestTierTTLKeepsAFreshEntryBehindABacklogOfOldLogs(t *testing.T) {
	const w = 10 // ms per epoch
	srv := startServer(t)
	ix := tierTTLIndex(t, srv, 4*w*time.Millisecond)
	clock := serverClock(t, srv.Addr())
	epoch := func() int64 { return clock() / w }
	spec := kvblock.TierSpeculative
	attempt := 0
	testwait.For(t, "adds 128-255 epochs after a backlog and one epoch apart", func() bool {
		attempt++
		pods := make([]kvblock.Pod, 9) // one log each; an add drains 8
		for i := range pods {
			pods[i] = kvblock.Pod{Addr: fmt.Sprintf("10.2.%d.%d:8000", attempt, i)}
		}
		ks := keyRange(100*attempt, 100*attempt+len(pods))
		first := epoch()
		for i, p := range pods {
			mustAdd(t, ix, p, spec, ks[i:i+1])
		}
		i := lastLogged(t, srv.Addr(), pods)
		last, k := pods[i], ks[i:i+1]
		stored := epoch()
		testwait.For(t, "130 idle epochs", func() bool { return epoch() >= stored+130 })
		from1 := epoch()
		mustAdd(t, ix, last, spec, k) // drains the other pods' logs alone
		to1 := epoch()
		testwait.For(t, "the next epoch", func() bool { return epoch() > to1 })
		from2 := epoch()
		mustAdd(t, ix, podC, kvblock.TierGPU, keyRange(0, 1)) // drains last's old log
		to2 := epoch()
		if from1-stored < 128 || to1-first > 255 || to2-from1 > 4 {
			return false // too slow for the windows: again
		}
		if got := mustScore(t, ix, k, last); got[0].Matched != 1 {
			t.Fatalf("a store %d-%d epochs after a backlog, expired %d-%d epochs later: the pod holds %d of 1 block, want 1",
				from1-stored, to1-first, from2-to1, to2-from1, got[0].Matched)
		}
		testwait.For(t, "the stored-again entry to expire", func() bool {
			mustAdd(t, ix, podC, kvblock.TierGPU, keyRange(0, 1))
			return mustScore(t, ix, k, last)[0].Matched == 0
		})
		return true
	})
	if s := mustStats(t, ix); s.Entries != 1 || s.Keys != 1 || s.Pods != 1 {
		t.Errorf("stats = %+v, want podC's GPU entry alone", s)
	}
}

// lastLogged is the index in pods of the pod whose log expiry drains last
// (logs expiring together go in the order of their names).
func lastLogged(t *testing.T, addr string, pods []kvblock.Pod) int {
	t.Helper()
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	segs, err := rc.ZRange(ctx, "kvtrack:{0}a", -1, -1).Result()
	if err != nil || len(segs) != 1 {
		t.Fatalf("the last log = %q (err %v)", segs, err)
	}
	pid, _, _ := strings.Cut(segs[0], ":")
	for i, p := range pods {
		id, err := rc.HGet(ctx, "kvtrack:{m}pods", p.Addr+"#0").Result()
		if err != nil {
			t.Fatalf("pod id of %s: %v", p, err)
		}
		if id == pid {
			return i
		}
	}
	t.Fatalf("no pod has id %s, the last log's", pid)
	return 0
}
