package kvcache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// speculativeMedium is the medium speculative entries are stored under. A
// tier of their own keeps them out of the reference counts of the entries
// the engine's events create: when a speculative entry expires it removes
// only its own reference, whatever the events did meanwhile.
var speculativeTier = kvblock.TierOf(speculativeMediumName)

// maxSpeculativeKeys bounds the keys waiting to expire, so a request flood
// cannot grow the queue without limit; past it new records are dropped.
const maxSpeculativeKeys = 1 << 22

// speculator records speculative entries and removes each after the TTL.
// The TTL is the same for every entry, so expiry order is insertion order
// and a FIFO queue suffices.
type speculator struct {
	index kvblock.Index
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex // guards queue and pending
	queue   []specEntry
	pending int // keys in queue

	dropped atomic.Uint64
}

type specEntry struct {
	deadline time.Time
	pod      kvblock.Pod
	keys     []kvblock.Key
}

func newSpeculator(index kvblock.Index, ttl time.Duration, now func() time.Time) *speculator {
	return &speculator{index: index, ttl: ttl, now: now}
}

func (s *speculator) record(ctx context.Context, pod string, keys []kvblock.Key) error {
	// Expire what is due first: with a modelled clock (WithClock) the
	// ticker in run is not what moves time forward.
	s.expire(ctx)
	p := kvblock.Pod{Addr: pod}
	s.mu.Lock()
	if s.pending+len(keys) > maxSpeculativeKeys {
		s.mu.Unlock()
		s.dropped.Add(1)
		return nil
	}
	// Own a copy: the caller's slice belongs to its Result.
	s.queue = append(s.queue, specEntry{deadline: s.now().Add(s.ttl), pod: p, keys: append([]kvblock.Key(nil), keys...)})
	s.pending += len(keys)
	s.mu.Unlock()
	return s.index.Add(ctx, p, speculativeTier, keys)
}

// expire removes the entries whose deadline has passed and reports how long
// until the next one is due (0 when none is queued).
func (s *speculator) expire(ctx context.Context) time.Duration {
	now := s.now()
	s.mu.Lock()
	n := 0
	for n < len(s.queue) && !s.queue[n].deadline.After(now) {
		n++
	}
	due := append([]specEntry(nil), s.queue[:n]...)
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	var next time.Duration
	if len(s.queue) > 0 {
		next = s.queue[0].deadline.Sub(now)
	}
	for _, e := range due {
		s.pending -= len(e.keys)
	}
	s.mu.Unlock()
	// Index calls happen outside the lock: a slow remote index must not
	// block record.
	for _, e := range due {
		_ = s.index.Remove(ctx, e.pod, speculativeTier, e.keys)
	}
	return next
}

// run expires entries until ctx is done, then removes every entry still
// queued so that nothing speculative outlives the Indexer.
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
			s.mu.Lock()
			rest := s.queue
			s.queue, s.pending = nil, 0
			s.mu.Unlock()
			for _, e := range rest {
				_ = s.index.Remove(context.WithoutCancel(ctx), e.pod, speculativeTier, e.keys)
			}
			return
		case <-t.C:
			s.expire(ctx)
		}
	}
}
