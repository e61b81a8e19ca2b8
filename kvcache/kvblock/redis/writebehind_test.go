package redis_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/indextest"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

func writeBehind(c *redis.Config) { c.WriteBehind = true }

// TestWriteBehindConformance runs the suite with Config.WriteBehind: adds
// are logged and folded later, so every score, remove and stats the suite
// makes right after an add goes through the log.
func TestWriteBehindConformance(t *testing.T) {
	srv := startServer(t)
	var n atomic.Int64
	for _, tc := range []struct {
		name string
		edit func(*redis.Config)
	}{
		{"buckets=default", func(*redis.Config) {}},
		{"buckets=16", func(c *redis.Config) { c.Buckets = 16 }},
		{"groups=5", func(c *redis.Config) { c.Cluster.Groups = 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			indextest.Run(t, func(t *testing.T) kvblock.Index {
				prefix := fmt.Sprintf("wb%d:", n.Add(1))
				return newIndexOn(t, srv, writeBehind, tc.edit, func(c *redis.Config) { c.KeyPrefix = prefix }).Index
			})
		})
	}
}

func TestWriteBehindMatchesReferenceModel(t *testing.T) {
	testMatchesReferenceModel(t, startServer(t), writeBehind)
}

func TestWriteBehindConcurrentUseKeepsCountsExact(t *testing.T) {
	testConcurrentUseKeepsCountsExact(t, startServer(t), writeBehind)
}

// logLen is the length of group 0's write log.
func logLen(t *testing.T, ti *testIndex) int64 {
	t.Helper()
	n, err := ti.rawClient(t).LLen(context.Background(), ti.cfg.KeyPrefix+"{0}w").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriteBehindScoresAddsNoFoldHasApplied(t *testing.T) {
	a := newTestIndex(t, writeBehind)
	b := newIndexOn(t, a.srv) // same prefix, reads no log
	redis.HoldFolds(a.Index, true)
	ks := keyRange(0, 8)
	mustAdd(t, a, podA, kvblock.TierGPU, ks)
	if n := logLen(t, a); n != 1 {
		t.Fatalf("write log holds %d ops, want the add", n)
	}
	wantMatched(t, mustScore(t, a, ks, podA, podB), 8, 0)
	wantMatched(t, mustScore(t, b, ks, podA), 0) // not in the buckets yet

	redis.HoldFolds(a.Index, false)
	if s := mustStats(t, a); s.Entries != 8 || s.Keys != 8 {
		t.Errorf("stats = %+v, want the add's 8 entries", s)
	}
	if n := logLen(t, a); n != 0 {
		t.Errorf("write log holds %d ops after Stats, want none", n)
	}
	wantMatched(t, mustScore(t, b, ks, podA), 8)
}

func TestWriteBehindRemoveAppliesLoggedAddsFirst(t *testing.T) {
	ix := newTestIndex(t, writeBehind)
	redis.HoldFolds(ix.Index, true)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1])
	mustRemove(t, ix, podA, kvblock.TierGPU, ks)
	if n := logLen(t, ix); n != 0 {
		t.Fatalf("write log holds %d ops after the remove, want none", n)
	}
	wantMatched(t, mustScore(t, ix, ks, podA), 1) // the first key's second reference
	if s := mustStats(t, ix); s.Entries != 1 || s.Removals != 3 {
		t.Errorf("stats = %+v, want 1 entry left and 3 removals", s)
	}
}

func TestWriteBehindOpsLeftByAStoppedReplicaAreFolded(t *testing.T) {
	a := newTestIndex(t, writeBehind)
	redis.HoldFolds(a.Index, true)
	ks := keyRange(0, 8)
	mustAdd(t, a, podA, kvblock.TierGPU, ks)
	if err := a.Close(); err != nil { // its last fold is held too
		t.Fatal(err)
	}
	if n := logLen(t, a); n != 1 {
		t.Fatalf("write log holds %d ops, want the stopped replica's add", n)
	}
	b := newIndexOn(t, a.srv, writeBehind)
	testwait.For(t, "the other replica's sweep to fold the add", func() bool { return logLen(t, a) == 0 })
	plain := newIndexOn(t, a.srv)
	wantMatched(t, mustScore(t, plain, ks, podA), 8)
	if got := counterValue(b.reg, "kvtrack_redis_folded_ops_total", ""); got != 1 {
		t.Errorf("kvtrack_redis_folded_ops_total = %v, want 1", got)
	}
}

// rejected is kvtrack_redis_fold_rejected_total{reason}.
func rejected(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kvtrack_redis_fold_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestWriteBehindFoldRefusesAnAddOverTheReferenceLimit(t *testing.T) {
	ix := newTestIndex(t, writeBehind)
	ks := keyRange(0, 2)
	fillToTheReferenceLimit(t, ix, ks[1])

	mustAdd(t, ix, podA, kvblock.TierGPU, ks) // logged: the fold refuses it
	if s := mustStats(t, ix); s.Keys != 1 || s.Entries != 1 {
		t.Errorf("stats = %+v, want podB's one entry alone", s)
	}
	if got := rejected(t, ix.reg, "references"); got != 1 {
		t.Errorf(`kvtrack_redis_fold_rejected_total{reason="references"} = %v, want 1`, got)
	}
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 0, 0)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1]) // the next add is applied
	wantMatched(t, mustScore(t, ix, ks, podA), 1)
	if s := mustStats(t, ix); s.Entries != 2 {
		t.Errorf("stats = %+v, want 2 entries", s)
	}
}

func TestWriteBehindFoldDropsAMalformedOp(t *testing.T) {
	ix := newTestIndex(t, writeBehind)
	redis.HoldFolds(ix.Index, true)
	ctx := context.Background()
	for _, op := range []string{"", "a", "a\x00\x00\x01\x01short", "z\x00\x00\x01\x0112345678"} {
		if err := ix.rawClient(t).RPush(ctx, ix.cfg.KeyPrefix+"{0}w", op).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, ix, ks, podA), 4) // the malformed ops are skipped

	redis.HoldFolds(ix.Index, false)
	if s := mustStats(t, ix); s.Entries != 4 {
		t.Errorf("stats = %+v, want the add's 4 entries", s)
	}
	if got := rejected(t, ix.reg, "malformed"); got != 4 {
		t.Errorf(`kvtrack_redis_fold_rejected_total{reason="malformed"} = %v, want 4`, got)
	}
}

// TestWriteBehindLogStaysShort: a writer faster than the folds folds its
// group itself once the log passes 16 ops, so a score never reads a long
// tail.
func TestWriteBehindLogStaysShort(t *testing.T) {
	ix := newTestIndex(t, writeBehind)
	for i := range 200 {
		mustAdd(t, ix, podA, kvblock.TierGPU, keyRange(i, i+1))
		if n := logLen(t, ix); n > 16 {
			t.Fatalf("after add %d the write log holds %d ops, want at most 16", i, n)
		}
	}
	if s := mustStats(t, ix); s.Entries != 200 {
		t.Errorf("stats = %+v, want 200 entries", s)
	}
}
