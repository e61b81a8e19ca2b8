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

// speculator records speculative entries and retires each when the engine
// confirms the block (its BlockStored for that pod arrives: from then on the
// index holds the truth, evictions included) or after the TTL, whichever
// comes first. A stored block also confirms the speculative blocks before it
// in its chain: the engine stores block j of a request only once the request
// is scheduled with blocks 0..j-1 in that pod's cache, and the blocks it
// found cached produce no event of their own. Without that, the cached part
// of a routed prompt (all but the new turn of a chat) would stay speculative
// for the whole TTL and outlive its eviction. The TTL therefore bounds only
// requests that never ran, and can be long enough to cover queueing and
// prefill. The TTL is the same for every entry, so expiry order is insertion
// order and a FIFO queue suffices.
type speculator struct {
	index kvblock.Index
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex // guards queue, live and pending, and orders writes to due
	queue   []specEntry
	pending int // keys in queue
	// live counts the speculative references in the index per (pod, key)
	// that neither expired nor were confirmed, with the key's parent.
	live map[specKey]liveRef

	// expiring serialises expiry passes, their index removals included, so
	// that a Score finding an entry due waits for a pass already removing it.
	expiring sync.Mutex
	// due is the earliest deadline (UnixNano) among entries queued or being
	// removed, math.MaxInt64 when there are none: Score's cheap test.
	due atomic.Int64
	// nlive is len(live): the event path's cheap test.
	nlive atomic.Int64

	dropped atomic.Uint64

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

// liveRef is a (pod, key)'s live speculative references and the key before
// it in the chain it was recorded in. A key's hash covers its whole prefix,
// so its parent is the same in every request that holds it.
type liveRef struct {
	n         int32
	parent    kvblock.Key
	hasParent bool
}

type specEntry struct {
	deadline time.Time
	pod      kvblock.Pod
	keys     []kvblock.Key
}

func newSpeculator(index kvblock.Index, ttl time.Duration, now func() time.Time) *speculator {
	s := &speculator{index: index, ttl: ttl, now: now, live: make(map[specKey]liveRef)}
	s.due.Store(math.MaxInt64)
	return s
}

func (s *speculator) record(ctx context.Context, p kvblock.Pod, keys []kvblock.Key) error {
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
	// The index reference comes first and is counted live after: a
	// confirmation racing in between finds nothing live and leaves the
	// reference to expire, where the other order would leak it.
	if err := kvblock.AddGroup(ctx, s.index, p, speculativeTier, specGroup, keys); err != nil {
		return err
	}
	deadline := s.now().Add(s.ttl)
	s.mu.Lock()
	// Own a copy: the caller's slice belongs to its Result.
	s.queue = append(s.queue, specEntry{deadline: deadline, pod: p, keys: append([]kvblock.Key(nil), keys...)})
	s.pending += len(keys)
	for i, k := range keys {
		sk := specKey{p, k}
		r := s.live[sk]
		r.n++
		if i > 0 {
			r.parent, r.hasParent = keys[i-1], true
		}
		s.live[sk] = r
	}
	s.nlive.Store(int64(len(s.live)))
	if d := deadline.UnixNano(); d < s.due.Load() {
		s.due.Store(d)
	}
	s.mu.Unlock()
	return nil
}

// confirm retires the speculative references to keys on pod, and to the
// live keys before each of them in its chain: the engine has stored them or
// holds them as the cached prefix of what it stored, so the index's own
// entries now say whether pod holds them, and an eviction will show.
func (s *speculator) confirm(ctx context.Context, pod kvblock.Pod, keys []kvblock.Key) {
	if s.nlive.Load() == 0 {
		return
	}
	var refs [][]kvblock.Key // refs[i]: keys with more than i references
	s.mu.Lock()
	for _, k := range keys {
		// Walk back from k while the chain is speculative; a retired key's
		// parents were retired with it, so each key is visited once.
		for sk := (specKey{pod, k}); ; {
			r, ok := s.live[sk]
			if !ok {
				break
			}
			delete(s.live, sk)
			for i := range int(r.n) {
				if i == len(refs) {
					refs = append(refs, nil)
				}
				refs[i] = append(refs[i], sk.key)
			}
			if !r.hasParent {
				break
			}
			sk.key = r.parent
		}
	}
	s.nlive.Store(int64(len(s.live)))
	s.mu.Unlock()
	for _, ks := range refs {
		s.remove(ctx, pod, ks)
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
		// Keys confirmed meanwhile hold no reference any more.
		keep := e.keys[:0]
		for _, k := range e.keys {
			sk := specKey{e.pod, k}
			if r := s.live[sk]; r.n > 0 {
				if r.n == 1 {
					delete(s.live, sk)
				} else {
					r.n--
					s.live[sk] = r
				}
				keep = append(keep, k)
			}
		}
		if len(keep) > 0 {
			removals = append(removals, specRemoval{e.pod, keep})
		}
	}
	s.nlive.Store(int64(len(s.live)))
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
			live := s.live
			s.queue, s.pending, s.live = nil, 0, make(map[specKey]liveRef)
			s.nlive.Store(0)
			s.due.Store(math.MaxInt64)
			s.mu.Unlock()
			bg := context.WithoutCancel(ctx)
			s.retryFailed(bg)
			for sk, r := range live {
				for range r.n {
					s.remove(bg, sk.pod, []kvblock.Key{sk.key})
				}
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
	if err == nil && tier != speculativeTier {
		c.spec.confirm(ctx, pod, keys)
	}
	return err
}

// AddGroup is Add for one KV-cache group of a hybrid model.
func (c confirmingIndex) AddGroup(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, g kvblock.Group, keys []kvblock.Key) error {
	err := kvblock.AddGroup(ctx, c.Index, pod, tier, g, keys)
	if err == nil && tier != speculativeTier {
		c.spec.confirm(ctx, pod, keys)
	}
	return err
}

// RemoveGroup is Remove for one KV-cache group of a hybrid model.
func (c confirmingIndex) RemoveGroup(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, group int, keys []kvblock.Key) error {
	return kvblock.RemoveGroup(ctx, c.Index, pod, tier, group, keys)
}
