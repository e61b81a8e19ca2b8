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
// 32-36, pod id in bits 37-56.
//
// Run handle: slab offset in bits 0-31, size class in bits 32-36 (the run
// has room for 1<<class entries), length in bits 37-61.
//
// Slab: one []uint64 per shard holding runs, with a free list per size
// class threaded through the first word of each free run, and compaction
// once less than a quarter of it is live.
//
// The unsynchronised methods here are the core; MemIndex wraps them in the
// shard's lock. Methods named ...Locked need s.mu held for writing; those
// named ...Shared need it held at least for reading.
type shard struct {
	mu sync.RWMutex

	// mu guards everything below.
	slots    []slot
	keys     int    // occupied slots
	entries  int    // entries over all keys
	limit    int    // entries allowed before the CLOCK hand evicts
	hand     uint64 // CLOCK hand, an index into slots
	gen      uint64 // bumped whenever slots is replaced, so sweeps can resume
	slab     []uint64
	slabLive int        // slab words inside allocated runs
	free     [32]uint32 // per size class: 1 + offset of the first free run, 0 if none

	admissions, evictions, removals uint64

	_ [64]byte // keep neighbouring shards' locks off each other's cache lines
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
	entryIDMask   = payloadMask &^ refMask // pod and tier, without the refcount
	runOffMask    = 1<<32 - 1
	runClassShift = 32
	runClassMask  = 31
	runLenShift   = 37
	runLenMask    = 1<<25 - 1

	minSlots     = 8
	sweepChunk   = 4096 // slots a ClearPod or Clear sweep visits per lock hold
	minSlabWords = 1024 // below this the slab is never compacted
)

// The entry layout gives tiers 5 bits; MaxTiers must match.
var _ = [1]int{}[MaxTiers-32]

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

func entryPod(e uint64) uint32 { return uint32(e >> podShift & podIDMask) }
func entryTier(e uint64) Tier  { return Tier(e >> tierShift & tierMask) }

func runHandle(off uint32, class, n int) uint64 {
	return runBit | uint64(n)<<runLenShift | uint64(class)<<runClassShift | uint64(off)
}

func runOf(v uint64) (off, class, n int) {
	return int(v & runOffMask), int(v >> runClassShift & runClassMask), int(v >> runLenShift & runLenMask)
}

// findShared returns the slot index of h and its value word, or -1 and 0.
// Readers load value words atomically because other readers may be setting
// the CLOCK bit at the same time.
func (s *shard) findShared(h uint64) (int, uint64) {
	slots := s.slots
	if len(slots) == 0 {
		return -1, 0
	}
	mask := uint64(len(slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		v := atomic.LoadUint64(&slots[i].v)
		if v == 0 {
			return -1, 0
		}
		if slots[i].h == h {
			return int(i), v
		}
	}
}

// touchShared sets the CLOCK bit of slot i, whose value word was v.
func (s *shard) touchShared(i int, v uint64) {
	if v&clockBit == 0 {
		atomic.OrUint64(&s.slots[i].v, clockBit)
	}
}

// runShared returns the entries of the run with handle v.
func (s *shard) runShared(v uint64) []uint64 {
	off, _, n := runOf(v)
	return s.slab[off : off+n : off+n]
}

// addLocked takes one reference on entry e (refcount 1) of key h and
// reports whether that created the entry.
func (s *shard) addLocked(h, e uint64) bool {
	if (s.keys+1)*4 > len(s.slots)*3 {
		s.growLocked()
	}
	mask := uint64(len(s.slots) - 1)
	i := h & mask
	for ; s.slots[i].v != 0; i = (i + 1) & mask {
		if s.slots[i].h != h {
			continue
		}
		sl := &s.slots[i]
		v := sl.v | clockBit
		if v&runBit == 0 {
			if v&entryIDMask == e&entryIDMask {
				sl.v = bumpRef(v)
				return false
			}
			off := s.allocLocked(1)
			s.slab[off] = v & payloadMask
			s.slab[off+1] = e
			sl.v = clockBit | runHandle(off, 1, 2)
			s.entries++
			s.admissions++
			return true
		}
		off, class, n := runOf(v)
		for j := off; j < off+n; j++ {
			if s.slab[j]&entryIDMask == e&entryIDMask {
				s.slab[j] = bumpRef(s.slab[j])
				sl.v = v
				return false
			}
		}
		if n == 1<<class {
			noff := s.allocLocked(class + 1)
			copy(s.slab[noff:], s.slab[off:off+n])
			s.freeLocked(uint32(off), class)
			off, class = int(noff), class+1
		}
		s.slab[off+n] = e
		sl.v = clockBit | runHandle(uint32(off), class, n+1)
		s.entries++
		s.admissions++
		return true
	}
	s.slots[i] = slot{h: h, v: clockBit | e}
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

// removeLocked drops one reference to entry id (pod and tier) of key h and
// reports whether that dropped the entry.
func (s *shard) removeLocked(h, id uint64) bool {
	if len(s.slots) == 0 {
		return false
	}
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; s.slots[i].v != 0; i = (i + 1) & mask {
		if s.slots[i].h != h {
			continue
		}
		v := s.slots[i].v
		if v&runBit == 0 {
			if v&entryIDMask != id {
				return false
			}
			if v&refMask > 1 && v&refMask != refMask {
				s.slots[i].v = v - 1
				return false
			}
			if v&refMask == refMask {
				return false // saturated: see bumpRef
			}
			s.deleteSlotLocked(int(i))
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
			if ej&refMask == refMask {
				return false
			}
			if ej&refMask > 1 {
				s.slab[j] = ej - 1
				return false
			}
			s.slab[j] = s.slab[off+n-1]
			s.setRunLenLocked(int(i), n-1)
			s.entries--
			s.removals++
			return true
		}
		return false
	}
	return false
}

// setRunLenLocked records that the run of slot i now holds its first n
// entries (n >= 1), moving them inline or to a smaller run when that saves
// room.
func (s *shard) setRunLenLocked(i, n int) {
	v := s.slots[i].v
	off, class, _ := runOf(v)
	switch {
	case n == 1:
		s.slots[i].v = v&clockBit | s.slab[off]
		s.freeLocked(uint32(off), class)
	case class > 1 && n <= 1<<class/4:
		noff := s.allocLocked(class - 1)
		// alloc may have moved the slab but not our run's offset.
		copy(s.slab[noff:], s.slab[off:off+n])
		s.freeLocked(uint32(off), class)
		s.slots[i].v = v&clockBit | runHandle(noff, class-1, n)
	default:
		s.slots[i].v = v&clockBit | runHandle(uint32(off), class, n)
	}
	s.maybeCompactLocked()
}

// deleteSlotLocked empties slot i, shifting later members of its probe
// sequence back so that every key stays reachable from its home slot. The
// slot's run, if any, must already be freed or moved.
func (s *shard) deleteSlotLocked(i int) {
	mask := uint64(len(s.slots) - 1)
	hole := uint64(i)
	for j := (hole + 1) & mask; s.slots[j].v != 0; j = (j + 1) & mask {
		home := s.slots[j].h & mask
		// Move j into the hole unless the hole lies before j's home on
		// its probe path.
		if (j-home)&mask >= (j-hole)&mask {
			s.slots[hole] = s.slots[j]
			hole = j
		}
	}
	s.slots[hole] = slot{}
	s.keys--
}

func (s *shard) growLocked() {
	n := 2 * len(s.slots)
	if n < minSlots {
		n = minSlots
	}
	old := s.slots
	s.slots = make([]slot, n)
	mask := uint64(n - 1)
	for _, sl := range old {
		if sl.v == 0 {
			continue
		}
		i := sl.h & mask
		for s.slots[i].v != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = sl
	}
	s.hand = 0
	s.gen++
}

// allocLocked returns the offset of a free run of 1<<class words.
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
	s.slab = append(s.slab, make([]uint64, size)...)
	return uint32(off)
}

// freeLocked returns the run at off of 1<<class words to its free list.
func (s *shard) freeLocked(off uint32, class int) {
	s.slabLive -= 1 << class
	s.slab[off] = uint64(s.free[class])
	s.free[class] = off + 1
}

// maybeCompactLocked rewrites the slab without its free runs once they make
// up more than three quarters of it, so memory released by removals goes
// back to the Go heap. The cost is one pass over the shard, paid for by the
// removals that freed those runs.
func (s *shard) maybeCompactLocked() {
	if len(s.slab) < minSlabWords || s.slabLive*4 > len(s.slab) {
		return
	}
	slab := make([]uint64, 0, s.slabLive+s.slabLive/4)
	for i := range s.slots {
		v := s.slots[i].v
		if v&runBit == 0 {
			continue
		}
		off, class, n := runOf(v)
		noff := len(slab)
		slab = append(slab, s.slab[off:off+1<<class]...)
		s.slots[i].v = v&clockBit | runHandle(uint32(noff), class, n)
	}
	s.slab = slab
	s.free = [32]uint32{}
}

// dropSlotLocked deletes the key in slot i with all its entries, taking
// them off their pods' counts, and returns how many entries went.
func (s *shard) dropSlotLocked(i int, reg *podRegistry) int {
	v := s.slots[i].v
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
func (s *shard) evictLocked(reg *podRegistry) {
	for s.entries > s.limit {
		mask := uint64(len(s.slots) - 1)
		i := s.hand & mask
		v := s.slots[i].v
		switch {
		case v == 0:
			s.hand = i + 1
		case v&clockBit != 0:
			s.slots[i].v = v &^ clockBit
			s.hand = i + 1
		default:
			s.evictions += uint64(s.dropSlotLocked(int(i), reg))
			// The backward shift may have moved an unvisited key into i.
			s.hand = i
		}
	}
	s.maybeCompactLocked()
}

// sweepPodLocked removes every entry of pod from at most sweepChunk slots
// starting at *pos, advancing *pos, and returns how many entries it removed
// and whether the sweep reached the end of the table.
func (s *shard) sweepPodLocked(pos *int, pod uint32) (removed int, done bool) {
	drop := func(e uint64) bool { return entryPod(e) == pod }
	end := min(*pos+sweepChunk, len(s.slots))
	i := *pos
	for i < end {
		v := s.slots[i].v
		if v == 0 {
			i++
			continue
		}
		if v&runBit == 0 {
			e := v & payloadMask
			if !drop(e) {
				i++
				continue
			}
			removed++
			s.deleteSlotLocked(i)
			s.entries--
			s.removals++
			continue // slot i now holds a shifted key, or is empty
		}
		off, class, n := runOf(v)
		kept := 0
		for j := off; j < off+n; j++ {
			e := s.slab[j]
			if drop(e) {
				continue
			}
			s.slab[off+kept] = e
			kept++
		}
		if kept == n {
			i++
			continue
		}
		removed += n - kept
		s.entries -= n - kept
		s.removals += uint64(n - kept)
		if kept == 0 {
			s.freeLocked(uint32(off), class)
			s.deleteSlotLocked(i)
			continue
		}
		s.setRunLenLocked(i, kept)
		i++
	}
	*pos = i
	return removed, i >= len(s.slots)
}

// resetLocked empties the shard and releases its memory, taking its entries
// off their pods' counts in dropped, indexed by pod id.
func (s *shard) resetLocked(dropped []int64) {
	for _, sl := range s.slots {
		switch {
		case sl.v == 0:
		case sl.v&runBit == 0:
			dropped[entryPod(sl.v)]++
		default:
			off, _, n := runOf(sl.v)
			for _, e := range s.slab[off : off+n] {
				dropped[entryPod(e)]++
			}
		}
	}
	s.removals += uint64(s.entries)
	s.slots = nil
	s.slab = nil
	s.free = [32]uint32{}
	s.keys, s.entries, s.slabLive = 0, 0, 0
	s.hand = 0
	s.gen++
}
