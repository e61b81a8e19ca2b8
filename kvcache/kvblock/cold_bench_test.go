package kvblock_test

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/threadcpu"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// BenchmarkIndexScoreCold is BenchmarkIndexScore's pods=100 workload with
// the CPU caches cold before each score: between scores the loop writes a
// 64 MiB buffer, as other processes and the ingest path do to a scorer that
// lost its core for a while on a busy machine. It reports the score's own
// CPU time (cold-cpu-p50-ns/score, cold-cpu-p90-ns/score): the on-CPU part
// of a score's tail latency, to set against BenchmarkIndexScore's warm
// figure when changing the walk's memory access pattern.
func BenchmarkIndexScoreCold(b *testing.B) {
	ctx := context.Background()
	f := scoreFixtureFor(b, "mem", 100, promptKeys)
	junk := make([]uint64, 64<<20/8)
	dst := make([]kvblock.PodScore, 0, len(f.pods))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < len(junk); i += 8 { // one write per cache line
			junk[i]++
		}
		b.StartTimer()
		c0 := threadcpu.Now()
		var err error
		dst, err = f.idx.Score(ctx, f.prompt, f.pods, dst[:0])
		if err != nil {
			b.Fatal(err)
		}
		cpu = append(cpu, threadcpu.Now()-c0)
	}
	b.StopTimer()
	if slices.Max(cpu) > 0 {
		slices.Sort(cpu)
		b.ReportMetric(float64(cpu[len(cpu)/2].Nanoseconds()), "cold-cpu-p50-ns/score")
		b.ReportMetric(float64(cpu[len(cpu)*9/10].Nanoseconds()), "cold-cpu-p90-ns/score")
	}
}
