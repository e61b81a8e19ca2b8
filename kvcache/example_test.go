package kvcache_test

import (
	"context"
	"fmt"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// An Indexer scores a tokenized prompt against candidate pods. Here the
// index is fed directly with the block hashes a vLLM engine would publish
// for the first two of the prompt's three blocks; in production the KV
// events feed it: leave events enabled (the default), pass
// kvcache.WithEventSource(kvevents.Source) to New, then Start, wait on
// Ready, AddPod each pod, and Close when done. The configuration usually
// comes from a file through kvcache.LoadConfig (or ParseConfig).
func Example() {
	off := false
	ix, err := kvcache.New(kvcache.Config{
		Hash:   kvcache.HashConfig{Seed: "42", BlockSize: 16}, // the engines' PYTHONHASHSEED and --block-size
		Events: kvcache.EventsConfig{Enabled: &off},           // fed by hand below
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	prompt := make([]uint32, 3*16+5) // three full blocks and a partial one
	for i := range prompt {
		prompt[i] = uint32(1000 + i)
	}

	// What the engine at 10.0.0.7:8000 would report after caching the
	// first 32 tokens: vLLM's sha256 block hashes.
	h, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: blockhash.SHA256, Seed: "42", BlockSize: 16})
	if err != nil {
		fmt.Println(err)
		return
	}
	stored, err := h.BlockKeys(nil, prompt[:32], nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := ix.Index().Add(ctx, kvblock.Pod{Addr: "10.0.0.7:8000"}, kvblock.TierGPU, stored); err != nil {
		fmt.Println(err)
		return
	}

	res, err := ix.Score(ctx, kvcache.Request{TokenIDs: prompt, Pods: []string{"10.0.0.7:8000", "10.0.0.8:8000"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("blocks:", res.Blocks)
	for _, p := range res.Pods {
		fmt.Printf("%s matched %d, score %.2f\n", p.Pod, p.Matched, p.Score)
	}
	// Output:
	// blocks: 3
	// 10.0.0.7:8000 matched 2, score 0.67
	// 10.0.0.8:8000 matched 0, score 0.00
}
