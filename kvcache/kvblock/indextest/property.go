package indextest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// SeedEnv names the environment variable that replays a property-test seed.
const SeedEnv = "KVTRACK_INDEXTEST_SEED"

// model is the reference: for each key, the references each (pod, tier)
// holds on it. It is obviously right and slow.
type model struct {
	refs    map[kvblock.Key]map[modelEntry]int
	weights [kvblock.MaxTiers]float64
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
		m.refs[k][modelEntry{pod, tier}]++
	}
}

func (m *model) remove(pod kvblock.Pod, tier kvblock.Tier, ks []kvblock.Key) {
	for _, k := range ks {
		e := modelEntry{pod, tier}
		if m.refs[k][e] == 0 {
			continue
		}
		m.refs[k][e]--
		if m.refs[k][e] == 0 {
			delete(m.refs[k], e)
			if len(m.refs[k]) == 0 {
				delete(m.refs, k)
			}
		}
	}
}

func (m *model) clearPod(pod kvblock.Pod) {
	for k, es := range m.refs {
		for e := range es {
			if e.pod == pod {
				delete(es, e)
			}
		}
		if len(es) == 0 {
			delete(m.refs, k)
		}
	}
}

func (m *model) score(ks []kvblock.Key, pod kvblock.Pod) (int, float64) {
	matched, weighted := 0, 0.0
	for _, k := range ks {
		best, held := 0.0, false
		for e := range m.refs[k] {
			if e.pod == pod {
				if w := m.weights[e.tier]; !held || w > best {
					best = w
				}
				held = true
			}
		}
		if !held {
			break
		}
		matched++
		weighted += best
	}
	return matched, weighted
}

func (m *model) size() (keys, entries, pods int64) {
	live := map[kvblock.Pod]bool{}
	for _, es := range m.refs {
		keys++
		entries += int64(len(es))
		for e := range es {
			live[e.pod] = true
		}
	}
	return keys, entries, int64(len(live))
}

// runProperty drives random operation sequences through the index and the
// model and compares every score and the index's size after every step.
func runProperty(t *testing.T, newIndex func(t *testing.T) kvblock.Index) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(SeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, s, err)
		}
		seed = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("property test seed %d; replay with %s=%d", seed, SeedEnv, seed)
		}
	})
	rounds, steps := 12, 400
	if testing.Short() {
		rounds, steps = 3, 200
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b7674726b))
	for r := range rounds {
		if !propertyRound(t, newIndex(t), rng, steps) {
			t.Fatalf("round %d failed (seed %d)", r, seed)
		}
	}
}

// gen builds the random operations of one round. Keys come from a few
// overlapping prompts over a small key space, so chains share prefixes and
// keys collect entries of many pods and tiers, as in a real pool.
type gen struct {
	rng     *rand.Rand
	prompts [][]kvblock.Key
	pods    []kvblock.Pod
	tiers   []kvblock.Tier
}

func newGen(rng *rand.Rand) *gen {
	g := &gen{
		rng: rng,
		pods: []kvblock.Pod{
			podA, podA1, podB, podC,
			{Addr: "10.0.0.4:8000"}, {Addr: "10.0.0.4:8000", Rank: 2},
		},
		tiers: []kvblock.Tier{kvblock.TierGPU, kvblock.TierCPU, kvblock.TierStorage, otherMedium},
	}
	space := 48 + rng.IntN(48)
	for range 4 + rng.IntN(4) {
		p := make([]kvblock.Key, 8+rng.IntN(24))
		for i := range p {
			p[i] = kvblock.Key(rng.IntN(space)) * 0x9e3779b97f4a7c15
		}
		// Half the prompts share a common opening.
		if len(g.prompts) > 0 && rng.IntN(2) == 0 {
			copy(p[:min(len(p), 4)], g.prompts[0])
		}
		g.prompts = append(g.prompts, p)
	}
	return g
}

func (g *gen) pod() kvblock.Pod {
	if g.rng.IntN(20) == 0 {
		return podNew
	}
	return g.pods[g.rng.IntN(len(g.pods))]
}

// keys returns a slice of one prompt, sometimes with repeats or strays.
func (g *gen) keys() []kvblock.Key {
	p := g.prompts[g.rng.IntN(len(g.prompts))]
	lo := 0
	if g.rng.IntN(3) == 0 {
		lo = g.rng.IntN(len(p))
	}
	hi := lo + g.rng.IntN(len(p)-lo+1)
	ks := append([]kvblock.Key(nil), p[lo:hi]...)
	if len(ks) > 0 && g.rng.IntN(8) == 0 {
		ks = append(ks, ks[g.rng.IntN(len(ks))])
	}
	if g.rng.IntN(8) == 0 {
		ks = append(ks, kvblock.Key(g.rng.Uint64()))
	}
	return ks
}

func (g *gen) candidates() []kvblock.Pod {
	n := g.rng.IntN(len(g.pods) + 3)
	cs := make([]kvblock.Pod, n)
	for i := range cs {
		cs[i] = g.pod()
	}
	return cs
}

func propertyRound(t *testing.T, idx kvblock.Index, rng *rand.Rand, steps int) bool {
	t.Helper()
	ctx := context.Background()
	g := newGen(rng)
	m := newModel()
	verifier, _ := idx.(Verifier)
	var history []string
	fail := func(format string, args ...any) bool {
		t.Helper()
		from := max(0, len(history)-12)
		t.Errorf("after %d steps (last ones: %v): %s", len(history), history[from:], fmt.Sprintf(format, args...))
		return false
	}
	for range steps {
		var err error
		mutated := true
		switch op := rng.IntN(100); {
		case op < 40:
			pod, tier, ks := g.pod(), g.tiers[rng.IntN(len(g.tiers))], g.keys()
			history = append(history, fmt.Sprintf("add %v %v %d", pod, tier, len(ks)))
			err = idx.Add(ctx, pod, tier, ks)
			m.add(pod, tier, ks)
		case op < 65:
			pod, tier, ks := g.pod(), g.tiers[rng.IntN(len(g.tiers))], g.keys()
			history = append(history, fmt.Sprintf("remove %v %v %d", pod, tier, len(ks)))
			err = idx.Remove(ctx, pod, tier, ks)
			m.remove(pod, tier, ks)
		case op < 70:
			pod := g.pod()
			history = append(history, fmt.Sprintf("clearpod %v", pod))
			err = idx.ClearPod(ctx, pod)
			m.clearPod(pod)
		case op < 71:
			history = append(history, "clear")
			err = idx.Clear(ctx)
			m.refs = map[kvblock.Key]map[modelEntry]int{}
		default:
			mutated = false
			ks, cands := g.keys(), g.candidates()
			history = append(history, fmt.Sprintf("score %d keys %v", len(ks), cands))
			var got []kvblock.PodScore
			got, err = idx.Score(ctx, ks, cands, nil)
			if err == nil {
				if len(got) != len(cands) {
					return fail("Score returned %d results for %d candidates", len(got), len(cands))
				}
				for i, c := range cands {
					wm, ww := m.score(ks, c)
					if got[i].Pod != c || got[i].Matched != wm || !closeTo(got[i].Weighted, ww) {
						return fail("Score result %d = {%v %d %g}, model says {%v %d %g}",
							i, got[i].Pod, got[i].Matched, got[i].Weighted, c, wm, ww)
					}
				}
			}
		}
		if err != nil {
			return fail("%v", err)
		}
		if !mutated {
			continue
		}
		st, err := idx.Stats(ctx)
		if err != nil {
			return fail("Stats: %v", err)
		}
		if k, e, p := m.size(); st.Keys != k || st.Entries != e || st.Pods != p {
			return fail("Stats keys/entries/pods = %d/%d/%d, model says %d/%d/%d", st.Keys, st.Entries, st.Pods, k, e, p)
		}
		if verifier != nil {
			if err := verifier.Verify(); err != nil {
				return fail("Verify: %v", err)
			}
		}
	}
	return true
}
