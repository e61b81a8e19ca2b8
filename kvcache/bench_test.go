package kvcache

import (
	"context"
	"fmt"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// BenchmarkIndexerScoreTokens scores an 8,192-token prompt given as token
// IDs (512 blocks of 16) against 8 pods, one holding all of it and one
// half: warm (the key cache holds the request's keys) and without the key
// cache (vLLM's SHA-256 block hashing every time).
func BenchmarkIndexerScoreTokens(b *testing.B) {
	for _, bc := range []struct {
		name          string
		keyCacheBytes int
	}{{"keycache=warm", 0}, {"keycache=off", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			off := false
			ix, err := New(Config{Hash: HashConfig{Seed: "42", KeyCacheBytes: bc.keyCacheBytes}, Events: EventsConfig{Enabled: &off}})
			if err != nil {
				b.Fatal(err)
			}
			prompt := seq(1, 8192)
			pods := make([]string, 8)
			for i := range pods {
				pods[i] = fmt.Sprintf("10.0.0.%d:8000", i+1)
			}
			keys, err := ix.keys.keys(nil, prompt, "", "")
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			storeBench(b, ix, pods[0], keys)
			storeBench(b, ix, pods[1], keys[:256])
			req := Request{TokenIDs: prompt, Pods: pods}
			if res, err := ix.Score(ctx, req); err != nil || res.Pods[0].Score != 1 || res.Pods[1].Score != 0.5 {
				b.Fatalf("Score = %+v, %v; want 1 and 0.5 for the holders", res.Pods[:2], err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ix.Score(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func storeBench(b *testing.B, ix *Indexer, pod string, keys []kvblock.Key) {
	b.Helper()
	if err := ix.Index().Add(context.Background(), kvblock.Pod{Addr: pod}, kvblock.TierGPU, keys); err != nil {
		b.Fatal(err)
	}
}
