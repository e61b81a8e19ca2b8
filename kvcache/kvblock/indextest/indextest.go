// Package indextest is the conformance suite every kvblock.Index
// implementation runs: the in-memory index, and any remote backend.
//
// Run checks each contract in the kvblock.Index documentation as its own
// subtest, then runs a property test (random Add / Remove / ClearPod / Clear
// / Score sequences compared, score by score, against a map-of-sets model)
// and a concurrency stress test (writers applying events while readers
// score), which is meant to run under -race.
//
// The index under test must weigh tiers with kvblock.DefaultTierWeights and
// hold at least 100,000 entries without evicting. Each subtest gets a fresh
// index from newIndex.
//
// The property test seeds itself from the clock and prints the seed when it
// fails; set KVTRACK_INDEXTEST_SEED to replay one.
package indextest

import (
	"context"
	"math"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Verifier is implemented by indexes that can check their own internal
// consistency. The property test calls Verify after every mutation when the
// index under test implements it.
type Verifier interface {
	Verify() error
}

// Run runs the conformance suite against indexes made by newIndex.
func Run(t *testing.T, newIndex func(t *testing.T) kvblock.Index) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newIndex(t))
		})
	}
	t.Run("PropertyAgainstModel", func(t *testing.T) { runProperty(t, newIndex) })
	t.Run("ConcurrentWritersAndReaders", func(t *testing.T) { runStress(t, newIndex(t)) })
}

var (
	podA   = kvblock.Pod{Addr: "10.0.0.1:8000"}
	podB   = kvblock.Pod{Addr: "10.0.0.2:8000"}
	podC   = kvblock.Pod{Addr: "10.0.0.3:8000"}
	podA1  = kvblock.Pod{Addr: "10.0.0.1:8000", Rank: 1}
	podNew = kvblock.Pod{Addr: "10.9.9.9:8000"} // never stored anywhere

	// otherMedium is the tier of media absent from DefaultTierWeights: it weighs 0.
	otherMedium = kvblock.TierOther
)

// keys returns the keys first, first+1, ..., first+n-1.
func keys(first, n int) []kvblock.Key {
	ks := make([]kvblock.Key, n)
	for i := range ks {
		ks[i] = kvblock.Key(first + i)
	}
	return ks
}

func cat(parts ...[]kvblock.Key) []kvblock.Key {
	var ks []kvblock.Key
	for _, p := range parts {
		ks = append(ks, p...)
	}
	return ks
}

type tester struct {
	t   *testing.T
	idx kvblock.Index
}

func (x tester) add(pod kvblock.Pod, tier kvblock.Tier, ks ...kvblock.Key) {
	x.t.Helper()
	if err := x.idx.Add(context.Background(), pod, tier, ks); err != nil {
		x.t.Fatalf("Add(%v, %v, %d keys): %v", pod, tier, len(ks), err)
	}
}

func (x tester) remove(pod kvblock.Pod, tier kvblock.Tier, ks ...kvblock.Key) {
	x.t.Helper()
	if err := x.idx.Remove(context.Background(), pod, tier, ks); err != nil {
		x.t.Fatalf("Remove(%v, %v, %d keys): %v", pod, tier, len(ks), err)
	}
}

func (x tester) clearPod(pod kvblock.Pod) {
	x.t.Helper()
	if err := x.idx.ClearPod(context.Background(), pod); err != nil {
		x.t.Fatalf("ClearPod(%v): %v", pod, err)
	}
}

func (x tester) clear() {
	x.t.Helper()
	if err := x.idx.Clear(context.Background()); err != nil {
		x.t.Fatalf("Clear: %v", err)
	}
}

func (x tester) stats() kvblock.Stats {
	x.t.Helper()
	st, err := x.idx.Stats(context.Background())
	if err != nil {
		x.t.Fatalf("Stats: %v", err)
	}
	return st
}

func (x tester) score(ks []kvblock.Key, cands ...kvblock.Pod) []kvblock.PodScore {
	x.t.Helper()
	got, err := x.idx.Score(context.Background(), ks, cands, nil)
	if err != nil {
		x.t.Fatalf("Score(%d keys, %v): %v", len(ks), cands, err)
	}
	return got
}

// want is an expected PodScore.
type want struct {
	pod      kvblock.Pod
	matched  int
	weighted float64
}

// wantScores scores ks for the pods in ws, in order, and compares.
func (x tester) wantScores(ks []kvblock.Key, ws ...want) {
	x.t.Helper()
	cands := make([]kvblock.Pod, len(ws))
	for i, w := range ws {
		cands[i] = w.pod
	}
	got := x.score(ks, cands...)
	if len(got) != len(ws) {
		x.t.Fatalf("Score returned %d results for %d candidates: %+v", len(got), len(ws), got)
	}
	for i, w := range ws {
		g := got[i]
		if g.Pod != w.pod || g.Matched != w.matched || !closeTo(g.Weighted, w.weighted) {
			x.t.Errorf("Score result %d = {%v matched %d weighted %g}, want {%v matched %d weighted %g}",
				i, g.Pod, g.Matched, g.Weighted, w.pod, w.matched, w.weighted)
		}
	}
}

func (x tester) wantSize(keys, entries, pods int64) {
	x.t.Helper()
	st := x.stats()
	if st.Keys != keys || st.Entries != entries || st.Pods != pods {
		x.t.Errorf("Stats keys/entries/pods = %d/%d/%d, want %d/%d/%d",
			st.Keys, st.Entries, st.Pods, keys, entries, pods)
	}
}

func closeTo(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

var cases = []struct {
	name string
	run  func(t *testing.T, idx kvblock.Index)
}{
	{"EmptyIndexScoresZero", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.wantScores(keys(1, 4), want{podA, 0, 0}, want{podB, 0, 0})
		x.wantSize(0, 0, 0)
	}},
	{"FullPrefixMatchesEveryKey", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 4)...)
		x.wantScores(keys(1, 4), want{podA, 4, 4})
		got := x.score(keys(1, 4), podA)
		if f := got[0].Fraction(4); f != 1 {
			t.Errorf("Fraction(4) = %v, want 1", f)
		}
	}},
	{"PrefixStopsAtFirstMissingKey", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, 1, 2, 4, 5)
		x.wantScores(keys(1, 5), want{podA, 2, 2})
	}},
	{"MissingFirstKeyScoresZero", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(2, 3)...)
		x.wantScores(keys(1, 4), want{podA, 0, 0})
	}},
	{"KeysBeyondThePromptDoNotCount", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 10)...)
		x.wantScores(keys(1, 3), want{podA, 3, 3})
	}},
	{"ZeroAndMaxKeysAreOrdinaryKeys", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		ks := []kvblock.Key{0, math.MaxUint64, 1 << 63}
		x.add(podA, kvblock.TierGPU, ks...)
		x.wantScores(ks, want{podA, 3, 3})
		x.remove(podA, kvblock.TierGPU, 0)
		x.wantScores(ks, want{podA, 0, 0})
		x.wantScores(ks[1:], want{podA, 2, 2})
	}},
	{"DuplicateStoreTakesAReference", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 3)...)
		x.add(podA, kvblock.TierGPU, keys(1, 3)...)
		x.wantSize(3, 3, 1)
		x.remove(podA, kvblock.TierGPU, keys(1, 3)...)
		x.wantScores(keys(1, 3), want{podA, 3, 3})
		x.remove(podA, kvblock.TierGPU, keys(1, 3)...)
		x.wantScores(keys(1, 3), want{podA, 0, 0})
		x.wantSize(0, 0, 0)
	}},
	{"RepeatedKeyInOneAddTakesTwoReferences", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, 7, 7)
		x.remove(podA, kvblock.TierGPU, 7)
		x.wantScores([]kvblock.Key{7}, want{podA, 1, 1})
		x.remove(podA, kvblock.TierGPU, 7)
		x.wantScores([]kvblock.Key{7}, want{podA, 0, 0})
	}},
	{"RemoveOfUnknownEntriesIsIgnored", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 3)...)
		x.remove(podA, kvblock.TierGPU, keys(100, 3)...) // unknown keys
		x.remove(podB, kvblock.TierGPU, keys(1, 3)...)   // pod without them
		x.remove(podNew, kvblock.TierGPU, keys(1, 3)...) // pod never seen
		x.remove(podA, kvblock.TierCPU, keys(1, 3)...)   // other tier
		x.remove(podA1, kvblock.TierGPU, keys(1, 3)...)  // other DP rank
		x.remove(podA, kvblock.TierGPU /* no keys */)    // nothing
		x.wantScores(keys(1, 3), want{podA, 3, 3})
		x.wantSize(3, 3, 1)
	}},
	{"TiersAreSeparateEntries", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 2)...)
		x.add(podA, kvblock.TierCPU, keys(1, 2)...)
		x.wantSize(2, 4, 1)
		x.remove(podA, kvblock.TierGPU, keys(1, 2)...)
		x.wantScores(keys(1, 2), want{podA, 2, 1.6})
		x.wantSize(2, 2, 1)
	}},
	{"WeightedTakesTheBestTierPerKey", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierCPU, 1, 2)
		x.add(podA, kvblock.TierGPU, 2)
		x.add(podA, kvblock.TierStorage, 3)
		x.add(podA, otherMedium, 3)
		x.wantScores(keys(1, 3), want{podA, 3, 0.8 + 1.0 + 0.5})
	}},
	{"UnweightedMediumMatchesWithZeroWeight", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, otherMedium, keys(1, 2)...)
		x.wantScores(keys(1, 2), want{podA, 2, 0})
	}},
	{"ClearPodDropsEveryTierOfThatPodOnly", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 3)...)
		x.add(podA, kvblock.TierCPU, keys(1, 5)...)
		x.add(podA, otherMedium, keys(50, 5)...)
		x.add(podB, kvblock.TierGPU, keys(1, 4)...)
		x.add(podA1, kvblock.TierGPU, keys(1, 2)...)
		x.clearPod(podA)
		x.wantScores(keys(1, 5), want{podA, 0, 0}, want{podB, 4, 4}, want{podA1, 2, 2})
		x.wantSize(4, 6, 2)
		x.add(podA, kvblock.TierGPU, 1)
		x.wantScores(keys(1, 5), want{podA, 1, 1})
	}},
	{"ClearPodOfUnknownPodIsNoop", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 3)...)
		x.clearPod(podNew)
		x.wantSize(3, 3, 1)
	}},
	{"ClearDropsEverything", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 300)...)
		x.add(podB, kvblock.TierCPU, keys(1, 30)...)
		x.add(podA1, kvblock.TierGPU, keys(1000, 30)...)
		x.clear()
		x.wantSize(0, 0, 0)
		x.wantScores(keys(1, 3), want{podA, 0, 0}, want{podB, 0, 0})
		x.add(podB, kvblock.TierGPU, keys(1, 2)...)
		x.wantScores(keys(1, 3), want{podA, 0, 0}, want{podB, 2, 2})
		x.wantSize(2, 2, 1)
	}},
	{"UnknownCandidatesScoreZero", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 3)...)
		x.wantScores(keys(1, 3), want{podNew, 0, 0}, want{podA, 3, 3}, want{kvblock.Pod{}, 0, 0})
		x.wantSize(3, 3, 1) // scoring does not register pods
	}},
	{"ResultsFollowCandidateOrderIncludingDuplicates", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 1)...)
		x.add(podB, kvblock.TierGPU, keys(1, 2)...)
		x.add(podC, kvblock.TierGPU, keys(1, 3)...)
		x.wantScores(keys(1, 3),
			want{podC, 3, 3}, want{podA, 1, 1}, want{podNew, 0, 0}, want{podB, 2, 2}, want{podA, 1, 1})
	}},
	{"ScoreAppendsToDst", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 2)...)
		head := kvblock.PodScore{Pod: podC, Matched: 42}
		dst := make([]kvblock.PodScore, 1, 8)
		dst[0] = head
		got, err := idx.Score(context.Background(), keys(1, 2), []kvblock.Pod{podA, podB}, dst)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0] != head || got[1].Pod != podA || got[1].Matched != 2 || got[2].Pod != podB || got[2].Matched != 0 {
			t.Errorf("Score with dst = %+v, want [%+v {podA 2} {podB 0}]", got, head)
		}
	}},
	{"EmptyKeysScoreZero", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 2)...)
		x.wantScores(nil, want{podA, 0, 0}, want{podNew, 0, 0})
		got := x.score(nil, podA)
		if f := got[0].Fraction(0); f != 0 {
			t.Errorf("Fraction(0) = %v, want 0", f)
		}
	}},
	{"NoCandidatesReturnsDstUnchanged", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 2)...)
		dst := []kvblock.PodScore{{Pod: podB}}
		got, err := idx.Score(context.Background(), keys(1, 2), nil, dst)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Pod != podB {
			t.Errorf("Score with no candidates = %+v, want dst %+v", got, dst)
		}
	}},
	{"AddWithoutKeysIsNoop", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU)
		x.wantSize(0, 0, 0)
	}},
	{"DPRanksAreDistinctPods", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 3)...)
		x.add(podA1, kvblock.TierGPU, keys(1, 1)...)
		x.wantScores(keys(1, 3), want{podA, 3, 3}, want{podA1, 1, 1})
		x.wantSize(3, 4, 2)
		x.remove(podA1, kvblock.TierGPU, keys(1, 3)...)
		x.wantScores(keys(1, 3), want{podA, 3, 3}, want{podA1, 0, 0})
		x.add(podA1, kvblock.TierGPU, keys(1, 2)...)
		x.clearPod(podA1)
		x.wantScores(keys(1, 3), want{podA, 3, 3}, want{podA1, 0, 0})
	}},
	{"ManyPodsOnSharedKeys", func(t *testing.T, idx kvblock.Index) {
		// More than 64 candidates, each holding a different prefix of one
		// prompt, some on two tiers; then most leave again.
		x := tester{t, idx}
		const n, promptLen = 150, 40
		prompt := keys(5000, promptLen)
		pods := make([]kvblock.Pod, n)
		ws := make([]want, n)
		for i := range pods {
			pods[i] = kvblock.Pod{Addr: "10.1.0.1:8000", Rank: i}
			l := i % (promptLen + 1)
			x.add(pods[i], kvblock.TierCPU, prompt[:l]...)
			if i%3 == 0 {
				x.add(pods[i], kvblock.TierGPU, prompt[:l/2]...)
			}
			ws[i] = want{pods[i], l, float64(l/2) + 0.8*float64(l-l/2)}
			if i%3 != 0 {
				ws[i].weighted = 0.8 * float64(l)
			}
		}
		x.wantScores(prompt, ws...)
		for i := range pods {
			if i%10 != 0 {
				x.clearPod(pods[i])
				ws[i].matched, ws[i].weighted = 0, 0
			}
		}
		x.wantScores(prompt, ws...)
	}},
	{"StatsCountAdmissionsAndRemovals", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		before := x.stats()
		x.add(podA, kvblock.TierGPU, keys(1, 4)...) // 4 admissions
		x.add(podA, kvblock.TierGPU, keys(1, 2)...) // references only
		x.add(podB, kvblock.TierCPU, keys(1, 2)...) // 2 admissions
		x.remove(podA, kvblock.TierGPU, keys(1, 4)...)
		// keys 3, 4 of podA went (2 removals); 1, 2 keep a reference.
		x.clearPod(podB) // 2 removals
		after := x.stats()
		if d := after.Admissions - before.Admissions; d != 6 {
			t.Errorf("Admissions grew by %d, want 6", d)
		}
		if d := after.Removals - before.Removals; d != 4 {
			t.Errorf("Removals grew by %d, want 4", d)
		}
		if d := after.Evictions - before.Evictions; d != 0 {
			t.Errorf("Evictions grew by %d, want 0", d)
		}
		x.wantSize(2, 2, 1)
		x.clear() // 2 more
		if d := x.stats().Removals - before.Removals; d != 6 {
			t.Errorf("after Clear, Removals grew by %d, want 6", d)
		}
	}},
	{"StatsCountLookupsAndHits", func(t *testing.T, idx kvblock.Index) {
		x := tester{t, idx}
		x.add(podA, kvblock.TierGPU, keys(1, 2)...)
		before := x.stats()
		x.wantScores(keys(1, 4), want{podA, 2, 2}, want{podB, 0, 0})
		after := x.stats()
		lookups, hits := after.Lookups-before.Lookups, after.Hits-before.Hits
		// An index may stop after the first key nobody holds (3) or look
		// up every key (4); only keys 1 and 2 are held.
		if lookups < 3 || lookups > 4 {
			t.Errorf("Lookups grew by %d, want 3 or 4", lookups)
		}
		if hits != 2 {
			t.Errorf("Hits grew by %d, want 2", hits)
		}
	}},
}
