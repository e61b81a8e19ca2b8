package kvevents

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

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
