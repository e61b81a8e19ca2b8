package kvcache

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// speculativeTier is the tier speculative entries are stored under. A tier
// of their own keeps them out of the reference counts of the entries the
// engine's events create: a speculative reference is removed on its own,
// whatever the events did meanwhile. No event medium maps to it.
const speculativeTier = kvblock.TierSpeculative

// maxSpeculativeKeys bounds the keys waiting to expire, so a request flood
// cannot grow the queue without limit; past it new records are dropped.
const maxSpeculativeKeys = 1 << 22

// speculator records speculative entries, one per routed request, and
// retires each when the engine shows the request has been scheduled (the
// pod's BlockStored of the request's last block arrives: from then on the
// index holds the truth, evictions included) or after the TTL, whichever
// comes first.
//
// An entry belongs to its request, not to its blocks. The engine stores
// the last block of a request only once the request is scheduled with
// every block before it in that pod's cache (vLLM always recomputes a
// prompt's last block, and publishes it even when an identical copy is
// cached), so that store confirms the whole entry; the blocks it found
// cached produce no event of their own. A prompt that continues past its
// last full block (partialTail) and whose full blocks were all cached
// stores nothing when it is scheduled: its first store is the block its
// output completes, whose parent is the entry's last key, and that
// confirms the entry instead. Such a run may also be the output of another
// request for the same prompt, which ends this entry while its request
// still waits; that error lasts a queue wait, where leaving the entry to
// its TTL would hide the blocks' eviction for the whole TTL. A prompt that
// ends at a block boundary always stores its last block (vLLM recomputes
// it), so a run after that block confirms nothing. A store of any other of its blocks
// says nothing about the request: another request sharing the prefix ran,
// and if the pod evicts those blocks before this request leaves its queue,
// the request will compute them again. Retiring the entry on such a store
// would lose its claim exactly when the pod is under pressure. The TTL
// therefore bounds only requests that never ran, and can be long enough to
// cover queueing and prefill. It is the same for every entry, so expiry
// order is insertion order and a FIFO queue suffices. A hybrid model
// stores each block once per KV-cache group; only one group's stores
// count, so that one request retires one entry (see confirmer).
type speculator struct {
	index kvblock.Index
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex // guards queue, waiting and pending, and orders writes to due
	queue   []*specEntry
	pending int // keys in queue
	// waiting holds the live entries by pod and last key, oldest first:
	// the store of that key on that pod confirms the oldest.
	waiting map[specKey][]*specEntry

	// expiring serialises expiry passes, their index removals included, so
	// that a Score finding an entry due waits for a pass already removing it.
	expiring sync.Mutex
	// due is the earliest deadline (UnixNano) among entries queued or being
	// removed, math.MaxInt64 when there are none: Score's cheap test.
	due atomic.Int64
	// nlive is the number of live entries: the event path's cheap test.
	nlive atomic.Int64

	dropped atomic.Uint64

	// confirmers maps a pod to the KV-cache group whose stores confirm its
	// entries (a confirmer): a hybrid model stores each block once per
	// group, and one store is one request.
	confirmers sync.Map

	// failed holds removals the index refused (a Redis outage), retried
	// at every expiry pass so that no speculative entry outlives its end;
	// bounded by maxSpeculativeKeys keys, past which they are dropped and
	// left to the index's own expiry.
	failedMu   sync.Mutex
	failed     []specRemoval
	failedKeys int
	// removeErrors counts index removals that failed, retries included.
	removeErrors atomic.Uint64
}

// specRemoval is one index removal of speculative references.
type specRemoval struct {
	pod  kvblock.Pod
	keys []kvblock.Key
}

// remove drops speculative references from the index; a failure is
// counted and queued for the next expiry pass.
func (s *speculator) remove(ctx context.Context, pod kvblock.Pod, keys []kvblock.Key) {
	if err := kvblock.RemoveGroup(ctx, s.index, pod, speculativeTier, kvblock.AllGroups, keys); err != nil {
		s.removeErrors.Add(1)
		s.failedMu.Lock()
		if s.failedKeys+len(keys) <= maxSpeculativeKeys {
			s.failed = append(s.failed, specRemoval{pod, keys})
			s.failedKeys += len(keys)
		} else {
			s.dropped.Add(uint64(len(keys)))
		}
		s.failedMu.Unlock()
	}
}

// retryFailed retries the removals that failed before.
func (s *speculator) retryFailed(ctx context.Context) {
	s.failedMu.Lock()
	retry := s.failed
	s.failed, s.failedKeys = nil, 0
	s.failedMu.Unlock()
	for _, r := range retry {
		s.remove(ctx, r.pod, r.keys)
	}
}

// specGroup is the KV-cache group of speculative entries: every group, so
// that a hybrid model's pod counts them in each (the engine will store the
// blocks in all its groups).
var specGroup = kvblock.Group{Index: kvblock.AllGroups}

type specKey struct {
	pod kvblock.Pod // the engine: pod and data-parallel rank
	key kvblock.Key
}

// specEntry is one routed request's speculative reference to each of its
// keys on pod.
type specEntry struct {
	deadline time.Time
	pod      kvblock.Pod
	keys     []kvblock.Key
	// partialTail: the prompt continues past keys (see speculator).
	partialTail bool
	// done is set, under speculator.mu, once the entry is confirmed or
	// expired: its references are then removed or being removed.
	done bool
}

// confirmer is the KV-cache group whose stores confirm a pod's entries:
// its lowest-indexed full-attention group, which stores every block a
// request computes, or, while its events name none, its lowest-indexed
// group. The zero value is group 0, full attention: a model without hybrid
// attention.
type confirmer struct {
	index   int
	partial bool // not full attention
}

func (c confirmer) before(d confirmer) bool {
	return !c.partial && d.partial || c.partial == d.partial && c.index < d.index
}

// confirms reports whether a store in group g on pod confirms entries,
// learning the pod's groups as their events arrive. A pod's first store
// in a group that ranks after one it has not shown yet confirms too (it
// cannot know of that group); its groups are known from then on.
func (s *speculator) confirms(pod kvblock.Pod, g kvblock.Group) bool {
	c := confirmer{g.Index, g.Kind != kvblock.GroupFull}
	if v, ok := s.confirmers.Load(pod); ok {
		cur := v.(confirmer)
		if !c.before(cur) {
			return c.index == cur.index
		}
	} else if c == (confirmer{}) {
		return true // group 0, full attention: nothing to learn
	}
	s.confirmers.Store(pod, c)
	return true
}

// forget drops what confirms learnt of pod, whose engine may come back
// with another model.
func (s *speculator) forget(pod kvblock.Pod) { s.confirmers.Delete(pod) }

func (e *specEntry) last() specKey { return specKey{e.pod, e.keys[len(e.keys)-1]} }

func newSpeculator(index kvblock.Index, ttl time.Duration, now func() time.Time) *speculator {
	s := &speculator{index: index, ttl: ttl, now: now, waiting: make(map[specKey][]*specEntry)}
	s.due.Store(math.MaxInt64)
	return s
}

func (s *speculator) record(ctx context.Context, p kvblock.Pod, keys []kvblock.Key, partialTail bool) error {
	if len(keys) == 0 {
		return nil
	}
	// Expire what is due first: with a modelled clock (WithClock) the
	// ticker in run is not what moves time forward.
	s.expireDue(ctx)
	s.mu.Lock()
	full := s.pending+len(keys) > maxSpeculativeKeys
	s.mu.Unlock()
	if full {
		s.dropped.Add(1)
		return nil
	}
	// The index reference comes first and the entry is counted live after:
	// a confirmation racing in between finds nothing waiting and leaves the
	// reference to expire, where the other order would leak it.
	if err := kvblock.AddGroup(ctx, s.index, p, speculativeTier, specGroup, keys); err != nil {
		return err
	}
	// Own a copy: the caller's slice belongs to its Result.
	e := &specEntry{deadline: s.now().Add(s.ttl), pod: p, keys: append([]kvblock.Key(nil), keys...), partialTail: partialTail}
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.pending += len(keys)
	s.waiting[e.last()] = append(s.waiting[e.last()], e)
	s.nlive.Add(1)
	if d := e.deadline.UnixNano(); d < s.due.Load() {
		s.due.Store(d)
	}
	s.mu.Unlock()
	return nil
}

// unwait drops e from the entries waiting on its last key and marks it
// done; the caller holds s.mu.
func (s *speculator) unwait(e *specEntry) {
	e.done = true
	s.nlive.Add(-1)
	k := e.last()
	w := s.waiting[k]
	for i, x := range w {
		if x == e {
			w = append(w[:i:i], w[i+1:]...)
			break
		}
	}
	if len(w) == 0 {
		delete(s.waiting, k)
	} else {
		s.waiting[k] = w
	}
}

// confirm retires, for each of keys the engine stored on pod, the oldest
// live entry whose last key it is: that request has been scheduled, with
// its whole prefix in the pod's cache, so the index's own entries now say
// whether pod holds its blocks, and an eviction will show.
func (s *speculator) confirm(ctx context.Context, pod kvblock.Pod, keys []kvblock.Key) {
	if s.nlive.Load() == 0 {
		return
	}
	var retired []*specEntry
	s.mu.Lock()
	for _, k := range keys {
		if w := s.waiting[specKey{pod, k}]; len(w) > 0 {
			e := w[0]
			s.unwait(e)
			retired = append(retired, e)
		}
	}
	s.mu.Unlock()
	for _, e := range retired {
		s.remove(ctx, pod, e.keys)
	}
}

// confirmAfter retires the oldest live entry on pod with a partial tail
// whose last key is parent, the block before a run the engine stored.
func (s *speculator) confirmAfter(ctx context.Context, pod kvblock.Pod, parent kvblock.Key) {
	if s.nlive.Load() == 0 {
		return
	}
	var retired *specEntry
	s.mu.Lock()
	for _, e := range s.waiting[specKey{pod, parent}] {
		if e.partialTail {
			s.unwait(e)
			retired = e
			break
		}
	}
	s.mu.Unlock()
	if retired != nil {
		s.remove(ctx, pod, retired.keys)
	}
}

// expireDue expires entries if one is due: the request path calls it so
// that no score counts an entry past its TTL, whenever the ticker runs.
func (s *speculator) expireDue(ctx context.Context) {
	if d := s.due.Load(); d != math.MaxInt64 && s.now().UnixNano() >= d {
		s.expire(ctx)
	}
}

// expire removes the entries whose deadline has passed and reports how long
// until the next one is due (0 when none is queued).
func (s *speculator) expire(ctx context.Context) time.Duration {
	s.expiring.Lock()
	defer s.expiring.Unlock()
	now := s.now()
	s.mu.Lock()
	n := 0
	for n < len(s.queue) && !s.queue[n].deadline.After(now) {
		n++
	}
	var removals []specRemoval
	for _, e := range s.queue[:n] {
		s.pending -= len(e.keys)
		// A confirmed entry holds no reference any more.
		if !e.done {
			s.unwait(e)
			removals = append(removals, specRemoval{e.pod, e.keys})
		}
	}
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	var next time.Duration
	if len(s.queue) > 0 {
		next = s.queue[0].deadline.Sub(now)
	}
	s.mu.Unlock()
	// Index calls happen outside the lock: a slow remote index must not
	// block record.
	s.retryFailed(ctx)
	for _, r := range removals {
		s.remove(ctx, r.pod, r.keys)
	}
	// Only now that the removals are done may a Score skip waiting.
	s.mu.Lock()
	if len(s.queue) > 0 {
		s.due.Store(s.queue[0].deadline.UnixNano())
	} else {
		s.due.Store(math.MaxInt64)
	}
	s.mu.Unlock()
	return next
}

// run expires entries until ctx is done, then removes every reference
// still live so that nothing speculative outlives the Indexer.
func (s *speculator) run(ctx context.Context) {
	tick := s.ttl / 8
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.expiring.Lock()
			defer s.expiring.Unlock()
			s.mu.Lock()
			var live []*specEntry
			for _, e := range s.queue {
				if !e.done {
					e.done = true
					live = append(live, e)
				}
			}
			s.queue, s.pending, s.waiting = nil, 0, make(map[specKey][]*specEntry)
			s.nlive.Store(0)
			s.due.Store(math.MaxInt64)
			s.mu.Unlock()
			bg := context.WithoutCancel(ctx)
			s.retryFailed(bg)
			for _, e := range live {
				s.remove(bg, e.pod, e.keys)
			}
			return
		case <-t.C:
			s.expire(ctx)
		}
	}
}

// confirmingIndex is the index as the event path sees it: every block the
// engines store retires the speculative references to it on that pod.
type confirmingIndex struct {
	kvblock.Index
	spec *speculator
}

func (c confirmingIndex) Add(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	err := c.Index.Add(ctx, pod, tier, keys)
	if err == nil && tier != speculativeTier && c.spec.confirms(pod, kvblock.Group{}) {
		c.spec.confirm(ctx, pod, keys)
	}
	return err
}

// AddGroup is Add for one KV-cache group of a hybrid model. Only the
// pod's confirming group's stores confirm entries (see confirmer): the
// others are the same request's blocks again.
func (c confirmingIndex) AddGroup(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, g kvblock.Group, keys []kvblock.Key) error {
	err := kvblock.AddGroup(ctx, c.Index, pod, tier, g, keys)
	if err == nil && tier != speculativeTier && c.spec.confirms(pod, g) {
		c.spec.confirm(ctx, pod, keys)
	}
	return err
}

// StoredAfter is told the block before each run of stored blocks
// (kvevents.ParentObserver); like AddGroup, only the confirming group's
// runs count. Its signature must match kvevents.ParentObserver's, which
// this package cannot name: TestSpeculationSinkObservesParents checks the
// pair.
func (c confirmingIndex) StoredAfter(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, g kvblock.Group, parent kvblock.Key) {
	if tier != speculativeTier && c.spec.confirms(pod, g) {
		c.spec.confirmAfter(ctx, pod, parent)
	}
}

// ClearPod also forgets the pod's groups.
func (c confirmingIndex) ClearPod(ctx context.Context, pod kvblock.Pod) error {
	c.spec.forget(pod)
	return c.Index.ClearPod(ctx, pod)
}

// RemoveGroup is Remove for one KV-cache group of a hybrid model.
func (c confirmingIndex) RemoveGroup(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, group int, keys []kvblock.Key) error {
	return kvblock.RemoveGroup(ctx, c.Index, pod, tier, group, keys)
}
