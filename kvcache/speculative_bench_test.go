package kvcache

import (
	"context"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// BenchmarkConfirmingAdd measures the event path's cost of speculation:
// one BlockStored of 16 blocks applied through the confirming index, with
// one live entry that the stores do not confirm.
func BenchmarkConfirmingAdd(b *testing.B) {
	ctx := context.Background()
	off := false
	ix, err := New(Config{Hash: HashConfig{Seed: "42"}, Events: EventsConfig{Enabled: &off}, Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(time.Minute)}})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Speculate(ctx, "a:1", []kvblock.Key{1 << 40}); err != nil {
		b.Fatal(err)
	}
	events := confirmingIndex{ix.index, ix.spec}
	pod := kvblock.Pod{Addr: "a:1"}
	keys := make([]kvblock.Key, 16)
	for i := range keys {
		keys[i] = kvblock.Key(i + 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := events.Add(ctx, pod, kvblock.TierGPU, keys); err != nil {
			b.Fatal(err)
		}
	}
}
