package indextest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// runStress runs one writer per pod (as the event path applies each pod's
// events in order) plus an occasional global Clear, against readers that
// score while the writes happen. Readers check what must hold at any
// moment: one result per candidate in order, never more matched blocks than
// the pod ever stored of that prompt, a weight between the lowest and the
// highest tier weight used per matched block, zero for unknown pods. When
// the writers are done, each pod stores a known prefix and the scores and
// sizes must be exact.
func runStress(t *testing.T, idx kvblock.Index) {
	const (
		numPrompts = 4
		promptLen  = 96
	)
	pods := []kvblock.Pod{podA, podA1, podB, podC}
	ops, readers := 1500, 2
	if testing.Short() {
		ops = 300
	}
	ctx := context.Background()

	prompts := make([][]kvblock.Key, numPrompts)
	for p := range prompts {
		prompts[p] = make([]kvblock.Key, promptLen)
		for i := range prompts[p] {
			prompts[p][i] = kvblock.Key(uint64(p+1)<<40 | uint64(i))
		}
		copy(prompts[p][:8], prompts[0]) // a shared system prompt
	}
	// longest[pod][prompt] is the longest prefix of the prompt the pod was
	// ever told to store, raised before the Add.
	var longest [4][numPrompts]atomic.Int64
	raise := func(pod, prompt int, n int64) {
		for {
			cur := longest[pod][prompt].Load()
			if n <= cur || longest[pod][prompt].CompareAndSwap(cur, n) {
				return
			}
		}
	}
	// The shared opening counts towards every prompt.
	raiseShared := func(pod, prompt int, n int64) {
		for q := range numPrompts {
			raise(pod, q, min(n, 8))
		}
		raise(pod, prompt, n)
	}

	var writers, readersWG sync.WaitGroup
	stop := make(chan struct{})
	for w, pod := range pods {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			tiers := []kvblock.Tier{kvblock.TierGPU, kvblock.TierCPU}
			for range ops {
				p := rng.IntN(numPrompts)
				n := rng.IntN(promptLen + 1)
				tier := tiers[rng.IntN(2)]
				var err error
				switch op := rng.IntN(20); {
				case op < 11:
					raiseShared(w, p, int64(n))
					err = idx.Add(ctx, pod, tier, prompts[p][:n])
				case op < 19:
					lo := rng.IntN(n + 1)
					err = idx.Remove(ctx, pod, tier, prompts[p][lo:n])
				default:
					err = idx.ClearPod(ctx, pod)
				}
				if err != nil {
					t.Errorf("writer %v: %v", pod, err)
					return
				}
			}
		}()
	}
	writers.Add(1)
	go func() {
		defer writers.Done()
		for range 3 {
			if err := idx.Clear(ctx); err != nil {
				t.Errorf("Clear: %v", err)
				return
			}
		}
	}()

	var scored atomic.Int64
	cands := append([]kvblock.Pod{podNew}, pods...)
	for r := range readers {
		readersWG.Add(1)
		go func() {
			defer readersWG.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			var dst []kvblock.PodScore
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := rng.IntN(numPrompts)
				ks := prompts[p][:rng.IntN(promptLen+1)]
				var err error
				dst, err = idx.Score(ctx, ks, cands, dst[:0])
				if err != nil {
					t.Errorf("Score: %v", err)
					return
				}
				if err := checkStressScores(dst, cands, ks, func(pod int) int64 { return longest[pod][p].Load() }); err != nil {
					t.Error(err)
					return
				}
				if _, err := idx.Stats(ctx); err != nil {
					t.Errorf("Stats: %v", err)
					return
				}
				scored.Add(1)
			}
		}()
	}
	writers.Wait()
	close(stop)
	readersWG.Wait()
	if t.Failed() {
		return
	}
	if scored.Load() == 0 {
		t.Fatal("readers scored nothing while writers ran")
	}

	// Quiescent: every pod holds exactly a known prefix of prompt 1.
	x := tester{t, idx}
	var ws []want
	for w, pod := range pods {
		x.clearPod(pod)
		x.add(pod, kvblock.TierGPU, prompts[1][:10*(w+1)]...)
		ws = append(ws, want{pod, 10 * (w + 1), float64(10 * (w + 1))})
	}
	x.wantScores(prompts[1], ws...)
	x.wantSize(40, 10+20+30+40, int64(len(pods)))
}

func checkStressScores(got []kvblock.PodScore, cands []kvblock.Pod, ks []kvblock.Key, longest func(pod int) int64) error {
	if len(got) != len(cands) {
		return fmt.Errorf("Score returned %d results for %d candidates", len(got), len(cands))
	}
	for i, s := range got {
		if s.Pod != cands[i] {
			return fmt.Errorf("result %d is for %v, want %v", i, s.Pod, cands[i])
		}
		if i == 0 {
			if s.Matched != 0 || s.Weighted != 0 {
				return fmt.Errorf("unknown pod %v scored %+v", s.Pod, s)
			}
			continue
		}
		if s.Matched < 0 || s.Matched > len(ks) {
			return fmt.Errorf("%v matched %d of %d keys", s.Pod, s.Matched, len(ks))
		}
		if l := longest(i - 1); int64(s.Matched) > l {
			return fmt.Errorf("%v matched %d keys but was only ever given a prefix of %d", s.Pod, s.Matched, l)
		}
		lo, hi := 0.8*float64(s.Matched), float64(s.Matched)
		if s.Weighted < lo-1e-9 || s.Weighted > hi+1e-9 {
			return fmt.Errorf("%v matched %d with weight %g, want within [%g, %g]", s.Pod, s.Matched, s.Weighted, lo, hi)
		}
	}
	return nil
}
