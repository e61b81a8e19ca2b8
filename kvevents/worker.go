package kvevents

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// worker applies the messages of the pods hashed to it, one at a time, so
// each pod's events reach the index in order. Everything in it is owned by
// its goroutine.
type worker struct {
	p       *Pool
	ch      chan msg
	done    chan replayResult
	replays sync.WaitGroup // replay fetches in flight
	dec     *Decoder

	keys       []kvblock.Key
	check      []kvblock.Key
	extraHeads [][]blockhash.ExtraKey
	extraItems []blockhash.ExtraKey
	tokenHash  map[int]*blockhash.TokenHasher // by block size

	// dirty are the streams whose index writes failed, waiting for the
	// backend to answer again (see resync.go).
	dirty map[*stream]struct{}
}

type replayResult struct {
	s    *stream
	msgs []replayed
	err  error
}

func newWorker(p *Pool, _ int) *worker {
	return &worker{
		p:         p,
		ch:        make(chan msg, p.cfg.QueueSize),
		done:      make(chan replayResult, 1),
		dec:       NewDecoder(),
		tokenHash: make(map[int]*blockhash.TokenHasher),
		dirty:     make(map[*stream]struct{}),
	}
}

func (w *worker) run(ctx context.Context) {
	var retry *time.Timer
	var retryC <-chan time.Time // armed while streams wait for a resync
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-w.ch:
			w.handle(ctx, m)
		case r := <-w.done:
			w.finishReplay(ctx, r)
		case <-retryC:
			retryC = nil
			w.retryResyncs(ctx)
		}
		if len(w.dirty) > 0 && retryC == nil {
			if retry == nil {
				retry = time.NewTimer(w.p.cfg.ResyncInterval)
			} else {
				retry.Reset(w.p.cfg.ResyncInterval)
			}
			retryC = retry.C
		}
	}
}

// handle processes one live message. Its payload bytes, charged by the
// receiver, are released here unless the message is held for later.
func (w *worker) handle(ctx context.Context, m msg) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed.Load() {
		w.p.release(m)
		return
	}
	if s.replaying || s.resync {
		if len(s.held) >= w.p.cfg.MaxHeld {
			w.p.c.droppedHeld.Add(1)
			w.p.release(m)
			return
		}
		s.held = append(s.held, m)
		return
	}
	if !w.sequenced(ctx, s, m) {
		w.p.release(m)
	}
}

// sequenced applies m if it is the next message of s, starts a replay to
// fill the gap before it, or handles a restart. It reports whether it kept
// m in s.held. s.mu must be held.
func (w *worker) sequenced(ctx context.Context, s *stream, m msg) (held bool) {
	p := w.p
	switch {
	case !s.started:
		// The first message sets the baseline: publishers start at 0 or
		// 1, and a pod added late is joined mid-stream.
		s.started = true
		s.first = m.seq
	case m.seq == s.next:
		s.dupFrom, s.dupTo = 0, 0 // live copies arrive in order: none are left
	case m.seq > s.next:
		s.dupFrom, s.dupTo = 0, 0
		p.c.gaps.Add(1)
		if ep := s.replayEndpoint(); ep != "" {
			p.log.Info("sequence gap: replaying", "pod", s.label, "expected", s.next, "got", m.seq)
			s.replaying = true
			s.held = append(s.held, m)
			w.startReplay(ctx, s, ep, s.next)
			return true
		}
		p.c.lost.Add(m.seq - s.next)
		p.log.Info("sequence gap: messages lost, pod has no replay endpoint", "pod", s.label, "expected", s.next, "got", m.seq, "lost", m.seq-s.next)
	case m.seq >= s.dupFrom && m.seq < s.dupTo:
		return false // the live copy of a message a replay already applied
	default:
		p.c.restarts.Add(1)
		p.log.Info("sequence went backwards: engine restarted, clearing its blocks", "pod", s.label, "expected", s.next, "got", m.seq)
		w.clearPod(ctx, s)
		s.next, s.first = 0, 0
		return w.sequenced(ctx, s, m) // from 0: replays what came before m, if anything
	}
	w.apply(ctx, s, m.seq, m.payload, false)
	return false
}

func (w *worker) startReplay(ctx context.Context, s *stream, endpoint string, from uint64) {
	timeout := w.p.cfg.ReplayTimeout
	w.replays.Go(func() {
		msgs, err := fetchReplay(ctx, endpoint, from, timeout, w.p.cfg.Limits)
		select {
		case w.done <- replayResult{s: s, msgs: msgs, err: err}:
		case <-ctx.Done():
		}
	})
}

// finishReplay applies a replay's messages, then the live ones held while it
// ran. Whatever neither covers is counted lost rather than replayed again:
// vLLM can skip sequence numbers for good (a batch that failed to encode).
func (w *worker) finishReplay(ctx context.Context, r replayResult) {
	s, p := r.s, w.p
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed.Load() {
		p.releaseHeldLocked(s)
		return
	}
	s.replaying = false
	if s.resyncing {
		w.finishResync(ctx, s, r)
		w.releaseHeld(ctx, s)
		return
	}
	if r.err != nil {
		p.c.replayFailures.Add(1)
		p.log.Error(r.err, "replay failed; the gap's events are lost", "pod", s.label, "from", s.next, "received", len(r.msgs))
	} else {
		p.c.replays.Add(1)
		p.log.V(1).Info("replay applied", "pod", s.label, "from", s.next, "messages", len(r.msgs))
	}
	if len(r.msgs) > 0 {
		// The replay can run ahead of the live stream: the live copies of
		// what it applied will arrive later and are not a restart.
		s.dupFrom, s.dupTo = s.next, r.msgs[len(r.msgs)-1].seq+1
	}
	for _, m := range r.msgs {
		if s.removed.Load() {
			p.releaseHeldLocked(s)
			return
		}
		if m.seq < s.next {
			continue // applied already
		}
		if m.seq > s.next {
			p.c.lost.Add(m.seq - s.next)
		}
		w.apply(ctx, s, m.seq, m.payload, true)
	}
	w.releaseHeld(ctx, s)
}

// releaseHeld processes the live messages held while s replayed or waited
// for a resync. s.mu must be held.
func (w *worker) releaseHeld(ctx context.Context, s *stream) {
	p := w.p
	held := s.held
	s.held = nil
	if s.started && len(held) > 0 && held[0].seq > s.next { // (a cold stream starts at its first held message)
		p.c.lost.Add(held[0].seq - s.next)
		s.next = held[0].seq
	}
	for i, m := range held {
		if s.removed.Load() { // by an observer, while the lock was released
			for _, m := range held[i:] {
				p.release(m)
			}
			return
		}
		if s.replaying || s.resync { // a later gap started another replay, or the index failed again
			s.held = append(s.held, held[i:]...)
			return
		}
		restarted := i > 0 && m.seq <= held[i-1].seq
		if m.seq < s.next && !restarted {
			p.release(m)
			continue // the replay covered it
		}
		if !w.sequenced(ctx, s, m) {
			p.release(m)
		}
	}
}

// apply decodes one message and applies its events. s.mu must be held.
func (w *worker) apply(ctx context.Context, s *stream, seq uint64, payload []byte, fromReplay bool) {
	p := w.p
	s.next = seq + 1
	b, err := w.dec.Decode(payload)
	if err != nil {
		p.c.malformedBatches.Add(1)
		if p.log.V(1).Enabled() {
			p.log.V(1).Info("skipping malformed batch", "pod", s.label, "seq", seq, "error", err.Error())
		}
		return
	}
	if b.UnknownTags|b.UnknownFields|b.MalformedEvents != 0 {
		p.c.unknownTags.Add(uint64(b.UnknownTags))
		p.c.unknownFields.Add(uint64(b.UnknownFields))
		p.c.malformedEvents.Add(uint64(b.MalformedEvents))
	}
	if r, over := p.cfg.Limits.overLimits(b); over {
		p.reject(s, r, "rejected a message over a limit", "seq", seq, "events", len(b.Events))
		return
	}
	if l := &p.cfg.Limits; l.EventsPerSecond > 0 && !s.rate.take(len(b.Events), l.EventsPerSecond, l.EventsBurst, p.clock.Load()) {
		p.reject(s, RejectRate, "rejected a message: the pod is over its rate of events", "seq", seq, "events", len(b.Events))
		return
	}
	if b.HasRank && (b.DPRank < 0 || b.DPRank >= p.cfg.DataParallelSize) {
		p.unknownRank(s, b.DPRank)
	}
	s.lastMessage.Store(time.Now().UnixNano())
	if p.observe != nil {
		// Outside the stream's lock, so that the observer may call
		// RemovePod; b stays valid, as only this worker decodes into it.
		s.mu.Unlock()
		p.observe(Message{Pod: s.pod, Seq: seq, Replayed: fromReplay, Batch: b})
		s.mu.Lock()
		if s.removed.Load() {
			return
		}
	}
	if p.index == nil {
		return
	}
	for i := range b.Events {
		if s.resync {
			return // the index failed: the rest waits for the resync
		}
		w.applyEvent(ctx, s, &b.Events[i])
	}
	p.c.applied.Add(uint64(len(b.Events)))
}

// unknownRank counts and logs (at most once a second) a batch naming a
// data-parallel rank the configuration does not have.
func (p *Pool) unknownRank(s *stream, rank int) {
	p.c.unknownRank.Add(1)
	if ok, unlogged := p.rankLog.allow(p.clock.Load()); ok {
		p.log.Info("events name a data-parallel rank beyond dataParallelSize: that engine runs more ranks than configured, "+
			"and the extra ranks' events are not followed (raise dataParallelSize)",
			"pod", s.label, "rank", rank, "dataParallelSize", p.cfg.DataParallelSize, "unlogged", unlogged)
	}
}

// tier returns the index tier of an event's medium, counting media the
// table does not name.
func (w *worker) tier(medium string) kvblock.Tier {
	t, ok := w.p.cfg.Media.Tier(medium)
	if !ok {
		w.p.c.unknownMedia.Add(1)
	}
	return t
}

func (w *worker) applyEvent(ctx context.Context, s *stream, ev *Event) {
	p := w.p
	var err error
	switch ev.Kind {
	case BlockStored:
		keys := w.storedKeys(s, ev)
		if len(keys) == 0 {
			break
		}
		tier := w.tier(ev.Medium)
		var g kvblock.Group // Add's: group 0, full attention
		if ev.HasGroupIdx || ev.SpecKind != "" {
			g = eventGroup(ev)
			err = kvblock.AddGroup(ctx, p.index, s.pod, tier, g, keys)
		} else {
			err = p.index.Add(ctx, s.pod, tier, keys)
		}
		if err == nil {
			w.storedAfter(ctx, s, ev, tier, g)
		}
	case BlockRemoved:
		keys := w.removedKeys(s, ev)
		switch {
		case len(keys) == 0:
		case ev.HasGroupIdx:
			err = kvblock.RemoveGroup(ctx, p.index, s.pod, w.tier(ev.Medium), ev.GroupIdx, keys)
		default:
			err = p.index.Remove(ctx, s.pod, w.tier(ev.Medium), keys)
		}
	case AllBlocksCleared:
		w.clearPod(ctx, s)
	}
	if err != nil {
		w.indexError(s, err)
	}
}

// eventGroup describes the KV-cache group a BlockStored event was emitted
// for (vLLM's group_idx and kv_cache_spec_* fields).
func eventGroup(ev *Event) kvblock.Group {
	g := kvblock.Group{Index: ev.GroupIdx, Kind: kvblock.GroupKindOf(ev.SpecKind), BlockSize: ev.BlockSize}
	if ev.HasSlidingWindow && ev.SlidingWindow > 0 && ev.SlidingWindow <= math.MaxInt32 {
		g.SlidingWindow = int(ev.SlidingWindow)
	}
	return g
}

func (w *worker) clearPod(ctx context.Context, s *stream) {
	if s.engine != nil {
		s.engine.clear()
	}
	if w.p.index == nil {
		return
	}
	if err := w.p.index.ClearPod(ctx, s.pod); err != nil {
		w.indexError(s, err)
	}
}

// indexError counts a failed index write and starts a resync of s: the
// index can no longer vouch for the pod's blocks.
func (w *worker) indexError(s *stream, err error) {
	w.p.c.indexErrors.Add(1)
	if w.p.log.V(1).Enabled() {
		w.p.log.V(1).Info("index update failed", "pod", s.label, "error", err.Error())
	}
	w.startResync(s, err)
}

// storedKeys returns the index keys of a BlockStored, in w.keys.
func (w *worker) storedKeys(s *stream, ev *Event) []kvblock.Key {
	if s.engine != nil {
		return w.tokenKeys(s, ev)
	}
	w.keys = w.keys[:0]
	for _, h := range ev.BlockHashes {
		w.keys = append(w.keys, kvblock.Key(h))
	}
	if w.p.hasher != nil && !ev.HasParent && len(ev.TokenIDs) > 0 {
		w.checkHashes(s, ev)
	}
	return w.keys
}

// removedKeys returns the index keys of a BlockRemoved, in w.keys.
func (w *worker) removedKeys(s *stream, ev *Event) []kvblock.Key {
	w.keys = w.keys[:0]
	if s.engine == nil {
		for _, h := range ev.BlockHashes {
			w.keys = append(w.keys, kvblock.Key(h))
		}
		return w.keys
	}
	for _, h := range ev.BlockHashes {
		if k, ok := s.engine.release(h); ok {
			w.keys = append(w.keys, k)
		} else {
			w.p.c.unresolved.Add(1)
		}
	}
	return w.keys
}

// extraKeys converts an event's extra keys for the first n blocks to
// kvblock's, reusing w's buffers. ok is false if an item has a type the
// hashers do not know.
func (w *worker) extraKeys(ev *Event, n int) (_ [][]blockhash.ExtraKey, ok bool) {
	if ev.ExtraKeys == nil {
		return nil, true
	}
	if len(ev.ExtraKeys) < n {
		return nil, false
	}
	w.extraHeads = w.extraHeads[:0]
	w.extraItems = w.extraItems[:0]
	for _, block := range ev.ExtraKeys[:n] {
		if block == nil {
			w.extraHeads = append(w.extraHeads, nil)
			continue
		}
		first := len(w.extraItems)
		for _, k := range block {
			var x blockhash.ExtraKey
			switch k.Kind {
			case ExtraStr:
				x = blockhash.ExtraString(k.Str)
			case ExtraInt:
				x = blockhash.ExtraInt(k.Int)
			case ExtraMM:
				x = blockhash.ExtraMM(k.Str, k.Int)
			case ExtraBytes:
				x = blockhash.ExtraBytes(k.Bytes)
			default:
				return nil, false
			}
			w.extraItems = append(w.extraItems, x)
		}
		w.extraHeads = append(w.extraHeads, w.extraItems[first:len(w.extraItems):len(w.extraItems)])
	}
	return w.extraHeads, true
}

// checkHashes recomputes the hashes of a store that starts at the root and
// counts a mismatch; the first one per pod is logged with its likely cause.
func (w *worker) checkHashes(s *stream, ev *Event) {
	p := w.p
	bs := p.cfg.Hash.BlockSize
	n := min(len(ev.BlockHashes), len(ev.TokenIDs)/bs)
	if n == 0 {
		return
	}
	extra, ok := w.extraKeys(ev, n)
	if !ok {
		return
	}
	var err error
	w.check, err = p.hasher.BlockKeys(w.check[:0], ev.TokenIDs[:n*bs], extra)
	if err != nil {
		return
	}
	match := ev.BlockSize == 0 || ev.BlockSize == bs
	for i := range n {
		if uint64(w.check[i]) != ev.BlockHashes[i] {
			match = false
			break
		}
	}
	if match {
		return
	}
	p.c.hashMismatches.Add(1)
	if s.warnedHash {
		return
	}
	s.warnedHash = true
	published := make([]kvblock.Key, len(ev.BlockHashes))
	for i, h := range ev.BlockHashes {
		published[i] = kvblock.Key(h)
	}
	d := blockhash.DiagnoseHashes(p.cfg.Hash, ev.BlockSize, ev.TokenIDs, extra, published)
	p.log.Info("block hashes published by the pod do not match kvtrack's: requests will not find its cached blocks. "+
		"The engine's PYTHONHASHSEED, --prefix-caching-hash-algo or --block-size differs from the configured hash seed, algorithm or block size",
		"pod", s.label, "algorithm", p.cfg.Hash.Algorithm, "blockSize", bs, "engineBlockSize", ev.BlockSize,
		"diagnosis", d.Verdict.String(), "fix", d.Fix())
}

// tokenKeys derives a BlockStored's keys from its token ids (tokens
// scheme), chained from the key its parent's engine hash mapped to, and
// records engine hash -> key for later removes.
func (w *worker) tokenKeys(s *stream, ev *Event) []kvblock.Key {
	p := w.p
	bs := p.cfg.Hash.BlockSize
	if bs == 0 {
		bs = ev.BlockSize
	}
	if bs <= 0 {
		p.c.unresolved.Add(1)
		return nil
	}
	var parent kvblock.Key
	if ev.HasParent {
		k, ok := s.engine.get(ev.ParentHash)
		if !ok {
			p.c.unresolved.Add(1) // joined mid-chain, or the parent's mapping was evicted
			return nil
		}
		parent = k
	}
	n := min(len(ev.BlockHashes), len(ev.TokenIDs)/bs)
	if n < len(ev.BlockHashes) {
		p.c.unresolved.Add(uint64(len(ev.BlockHashes) - n))
	}
	extra, ok := w.extraKeys(ev, n)
	if !ok {
		extra = nil
	}
	th := w.tokenHash[bs]
	if th == nil {
		var err error
		if th, err = blockhash.NewTokenHasher(bs); err != nil {
			p.c.unresolved.Add(1)
			return nil
		}
		w.tokenHash[bs] = th
	}
	var err error
	w.keys, err = th.BlockKeys(w.keys[:0], parent, ev.TokenIDs[:n*bs], extra)
	if err != nil {
		p.c.unresolved.Add(1)
		return nil
	}
	for i, k := range w.keys {
		s.engine.put(ev.BlockHashes[i], k)
	}
	return w.keys
}

// engineKeys maps a pod's engine hashes to token-derived keys, counting
// references as the index does. It is bounded: past max entries, arbitrary
// entries (Go's map order) are forgotten.
type engineKeys struct {
	max int
	m   map[uint64]engineKey
}

type engineKey struct {
	key  kvblock.Key
	refs uint32
}

func newEngineKeys(max int) *engineKeys {
	return &engineKeys{max: max, m: make(map[uint64]engineKey)}
}

func (e *engineKeys) get(h uint64) (kvblock.Key, bool) {
	k, ok := e.m[h]
	return k.key, ok
}

func (e *engineKeys) put(h uint64, k kvblock.Key) {
	if old, ok := e.m[h]; ok {
		e.m[h] = engineKey{key: k, refs: old.refs + 1}
		return
	}
	if len(e.m) >= e.max {
		drop := max(e.max/8, 1)
		for h := range e.m {
			delete(e.m, h)
			if drop--; drop == 0 {
				break
			}
		}
	}
	e.m[h] = engineKey{key: k, refs: 1}
}

// release drops one reference to h and returns its key.
func (e *engineKeys) release(h uint64) (kvblock.Key, bool) {
	k, ok := e.m[h]
	if !ok {
		return 0, false
	}
	if k.refs <= 1 {
		delete(e.m, h)
	} else {
		k.refs--
		e.m[h] = k
	}
	return k.key, true
}

func (e *engineKeys) clear() { clear(e.m) }
