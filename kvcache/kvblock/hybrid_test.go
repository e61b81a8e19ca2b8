package kvblock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Groups of a hybrid model with the keys' block size of 16 tokens.
var (
	fullGroup  = kvblock.Group{Index: 0, Kind: kvblock.GroupFull, BlockSize: 16}
	swaGroup   = kvblock.Group{Index: 1, Kind: kvblock.GroupSlidingWindow, SlidingWindow: 64, BlockSize: 16} // needs ceil(63/16) = 4 blocks
	mambaGroup = kvblock.Group{Index: 1, Kind: kvblock.GroupMamba, BlockSize: 16}
	mamba32    = kvblock.Group{Index: 1, Kind: kvblock.GroupMamba, BlockSize: 32} // one block per two keys
	full2      = kvblock.Group{Index: 1, Kind: kvblock.GroupFull, BlockSize: 16}
)

// blocks returns the keys at the given positions of the 10-key prompt
// 1000..1009.
func blocks(pos ...int) []kvblock.Key {
	out := make([]kvblock.Key, len(pos))
	for i, p := range pos {
		out[i] = kvblock.Key(1000 + p)
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestHybridHitFollowsVLLMCoordinator(t *testing.T) {
	type holding struct {
		g   kvblock.Group
		pos []int
	}
	cases := []struct {
		name string
		hold []holding
		want int // keys vLLM reuses out of 10
	}{
		{"full and sliding window hold everything", []holding{{fullGroup, span(0, 10)}, {swaGroup, span(0, 10)}}, 10},
		{"sliding window evicted its early blocks: full attention's hit survives",
			[]holding{{fullGroup, span(0, 10)}, {swaGroup, span(6, 10)}}, 10},
		{"sliding window lacks the window before the end: the hit moves back to a full window",
			[]holding{{fullGroup, span(0, 10)}, {swaGroup, []int{0, 1, 2, 3, 4, 5, 6, 7, 9}}}, 8},
		{"sliding window lacks a block inside the last window: the hit is the end of the last full window",
			[]holding{{fullGroup, span(0, 10)}, {swaGroup, []int{2, 3, 4, 5, 7, 8, 9}}}, 6},
		{"sliding window has no full window and no run from the first block",
			[]holding{{fullGroup, span(0, 10)}, {swaGroup, []int{3, 4, 5, 7, 8, 9}}}, 0},
		{"full attention bounds the hit", []holding{{fullGroup, span(0, 6)}, {swaGroup, span(0, 10)}}, 6},
		{"a run from the first block shorter than the window is a hit",
			[]holding{{fullGroup, span(0, 10)}, {swaGroup, []int{0, 1}}}, 2},
		{"sliding window holds nothing", []holding{{fullGroup, span(0, 10)}, {swaGroup, nil}}, 0},
		{"mamba state at the end", []holding{{fullGroup, span(0, 10)}, {mambaGroup, []int{4, 9}}}, 10},
		{"mamba state only midway", []holding{{fullGroup, span(0, 10)}, {mambaGroup, []int{4}}}, 5},
		{"mamba without full attention", []holding{{mambaGroup, []int{2, 6}}}, 7},
		{"mamba with blocks of two keys: the hit is a multiple of both",
			[]holding{{fullGroup, span(0, 10)}, {mamba32, []int{3, 7}}}, 8},
		{"mamba with blocks of two keys, its state at key 8 is no block end",
			[]holding{{fullGroup, span(0, 10)}, {mamba32, []int{3, 8}}}, 4},
		{"two full-attention groups need both", []holding{{fullGroup, span(0, 10)}, {full2, span(0, 4)}}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idx := newMemIndex(t, kvblock.MemIndexConfig{BlockSize: 16})
			ctx := context.Background()
			for _, h := range c.hold {
				// Describe the group even when it holds nothing now (it
				// stored and lost its blocks).
				if err := idx.AddGroup(ctx, podX, kvblock.TierGPU, h.g, blocks(h.pos...)); err != nil {
					t.Fatal(err)
				}
			}
			got := score(t, idx, blocks(span(0, 10)...), podX, podY)
			if got[0].Matched != c.want {
				t.Errorf("Matched = %d, want %d", got[0].Matched, c.want)
			}
			if got[0].Weighted != float64(c.want) {
				t.Errorf("Weighted = %v, want %v (GPU blocks)", got[0].Weighted, float64(c.want))
			}
			if got[1].Matched != 0 {
				t.Errorf("a pod with no blocks matches %d", got[1].Matched)
			}
		})
	}
}

var (
	podX = kvblock.Pod{Addr: "10.1.0.1:8000"}
	podY = kvblock.Pod{Addr: "10.1.0.2:8000"}
	podZ = kvblock.Pod{Addr: "10.1.0.3:8000"}
)

func score(t *testing.T, idx kvblock.Index, keys []kvblock.Key, pods ...kvblock.Pod) []kvblock.PodScore {
	t.Helper()
	got, err := idx.Score(context.Background(), keys, pods, nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSlidingWindowEvictionKeepsFullAttentionHits removes a hybrid model's
// sliding-window blocks as vLLM evicts them: the full-attention group's
// entries for the same keys stay, and so does the hit.
func TestSlidingWindowEvictionKeepsFullAttentionHits(t *testing.T) {
	idx := newMemIndex(t, kvblock.MemIndexConfig{BlockSize: 16})
	ctx := context.Background()
	all := blocks(span(0, 10)...)
	for _, g := range []kvblock.Group{fullGroup, swaGroup} {
		if err := idx.AddGroup(ctx, podX, kvblock.TierGPU, g, all); err != nil {
			t.Fatal(err)
		}
	}
	if err := idx.RemoveGroup(ctx, podX, kvblock.TierGPU, swaGroup.Index, blocks(span(0, 6)...)); err != nil {
		t.Fatal(err)
	}
	if got := score(t, idx, all, podX)[0].Matched; got != 10 {
		t.Errorf("after the sliding-window group evicted blocks 0-5: Matched = %d, want 10", got)
	}
	// Removing the full-attention group's block 3 ends the prefix there;
	// the sliding window cannot serve a hit at 3 (it lost blocks 0-2).
	if err := idx.RemoveGroup(ctx, podX, kvblock.TierGPU, fullGroup.Index, blocks(3)); err != nil {
		t.Fatal(err)
	}
	if got := score(t, idx, all, podX)[0].Matched; got != 0 {
		t.Errorf("after full attention lost block 3: Matched = %d, want 0", got)
	}
	st, _ := idx.Stats(ctx)
	if want := int64(10 + 4 - 1); st.Entries != want {
		t.Errorf("Entries = %d, want %d: one per (key, group) held", st.Entries, want)
	}
}

// TestHybridAndPlainPodsScoreTogether mixes a hybrid pod with plain ones in
// one Score: results stay in candidate order, plain pods keep the
// longest-prefix rule, and a pod described as one full-attention group is
// plain.
func TestHybridAndPlainPodsScoreTogether(t *testing.T) {
	idx := newMemIndex(t, kvblock.MemIndexConfig{BlockSize: 16})
	ctx := context.Background()
	all := blocks(span(0, 10)...)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(idx.AddGroup(ctx, podX, kvblock.TierGPU, fullGroup, all))
	must(idx.AddGroup(ctx, podX, kvblock.TierGPU, swaGroup, blocks(span(5, 10)...)))
	must(idx.Add(ctx, podY, kvblock.TierGPU, blocks(span(0, 7)...)))
	must(idx.AddGroup(ctx, podZ, kvblock.TierCPU, kvblock.Group{BlockSize: 16}, blocks(0, 1, 2, 4)))
	got := score(t, idx, all, podY, podX, podZ, podY)
	want := []struct {
		matched  int
		weighted float64
	}{{7, 7}, {10, 10}, {3, 3 * 0.8}, {7, 7}}
	for i, w := range want {
		if got[i].Matched != w.matched || !near(got[i].Weighted, w.weighted) {
			t.Errorf("candidate %d (%s): %d blocks weighing %v, want %d weighing %v",
				i, got[i].Pod, got[i].Matched, got[i].Weighted, w.matched, w.weighted)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestHybridHitMatchesCoordinatorModel compares Score with a transcription
// of vLLM's fixed-point loop (kv_cache_coordinator.find_longest_cache_hit
// over the full-attention, sliding-window and Mamba managers) on random
// holdings.
func TestHybridHitMatchesCoordinatorModel(t *testing.T) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 7))
	kinds := []kvblock.GroupKind{kvblock.GroupFull, kvblock.GroupSlidingWindow, kvblock.GroupMamba}
	for iter := range 300 {
		idx := newMemIndex(t, kvblock.MemIndexConfig{BlockSize: 16})
		n := 1 + rng.IntN(24)
		var groups []kvblock.Group
		held := map[int][]bool{}
		for g := range 1 + rng.IntN(3) {
			gr := kvblock.Group{Index: g, Kind: kinds[rng.IntN(len(kinds))], BlockSize: 16 * (1 + rng.IntN(2))}
			if gr.Kind == kvblock.GroupSlidingWindow {
				gr.SlidingWindow = 1 + rng.IntN(100)
			}
			groups = append(groups, gr)
			k := gr.BlockSize / 16
			h := make([]bool, n)
			var keys []kvblock.Key
			for j := k - 1; j < n; j += k {
				if rng.IntN(4) != 0 {
					h[j] = true
					keys = append(keys, kvblock.Key(1000+j))
				}
			}
			held[g] = h
			if err := idx.AddGroup(context.Background(), podX, kvblock.TierGPU, gr, keys); err != nil {
				t.Fatal(err)
			}
		}
		got := score(t, idx, blocks(span(0, n)...), podX)[0].Matched
		want := coordinatorHit(n, groups, held)
		if got != want {
			t.Fatalf("seed %d iteration %d: %d keys, groups %+v, held %v: Matched = %d, want %d",
				seed, iter, n, groups, fmt.Sprint(held), got, want)
		}
	}
}

// coordinatorHit follows vLLM's loop: every manager finds the longest hit
// at or below the current length, aligned to the lcm of the block sizes;
// repeat until no manager shortens it. Lengths are in keys of 16 tokens.
func coordinatorHit(n int, groups []kvblock.Group, held map[int][]bool) int {
	align := 1
	for _, g := range groups {
		k := g.BlockSize / 16
		a, b := align, k
		for b != 0 {
			a, b = b, a%b
		}
		align = align / a * k
	}
	has := func(g kvblock.Group, block int) bool { return held[g.Index][(block+1)*(g.BlockSize/16)-1] }
	hit := n
	for {
		cur := hit
		for _, g := range groups {
			k := g.BlockSize / 16
			maxBlocks := cur / k
			var blocksHit int
			switch g.Kind {
			case kvblock.GroupFull:
				for blocksHit < maxBlocks && has(g, blocksHit) {
					blocksHit++
				}
				for blocksHit*k%align != 0 {
					blocksHit--
				}
			case kvblock.GroupSlidingWindow:
				// The last end point, aligned, whose window of blocks
				// before it (or every block, when fewer) is held.
				need := (g.SlidingWindow - 1 + g.BlockSize - 1) / g.BlockSize
			ends:
				for e := maxBlocks; e > 0; e-- {
					if e*k%align != 0 {
						continue
					}
					for j := max(0, e-need); j < e; j++ {
						if !has(g, j) {
							continue ends
						}
					}
					blocksHit = e
					break
				}
			case kvblock.GroupMamba:
				for i := maxBlocks - 1; i >= 0; i-- {
					if has(g, i) && (i+1)*k%align == 0 {
						blocksHit = i + 1
						break
					}
				}
			}
			cur = min(cur, blocksHit*k)
		}
		if cur >= hit {
			return hit / align * align
		}
		hit = cur
	}
}

// BenchmarkIndexScoreHybrid scores an 8192-token prompt (512 keys of 16
// tokens) against 100 pods of a hybrid model, each holding the prompt in a
// full-attention group and the last 4096 tokens in a 4096-token sliding-
// window group: the second walk only hybrid pods take.
func BenchmarkIndexScoreHybrid(b *testing.B) {
	const n, pods = 512, 100
	idx, err := kvblock.NewMemIndex(kvblock.MemIndexConfig{BlockSize: 16})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	keys := make([]kvblock.Key, n)
	for i := range keys {
		keys[i] = kvblock.Key(0x9e3779b97f4a7c15 * uint64(i+1))
	}
	window := kvblock.Group{Index: 1, Kind: kvblock.GroupSlidingWindow, SlidingWindow: 4096, BlockSize: 16}
	cands := make([]kvblock.Pod, pods)
	for p := range cands {
		cands[p] = kvblock.Pod{Addr: fmt.Sprintf("10.2.%d.%d:8000", p/256, p%256)}
		if err := idx.AddGroup(ctx, cands[p], kvblock.TierGPU, fullGroup, keys); err != nil {
			b.Fatal(err)
		}
		if err := idx.AddGroup(ctx, cands[p], kvblock.TierGPU, window, keys[n-256:]); err != nil {
			b.Fatal(err)
		}
	}
	dst := make([]kvblock.PodScore, 0, pods)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		dst, err = idx.Score(ctx, keys, cands, dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	if dst[0].Matched != n {
		b.Fatalf("Matched = %d, want %d", dst[0].Matched, n)
	}
}

// TestAllGroupsEntriesCountInEveryGroup: an entry for AllGroups (a routing
// decision's speculative entry) serves every group of a hybrid pod, and
// leaves a plain pod plain.
func TestAllGroupsEntriesCountInEveryGroup(t *testing.T) {
	idx := newMemIndex(t, kvblock.MemIndexConfig{BlockSize: 16})
	ctx := context.Background()
	all := blocks(span(0, 10)...)
	spec := kvblock.Group{Index: kvblock.AllGroups}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// podX is hybrid: its groups hold other blocks.
	must(idx.AddGroup(ctx, podX, kvblock.TierGPU, fullGroup, blocks(20)))
	must(idx.AddGroup(ctx, podX, kvblock.TierGPU, swaGroup, blocks(20)))
	must(idx.AddGroup(ctx, podX, kvblock.TierCPU, spec, all))
	must(idx.AddGroup(ctx, podY, kvblock.TierCPU, spec, all))
	got := score(t, idx, all, podX, podY)
	for i, sc := range got {
		if sc.Matched != 10 || !near(sc.Weighted, 8) {
			t.Errorf("candidate %d with speculative entries for every group: %d blocks weighing %v, want 10 weighing 8", i, sc.Matched, sc.Weighted)
		}
	}
	must(idx.RemoveGroup(ctx, podX, kvblock.TierCPU, kvblock.AllGroups, blocks(5)))
	if got := score(t, idx, all, podX)[0].Matched; got != 5 {
		t.Errorf("after block 5's entry for every group went: Matched = %d, want 5", got)
	}
}
