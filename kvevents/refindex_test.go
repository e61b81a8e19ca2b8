package kvevents

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// refIndex is a small, obviously correct kvblock.Index: a reference-counted
// map of (pod, tier, key) entries under one lock. Tests apply events to it
// and compare it with a publisher's ground truth.
type refIndex struct {
	mu      sync.Mutex
	entries map[refEntry]int
}

type refEntry struct {
	Pod  kvblock.Pod
	Tier kvblock.Tier
	Key  kvblock.Key
}

var _ kvblock.Index = (*refIndex)(nil)

func newRefIndex() *refIndex { return &refIndex{entries: make(map[refEntry]int)} }

func (x *refIndex) Add(_ context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, k := range keys {
		x.entries[refEntry{pod, tier, k}]++
	}
	return nil
}

func (x *refIndex) Remove(_ context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, k := range keys {
		e := refEntry{pod, tier, k}
		if x.entries[e] <= 1 {
			delete(x.entries, e)
		} else {
			x.entries[e]--
		}
	}
	return nil
}

func (x *refIndex) ClearPod(_ context.Context, pod kvblock.Pod) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	maps.DeleteFunc(x.entries, func(e refEntry, _ int) bool { return e.Pod == pod })
	return nil
}

func (x *refIndex) Clear(context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	clear(x.entries)
	return nil
}

func (x *refIndex) Score(_ context.Context, keys []kvblock.Key, candidates []kvblock.Pod, dst []kvblock.PodScore) ([]kvblock.PodScore, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, pod := range candidates {
		s := kvblock.PodScore{Pod: pod}
		for _, k := range keys {
			held := false
			for e := range x.entries {
				if e.Pod == pod && e.Key == k {
					held = true
					break
				}
			}
			if !held {
				break
			}
			s.Matched++
		}
		dst = append(dst, s)
	}
	return dst, nil
}

func (x *refIndex) Stats(context.Context) (kvblock.Stats, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return kvblock.Stats{Entries: int64(len(x.entries))}, nil
}

// snapshot returns a copy of the entries with their reference counts.
func (x *refIndex) snapshot() map[refEntry]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return maps.Clone(x.entries)
}

// diffEntries describes how got differs from want, or returns "".
func diffEntries(got, want map[refEntry]int) string {
	var b strings.Builder
	keys := slices.Collect(maps.Keys(got))
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b refEntry) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	n := 0
	for _, k := range keys {
		if got[k] != want[k] {
			if n < 10 {
				fmt.Fprintf(&b, "  %s tier %d key %#x: got %d refs, want %d\n", k.Pod, k.Tier, uint64(k.Key), got[k], want[k])
			}
			n++
		}
	}
	if n > 10 {
		fmt.Fprintf(&b, "  ... %d differences in all\n", n)
	}
	return b.String()
}

// newMemIndex returns kvblock's in-memory index, the one kvtrack runs with.
func newMemIndex(t testing.TB) *kvblock.MemIndex {
	t.Helper()
	x, err := kvblock.NewMemIndex(kvblock.MemIndexConfig{Shards: 16})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// indexDiff describes how idx differs from want, or returns "". A refIndex
// is compared entry by entry with reference counts. Other indexes are
// compared through the Index interface: their entry count must equal
// want's, and every wanted (pod, key) must score on the best wanted tier's
// weight (so a missing entry, an extra entry or a wrong tier shows).
func indexDiff(idx kvblock.Index, want map[refEntry]int) string {
	if r, ok := idx.(*refIndex); ok {
		return diffEntries(r.snapshot(), want)
	}
	ctx := context.Background()
	st, err := idx.Stats(ctx)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	if st.Entries != int64(len(want)) {
		fmt.Fprintf(&b, "  index has %d entries, want %d\n", st.Entries, len(want))
	}
	weights := kvblock.DefaultTierWeights()
	best := map[refEntry]float64{} // tier zeroed: (pod, key) -> best weight
	for e := range want {
		pk := refEntry{Pod: e.Pod, Key: e.Key}
		best[pk] = max(best[pk], weights[e.Tier.String()])
	}
	n := 0
	for pk, w := range best {
		sc, err := idx.Score(ctx, []kvblock.Key{pk.Key}, []kvblock.Pod{pk.Pod}, nil)
		if err != nil {
			return err.Error()
		}
		if sc[0].Matched != 1 || math.Abs(sc[0].Weighted-w) > 1e-9 {
			if n < 10 {
				fmt.Fprintf(&b, "  %s key %#x: matched %d weighted %.2f, want 1 and %.2f\n", pk.Pod, uint64(pk.Key), sc[0].Matched, sc[0].Weighted, w)
			}
			n++
		}
	}
	if n > 10 {
		fmt.Fprintf(&b, "  ... %d keys differ in all\n", n)
	}
	return b.String()
}
