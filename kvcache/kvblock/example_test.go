package kvblock_test

import (
	"context"
	"fmt"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Two pods hold different prefixes of a four-block prompt; a third was
// never seen. Scores come back in candidate order.
func ExampleMemIndex_Score() {
	ctx := context.Background()
	idx, err := kvblock.NewMemIndex(kvblock.MemIndexConfig{})
	if err != nil {
		panic(err)
	}
	prompt := []kvblock.Key{0xa1, 0xa2, 0xa3, 0xa4}
	gpu, cpu := kvblock.TierOf("GPU"), kvblock.TierOf("CPU")
	a := kvblock.Pod{Addr: "10.0.0.1:8000"}
	b := kvblock.Pod{Addr: "10.0.0.2:8000"}
	_ = idx.Add(ctx, a, gpu, prompt[:3])
	_ = idx.Add(ctx, b, cpu, prompt) // offloaded to CPU memory: weight 0.8

	scores, _ := idx.Score(ctx, prompt, []kvblock.Pod{a, b, {Addr: "10.0.0.3:8000"}}, nil)
	for _, s := range scores {
		fmt.Printf("%s matched %d of %d: score %.2f, weighted %.1f\n",
			s.Pod, s.Matched, len(prompt), s.Fraction(len(prompt)), s.Weighted)
	}
	// Output:
	// 10.0.0.1:8000 matched 3 of 4: score 0.75, weighted 3.0
	// 10.0.0.2:8000 matched 4 of 4: score 1.00, weighted 3.2
	// 10.0.0.3:8000 matched 0 of 4: score 0.00, weighted 0.0
}

// vLLM does not de-duplicate stores, so a block stored twice needs two
// removes to leave the index.
func ExampleMemIndex_Remove() {
	ctx := context.Background()
	idx, _ := kvblock.NewMemIndex(kvblock.MemIndexConfig{})
	pod := kvblock.Pod{Addr: "10.0.0.1:8000", Rank: 1}
	block := []kvblock.Key{42}
	_ = idx.Add(ctx, pod, kvblock.TierGPU, block)
	_ = idx.Add(ctx, pod, kvblock.TierGPU, block)

	for range 2 {
		_ = idx.Remove(ctx, pod, kvblock.TierGPU, block)
		st, _ := idx.Stats(ctx)
		fmt.Printf("%s: %d entries\n", pod, st.Entries)
	}
	// Output:
	// 10.0.0.1:8000/dp1: 1 entries
	// 10.0.0.1:8000/dp1: 0 entries
}
