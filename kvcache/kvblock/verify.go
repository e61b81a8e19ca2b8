package kvblock

import (
	"errors"
	"fmt"
)

// Verify checks the index's internal consistency and returns what it finds
// wrong. It is for tests: it takes every shard lock in turn, costs a pass
// over the whole index, and compares per-pod counts with the shards, so it
// must not run concurrently with writes.
func (x *MemIndex) Verify() error {
	var errs []error
	perPod := make([]int64, x.pods.n.Load())
	for si := range x.shards {
		s := &x.shards[si]
		s.mu.Lock()
		if err := s.verifyLocked(perPod); err != nil {
			errs = append(errs, fmt.Errorf("shard %d: %w", si, err))
		}
		if s.entries > s.limit {
			errs = append(errs, fmt.Errorf("shard %d: %d entries over its limit of %d", si, s.entries, s.limit))
		}
		s.mu.Unlock()
	}
	for id, n := range perPod {
		if got := x.pods.state(uint32(id)).entries.Load(); got != n {
			errs = append(errs, fmt.Errorf("pod %v: counted %d entries, shards hold %d", x.pods.state(uint32(id)).pod, got, n))
		}
	}
	return errors.Join(errs...)
}

func (s *shard) verifyLocked(perPod []int64) error {
	if view := s.view.Load(); view == nil {
		if s.slots != nil || s.slab != nil {
			return errors.New("published no view but holds arrays")
		}
	} else if len(view.slots) != len(s.slots) || (len(s.slots) > 0 && &view.slots[0] != &s.slots[0]) ||
		len(view.slab) != cap(s.slab) || (cap(s.slab) > 0 && &view.slab[0] != &s.slab[:1][0]) {
		return errors.New("published view is not the shard's arrays")
	}
	if len(s.slots)&(len(s.slots)-1) != 0 {
		return fmt.Errorf("%d slots, not a power of two", len(s.slots))
	}
	mask := uint64(len(s.slots) - 1)
	owner := make([]int, len(s.slab)) // 1 + slot of the run covering each word; -1 free
	keys, entries, live := 0, 0, 0
	for i, sl := range s.slots {
		if sl.v == 0 {
			continue
		}
		keys++
		for j := sl.h & mask; j != uint64(i); j = (j + 1) & mask {
			if s.slots[j].v == 0 {
				return fmt.Errorf("slot %d unreachable: empty slot %d on its probe path", i, j)
			}
			if s.slots[j].h == sl.h {
				return fmt.Errorf("slots %d and %d hold the same key", j, i)
			}
		}
		es := []uint64{sl.v & payloadMask}
		if sl.v&runBit != 0 {
			off, class, n := runOf(sl.v)
			if class < 1 || n < 2 || n > 1<<class || off+1<<class > len(s.slab) {
				return fmt.Errorf("slot %d: bad run off %d class %d len %d (slab %d)", i, off, class, n, len(s.slab))
			}
			for w := off; w < off+1<<class; w++ {
				if owner[w] != 0 {
					return fmt.Errorf("slot %d: run at %d overlaps the run of slot %d", i, off, owner[w]-1)
				}
				owner[w] = i + 1
			}
			live += 1 << class
			es = s.slab[off : off+n]
		}
		seen := map[uint64]bool{}
		for _, e := range es {
			if e&refMask == 0 || e&^payloadMask != 0 {
				return fmt.Errorf("slot %d: bad entry %#x", i, e)
			}
			if seen[e&entryIDMask] {
				return fmt.Errorf("slot %d: entry for pod %d tier %d twice", i, entryPod(e), entryTier(e))
			}
			seen[e&entryIDMask] = true
			if int(entryPod(e)) >= len(perPod) {
				return fmt.Errorf("slot %d: pod id %d never interned", i, entryPod(e))
			}
			perPod[entryPod(e)]++
			entries++
		}
	}
	if keys != s.keys || entries != s.entries {
		return fmt.Errorf("counted %d keys %d entries, shard says %d and %d", keys, entries, s.keys, s.entries)
	}
	if live != s.slabLive {
		return fmt.Errorf("live runs cover %d words, shard says %d", live, s.slabLive)
	}
	for class, head := range s.free {
		for off := head; off != 0; off = uint32(s.slab[off-1]) {
			o := int(off - 1)
			if o+1<<class > len(s.slab) {
				return fmt.Errorf("free run at %d of class %d past the slab's %d words", o, class, len(s.slab))
			}
			for w := o; w < o+1<<class; w++ {
				if owner[w] != 0 {
					return fmt.Errorf("free run at %d of class %d overlaps slot %d's run or another free run", o, class, owner[w]-1)
				}
				owner[w] = -1
			}
		}
	}
	return nil
}
