package kvblock_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// A candidate's score does not depend on how many other candidates a
// Score is given: up to 64 candidates holding the first key take the
// register walk, more take the wide one, and both must agree, for every
// weighting of the tiers, including several tiers sharing the top weight
// and tiers weighing nothing.
func TestScoreSameForFewAndManyCandidates(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		weights kvblock.TierWeights
	}{
		{"default weights", nil},
		{"GPU above CPU above STORAGE", kvblock.TierWeights{"GPU": 2, "CPU": 0.5, "STORAGE": 0.25}},
		{"GPU and CPU share the top", kvblock.TierWeights{"GPU": 1, "CPU": 1, "STORAGE": 0.5}},
		{"CPU above GPU", kvblock.TierWeights{"GPU": 0.5, "CPU": 1}},
		{"STORAGE weighs nothing", kvblock.TierWeights{"GPU": 1, "CPU": 0.5, "STORAGE": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := newMemIndex(t, kvblock.MemIndexConfig{TierWeights: tc.weights})
			rng := rand.New(rand.NewPCG(4, 2))
			prompt := make([]kvblock.Key, 40)
			for i := range prompt {
				prompt[i] = kvblock.Key(rng.Uint64())
			}
			tiers := []kvblock.Tier{kvblock.TierGPU, kvblock.TierCPU, kvblock.TierStorage}
			// 80 pods hold prefixes of random lengths, each block on one
			// or two random tiers.
			pods := make([]kvblock.Pod, 80)
			for p := range pods {
				pods[p] = kvblock.Pod{Addr: fmt.Sprintf("10.1.0.%d:8000", p)}
				n := 1 + rng.IntN(len(prompt))
				for i := range n {
					for range 1 + rng.IntN(2) {
						if err := idx.Add(ctx, pods[p], tiers[rng.IntN(len(tiers))], prompt[i:i+1]); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			few := pods[:10]
			narrow, err := idx.Score(ctx, prompt, few, nil)
			if err != nil {
				t.Fatal(err)
			}
			wide, err := idx.Score(ctx, prompt, pods, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range few {
				n, w := narrow[i], wide[i]
				if n.Matched != w.Matched || math.Abs(n.Weighted-w.Weighted) > 1e-9 {
					t.Errorf("%s: %+v among %d candidates, %+v among %d", few[i], n, len(few), w, len(pods))
				}
			}
		})
	}
}
