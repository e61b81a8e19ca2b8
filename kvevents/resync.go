package kvevents

// Resync after an index backend outage. When a write for a pod fails (a
// Redis that is down, restarting or timing out), the index can no longer
// vouch for that pod's blocks: some events are missing, and a backend that
// restarted without persistence has lost the rest. The stream is then
// marked for a resync and its live messages are held (bounded by MaxHeld).
// Every Config.ResyncInterval its worker clears the pod in the index; the
// first clear that succeeds shows the backend answers again, and:
//
//   - with a replay endpoint, the pod's history is replayed from the first
//     sequence number the stream applied. If the engine still buffers it,
//     the index is rebuilt to the engine's state (counted "replayed");
//   - otherwise (no replay endpoint, the history is out of the engine's
//     buffer, or the replay fails) the pod stays cleared and goes cold: it
//     fills again from new events, the held ones first (counted "cleared").
//
// Either way no block survives that the index cannot vouch for.

import (
	"context"
)

// startResync marks s for a resync after a failed index write. s.mu must
// be held, by s's worker.
func (w *worker) startResync(s *stream, err error) {
	if s.resync {
		return
	}
	s.resync = true
	w.dirty[s] = struct{}{}
	p := w.p
	if ok, unlogged := p.resyncLog.allow(p.clock.Load()); ok {
		p.log.Info("index backend failed a write: the pod's blocks are no longer vouched for; "+
			"holding its events and resyncing once the backend answers", "pod", s.label, "error", err.Error(), "unlogged", unlogged)
	}
}

// retryResyncs tries, for each stream waiting for a resync, to clear its
// pod; where the backend answers, the resync proceeds.
func (w *worker) retryResyncs(ctx context.Context) {
	p := w.p
	for s := range w.dirty {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		switch {
		case s.removed.Load():
			delete(w.dirty, s)
		case s.replaying:
			// A gap's replay is in flight; wait for it.
		case p.index == nil || p.index.ClearPod(ctx, s.pod) == nil:
			delete(w.dirty, s)
			s.resync = false
			if s.engine != nil {
				s.engine.clear()
			}
			s.dupFrom, s.dupTo = 0, 0
			if ep := s.replayEndpoint(); ep != "" && s.started {
				p.log.Info("index backend answers again: replaying the pod's events", "pod", s.label, "from", s.first)
				s.replaying, s.resyncing = true, true
				w.startReplay(ctx, s, ep, s.first)
			} else {
				w.goCold(s, "the pod has no replay endpoint")
				w.releaseHeld(ctx, s)
			}
		}
		s.mu.Unlock()
	}
}

// finishResync applies a resync's replay if it covers the stream's whole
// history, and otherwise leaves the pod cleared and cold. s.mu must be
// held.
func (w *worker) finishResync(ctx context.Context, s *stream, r replayResult) {
	p := w.p
	s.resyncing = false
	switch {
	case r.err != nil:
		w.goCold(s, "the replay failed: "+r.err.Error())
		return
	case len(r.msgs) == 0 || r.msgs[0].seq != s.first:
		w.goCold(s, "the engine no longer buffers the pod's first events")
		return
	}
	s.next = s.first
	for _, m := range r.msgs {
		if s.removed.Load() || s.resync {
			return // removed by an observer, or the index failed again
		}
		if m.seq < s.next {
			continue
		}
		if m.seq > s.next {
			p.c.lost.Add(m.seq - s.next)
		}
		w.apply(ctx, s, m.seq, m.payload, true)
	}
	if s.resync {
		return
	}
	s.dupFrom, s.dupTo = s.first, s.next // live copies of the replayed messages may follow
	p.c.resynced.Add(1)
	p.log.Info("pod resynced from its replay endpoint after an index backend failure", "pod", s.label, "messages", len(r.msgs))
}

// goCold leaves a cleared pod to fill again from new events. s.mu must be
// held.
func (w *worker) goCold(s *stream, why string) {
	p := w.p
	s.started, s.next, s.first = false, 0, 0
	s.dupFrom, s.dupTo = 0, 0
	p.c.resyncCleared.Add(1)
	p.log.Info("pod cleared after an index backend failure, and cold: it fills again from new events", "pod", s.label, "why", why)
}
