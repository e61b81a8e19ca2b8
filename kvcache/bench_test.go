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
			prompt := seq(1, 8192)
			ix, pods, keys := newBenchIndexer(b, HashConfig{Seed: "42", KeyCacheBytes: bc.keyCacheBytes}, prompt)
			ctx := context.Background()
			storeBench(b, ix, pods[0], keys)
			storeBench(b, ix, pods[1], keys[:256])
			req := Request{TokenIDs: prompt, Pods: pods}
			// vLLM looks up 511 of the 512 blocks (never the last token).
			if res, err := ix.Score(ctx, req); err != nil || res.Pods[0].Score != 1 || res.Pods[1].Score != 256.0/511 {
				b.Fatalf("Score = %+v, %v; want 1 and 256/511 for the holders", res.Pods[:2], err)
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

// BenchmarkIndexerScoreTokensSharedPrefix scores, every iteration, a NEW
// 8,192-token prompt that shares its first 7,680 tokens (480 blocks) with
// the earlier ones and differs in its last 512 (32 blocks): the system
// prompt or earlier chat turns followed by a new message. The key cache
// never hits; the chain cache leaves 32 blocks to SHA-256. Target: <= 50 us.
func BenchmarkIndexerScoreTokensSharedPrefix(b *testing.B) {
	for _, bc := range []struct {
		name            string
		chainCacheBytes int
	}{{"chaincache=on", 0}, {"chaincache=off", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			const prefix, total = 7680, 8192
			prompt := seq(1, total)
			ix, pods, keys := newBenchIndexer(b, HashConfig{Seed: "42", ChainCacheBytes: bc.chainCacheBytes}, prompt)
			ctx := context.Background()
			storeBench(b, ix, pods[0], keys[:prefix/16])
			storeBench(b, ix, pods[1], keys[:prefix/32])
			next := uint32(1 << 20)
			newSuffix := func() {
				for i := prefix; i < total; i++ {
					prompt[i] = next
					next++
				}
			}
			req := Request{TokenIDs: prompt, Pods: pods}
			newSuffix()
			if res, err := ix.Score(ctx, req); err != nil || res.Pods[0].Matched != prefix/16 || res.Pods[1].Matched != prefix/32 {
				b.Fatalf("Score = %+v, %v; want %d and %d blocks matched", res.Pods[:2], err, prefix/16, prefix/32)
			}
			b.ReportAllocs()
			for b.Loop() {
				newSuffix() // 512 stores: noise next to a score
				if _, err := ix.Score(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/op")
		})
	}
}

// newBenchIndexer returns an Indexer fed by hand (no event sockets), 8 pod
// names, and prompt's block keys.
func newBenchIndexer(b *testing.B, hash HashConfig, prompt []uint32) (*Indexer, []string, []kvblock.Key) {
	b.Helper()
	off := false
	ix, err := New(Config{Hash: hash, Events: EventsConfig{Enabled: &off}})
	if err != nil {
		b.Fatal(err)
	}
	pods := make([]string, 8)
	for i := range pods {
		pods[i] = fmt.Sprintf("10.0.0.%d:8000", i+1)
	}
	keys, err := ix.keys.keys(nil, prompt, "", "")
	if err != nil {
		b.Fatal(err)
	}
	return ix, pods, keys
}

func storeBench(b *testing.B, ix *Indexer, pod string, keys []kvblock.Key) {
	b.Helper()
	if err := ix.Index().Add(context.Background(), kvblock.Pod{Addr: pod}, kvblock.TierGPU, keys); err != nil {
		b.Fatal(err)
	}
}
