package kvcache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/threadcpu"
	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

// BenchmarkIndexerScoreUnderIngest scores 8,192-token prompts (512 blocks),
// given as token IDs as the EPP passes them, against 32 candidate pods while
// publishers send KV events through real libzmq sockets into the Indexer's
// event workers (bind mode), paced at ingestRate block events per second:
// each message is one BlockStored of 16 blocks followed, once the pod's
// cache is warm, by one BlockRemoved of 16 older ones, so the index holds a
// steady ~1M entries. Every pod also holds a prefix of the scored prompt,
// so each score walks all 511 keys vLLM looks up.
//
// prompt=same scores one request over and over (the key cache serves its
// keys); prompt=newtail changes the last block's tokens every time, so the
// key cache misses, the chain cache serves the first 511 blocks and one
// block is SHA-256 hashed, as for a new request sharing a long prefix.
// events=0 is the same without ingest: the baseline that shows how much of
// the tail is the machine's rather than the ingest's.
//
// Reported: the score's wall-clock p50/p99/p99.9 (p50-ns/score, ...), the
// scoring thread's CPU time per score at p50/p99 (cpu-p99-ns/score: the
// tail that is not time spent descheduled), the share of scores whose wall
// time exceeded their CPU time by over 100 us (descheduled-%: the OS ran
// something else meanwhile), garbage collections per second, and the event
// rate the index actually applied (applied-events/s). Each score is a
// runtime/trace region named "score", for -trace.
func BenchmarkIndexerScoreUnderIngest(b *testing.B) {
	for _, bc := range []struct {
		rate    int
		newTail bool
	}{{100_000, false}, {100_000, true}, {0, false}, {0, true}} {
		prompt := "same"
		if bc.newTail {
			prompt = "newtail"
		}
		b.Run(fmt.Sprintf("events=%d/prompt=%s", bc.rate, prompt), func(b *testing.B) {
			benchScoreUnderIngest(b, float64(bc.rate), bc.newTail)
		})
	}
}

func benchScoreUnderIngest(b *testing.B, ingestRate float64, newTail bool) {
	const (
		pods        = 32
		blocksPer   = 16      // blocks per event
		warmEntries = 1 << 20 // entries in the index at steady state
	)
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(b))
	ix, err := kvcache.New(kvcache.Config{
		Hash:   kvcache.HashConfig{Seed: seed},
		Events: kvcache.EventsConfig{Mode: kvcache.EventsBind, Endpoint: endpoint},
	}, kvcache.WithEventSource(kvevents.Source))
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
	// At events=0 there is no publisher loop at all: its ticker alone would
	// wake a thread a thousand times a second.
	if ingestRate > 0 {
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
	}

	before, err := ix.Index().Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// The thread's CPU clock measures a score only if the goroutine stays
	// on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lat := make([]time.Duration, 0, 1<<16)
	cpu := make([]time.Duration, 0, 1<<16)
	descheduled := 0
	tail := uint32(1 << 24)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcBefore := ms.NumGC
	b.ReportAllocs()
	b.ResetTimer()
	start, sentBefore, procBefore := time.Now(), sent.Load(), processCPU()
	var scoring time.Duration // the scoring thread's CPU time
	for b.Loop() {
		if newTail {
			for i := len(prompt) - 16; i < len(prompt); i++ {
				prompt[i] = tail
				tail++
			}
		}
		t0, c0 := time.Now(), threadcpu.Now()
		region := trace.StartRegion(ctx, "score")
		res, err := ix.Score(ctx, req)
		region.End()
		c, d := threadcpu.Now()-c0, time.Since(t0)
		scoring += c
		lat, cpu = append(lat, d), append(cpu, c)
		if d-c > 100*time.Microsecond {
			descheduled++
		}
		// vLLM looks up at most the blocks before the last token.
		if err != nil || res.Pods[pods-1].Matched != len(keys)-1 {
			b.Fatalf("Score = %v, %v; want the last pod to match all %d blocks vLLM looks up", res.Pods[pods-1], err, len(keys)-1)
		}
	}
	elapsed, sentDuring, proc := time.Since(start), sent.Load()-sentBefore, processCPU()-procBefore
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	close(stop)
	wg.Wait()
	after, err := ix.Index().Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	reportQuantiles(b, lat, "", 0.5, 0.99, 0.999)
	if slices.Max(cpu) > 0 { // a thread CPU clock exists here
		reportQuantiles(b, cpu, "cpu-", 0.5, 0.99)
		b.ReportMetric(100*float64(descheduled)/float64(len(lat)), "descheduled-%")
		// Everything but the scoring: the publishers, libzmq, the event
		// workers, the garbage collector.
		b.ReportMetric(100*(proc-scoring).Seconds()/elapsed.Seconds(), "other-cpu-%")
	}
	b.ReportMetric(float64(ms.NumGC-gcBefore)/elapsed.Seconds(), "gc/s")
	applied := (after.Admissions + after.Removals) - (before.Admissions + before.Removals)
	b.ReportMetric(float64(applied)/elapsed.Seconds(), "applied-events/s")
	b.ReportMetric(float64(sentDuring)/elapsed.Seconds(), "sent-events/s")
}

// reportQuantiles reports the quantiles qs of ds (sorting ds) as
// <prefix>p<q>-ns/score.
func reportQuantiles(b *testing.B, ds []time.Duration, prefix string, qs ...float64) {
	slices.Sort(ds)
	for _, q := range qs {
		name := prefix + "p" + strconv.FormatFloat(100*q, 'f', -1, 64) + "-ns/score"
		b.ReportMetric(float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()), name)
	}
}

// processCPU returns the CPU time the whole process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
