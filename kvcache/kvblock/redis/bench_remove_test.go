package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// BenchmarkRedisIndexRemove drops a 512-key prompt (8192 tokens) per op,
// stored beforehand by one of 100 pods; every block is also held by a
// second pod, so a removal rewrites the block rather than deleting it.
func BenchmarkRedisIndexRemove(b *testing.B) {
	ix, reg, rc := benchIndex(b)
	ctx := context.Background()
	const keysPerOp, prompts = 512, 64
	pods := make([]kvblock.Pod, 100)
	for p := range pods {
		pods[p] = kvblock.Pod{Addr: fmt.Sprintf("10.5.0.%d:8000", p)}
	}
	other := kvblock.Pod{Addr: "10.5.1.0:8000"}
	store := func(i int) []kvblock.Key {
		ks := keyRange(i*keysPerOp, (i+1)*keysPerOp)
		for _, p := range []kvblock.Pod{pods[i%len(pods)], other} {
			if err := ix.Add(ctx, p, kvblock.TierGPU, ks); err != nil {
				b.Fatal(err)
			}
		}
		return ks
	}
	batches := make([][]kvblock.Key, prompts)
	for i := range batches {
		batches[i] = store(i)
	}
	us, trips := serverMicros(b, rc), counterValue(reg, "kvtrack_redis_round_trips_total", "remove")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := ix.Remove(ctx, pods[i%len(pods)], kvblock.TierGPU, batches[i%prompts]); err != nil {
			b.Fatal(err)
		}
		i++
		if i%prompts == 0 {
			// Store the prompts again, untimed, so every op removes entries.
			b.StopTimer()
			before := serverMicros(b, rc)
			for j := range batches {
				if err := ix.Add(ctx, pods[j%len(pods)], kvblock.TierGPU, batches[j]); err != nil {
					b.Fatal(err)
				}
			}
			us += serverMicros(b, rc) - before // not the remove's time
			b.StartTimer()
		}
	}
	b.StopTimer()
	reportServer(b, reg, rc, "remove", us, trips)
	b.ReportMetric(keysPerOp, "keys/op")
}
