package kvevents

import (
	"context"
	"fmt"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// groupStored is a BlockStored event of vLLM v0.23+ for one KV-cache group
// of a hybrid model (array layout: ..., group_idx, kv_cache_spec_kind,
// kv_cache_spec_sliding_window).
func groupStored(hs []uint64, group int, kind string, window int64) mp {
	win := mpNil()
	if window > 0 {
		win = mpInt(window)
	}
	return mpArr(mpStr("BlockStored"), mpUints(hs...), mpNil(), mpTokens(seqTokens(0, 16*len(hs))), mpInt(16), mpNil(),
		mpStr("GPU"), mpNil(), mpNil(), mpInt(int64(group)), mpStr(kind), win)
}

func groupRemoved(hs []uint64, group int) mp {
	return mpArr(mpStr("BlockRemoved"), mpUints(hs...), mpStr("GPU"), mpInt(int64(group)))
}

// TestHybridGroupsReachTheIndex publishes a hybrid model's events (full
// attention in group 0, a 32-token sliding window in group 1) through a
// real socket: the sliding window's evictions of early blocks keep the
// full-attention hit, and its eviction of a late block moves the hit back
// to where the window is whole again.
func TestHybridGroupsReachTheIndex(t *testing.T) {
	r := newGuardRig(t, Config{})
	prompt := hashes(200, 6)
	keys := make([]kvblock.Key, len(prompt))
	for i, h := range prompt {
		keys[i] = kvblock.Key(h)
	}
	hit := func() int {
		sc, err := r.idx.Score(context.Background(), keys, []kvblock.Pod{podA}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sc[0].Matched
	}
	steps := []struct {
		what   string
		events []mp
		want   int
	}{
		{"both groups store six blocks", []mp{
			groupStored(prompt, 0, "full_attention", 0),
			groupStored(prompt, 1, "sliding_window", 32),
		}, 6},
		{"the window evicts the first two blocks", []mp{groupRemoved(prompt[:2], 1)}, 6},
		{"the window evicts block 4", []mp{groupRemoved(prompt[4:5], 1)}, 4},
		{"full attention evicts block 3", []mp{groupRemoved(prompt[3:4], 0)}, 0},
	}
	for _, s := range steps {
		r.a.send(rawBatch(s.events...), false)
		eventually(t, fmt.Sprintf("%s: a hit of %d blocks", s.what, s.want), func() bool { return hit() == s.want })
	}
}
