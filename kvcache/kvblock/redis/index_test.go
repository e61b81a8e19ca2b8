package redis_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

var (
	podA  = kvblock.Pod{Addr: "10.0.0.1:8000"}
	podA1 = kvblock.Pod{Addr: "10.0.0.1:8000", Rank: 1}
	podB  = kvblock.Pod{Addr: "10.0.0.2:8000"}
	podC  = kvblock.Pod{Addr: "10.0.0.3:8000"}
)

// testIndex is an Index on a server of its own, with its registry.
type testIndex struct {
	*redis.Index
	srv *server
	reg *prometheus.Registry
	cfg redis.Config
}

func newTestIndex(t *testing.T, edit ...func(*redis.Config)) *testIndex {
	t.Helper()
	return newIndexOn(t, startServer(t), edit...)
}

func newIndexOn(t *testing.T, srv *server, edit ...func(*redis.Config)) *testIndex {
	t.Helper()
	ti := newIndexAt(t, srv.Addr(), edit...)
	ti.srv = srv
	return ti
}

// newIndexAt is an Index on the server (or cluster node) at addr, closed
// when the test ends.
func newIndexAt(t *testing.T, addr string, edit ...func(*redis.Config)) *testIndex {
	t.Helper()
	cfg := redis.DefaultConfig()
	cfg.Addr = addr
	for _, e := range edit {
		e(&cfg)
	}
	reg := prometheus.NewRegistry()
	ix, err := redis.New(cfg, redis.WithRegisterer(reg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = ix.Close() })
	return &testIndex{Index: ix, reg: reg, cfg: cfg}
}

// rawClient is a plain client on the test's server, to look at what the
// index stored.
func (ti *testIndex) rawClient(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: ti.srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (ti *testIndex) roundTrips(op string) float64 {
	return counterValue(ti.reg, "kvtrack_redis_round_trips_total", op)
}

func counterValue(reg *prometheus.Registry, name, op string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == op {
					return m.GetCounter().GetValue()
				}
			}
			if op == "" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// keyRange returns keys for block positions lo..hi-1, spread over the uint64
// range as real hashes are.
func keyRange(lo, hi int) []kvblock.Key {
	ks := make([]kvblock.Key, 0, hi-lo)
	for i := lo; i < hi; i++ {
		ks = append(ks, kvblock.Key(uint64(i+1)*0x9E3779B97F4A7C15))
	}
	return ks
}

func pick(ks []kvblock.Key, idx ...int) []kvblock.Key {
	out := make([]kvblock.Key, len(idx))
	for i, j := range idx {
		out[i] = ks[j]
	}
	return out
}

func mustAdd(t *testing.T, ix kvblock.Index, pod kvblock.Pod, tier kvblock.Tier, ks []kvblock.Key) {
	t.Helper()
	if err := ix.Add(context.Background(), pod, tier, ks); err != nil {
		t.Fatalf("Add(%s, %s, %d keys): %v", pod, tier, len(ks), err)
	}
}

func mustRemove(t *testing.T, ix kvblock.Index, pod kvblock.Pod, tier kvblock.Tier, ks []kvblock.Key) {
	t.Helper()
	if err := ix.Remove(context.Background(), pod, tier, ks); err != nil {
		t.Fatalf("Remove(%s, %s, %d keys): %v", pod, tier, len(ks), err)
	}
}

func mustScore(t *testing.T, ix kvblock.Index, ks []kvblock.Key, cands ...kvblock.Pod) []kvblock.PodScore {
	t.Helper()
	got, err := ix.Score(context.Background(), ks, cands, nil)
	if err != nil {
		t.Fatalf("Score: %v", err)
	}
	return got
}

func mustStats(t *testing.T, ix kvblock.Index) kvblock.Stats {
	t.Helper()
	s, err := ix.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

// matched returns the Matched of each score.
// sum adds ws in order at run time, as an index adds weights key by key
// (constant expressions would be evaluated exactly by the compiler).
func sum(ws ...float64) float64 {
	var s float64
	for _, w := range ws {
		s += w
	}
	return s
}

// warmUp runs every script once, so the server has them cached and round
// trip counts that follow are not inflated by the first EVAL.
func (ti *testIndex) warmUp(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	warm := kvblock.Pod{Addr: "warm-up:1"}
	ks := keyRange(1000000, 1000001)
	mustAdd(t, ti, warm, kvblock.TierGPU, ks)
	mustScore(t, ti, ks, warm)
	mustRemove(t, ti, warm, kvblock.TierGPU, ks)
	mustAdd(t, ti, warm, kvblock.TierGPU, ks)
	if err := ti.ClearPod(ctx, warm); err != nil {
		t.Fatal(err)
	}
}

func matched(scores []kvblock.PodScore) []int {
	out := make([]int, len(scores))
	for i, s := range scores {
		out[i] = s.Matched
	}
	return out
}

func wantMatched(t *testing.T, got []kvblock.PodScore, want ...int) {
	t.Helper()
	if g := matched(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("matched = %v, want %v", g, want)
	}
}

func TestScoreOnEmptyIndexIsZeroPerCandidateInOrder(t *testing.T) {
	ix := newTestIndex(t)
	got := mustScore(t, ix, keyRange(0, 4), podB, podA)
	if len(got) != 2 || got[0].Pod != podB || got[1].Pod != podA {
		t.Fatalf("got %+v, want zero scores for %s then %s", got, podB, podA)
	}
	wantMatched(t, got, 0, 0)
}

func TestScoreCountsConsecutiveKeysFromTheFirst(t *testing.T) {
	ks := keyRange(0, 8)
	tests := []struct {
		name string
		held []int
		want int
	}{
		{"whole prompt", []int{0, 1, 2, 3, 4, 5, 6, 7}, 8},
		{"prefix", []int{0, 1, 2}, 3},
		{"hole stops the prefix", []int{0, 1, 3, 4, 5}, 2},
		{"missing first key", []int{1, 2, 3}, 0},
		{"only the first key", []int{0}, 1},
		{"nothing", nil, 0},
	}
	ix := newTestIndex(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := kvblock.Pod{Addr: fmt.Sprintf("10.1.0.%d:8000", i)}
			if len(tt.held) > 0 {
				mustAdd(t, ix, pod, kvblock.TierGPU, pick(ks, tt.held...))
			}
			got := mustScore(t, ix, ks, pod)
			wantMatched(t, got, tt.want)
			if want := float64(tt.want); got[0].Weighted != want {
				t.Errorf("Weighted = %v, want %v (GPU weight 1 per key)", got[0].Weighted, want)
			}
		})
	}
}

func TestScoreStopsWhenNoCandidateStillMatches(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 100)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:3])
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:5])
	mustAdd(t, ix, podC, kvblock.TierGPU, ks) // not a candidate: must not extend the walk
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 3, 5)
	s := mustStats(t, ix)
	// Keys 0..5 are looked up: the sixth is where podB fails. Key 5 is held
	// by no candidate, so 5 hits.
	if s.Lookups != 6 || s.Hits != 5 {
		t.Errorf("Lookups, Hits = %d, %d; want 6, 5", s.Lookups, s.Hits)
	}
}

func TestScoreGivesUnknownCandidatesZero(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	unknown := kvblock.Pod{Addr: "10.9.9.9:8000"}
	wantMatched(t, mustScore(t, ix, ks, unknown, podA, unknown), 0, 4, 0)
}

func TestScoreRepeatsDuplicateCandidates(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierCPU, ks[:2])
	got := mustScore(t, ix, ks, podA, podA)
	if got[0] != got[1] || got[0].Matched != 2 {
		t.Fatalf("got %+v, want two equal scores of 2 keys", got)
	}
}

func TestScoreAppendsToDst(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 2)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	prev := kvblock.PodScore{Pod: podC, Matched: 42}
	got, err := ix.Score(context.Background(), ks, []kvblock.Pod{podA}, []kvblock.PodScore{prev})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != prev || got[1].Pod != podA || got[1].Matched != 2 {
		t.Fatalf("got %+v, want %+v kept and then %s with 2", got, prev, podA)
	}
}

func TestScoreTreatsRanksAsDistinctPods(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA1, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, ix, ks, podA, podA1), 0, 4)
}

func TestScoreWeightsEachKeyByItsBestTier(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierCPU, ks)         // 0.8 each
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1])     // key 0 also on GPU: 1
	mustAdd(t, ix, podA, kvblock.TierStorage, ks)     // 0.5 never beats CPU
	mustAdd(t, ix, podB, kvblock.TierStorage, ks[:2]) // 0.5 each
	got := mustScore(t, ix, ks, podA, podB)
	wantMatched(t, got, 4, 2)
	if want := sum(1, 0.8, 0.8, 0.8); got[0].Weighted != want {
		t.Errorf("podA Weighted = %v, want %v", got[0].Weighted, want)
	}
	if want := sum(0.5, 0.5); got[1].Weighted != want {
		t.Errorf("podB Weighted = %v, want %v", got[1].Weighted, want)
	}
}

func TestScoreWeightedSumIsBitExact(t *testing.T) {
	// Weights that are not exact in binary must add up in key order exactly
	// as Go adds them, or Redis and in-memory scores would differ.
	srv := startServer(t)
	reg := prometheus.NewRegistry()
	w := kvblock.TierWeights{"GPU": 0.7, "CPU": 0.1}
	ix, err := redis.New(redis.Config{Addr: srv.Addr()}, redis.WithRegisterer(reg), redis.WithTierWeights(w))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ks := keyRange(0, 50)
	mustAdd(t, ix, podA, kvblock.TierGPU, pick(ks, 0, 2, 4, 6, 8))
	mustAdd(t, ix, podA, kvblock.TierCPU, ks)
	var want float64
	for i := range ks {
		if i < 10 && i%2 == 0 {
			want += 0.7
		} else {
			want += 0.1
		}
	}
	got := mustScore(t, ix, ks, podA)
	if got[0].Weighted != want {
		t.Errorf("Weighted = %.17g, want %.17g", got[0].Weighted, want)
	}
}

func TestScoreCountsTiersWithoutWeightAsMatchedWithZeroWeight(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 3)
	mustAdd(t, ix, podA, kvblock.TierOf("NVME-test"), ks)
	got := mustScore(t, ix, ks, podA)
	if got[0].Matched != 3 || got[0].Weighted != 0 {
		t.Errorf("got %+v, want 3 matched weighing 0", got[0])
	}
}

func TestAddIsReferenceCounted(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 3)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1])
	mustRemove(t, ix, podA, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, ix, ks, podA), 1) // key 0 had two references
	mustRemove(t, ix, podA, kvblock.TierGPU, ks[:1])
	wantMatched(t, mustScore(t, ix, ks, podA), 0)
	if s := mustStats(t, ix); s.Entries != 0 || s.Keys != 0 || s.Pods != 0 {
		t.Errorf("stats after removing everything = %+v, want no keys, entries or pods", s)
	}
}

func TestAddCountsDuplicateKeysInOneCall(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 1)
	mustAdd(t, ix, podA, kvblock.TierGPU, []kvblock.Key{ks[0], ks[0]})
	mustRemove(t, ix, podA, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, ix, ks, podA), 1)
}

func TestRemoveIgnoresUnknownEntries(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 3)
	mustRemove(t, ix, podA, kvblock.TierGPU, ks) // unknown pod
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:2])
	mustRemove(t, ix, podA, kvblock.TierGPU, ks[2:])          // unknown key
	mustRemove(t, ix, podA, kvblock.TierOf("NEVER-SEEN"), ks) // unknown tier
	mustRemove(t, ix, podA, kvblock.TierCPU, ks)              // known tier, no entry
	wantMatched(t, mustScore(t, ix, ks, podA), 2)
	if s := mustStats(t, ix); s.Entries != 2 || s.Removals != 0 {
		t.Errorf("stats = %+v, want 2 entries and no removals", s)
	}
}

func TestRemoveOfOneTierKeepsTheOther(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 2)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podA, kvblock.TierCPU, ks)
	mustRemove(t, ix, podA, kvblock.TierGPU, ks)
	got := mustScore(t, ix, ks, podA)
	if got[0].Matched != 2 || got[0].Weighted != sum(0.8, 0.8) {
		t.Errorf("got %+v, want 2 matched on CPU (1.6)", got[0])
	}
}

func TestClearPodDropsOnlyThatPod(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podA, kvblock.TierCPU, ks)
	mustAdd(t, ix, podA1, kvblock.TierGPU, ks)
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:2])
	if err := ix.ClearPod(context.Background(), podA); err != nil {
		t.Fatal(err)
	}
	wantMatched(t, mustScore(t, ix, ks, podA, podA1, podB), 0, 4, 2)
	s := mustStats(t, ix)
	if s.Entries != 6 || s.Keys != 4 || s.Pods != 2 || s.Removals != 8 {
		t.Errorf("stats = %+v, want 6 entries, 4 keys, 2 pods, 8 removals", s)
	}
	if err := ix.ClearPod(context.Background(), podC); err != nil {
		t.Errorf("ClearPod of an unknown pod: %v", err)
	}
}

func TestClearPodLargerThanOneCall(t *testing.T) {
	ix := newTestIndex(t)
	ix.warmUp(t)
	ks := keyRange(0, 25000)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1]) // the pod's id is now known
	before := ix.roundTrips("add")
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	if got := ix.roundTrips("add") - before; got != 1 {
		t.Errorf("add of 25000 keys took %v round trips, want 1 (7 calls of <= 4096 keys, pipelined)", got)
	}
	for lo := 0; lo < len(ks); lo += 1250 { // 20 more logged batches
		mustAdd(t, ix, podA, kvblock.TierCPU, ks[lo:lo+1250])
	}
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:10])
	clears := ix.roundTrips("clear_pod")
	if err := ix.ClearPod(context.Background(), podA); err != nil {
		t.Fatal(err)
	}
	// One to read the pod's id, then 28 batches (1, 6 x 4096, 424, 20 x
	// 1250 keys) in calls that stop once they took 4096 keys: 1+4096, 5 x
	// 4096, 424+3 x 1250, then 4 x 1250 four times and the last 1250.
	if got := ix.roundTrips("clear_pod") - clears; got != 13 {
		t.Errorf("clear_pod round trips = %v, want 13", got)
	}
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 0, 10)
	if s := mustStats(t, ix); s.Entries != 10 || s.Keys != 10 || s.Pods != 1 {
		t.Errorf("stats = %+v, want 10 entries on 10 keys of 1 pod", s)
	}
}

func TestClearDropsEveryPod(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podB, kvblock.TierCPU, ks)
	if err := ix.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 0, 0)
	s := mustStats(t, ix)
	if s.Entries != 0 || s.Keys != 0 || s.Pods != 0 || s.Admissions != 8 || s.Removals != 8 {
		t.Errorf("stats = %+v, want empty with 8 admissions and 8 removals", s)
	}
	// Nothing but the counters and registries is left in the database.
	rc := ix.rawClient(t)
	left, err := rc.Keys(context.Background(), ix.cfg.KeyPrefix+"*").Result()
	slices.Sort(left)
	want := []string{ix.cfg.KeyPrefix + "{0}s", ix.cfg.KeyPrefix + "{m}buckets", ix.cfg.KeyPrefix + "{m}gen", ix.cfg.KeyPrefix + "{m}pods",
		ix.cfg.KeyPrefix + "{m}podseq", ix.cfg.KeyPrefix + "{m}tiers", ix.cfg.KeyPrefix + "{m}tierseq"}
	if err != nil || !slices.Equal(left, want) {
		t.Errorf("keys left after Clear: %q (err %v), want %q", left, err, want)
	}
}

func TestStatsCountKeysEntriesAndPods(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1]) // a reference, not an entry
	mustAdd(t, ix, podA, kvblock.TierCPU, ks[:2])
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[2:])
	s := mustStats(t, ix)
	want := kvblock.Stats{Keys: 4, Entries: 8, Pods: 2, Admissions: 8}
	if s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}

func TestWholePromptIsOneRoundTrip(t *testing.T) {
	ix := newTestIndex(t)
	ix.warmUp(t)
	ks := keyRange(0, 512)
	ctx := context.Background()
	mustAdd(t, ix, podA, kvblock.TierGPU, ks[:1]) // the first write of a pod interns it
	mustRemove(t, ix, podA, kvblock.TierGPU, ks[:1])
	for _, tc := range []struct {
		op string
		do func() error
	}{
		{"add", func() error { return ix.Add(ctx, podA, kvblock.TierGPU, ks) }},
		{"score", func() error {
			_, err := ix.Score(ctx, ks, []kvblock.Pod{podA, podB, podC}, nil)
			return err
		}},
		{"remove", func() error { return ix.Remove(ctx, podA, kvblock.TierGPU, ks) }},
		{"stats", func() error { _, err := ix.Stats(ctx); return err }},
	} {
		before := ix.roundTrips(tc.op)
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.op, err)
		}
		if got := ix.roundTrips(tc.op) - before; got != 1 {
			t.Errorf("%s of 512 keys took %v round trips, want 1", tc.op, got)
		}
	}
}

func TestEmptyInputsNeedNoServer(t *testing.T) {
	// Nothing listens on the port: any request would fail.
	ix, err := redis.New(redis.Config{Addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ctx := context.Background()
	if err := ix.Add(ctx, podA, kvblock.TierGPU, nil); err != nil {
		t.Errorf("Add(no keys) = %v", err)
	}
	if err := ix.Remove(ctx, podA, kvblock.TierGPU, nil); err != nil {
		t.Errorf("Remove(no keys) = %v", err)
	}
	if got, err := ix.Score(ctx, nil, []kvblock.Pod{podA}, nil); err != nil || len(got) != 1 || got[0].Matched != 0 {
		t.Errorf("Score(no keys) = %+v, %v; want one zero score", got, err)
	}
	if got, err := ix.Score(ctx, keyRange(0, 2), nil, nil); err != nil || len(got) != 0 {
		t.Errorf("Score(no candidates) = %+v, %v; want nothing", got, err)
	}
	if err := ix.Ping(ctx); err == nil {
		t.Error("Ping with no server succeeded")
	}
}

func TestValuesAreCompactBinary(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 1)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	rc := ix.rawClient(t)
	ctx := context.Background()
	buckets, err := rc.Keys(ctx, ix.cfg.KeyPrefix+"{0}k*").Result()
	if err != nil || len(buckets) != 1 {
		t.Fatalf("bucket keys = %q (err %v), want one", buckets, err)
	}
	if got, want := len(buckets[0]), len(ix.cfg.KeyPrefix)+4+4; got != want {
		t.Errorf("bucket key %q is %d bytes, want %d (prefix, \"{0}k\", 4-byte bucket)", buckets[0], got, want)
	}
	v, err := rc.Get(ctx, buckets[0]).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// The block: its 8-byte key, 2 records, then the records, one per
	// reference: pod id 1 (3 bytes), tier id 1, epoch.
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], uint64(ks[0]))
	if len(v) != 20 || string(v[:8]) != string(key[:]) || string(v[8:10]) != "\x00\x02" ||
		string(v[10:14]) != "\x00\x00\x01\x01" || string(v[15:19]) != "\x00\x00\x01\x01" {
		t.Errorf("bucket value = %x, want block %x with two 5-byte records of pod 1, tier 1", v, key)
	}
	mustAdd(t, ix, podB, kvblock.TierCPU, ks)
	if n, err := rc.StrLen(ctx, buckets[0]).Result(); err != nil || n != 25 {
		t.Errorf("bucket value with a second entry is %d bytes (err %v), want 25", n, err)
	}
}

// TestBucketsPackManyBlocks stores blocks that all share one bucket: each
// is found, removed and cleared without disturbing its neighbours, and the
// bucket goes once empty.
func TestBucketsPackManyBlocks(t *testing.T) {
	ix := newTestIndex(t, func(c *redis.Config) { c.Buckets = 1 })
	ks := keyRange(0, 6)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:3])
	mustAdd(t, ix, podA, kvblock.TierCPU, ks[1:2])
	mustRemove(t, ix, podA, kvblock.TierGPU, ks[1:2]) // its CPU entry stays
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 6, 3)
	mustRemove(t, ix, podB, kvblock.TierGPU, ks[1:2])
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 6, 1)
	if s := mustStats(t, ix); s.Keys != 6 || s.Entries != 8 {
		t.Errorf("stats = %+v, want 8 entries on 6 keys", s)
	}
	rc := ix.rawClient(t)
	ctx := context.Background()
	if n, err := rc.Keys(ctx, ix.cfg.KeyPrefix+"{0}k*").Result(); err != nil || len(n) != 1 {
		t.Fatalf("bucket keys = %q (err %v), want one", n, err)
	}
	if err := ix.ClearPod(ctx, podA); err != nil {
		t.Fatal(err)
	}
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 0, 1)
	mustRemove(t, ix, podB, kvblock.TierGPU, []kvblock.Key{ks[0], ks[2]})
	if n, err := rc.Exists(ctx, ix.cfg.KeyPrefix+"{0}k\x00\x00\x00\x00").Result(); err != nil || n != 0 {
		t.Errorf("the empty bucket exists = %d (err %v), want it deleted", n, err)
	}
}

// TestBucketCountMustMatch refuses a client configured with another bucket
// count than the index was made with, for writes and scores alike: it
// would look for blocks in the wrong buckets.
func TestBucketCountMustMatch(t *testing.T) {
	srv := startServer(t)
	one := newIndexOn(t, srv)
	two := newIndexOn(t, srv, func(c *redis.Config) { c.Buckets = 1000 })
	mustAdd(t, one, podA, kvblock.TierGPU, keyRange(0, 2))
	err := two.Add(context.Background(), podB, kvblock.TierGPU, keyRange(0, 2))
	if err == nil || !strings.Contains(err.Error(), "buckets") {
		t.Errorf("Add with another bucket count = %v, want an error naming the buckets", err)
	}
	got, err := two.Score(context.Background(), keyRange(0, 2), []kvblock.Pod{podA}, nil)
	if err == nil || !strings.Contains(err.Error(), "buckets") {
		t.Errorf("Score with another bucket count = %+v, %v; want an error naming the buckets", got, err)
	}
}

func TestKeyPrefixSeparatesIndexes(t *testing.T) {
	srv := startServer(t)
	a := newIndexOn(t, srv, func(c *redis.Config) { c.KeyPrefix = "one:" })
	b := newIndexOn(t, srv, func(c *redis.Config) { c.KeyPrefix = "two:" })
	ks := keyRange(0, 3)
	mustAdd(t, a, podA, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, a, ks, podA), 3)
	wantMatched(t, mustScore(t, b, ks, podA), 0)
	if err := b.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantMatched(t, mustScore(t, a, ks, podA), 3)
}

func TestTTLExpiresEntriesNotStoredAgain(t *testing.T) {
	ix := newTestIndex(t, func(c *redis.Config) { c.TTL = time.Duration(300 * time.Millisecond) })
	ks := keyRange(0, 4)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podB, kvblock.TierGPU, ks)
	time.Sleep(400 * time.Millisecond)
	// Expires every entry (none was stored again within the TTL), then
	// stores 2 of podB's again.
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:2])

	got := mustScore(t, ix, ks, podA, podB)
	wantMatched(t, got, 0, 2)
	s := mustStats(t, ix)
	if s.Evictions != 8 || s.Entries != 2 || s.Keys != 2 || s.Pods != 1 {
		t.Errorf("stats = %+v, want 8 evictions, then 2 entries on 2 keys of 1 pod stored again", s)
	}
}

func TestTTLZeroNeverExpires(t *testing.T) {
	ix := newTestIndex(t, func(c *redis.Config) { c.TTL = 0 })
	ks := keyRange(0, 2)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	time.Sleep(20 * time.Millisecond)
	mustAdd(t, ix, podB, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, ix, ks, podA), 2)
}

func TestFlushedScriptsAreSentAgain(t *testing.T) {
	ix := newTestIndex(t)
	ks := keyRange(0, 2)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	if err := ix.rawClient(t).ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	loads := counterValue(ix.reg, "kvtrack_redis_script_loads_total", "")
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, ix, ks, podA), 2)
	if got := counterValue(ix.reg, "kvtrack_redis_script_loads_total", "") - loads; got != 1 {
		t.Errorf("script loads = %v, want 1", got)
	}
	if got := counterValue(ix.reg, "kvtrack_redis_errors_total", "add"); got != 0 {
		t.Errorf("add errors = %v, want 0: NOSCRIPT is not a failure", got)
	}
}

func TestReplicasShareOneServer(t *testing.T) {
	srv := startServer(t)
	one := newIndexOn(t, srv)
	two := newIndexOn(t, srv)
	ks := keyRange(0, 16)
	mustAdd(t, one, podA, kvblock.TierGPU, ks)
	mustAdd(t, two, podB, kvblock.TierCPU, ks[:8])
	for name, ix := range map[string]*testIndex{"one": one, "two": two} {
		got := mustScore(t, ix, ks, podA, podB)
		wantMatched(t, got, 16, 8)
		if want := sum(0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8); got[1].Weighted != want {
			t.Errorf("replica %s: podB Weighted = %v, want %v", name, got[1].Weighted, want)
		}
	}
	mustRemove(t, two, podA, kvblock.TierGPU, ks[4:5])
	wantMatched(t, mustScore(t, one, ks, podA), 4)
	if err := one.ClearPod(context.Background(), podB); err != nil {
		t.Fatal(err)
	}
	wantMatched(t, mustScore(t, two, ks, podB), 0)
	if s := mustStats(t, two); s.Pods != 1 || s.Entries != 15 {
		t.Errorf("replica two sees %+v, want 1 pod with 15 entries", s)
	}
}

func TestConnectionLossDegradesAndRecovers(t *testing.T) {
	ix := newTestIndex(t, func(c *redis.Config) {
		c.DialTimeout = time.Duration(200 * time.Millisecond)
	})
	ctx := context.Background()
	ks := keyRange(0, 8)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	wantMatched(t, mustScore(t, ix, ks, podA), 8)

	ix.srv.Kill()
	got, err := ix.Score(ctx, ks, []kvblock.Pod{podA, podB}, nil)
	if err == nil {
		t.Fatal("Score with the server down returned no error")
	}
	if len(got) != 2 || got[0] != (kvblock.PodScore{Pod: podA}) || got[1] != (kvblock.PodScore{Pod: podB}) {
		t.Errorf("Score with the server down = %+v, want zero scores for both candidates", got)
	}
	if err := ix.Add(ctx, podB, kvblock.TierGPU, ks); err == nil {
		t.Error("Add with the server down returned no error")
	}
	if _, err := ix.Stats(ctx); err == nil {
		t.Error("Stats with the server down returned no error")
	}
	if got := counterValue(ix.reg, "kvtrack_redis_errors_total", "score"); got < 1 {
		t.Errorf("score errors = %v, want >= 1", got)
	}
	if got := counterValue(ix.reg, "kvtrack_redis_errors_total", "add"); got < 1 {
		t.Errorf("add errors = %v, want >= 1", got)
	}

	ix.srv.Restart() // empty: no persistence
	// Pooled connections to the dead server fail at most once each.
	testwait.For(t, "the index to reconnect to the restarted server", func() bool { return ix.Ping(ctx) == nil })
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:5])
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 0, 5)
	if got := counterValue(ix.reg, "kvtrack_redis_script_loads_total", ""); got < 1 {
		t.Errorf("script loads after restart = %v, want >= 1", got)
	}
}

func TestMetricsAreRegisteredWithKvtrackRedisNames(t *testing.T) {
	ix := newTestIndex(t)
	mustAdd(t, ix, podA, kvblock.TierGPU, keyRange(0, 1))
	mustScore(t, ix, keyRange(0, 1), podA)
	mfs, err := ix.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var observed uint64
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		for _, m := range mf.GetMetric() {
			observed += m.GetHistogram().GetSampleCount()
		}
	}
	want := []string{
		"kvtrack_redis_bytes_per_entry",
		"kvtrack_redis_errors_total",
		"kvtrack_redis_request_duration_seconds",
		"kvtrack_redis_round_trips_total",
		"kvtrack_redis_script_loads_total",
	}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("metrics = %v, want %v", names, want)
	}
	if observed != 2 {
		t.Errorf("request durations observed = %d, want 2 (one add, one score)", observed)
	}
}

func TestNewRejectsASecondRegistrationOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := redis.Config{Addr: "127.0.0.1:1"}
	first, err := redis.New(cfg, redis.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = redis.New(cfg, redis.WithRegisterer(reg))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second New on one registry: err = %v, want a prometheus.AlreadyRegisteredError", err)
	}
}

func TestNewRejectsNonFiniteTierWeights(t *testing.T) {
	for _, w := range []float64{math.NaN(), math.Inf(1)} {
		_, err := redis.New(redis.Config{}, redis.WithTierWeights(kvblock.TierWeights{"GPU": w}))
		if err == nil || !strings.Contains(err.Error(), `"GPU"`) {
			t.Errorf("weight %v: err = %v, want an error naming tier GPU", w, err)
		}
	}
}

func TestMemoryReportsBytesPerEntry(t *testing.T) {
	ix := newTestIndex(t)
	ctx := context.Background()
	if _, per, err := ix.Memory(ctx); err != nil || per != 0 {
		t.Fatalf("Memory of an empty index = %v per entry, %v; want 0, no error", per, err)
	}
	mustAdd(t, ix, podA, kvblock.TierGPU, keyRange(0, 1000))
	used, per, err := ix.Memory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if used <= 0 || per != float64(used)/1000 {
		t.Errorf("Memory = %d bytes, %v per entry; want used_memory over the 1000 entries", used, per)
	}
	mfs, err := ix.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "kvtrack_redis_bytes_per_entry" {
			if got := mf.GetMetric()[0].GetGauge().GetValue(); got != per {
				t.Errorf("kvtrack_redis_bytes_per_entry = %v, want %v", got, per)
			}
			return
		}
	}
	t.Error("kvtrack_redis_bytes_per_entry is not registered")
}
