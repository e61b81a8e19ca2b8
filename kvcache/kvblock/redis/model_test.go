package redis_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// model is the index's contract written as plainly as possible: reference
// counts per (key, pod, tier), scored by the definition.
type model struct {
	refs       map[kvblock.Key]map[modelEntry]int
	weights    [kvblock.MaxTiers]float64
	admissions uint64
	removals   uint64
}

type modelEntry struct {
	pod  kvblock.Pod
	tier kvblock.Tier
}

func newModel() *model {
	return &model{refs: map[kvblock.Key]map[modelEntry]int{}, weights: kvblock.DefaultTierWeights().Table()}
}

func (m *model) add(pod kvblock.Pod, tier kvblock.Tier, ks []kvblock.Key) {
	for _, k := range ks {
		if m.refs[k] == nil {
			m.refs[k] = map[modelEntry]int{}
		}
		e := modelEntry{pod, tier}
		if m.refs[k][e] == 0 {
			m.admissions++
		}
		m.refs[k][e]++
	}
}

func (m *model) remove(pod kvblock.Pod, tier kvblock.Tier, ks []kvblock.Key) {
	for _, k := range ks {
		e := modelEntry{pod, tier}
		switch m.refs[k][e] {
		case 0:
		case 1:
			delete(m.refs[k], e)
			m.removals++
			if len(m.refs[k]) == 0 {
				delete(m.refs, k)
			}
		default:
			m.refs[k][e]--
		}
	}
}

func (m *model) clearPod(pod kvblock.Pod) {
	for k, es := range m.refs {
		for e := range es {
			if e.pod == pod {
				delete(es, e)
				m.removals++
			}
		}
		if len(es) == 0 {
			delete(m.refs, k)
		}
	}
}

func (m *model) score(ks []kvblock.Key, cands []kvblock.Pod) []kvblock.PodScore {
	out := make([]kvblock.PodScore, len(cands))
	for i, c := range cands {
		out[i].Pod = c
		for _, k := range ks {
			best, held := 0.0, false
			for e := range m.refs[k] {
				if e.pod == c && (!held || m.weights[e.tier] > best) {
					best, held = m.weights[e.tier], true
				}
			}
			if !held {
				break
			}
			out[i].Matched++
			out[i].Weighted += best
		}
	}
	return out
}

func (m *model) stats() (keys, entries, pods int64) {
	seen := map[kvblock.Pod]bool{}
	for _, es := range m.refs {
		keys++
		for e := range es {
			entries++
			seen[e.pod] = true
		}
	}
	return keys, entries, int64(len(seen))
}

// TestMatchesReferenceModel applies random operations to the index and to
// the model and compares every score and the stats after each step, on
// Redis and on Valkey.
func TestMatchesReferenceModel(t *testing.T) {
	onEachServer(t, testMatchesReferenceModel)
}

func testMatchesReferenceModel(t *testing.T, srv *server) {
	// Three buckets: blocks share them, so every change rewrites a bucket
	// among its neighbours.
	ix := newIndexOn(t, srv, func(c *redis.Config) { c.TTL, c.Buckets = 0, 3 })
	ctx := context.Background()
	space := keyRange(0, 12)
	pods := []kvblock.Pod{podA, podA1, podB, podC}
	tiers := []kvblock.Tier{kvblock.TierGPU, kvblock.TierCPU, kvblock.TierStorage}
	for seed := range uint64(4) {
		if err := ix.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		m := newModel()
		base := mustStats(t, ix)
		rng := rand.New(rand.NewPCG(seed, 42))
		randKeys := func() []kvblock.Key {
			ks := make([]kvblock.Key, 1+rng.IntN(8))
			for i := range ks {
				ks[i] = space[rng.IntN(len(space))]
			}
			return ks
		}
		for step := range 300 {
			pod, tier := pods[rng.IntN(len(pods))], tiers[rng.IntN(len(tiers))]
			var what string
			switch r := rng.IntN(100); {
			case r < 45:
				what = "add"
				ks := randKeys()
				mustAdd(t, ix, pod, tier, ks)
				m.add(pod, tier, ks)
			case r < 85:
				what = "remove"
				ks := randKeys()
				mustRemove(t, ix, pod, tier, ks)
				m.remove(pod, tier, ks)
			case r < 98:
				what = "clear pod"
				if err := ix.ClearPod(ctx, pod); err != nil {
					t.Fatal(err)
				}
				m.clearPod(pod)
			default:
				what = "clear"
				if err := ix.Clear(ctx); err != nil {
					t.Fatal(err)
				}
				for _, p := range pods {
					m.clearPod(p)
				}
			}
			// A prompt: the key space in a per-step random order.
			prompt := append([]kvblock.Key(nil), space...)
			rng.Shuffle(len(prompt), func(i, j int) { prompt[i], prompt[j] = prompt[j], prompt[i] })
			prompt = prompt[:1+rng.IntN(len(prompt))]
			got := mustScore(t, ix, prompt, pods...)
			want := m.score(prompt, pods)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("seed %d step %d (after %s %s): score %d = %+v, want %+v", seed, step, what, pod, i, got[i], want[i])
				}
			}
			s := mustStats(t, ix)
			keys, entries, npods := m.stats()
			if s.Keys != keys || s.Entries != entries || s.Pods != npods ||
				s.Admissions-base.Admissions != m.admissions || s.Removals-base.Removals != m.removals {
				t.Fatalf("seed %d step %d (after %s): stats %+v, want keys %d entries %d pods %d admissions +%d removals +%d",
					seed, step, what, s, keys, entries, npods, m.admissions, m.removals)
			}
		}
	}
}

// TestConcurrentUseKeepsCountsExact runs writers and scorers at once (run
// with -race), on Redis and on Valkey. Each writer adds and then removes
// what it added, so the index must end empty with as many removals as
// admissions.
func TestConcurrentUseKeepsCountsExact(t *testing.T) {
	onEachServer(t, testConcurrentUseKeepsCountsExact)
}

func testConcurrentUseKeepsCountsExact(t *testing.T, srv *server) {
	ix := newIndexOn(t, srv, func(c *redis.Config) { c.Buckets = 8 })
	ctx := context.Background()
	space := keyRange(0, 64)
	pods := []kvblock.Pod{podA, podA1, podB, podC}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			pod := pods[w%len(pods)]
			tier := kvblock.Tier(w % 2)
			for range 40 {
				lo := rng.IntN(len(space))
				ks := space[lo:min(lo+1+rng.IntN(16), len(space))]
				if err := ix.Add(ctx, pod, tier, ks); err != nil {
					errs <- err
					return
				}
				if _, err := ix.Score(ctx, space, pods, nil); err != nil {
					errs <- err
					return
				}
				if err := ix.Remove(ctx, pod, tier, ks); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := mustStats(t, ix)
	if s.Keys != 0 || s.Entries != 0 || s.Pods != 0 || s.Admissions != s.Removals || s.Admissions == 0 {
		t.Errorf("stats = %+v, want an empty index with admissions == removals > 0", s)
	}
}
