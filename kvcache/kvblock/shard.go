package kvblock

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// A shard is one lock's worth of the index: an open-addressing hash table
// from a key to its set of (pod, tier, refcount) entries. Nothing in it holds
// a pointer per key, so the garbage collector never scans it.
//
// # Layout
//
// Table: slots of two words, the mixed key and a value word. Linear probing,
// at most 3/4 full, deletion by backward shift (no tombstones). The value
// word of an empty slot is 0.
//
// Value word: bit 63 is the CLOCK reference bit, set when the key is stored
// or found by Score and cleared by the eviction hand. Bit 62 says what the
// low 62 bits hold: a single entry inline (the common case, one pod per
// block), or the handle of a run of entries in the shard's slab.
//
// Entry word: refcount in bits 0-31 (never 0 for a live entry), tier in bits
// 32-36, pod id in bits 37-56, KV-cache group in bits 57-61 (0 for a model
// without hybrid attention, so the group costs nothing there).
//
// Run handle: slab offset in bits 0-31, size class in bits 32-36 (the run
// has room for 1<<class entries), length in bits 37-61.
//
// Slab: one []uint64 per shard holding runs, with a free list per size
// class threaded through the first word of each free run, and compaction
// once less than a quarter of it is live.
//
// # Concurrency
//
// Writers serialise on mu. Readers take no lock: they read the published
// view under a sequence count (a seqlock). A writer makes seq odd while it
// changes the view's arrays in place and even again after; a reader that
// saw seq change, or odd, retries, and after a failed retry takes mu. Work
// that touches a whole shard — growing the table, compacting the slab,
// clearing — builds new arrays on the side and publishes them in one atomic
// store, so readers keep reading the old ones meanwhile and never wait for
// it. Every word a reader may read is written with atomic stores, and slot
// value words, which readers CAS to set the CLOCK bit, are also read
// atomically by writers.
//
// Methods named ...Locked need mu held and, when they change the view in
// place, seq odd; they say so.
type shard struct {
	mu   sync.Mutex // serialises writers; readers take it only after a failed retry
	seq  atomic.Uint64
	view atomic.Pointer[shardView]

	// mu guards the rest. slots and slab are the arrays of view.
	slots    []slot
	slab     []uint64
	keys     int    // occupied slots
	entries  int    // entries over all keys
	limit    int    // entries allowed before the CLOCK hand evicts
	hand     uint64 // CLOCK hand, an index into slots
	gen      uint64 // bumped whenever slots is replaced by one of another size
	slabLive int    // slab words inside allocated runs
	free     [32]uint32

	admissions, evictions, removals uint64

	_ [64]byte // keep neighbouring shards' hot words off each other's cache lines
}

// shardView is what readers see: the table and the whole slab backing array.
type shardView struct {
	slots []slot
	slab  []uint64
}

type slot struct {
	h uint64 // mix(key); mix is a bijection, so h identifies the key
	v uint64 // 0 when empty
}

const (
	clockBit    = 1 << 63
	runBit      = 1 << 62
	payloadMask = runBit - 1

	refMask       = 1<<32 - 1
	tierShift     = 32
	tierMask      = MaxTiers - 1
	podShift      = 37
	podIDBits     = 20
	podIDMask     = 1<<podIDBits - 1
	groupShift    = 57
	groupMask     = MaxGroups - 1
	entryIDMask   = payloadMask &^ refMask // pod and tier, without the refcount
	runOffMask    = 1<<32 - 1
	runClassShift = 32
	runClassMask  = 31
	runLenShift   = 37
	runLenMask    = 1<<25 - 1

	minSlots     = 8
	sweepChunk   = 4096 // slots a ClearPod sweep visits per lock hold
	minSlabWords = 1024 // below this the slab is never compacted
	readRetries  = 2    // optimistic read attempts before a reader takes mu
)

// The entry layout gives tiers and groups 5 bits each, and the group's
// bits must end below runBit; MaxTiers and MaxGroups must match.
var (
	_ = [1]int{}[MaxTiers-32]
	_ = [1]int{}[MaxGroups-32]
	_ = [1]int{}[groupShift+5-62]
)

// mix is the splitmix64 finaliser: a bijection that spreads vLLM hashes and
// small test keys alike over every bit. The top bits pick the shard, the low
// bits the slot.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func entryOf(pod uint32, tier Tier) uint64 {
	return uint64(pod)<<podShift | uint64(tier)<<tierShift | 1
}

// groupEntryOf is entryOf for a block of KV-cache group g (already folded).
func groupEntryOf(pod uint32, tier Tier, g uint64) uint64 {
	return entryOf(pod, tier) | g<<groupShift
}

func entryGroup(e uint64) int { return int(e >> groupShift & groupMask) }

func entryPod(e uint64) uint32 { return uint32(e >> podShift & podIDMask) }
func entryTier(e uint64) Tier  { return Tier(e >> tierShift & tierMask) }

func runHandle(off uint32, class, n int) uint64 {
	return runBit | uint64(n)<<runLenShift | uint64(class)<<runClassShift | uint64(off)
}

func runOf(v uint64) (off, class, n int) {
	return int(v & runOffMask), int(v >> runClassShift & runClassMask), int(v >> runLenShift & runLenMask)
}

// lookup appends the entries of key h to buf and returns it. It sets the
// key's CLOCK bit. It needs no lock.
func (s *shard) lookup(h uint64, buf []uint64) []uint64 {
	for range readRetries {
		seq := s.seq.Load()
		if seq&1 != 0 {
			continue
		}
		out, ok := s.read(h, buf)
		if ok && s.seq.Load() == seq {
			return out
		}
	}
	// A writer keeps changing this shard: wait for it.
	s.mu.Lock()
	out, _ := s.read(h, buf)
	s.mu.Unlock()
	return out
}

// read is one attempt of lookup. Under concurrent writes it may see a torn
// state; it stays in bounds whatever it reads, reports a state it cannot
// make sense of as !ok, and leaves validation to the caller.
func (s *shard) read(h uint64, buf []uint64) ([]uint64, bool) {
	buf = buf[:0]
	view := s.view.Load()
	if view == nil || len(view.slots) == 0 {
		return buf, true
	}
	slots := view.slots
	mask := uint64(len(slots) - 1)
	i := h & mask
	for range len(slots) {
		sl := &slots[i]
		v := atomic.LoadUint64(&sl.v)
		if v == 0 {
			return buf, true
		}
		if atomic.LoadUint64(&sl.h) != h {
			i = (i + 1) & mask
			continue
		}
		if v&clockBit == 0 {
			// A failed CAS means a writer got there first; the bit is
			// a hint, so losing it is fine.
			atomic.CompareAndSwapUint64(&sl.v, v, v|clockBit)
		}
		if v&runBit == 0 {
			return append(buf, v&payloadMask), true
		}
		off, _, n := runOf(v)
		if off+n > len(view.slab) {
			return buf, false
		}
		for j := off; j < off+n; j++ {
			buf = append(buf, atomic.LoadUint64(&view.slab[j]))
		}
		return buf, true
	}
	return buf, false
}

// locate starts an optimistic read of key h for a caller that reads the
// key's entries itself: it returns the key's value word (0 when absent) and
// the view its run lives in. The caller validates what it read with
// unchanged(seq) and must not act on it before. ok is false while a writer
// is changing the shard; the caller should retry, then fall back to lookup.
// The run of a value word is runIn(view, v).
func (s *shard) locate(h uint64) (v uint64, view *shardView, seq uint64, ok bool) {
	seq = s.seq.Load()
	if seq&1 != 0 {
		return 0, nil, seq, false
	}
	view = s.view.Load()
	if view == nil {
		return 0, nil, seq, true
	}
	slots := view.slots
	mask := uint64(len(slots) - 1)
	i := h & mask
	for range len(slots) {
		sl := &slots[i]
		v := atomic.LoadUint64(&sl.v)
		if v == 0 {
			return 0, view, seq, true
		}
		if atomic.LoadUint64(&sl.h) == h {
			if v&clockBit == 0 {
				atomic.CompareAndSwapUint64(&sl.v, v, v|clockBit)
			}
			return v, view, seq, true
		}
		i = (i + 1) & mask
	}
	return 0, nil, seq, false
}

// touch loads the home slot of key h so that a locate of h shortly after
// finds it in cache: the walk touches a few keys ahead, letting the CPU
// overlap their cache misses with the current key's work. It returns the
// slot's value word only so that the load is not optimised away.
func (s *shard) touch(h uint64) uint64 {
	view := s.view.Load()
	if view == nil || len(view.slots) == 0 {
		return 0
	}
	return atomic.LoadUint64(&view.slots[h&uint64(len(view.slots)-1)].v)
}

// unchanged reports whether no writer touched the shard since locate
// returned seq.
func (s *shard) unchanged(seq uint64) bool { return s.seq.Load() == seq }

// runIn returns the run of value word v in view; its words must be read
// with atomic loads. A torn read can produce a handle out of bounds: runIn
// then returns ok false.
func runIn(view *shardView, v uint64) (run []uint64, ok bool) {
	off, _, n := runOf(v)
	if off+n > len(view.slab) {
		return nil, false
	}
	return view.slab[off : off+n : off+n], true
}

// The write side. Callers hold mu. Changes to the published arrays happen
// between beginChange and endChange.

func (s *shard) beginChange() { s.seq.Add(1) }
func (s *shard) endChange()   { s.seq.Add(1) }

// checkChanges makes every in-place store check that seq is odd, that is,
// that readers cannot trust what they read meanwhile. The package's tests
// turn it on; it costs one predictable branch per store otherwise.
var checkChanges bool

func (s *shard) changing() {
	if checkChanges && s.seq.Load()&1 == 0 {
		panic("kvtrack: shard changed in place outside beginChange/endChange")
	}
}

func (s *shard) loadV(i uint64) uint64 { return atomic.LoadUint64(&s.slots[i].v) }

func (s *shard) storeV(i uint64, v uint64) {
	s.changing()
	atomic.StoreUint64(&s.slots[i].v, v)
}

func (s *shard) storeSlot(i uint64, sl slot) {
	s.changing()
	atomic.StoreUint64(&s.slots[i].h, sl.h)
	atomic.StoreUint64(&s.slots[i].v, sl.v)
}

func (s *shard) storeWord(off int, w uint64) {
	s.changing()
	atomic.StoreUint64(&s.slab[off], w)
}

func (s *shard) copyWords(dst, src, n int) {
	s.changing()
	for j := range n {
		atomic.StoreUint64(&s.slab[dst+j], s.slab[src+j])
	}
}

func (s *shard) publish() {
	s.view.Store(&shardView{slots: s.slots, slab: s.slab[:cap(s.slab)]})
}

// add takes one reference on entry e (refcount 1) of key h, evicting to
// stay within the limit, and reports whether that created the entry. reg
// receives the per-pod count changes.
func (s *shard) add(h, e uint64, reg *podRegistry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if (s.keys+1)*4 > len(s.slots)*3 {
		s.growLocked()
	}
	s.beginChange()
	created := s.addLocked(h, e)
	if created {
		reg.state(entryPod(e)).entries.Add(1)
		if s.entries > s.limit {
			s.evictLocked(reg)
		}
	}
	s.endChange()
	s.maybeCompactLocked()
	return created
}

// addLocked is add's change; seq must be odd and the table must have room
// for one more key.
func (s *shard) addLocked(h, e uint64) bool {
	mask := uint64(len(s.slots) - 1)
	i := h & mask
	for ; s.loadV(i) != 0; i = (i + 1) & mask {
		if s.slots[i].h != h {
			continue
		}
		v := s.loadV(i) | clockBit
		if v&runBit == 0 {
			if v&entryIDMask == e&entryIDMask {
				s.storeV(i, bumpRef(v))
				return false
			}
			off := s.allocLocked(1)
			s.storeWord(int(off), v&payloadMask)
			s.storeWord(int(off)+1, e)
			s.storeV(i, clockBit|runHandle(off, 1, 2))
			s.entries++
			s.admissions++
			return true
		}
		off, class, n := runOf(v)
		for j := off; j < off+n; j++ {
			if s.slab[j]&entryIDMask == e&entryIDMask {
				s.storeWord(j, bumpRef(s.slab[j]))
				s.storeV(i, v)
				return false
			}
		}
		if n == 1<<class {
			noff := int(s.allocLocked(class + 1))
			s.copyWords(noff, off, n)
			s.freeLocked(uint32(off), class)
			off, class = noff, class+1
		}
		s.storeWord(off+n, e)
		s.storeV(i, clockBit|runHandle(uint32(off), class, n+1))
		s.entries++
		s.admissions++
		return true
	}
	s.storeSlot(i, slot{h: h, v: clockBit | e})
	s.keys++
	s.entries++
	s.admissions++
	return true
}

// bumpRef adds a reference, saturating: a count that reached 2^32-1 stays
// there, so such an entry leaves only with ClearPod, Clear or eviction.
func bumpRef(e uint64) uint64 {
	if e&refMask != refMask {
		e++
	}
	return e
}

// remove drops one reference to entry id (pod and tier, no refcount) of key
// h and reports whether that dropped the entry.
func (s *shard) remove(h, id uint64, reg *podRegistry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.findLocked(h)
	if !ok {
		return false
	}
	s.beginChange()
	dropped := s.removeLocked(i, id)
	s.endChange()
	if dropped {
		reg.state(entryPod(id)).entries.Add(-1)
		s.maybeCompactLocked()
	}
	return dropped
}

// findLocked returns the slot of key h.
func (s *shard) findLocked(h uint64) (uint64, bool) {
	if len(s.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; s.loadV(i) != 0; i = (i + 1) & mask {
		if s.slots[i].h == h {
			return i, true
		}
	}
	return 0, false
}

// removeLocked is remove's change on slot i; seq must be odd.
func (s *shard) removeLocked(i, id uint64) bool {
	v := s.loadV(i)
	if v&runBit == 0 {
		switch {
		case v&entryIDMask != id, v&refMask == refMask: // absent, or saturated (see bumpRef)
			return false
		case v&refMask > 1:
			s.storeV(i, v-1)
			return false
		}
		s.deleteSlotLocked(i)
		s.entries--
		s.removals++
		return true
	}
	off, _, n := runOf(v)
	for j := off; j < off+n; j++ {
		ej := s.slab[j]
		if ej&entryIDMask != id {
			continue
		}
		switch {
		case ej&refMask == refMask:
			return false
		case ej&refMask > 1:
			s.storeWord(j, ej-1)
			return false
		}
		s.storeWord(j, s.slab[off+n-1])
		s.setRunLenLocked(i, n-1)
		s.entries--
		s.removals++
		return true
	}
	return false
}

// setRunLenLocked records that the run of slot i now holds its first n
// entries (n >= 1), moving them inline or to a smaller run when that saves
// room. seq must be odd.
func (s *shard) setRunLenLocked(i uint64, n int) {
	v := s.loadV(i)
	off, class, _ := runOf(v)
	switch {
	case n == 1:
		s.storeV(i, v&clockBit|s.slab[off])
		s.freeLocked(uint32(off), class)
	case class > 1 && n <= 1<<class/4:
		noff := s.allocLocked(class - 1)
		s.copyWords(int(noff), off, n)
		s.freeLocked(uint32(off), class)
		s.storeV(i, v&clockBit|runHandle(noff, class-1, n))
	default:
		s.storeV(i, v&clockBit|runHandle(uint32(off), class, n))
	}
}

// deleteSlotLocked empties slot i, shifting later members of its probe
// sequence back so that every key stays reachable from its home slot. The
// slot's run, if any, must already be freed or moved. seq must be odd.
func (s *shard) deleteSlotLocked(i uint64) {
	mask := uint64(len(s.slots) - 1)
	hole := i
	for j := (hole + 1) & mask; s.loadV(j) != 0; j = (j + 1) & mask {
		home := s.slots[j].h & mask
		// Move j into the hole unless the hole lies before j's home on
		// its probe path.
		if (j-home)&mask >= (j-hole)&mask {
			s.storeSlot(hole, slot{h: s.slots[j].h, v: s.loadV(j)})
			hole = j
		}
	}
	s.storeSlot(hole, slot{})
	s.keys--
}

// growLocked doubles the table on the side and publishes it.
func (s *shard) growLocked() {
	n := max(2*len(s.slots), minSlots)
	slots := make([]slot, n)
	mask := uint64(n - 1)
	for i := range s.slots {
		v := s.loadV(uint64(i))
		if v == 0 {
			continue
		}
		h := s.slots[i].h
		j := h & mask
		for slots[j].v != 0 {
			j = (j + 1) & mask
		}
		slots[j] = slot{h: h, v: v}
	}
	s.slots = slots
	s.hand = 0
	s.gen++
	s.publish()
}

// allocLocked returns the offset of a free run of 1<<class words,
// publishing the slab if it had to move.
func (s *shard) allocLocked(class int) uint32 {
	size := 1 << class
	s.slabLive += size
	if head := s.free[class]; head != 0 {
		off := head - 1
		s.free[class] = uint32(s.slab[off])
		return off
	}
	off := len(s.slab)
	if off+size > runOffMask {
		// 32 GiB of runs in one shard: the capacity bound makes this
		// unreachable unless Capacity is set beyond physical memory.
		panic(fmt.Sprintf("kvtrack: shard slab overflow at %d words", off))
	}
	if off+size > cap(s.slab) {
		slab := make([]uint64, off, max(2*cap(s.slab), off+size, minSlabWords))
		copy(slab, s.slab)
		s.slab = slab
		s.slab = s.slab[:off+size]
		s.publish()
	} else {
		s.slab = s.slab[:off+size]
	}
	return uint32(off)
}

// freeLocked returns the run at off of 1<<class words to its free list.
// seq must be odd.
func (s *shard) freeLocked(off uint32, class int) {
	s.slabLive -= 1 << class
	s.storeWord(int(off), uint64(s.free[class]))
	s.free[class] = off + 1
}

// maybeCompactLocked rewrites the slab without its free runs once they make
// up more than three quarters of it and outnumber half the table's slots,
// so memory released by removals goes back to the Go heap. It builds a new
// table and slab on the side and publishes them. The cost, one pass over
// the table, is paid for by the removals that freed those words, which
// number at least half the table's slots.
func (s *shard) maybeCompactLocked() {
	// Waste is words handed out and freed since; capacity never handed out
	// does not count, or a small slab would be rewritten on every removal
	// (right after a compaction, capacity alone is over three quarters).
	waste := len(s.slab) - s.slabLive
	if len(s.slab) < minSlabWords || waste*4 < len(s.slab)*3 || waste < len(s.slots)/2 {
		return
	}
	slots := make([]slot, len(s.slots))
	slab := make([]uint64, 0, max(2*s.slabLive, minSlabWords))
	for i := range s.slots {
		v := s.loadV(uint64(i))
		if v&runBit != 0 {
			off, class, n := runOf(v)
			noff := len(slab)
			slab = append(slab, s.slab[off:off+1<<class]...)
			v = v&clockBit | runHandle(uint32(noff), class, n)
		}
		slots[i] = slot{h: s.slots[i].h, v: v}
	}
	s.slots, s.slab = slots, slab
	s.free = [32]uint32{}
	s.publish()
}

// dropSlotLocked deletes the key in slot i with all its entries, taking
// them off their pods' counts, and returns how many entries went. seq must
// be odd.
func (s *shard) dropSlotLocked(i uint64, reg *podRegistry) int {
	v := s.loadV(i)
	n := 1
	if v&runBit == 0 {
		reg.state(entryPod(v)).entries.Add(-1)
	} else {
		off, class, rn := runOf(v)
		for _, e := range s.slab[off : off+rn] {
			reg.state(entryPod(e)).entries.Add(-1)
		}
		s.freeLocked(uint32(off), class)
		n = rn
	}
	s.deleteSlotLocked(i)
	s.entries -= n
	return n
}

// evictLocked drops whole keys by CLOCK until the shard is within its limit:
// the hand clears reference bits as it passes and evicts the first key whose
// bit is already clear, i.e. one nobody stored or scored for a full turn.
// seq must be odd.
func (s *shard) evictLocked(reg *podRegistry) {
	for s.entries > s.limit {
		mask := uint64(len(s.slots) - 1)
		i := s.hand & mask
		v := s.loadV(i)
		switch {
		case v == 0:
			s.hand = i + 1
		case v&clockBit != 0:
			s.storeV(i, v&^clockBit)
			s.hand = i + 1
		default:
			s.evictions += uint64(s.dropSlotLocked(i, reg))
			// The backward shift may have moved an unvisited key into i.
			s.hand = i
		}
	}
}

// sweepPod removes every entry of pod from at most sweepChunk slots from
// *pos on, advancing *pos. It restarts from slot 0 when the table changed
// size since *gen. It returns how many entries it removed and whether the
// sweep reached the end of the table.
func (s *shard) sweepPod(pos *int, gen *uint64, pod uint32, reg *podRegistry) (removed int, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != *gen {
		// Only growth changes the size, so restarting terminates.
		*pos, *gen = 0, s.gen
	}
	end := min(*pos+sweepChunk, len(s.slots))
	i := *pos
	s.beginChange()
	for i < end {
		v := s.loadV(uint64(i))
		if v == 0 {
			i++
			continue
		}
		if v&runBit == 0 {
			if entryPod(v) != pod {
				i++
				continue
			}
			removed++
			s.deleteSlotLocked(uint64(i))
			s.entries--
			continue // slot i now holds a shifted key, or is empty
		}
		off, class, n := runOf(v)
		kept := 0
		for j := off; j < off+n; j++ {
			if e := s.slab[j]; entryPod(e) != pod {
				s.storeWord(off+kept, e)
				kept++
			}
		}
		if kept == n {
			i++
			continue
		}
		removed += n - kept
		s.entries -= n - kept
		if kept == 0 {
			s.freeLocked(uint32(off), class)
			s.deleteSlotLocked(uint64(i))
			continue
		}
		s.setRunLenLocked(uint64(i), kept)
		i++
	}
	s.endChange()
	s.removals += uint64(removed)
	if removed > 0 {
		reg.state(pod).entries.Add(-int64(removed))
		s.maybeCompactLocked()
	}
	*pos = i
	return removed, i >= len(s.slots)
}

// reset empties the shard, adding the entries it held per pod id to
// dropped, which it extends as needed, and returns dropped.
func (s *shard) reset(dropped []int64, reg *podRegistry) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Pods interned before this lock are all the pods this shard can hold
	// entries for.
	if n := int(reg.n.Load()); len(dropped) < n {
		dropped = append(dropped, make([]int64, n-len(dropped))...)
	}
	for i := range s.slots {
		v := s.loadV(uint64(i))
		switch {
		case v == 0:
		case v&runBit == 0:
			dropped[entryPod(v)]++
		default:
			off, _, n := runOf(v)
			for _, e := range s.slab[off : off+n] {
				dropped[entryPod(e)]++
			}
		}
	}
	s.removals += uint64(s.entries)
	s.slots, s.slab = nil, nil
	s.free = [32]uint32{}
	s.keys, s.entries, s.slabLive = 0, 0, 0
	s.hand = 0
	s.gen++
	s.view.Store(nil)
	return dropped
}

// stats adds the shard's numbers to st.
func (s *shard) stats(st *Stats) {
	s.mu.Lock()
	st.Keys += int64(s.keys)
	st.Entries += int64(s.entries)
	st.Admissions += s.admissions
	st.Evictions += s.evictions
	st.Removals += s.removals
	s.mu.Unlock()
}
