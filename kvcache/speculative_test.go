package kvcache

import (
	"context"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// A speculative entry belongs to its request: the engine's store of some
// of its blocks by another request sharing the prefix does not end it, so
// when the pod evicts those blocks before the speculated request leaves
// its queue, the request's claim still stands (it will compute them
// again). Only the store of the request's last block, which the engine
// publishes once the request is scheduled, confirms it.
func TestSpeculationOutlivesAnotherRequestsStoreOfItsPrefix(t *testing.T) {
	ix, _, req, keys := speculated(t, time.Minute)
	ctx := context.Background()
	events := confirmingIndex{ix.index, ix.spec}
	pod := kvblock.Pod{Addr: "a:1"}
	for _, step := range []struct {
		name   string
		stored []kvblock.Key
		evict  []kvblock.Key
		want   int
	}{
		{"another request stores blocks 0-2 and the pod evicts them", keys[:3], keys[:3], len(keys)},
		{"the request is scheduled: its blocks are stored", keys, nil, len(keys)},
		{"the pod evicts them", nil, keys, 0},
	} {
		if step.stored != nil {
			if err := events.Add(ctx, pod, kvblock.TierGPU, step.stored); err != nil {
				t.Fatal(err)
			}
		}
		if step.evict != nil {
			if err := events.Remove(ctx, pod, kvblock.TierGPU, step.evict); err != nil {
				t.Fatal(err)
			}
		}
		if got := matchedOn(t, ix, req); got != step.want {
			t.Errorf("%s: matched %d, want %d", step.name, got, step.want)
		}
	}
}

// Two requests for the same prompt routed to one pod are two entries: the
// first one's scheduling (its last block stored) confirms one, and the
// other keeps its claim until its own store.
func TestSpeculationCountsRequestsNotBlocks(t *testing.T) {
	ix, now, req, keys := speculated(t, time.Minute)
	ctx := context.Background()
	if err := ix.Speculate(ctx, "a:1", keys); err != nil {
		t.Fatal(err)
	}
	events := confirmingIndex{ix.index, ix.spec}
	pod := kvblock.Pod{Addr: "a:1"}
	for i, want := range []int{len(keys), 0} {
		// A request runs: it stores its blocks (vLLM caches a recomputed
		// last block again), and the pod then evicts them.
		if err := events.Add(ctx, pod, kvblock.TierGPU, keys); err != nil {
			t.Fatal(err)
		}
		if err := events.Remove(ctx, pod, kvblock.TierGPU, keys); err != nil {
			t.Fatal(err)
		}
		if got := matchedOn(t, ix, req); got != want {
			t.Errorf("after %d of 2 requests ran and were evicted: matched %d, want %d", i+1, got, want)
		}
	}
	// Both entries are gone: nothing is left in the index to expire.
	*now = now.Add(time.Minute)
	matchedOn(t, ix, req)
	st, err := ix.Index().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 0 {
		t.Errorf("%d index entries left, want 0", st.Entries)
	}
}

// A prompt that continues past its last full block, with every full
// block cached, stores nothing when it is scheduled: the first block it
// stores is the one its output completes, whose parent is the entry's last
// key, and that store confirms the entry. A prompt ending at a block
// boundary stores its last block whenever it runs (vLLM recomputes it), so
// a run after that block is another request's output and confirms nothing;
// so is any entry recorded from keys alone (Speculate), whose prompt's end
// is unknown.
func TestStoreAfterTheLastBlockConfirmsAPartialTail(t *testing.T) {
	ctx := context.Background()
	pod := kvblock.Pod{Addr: "a:1"}
	for _, tc := range []struct {
		name      string
		tokens    int  // prompt length; blocks of 16
		keysOnly  bool // Speculate(keys) rather than SpeculateResult
		storeNext bool // the engine stores a run after the last full block
		want      int  // blocks matched once the pod evicted the prompt's
	}{
		{"partial tail, run after it stored", 65, false, true, 0},
		{"partial tail, nothing stored", 65, false, false, 4},
		{"block boundary, run after it stored", 64, false, true, 3},
		{"keys only, run after them stored", 65, true, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			ix := newIndexer(t, Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(time.Minute)}},
				WithClock(func() time.Time { return now }))
			req := Request{TokenIDs: seq(1, tc.tokens), Pods: []string{"a:1"}}
			res, err := ix.Score(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			// The pod holds the whole prompt before the request is routed.
			if err := ix.index.Add(ctx, pod, kvblock.TierGPU, res.Keys); err != nil {
				t.Fatal(err)
			}
			if tc.keysOnly {
				err = ix.Speculate(ctx, "a:1", res.Keys)
			} else {
				err = ix.SpeculateResult(ctx, "a:1", res)
			}
			if err != nil {
				t.Fatal(err)
			}
			events := confirmingIndex{ix.index, ix.spec}
			if tc.storeNext {
				events.StoredAfter(ctx, pod, kvblock.TierGPU, kvblock.Group{}, res.Keys[len(res.Keys)-1])
			}
			if err := events.Remove(ctx, pod, kvblock.TierGPU, res.Keys); err != nil {
				t.Fatal(err)
			}
			if got := matchedOn(t, ix, req); got != tc.want {
				t.Errorf("matched %d after the eviction, want %d", got, tc.want)
			}
		})
	}
}

// A hybrid model stores each block once per KV-cache group: the stores of
// one request in G groups are one request, and retire one entry, whatever
// the order and kinds of the groups. The other request's entry keeps its
// claim until its own run. So with a partial tail, whose run stores the
// block after the prompt's in every group.
func TestHybridStoresConfirmOneEntryPerRequest(t *testing.T) {
	full := kvblock.Group{Kind: kvblock.GroupFull}
	window := kvblock.Group{Kind: kvblock.GroupSlidingWindow, SlidingWindow: 32}
	at := func(g kvblock.Group, i int) kvblock.Group { g.Index = i; return g }
	for _, tc := range []struct {
		name   string
		groups []kvblock.Group // in the order the engine publishes them
	}{
		{"full attention, then sliding window", []kvblock.Group{at(full, 0), at(window, 1)}},
		{"sliding window, then full attention", []kvblock.Group{at(window, 0), at(full, 1)}},
		{"two full-attention groups", []kvblock.Group{at(full, 0), at(full, 1)}},
		{"full attention published last", []kvblock.Group{at(window, 0), at(window, 1), at(full, 2)}},
	} {
		for _, tail := range []bool{false, true} {
			name := tc.name + ", prompt ends at a block boundary"
			if tail {
				name = tc.name + ", partial tail cached"
			}
			t.Run(name, func(t *testing.T) {
				testHybridRuns(t, tc.groups, tail)
			})
		}
	}
}

func testHybridRuns(t *testing.T, groups []kvblock.Group, tail bool) {
	ctx := context.Background()
	ix := newIndexer(t, Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(time.Minute)}})
	req := Request{TokenIDs: seq(1, 64), Pods: []string{"a:1"}}
	if tail {
		req.TokenIDs = seq(1, 65)
	}
	res, err := ix.Score(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	keys := res.Keys
	events := confirmingIndex{ix.index, ix.spec}
	pod := kvblock.Pod{Addr: "a:1"}
	// The pod's groups are known from blocks it stored before: with a
	// partial tail, the prompt's, which its requests find cached.
	before := []kvblock.Key{keys[0] ^ 1}
	if tail {
		before = keys
	}
	for _, g := range groups {
		if err := events.AddGroup(ctx, pod, kvblock.TierGPU, g, before); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := ix.SpeculateResult(ctx, "a:1", res); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []int{res.Blocks, 0} {
		// A request runs: every group stores its blocks (with a partial
		// tail, the block its output completes), and the pod then evicts
		// the prompt's.
		for _, g := range groups {
			stored := keys
			if tail {
				stored = []kvblock.Key{keys[len(keys)-1] ^ kvblock.Key(i+2)}
			}
			if err := events.AddGroup(ctx, pod, kvblock.TierGPU, g, stored); err != nil {
				t.Fatal(err)
			}
			events.StoredAfter(ctx, pod, kvblock.TierGPU, g, keys[len(keys)-1])
		}
		for _, g := range groups {
			if err := events.RemoveGroup(ctx, pod, kvblock.TierGPU, g.Index, keys); err != nil {
				t.Fatal(err)
			}
		}
		if got := matchedOn(t, ix, req); got != want {
			t.Errorf("after %d of 2 requests ran and the prompt was evicted: matched %d, want %d", i+1, got, want)
		}
	}
}

// Each prompt of a batch is its own request: one continuing past its last
// full block, with every full block cached, is confirmed by the run stored
// after it, as a single prompt is; one ending at a block boundary is not.
func TestStoreAfterTheLastBlockConfirmsABatchPromptsPartialTail(t *testing.T) {
	ctx := context.Background()
	pod := kvblock.Pod{Addr: "a:1"}
	ix := newIndexer(t, Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(time.Minute)}})
	req := Request{Prompts: []BatchPrompt{{TokenIDs: seq(1, 65)}, {TokenIDs: seq(1000, 64)}}, Pods: []string{"a:1"}}
	res, err := ix.Score(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The pod holds both prompts before the batch is routed.
	if err := ix.index.Add(ctx, pod, kvblock.TierGPU, res.Keys); err != nil {
		t.Fatal(err)
	}
	if err := ix.SpeculateResult(ctx, "a:1", res); err != nil {
		t.Fatal(err)
	}
	events := confirmingIndex{ix.index, ix.spec}
	for _, keys := range res.Batch {
		events.StoredAfter(ctx, pod, kvblock.TierGPU, kvblock.Group{}, keys[len(keys)-1])
	}
	if err := events.Remove(ctx, pod, kvblock.TierGPU, res.Keys); err != nil {
		t.Fatal(err)
	}
	// Only the second prompt's entry stands: the 3 blocks vLLM looks up.
	if got := matchedOn(t, ix, req); got != 3 {
		t.Errorf("matched %d after the eviction, want 3 (the block-boundary prompt's entry)", got)
	}
}
