package kvcache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// BenchmarkIndexerScoreUnderIngest scores 8,192-token prompts (512 blocks)
// against 32 candidate pods while publishers send KV events through real
// libzmq sockets into the Indexer's event workers (bind mode), paced at
// ingestRate block events per second: each message is one BlockStored of
// 16 blocks followed, once the pod's cache is warm, by one BlockRemoved of
// 16 older ones, so the index holds a steady ~1M entries. Every pod also
// holds a prefix of the scored prompt, so each score walks all 512 keys.
//
// It reports the score latency's p50 and p99 and the event rate the index
// actually applied (Admissions+Removals per second), all on the machine's
// cores shared by the publishers, the workers and the scoring loop.
//
// events=0 is the same without ingest: the baseline that shows how much of
// the tail is the machine's rather than the ingest's.
func BenchmarkIndexerScoreUnderIngest(b *testing.B) {
	for _, rate := range []int{100_000, 0} {
		b.Run(fmt.Sprintf("events=%d", rate), func(b *testing.B) { benchScoreUnderIngest(b, float64(rate)) })
	}
}

func benchScoreUnderIngest(b *testing.B, ingestRate float64) {
	const (
		pods        = 32
		blocksPer   = 16      // blocks per event
		warmEntries = 1 << 20 // entries in the index at steady state
	)
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(b))
	ix, err := kvcache.New(kvcache.Config{
		Hash:   kvcache.HashConfig{Seed: seed},
		Events: kvcache.EventsConfig{Mode: kvcache.EventsBind, Endpoint: endpoint},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- ix.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			b.Errorf("Run = %v", err)
		}
	}()

	names := make([]string, pods)
	pubs := make([]*vllmfake.Publisher, pods)
	for p := range names {
		names[p] = fmt.Sprintf("127.0.0.1:%d", 8000+p) // bind mode admits publishers from the pod's own address
		if err := ix.AddPod(ctx, names[p]); err != nil {
			b.Fatal(err)
		}
		pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: endpoint, Topic: "kv@" + names[p] + "@m"})
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		pubs[p] = pub
	}
	for _, pub := range pubs {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		err := pub.WaitSubscribed(wctx)
		wcancel()
		if err != nil {
			b.Fatal(err)
		}
	}

	// The scored prompt: pod p holds its first (p+1)/pods.
	prompt := make([]uint32, 8192)
	for i := range prompt {
		prompt[i] = uint32(i + 1)
	}
	keys := vllmKeys(b, prompt)
	for p := range pods {
		if err := ix.Index().Add(ctx, kvblock.Pod{Addr: names[p]}, kvblock.TierGPU, keys[:(p+1)*len(keys)/pods]); err != nil {
			b.Fatal(err)
		}
	}
	req := kvcache.Request{TokenIDs: prompt, Pods: names}

	// Each pod's stream of messages: stores of fresh random keys, and once
	// it holds its share of warmEntries, removals of its oldest.
	perPod := warmEntries / pods
	type podStream struct {
		rng  *rand.Rand
		held []kvblock.Key // FIFO of what the pod holds
		buf  []byte
	}
	streams := make([]*podStream, pods)
	for p := range streams {
		streams[p] = &podStream{rng: rand.New(rand.NewPCG(uint64(p), 7))}
	}
	next := func(p int) ([]byte, int) {
		s := streams[p]
		stored := make([]kvblock.Key, blocksPer)
		for i := range stored {
			stored[i] = kvblock.Key(s.rng.Uint64())
		}
		evs := []vllmfake.Event{{Kind: vllmfake.BlockStored, Hashes: stored, BlockSize: 16}}
		s.held = append(s.held, stored...)
		if len(s.held) > perPod {
			evs = append(evs, vllmfake.Event{Kind: vllmfake.BlockRemoved, Hashes: slices.Clone(s.held[:blocksPer])})
			s.held = s.held[blocksPer:]
		}
		s.buf = pubs[p].Encode(s.buf[:0], 1, evs)
		return s.buf, blocksPer * len(evs)
	}
	// Warm up to the steady-state size, straight into the index (unpaced
	// publishing would overrun the sockets' queues).
	for p := range pods {
		s := streams[p]
		for len(s.held) < perPod {
			s.held = append(s.held, kvblock.Key(s.rng.Uint64()))
		}
		if err := ix.Index().Add(ctx, kvblock.Pod{Addr: names[p]}, kvblock.TierGPU, s.held); err != nil {
			b.Fatal(err)
		}
	}

	// The ingest: a publisher loop paced by the clock (it catches up after
	// it was descheduled), one message per pod in turn.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64 // block events published
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		begin, p := time.Now(), 0
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			due := int64(time.Since(begin).Seconds() * ingestRate)
			for sent.Load() < due {
				msg, n := next(p)
				if _, err := pubs[p].SendPayload(msg); err != nil {
					b.Error(err)
					return
				}
				sent.Add(int64(n))
				p = (p + 1) % pods
			}
		}
	}()

	before, err := ix.Index().Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	start, sentBefore := time.Now(), sent.Load()
	for b.Loop() {
		t0 := time.Now()
		res, err := ix.Score(ctx, req)
		lat = append(lat, time.Since(t0))
		if err != nil || res.Pods[pods-1].Matched != len(keys) {
			b.Fatalf("Score = %v, %v; want the last pod to match all %d blocks", res.Pods[pods-1], err, len(keys))
		}
	}
	elapsed, sentDuring := time.Since(start), sent.Load()-sentBefore
	b.StopTimer()
	close(stop)
	wg.Wait()
	after, err := ix.Index().Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-us")
	applied := (after.Admissions + after.Removals) - (before.Admissions + before.Removals)
	b.ReportMetric(float64(applied)/elapsed.Seconds(), "applied-events/s")
	b.ReportMetric(float64(sentDuring)/elapsed.Seconds(), "sent-events/s")
}
