package kvcache

import (
	"context"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"
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

// BenchmarkPeerBroadcast measures what speculative.peers adds to a routed
// request's path: encoding a 512-block decision once and queueing it for
// one connected peer (the write and the peer's recording run elsewhere).
func BenchmarkPeerBroadcast(b *testing.B) {
	pa, pb := loopback(testnet.FreePort(b)), loopback(testnet.FreePort(b))
	start := func(listen string) *Indexer {
		off := false
		ix, err := New(Config{Hash: HashConfig{Seed: "42"}, Events: EventsConfig{Enabled: &off}, Speculative: SpeculativeConfig{
			Enabled: true, TTL: Duration(time.Minute), Peers: PeersConfig{Listen: listen, Endpoints: []string{pa, pb}},
		}})
		if err != nil {
			b.Fatal(err)
		}
		if err := ix.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ix.Close() })
		return ix
	}
	a, _ := start(pa), start(pb)
	for deadline := time.Now().Add(time.Minute); a.PeerStats().Sending != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the replicas did not connect")
		}
	}
	keys := make([]kvblock.Key, 512)
	for i := range keys {
		keys[i] = kvblock.Key(i + 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		a.peers.broadcast("10.0.0.1:8000", keys, false)
	}
	st := a.PeerStats()
	b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
}
