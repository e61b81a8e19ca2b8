package kvblock

import (
	"errors"
	"sync"
	"sync/atomic"
)

// MaxPods is the number of distinct pods (address:port plus DP rank) one
// MemIndex can intern over its lifetime. Pod ids are packed into 20 bits of
// an entry word; ids are never reused, so a pool that churns through more
// than a million pod identities needs a new index.
const MaxPods = 1<<podIDBits - 1

// ErrTooManyPods is returned by MemIndex.Add once MaxPods pods are interned.
var ErrTooManyPods = errors.New("kvblock: pod table full")

const (
	podChunkBits = 10
	podChunkSize = 1 << podChunkBits
	podChunks    = (MaxPods + podChunkSize - 1) / podChunkSize
)

// podState is what the index keeps per interned pod.
type podState struct {
	pod     Pod          // written once, before the id is published
	entries atomic.Int64 // (key, tier) entries this pod holds
	// groups describes the pod's KV-cache groups once an event named one;
	// nil for a pod seen only through Add (one full-attention group).
	// Copy-on-write under MemIndex.groupMu.
	groups atomic.Pointer[podGroups]
}

type podChunk [podChunkSize]podState

// podRegistry interns pods to dense ids. Lookups are lock-free: the id map is
// copy-on-write (new pods are rare next to lookups), and per-pod state lives
// in fixed chunks whose addresses never change, so shard code can update a
// pod's counter by id without consulting the map.
type podRegistry struct {
	mu     sync.Mutex                     // serialises interning
	ids    atomic.Pointer[map[Pod]uint32] // immutable once published
	chunks [podChunks]atomic.Pointer[podChunk]
	n      atomic.Uint32 // ids handed out; always >= len(*ids)
}

// lookup returns pod's id without interning it.
func (r *podRegistry) lookup(p Pod) (uint32, bool) {
	m := r.ids.Load()
	if m == nil {
		return 0, false
	}
	id, ok := (*m)[p]
	return id, ok
}

// idMap returns the current id map; nil before the first pod.
func (r *podRegistry) idMap() map[Pod]uint32 {
	if m := r.ids.Load(); m != nil {
		return *m
	}
	return nil
}

// intern returns pod's id, assigning the next one on first sight.
func (r *podRegistry) intern(p Pod) (uint32, error) {
	if id, ok := r.lookup(p); ok {
		return id, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.idMap()
	if id, ok := old[p]; ok {
		return id, nil
	}
	id := uint32(len(old))
	if id >= MaxPods {
		return 0, ErrTooManyPods
	}
	c := r.chunks[id>>podChunkBits].Load()
	if c == nil {
		c = new(podChunk)
		r.chunks[id>>podChunkBits].Store(c)
	}
	c[id&(podChunkSize-1)].pod = p
	m := make(map[Pod]uint32, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[p] = id
	// n first, so a reader that loads the map and then n sees n >= every id.
	r.n.Store(id + 1)
	r.ids.Store(&m)
	return id, nil
}

// state returns the state of an interned id.
func (r *podRegistry) state(id uint32) *podState {
	return &r.chunks[id>>podChunkBits].Load()[id&(podChunkSize-1)]
}

// liveCount reports how many interned pods hold at least one entry.
func (r *podRegistry) liveCount() int64 {
	var live int64
	n := r.n.Load()
	for id := uint32(0); id < n; id++ {
		if r.state(id).entries.Load() > 0 {
			live++
		}
	}
	return live
}
