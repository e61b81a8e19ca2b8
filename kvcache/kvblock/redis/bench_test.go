package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// benchIndex is an Index on a local server of its own, without TTL.
func benchIndex(b *testing.B) *redis.Index {
	b.Helper()
	srv := startServer(b)
	cfg := redis.DefaultConfig()
	cfg.Addr = srv.Addr()
	cfg.TTL = 0
	ix, err := redis.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ix.Close() })
	return ix
}

// BenchmarkRedisIndexScore scores a prompt of tokens/16 keys against pods
// candidates, where pod p holds the first (p+1)/pods of the prompt: the walk
// covers the whole prompt and visits every candidate's entries, the worst
// case for the server-side walk.
func BenchmarkRedisIndexScore(b *testing.B) {
	for _, tc := range []struct{ tokens, pods int }{{8192, 100}, {8192, 10}, {1024, 100}} {
		b.Run(fmt.Sprintf("tokens=%d/pods=%d", tc.tokens, tc.pods), func(b *testing.B) {
			ix := benchIndex(b)
			ctx := context.Background()
			ks := keyRange(0, tc.tokens/16)
			pods := make([]kvblock.Pod, tc.pods)
			for p := range pods {
				pods[p] = kvblock.Pod{Addr: fmt.Sprintf("10.2.%d.%d:8000", p/256, p%256)}
				if err := ix.Add(ctx, pods[p], kvblock.TierGPU, ks[:(p+1)*len(ks)/len(pods)]); err != nil {
					b.Fatal(err)
				}
			}
			dst := make([]kvblock.PodScore, 0, len(pods))
			if _, err := ix.Score(ctx, ks, pods, dst); err != nil { // loads the script
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				got, err := ix.Score(ctx, ks, pods, dst[:0])
				if err != nil {
					b.Fatal(err)
				}
				if got[len(got)-1].Matched != len(ks) {
					b.Fatalf("last pod matched %d, want %d", got[len(got)-1].Matched, len(ks))
				}
			}
			b.ReportMetric(float64(len(ks)), "keys/op")
		})
	}
}

// BenchmarkRedisIndexAdd stores a 512-key prompt (8192 tokens) per op, each
// op on fresh keys of one of 100 pods.
func BenchmarkRedisIndexAdd(b *testing.B) {
	ix := benchIndex(b)
	ctx := context.Background()
	const keysPerOp = 512
	pods := make([]kvblock.Pod, 100)
	for p := range pods {
		pods[p] = kvblock.Pod{Addr: fmt.Sprintf("10.3.0.%d:8000", p)}
	}
	buf := make([]kvblock.Key, keysPerOp)
	next := 0
	b.ReportAllocs()
	b.SetBytes(keysPerOp * 8)
	for b.Loop() {
		for i := range buf {
			buf[i] = kvblock.Key(uint64(next+i+1) * 0x9E3779B97F4A7C15)
		}
		next += keysPerOp
		if err := ix.Add(ctx, pods[next/keysPerOp%len(pods)], kvblock.TierGPU, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(keysPerOp, "keys/op")
}
