package kvblock

import (
	"context"
	"fmt"
)

// Hybrid models (sliding-window or Mamba groups next to full attention)
// store each block once per KV-cache group, and vLLM's hybrid coordinator
// (kv_cache_coordinator.py, find_longest_cache_hit) finds the longest hit
// that every group can serve:
//
//   - a full-attention group needs every block of the prefix;
//   - a sliding-window group needs only the blocks covering the last
//     sliding_window-1 tokens before the hit point (or, when it holds fewer,
//     an unbroken run from the first block up to the hit point);
//   - a Mamba group needs the block ending at the hit point, which holds
//     the state there;
//
// and the hit point is a multiple of every group's block size. The
// coordinator's fixed-point iteration converges on the largest such point:
// each manager returns the largest length at or below its bound that its
// own condition allows, and the conditions do not depend on one another.
// Score computes that point directly, per hybrid candidate, in a second
// walk that reads every key up to the cap; a model with one full-attention
// group never takes it.
//
// Not modelled: EAGLE's dropped last block, vLLM's sparse prefix-cache
// retention, chunked local attention (counted as full attention, which can
// only under-predict).

// podGroups is the copy-on-write description of one pod's groups.
type podGroups struct {
	specs  []Group
	pos    [MaxGroups]int8 // group index -> position in specs, or -1
	hybrid bool            // anything but one full-attention group of the keys' block size
}

func (g *podGroups) spec(idx int) (Group, bool) {
	if g == nil {
		return Group{}, false
	}
	if p := g.pos[foldGroup(idx)]; p >= 0 {
		return g.specs[p], true
	}
	return Group{}, false
}

// AddGroup records that pod holds keys for KV-cache group g on tier; see
// GroupIndex.AddGroup.
func (x *MemIndex) AddGroup(_ context.Context, pod Pod, tier Tier, g Group, keys []Key) error {
	id, err := x.pods.intern(pod)
	if err != nil {
		return fmt.Errorf("kvblock: add %d keys for %s: %w", len(keys), pod, err)
	}
	if g.Index != AllGroups {
		x.describeGroup(id, g)
	}
	e := groupEntryOf(id, foldTier(tier), foldGroup(g.Index))
	for _, k := range keys {
		h := mix(uint64(k))
		x.shardOf(h).add(h, e, &x.pods)
	}
	return nil
}

// RemoveGroup drops one reference to each (key, pod, tier, group); see
// GroupIndex.RemoveGroup.
func (x *MemIndex) RemoveGroup(_ context.Context, pod Pod, tier Tier, group int, keys []Key) error {
	id, ok := x.pods.lookup(pod)
	if !ok {
		return nil
	}
	e := groupEntryOf(id, foldTier(tier), foldGroup(group)) & entryIDMask
	for _, k := range keys {
		h := mix(uint64(k))
		x.shardOf(h).remove(h, e, &x.pods)
	}
	return nil
}

// describeGroup records g for pod id unless it is already recorded as is.
func (x *MemIndex) describeGroup(id uint32, g Group) {
	g.Index = int(foldGroup(g.Index))
	st := x.pods.state(id)
	if cur, ok := st.groups.Load().spec(g.Index); ok && cur == g {
		return
	}
	x.groupMu.Lock()
	defer x.groupMu.Unlock()
	old := st.groups.Load()
	next := &podGroups{}
	for i := range next.pos {
		next.pos[i] = -1
	}
	if old != nil {
		next.specs = append(next.specs, old.specs...)
		next.pos = old.pos
	}
	if p := next.pos[g.Index]; p >= 0 {
		next.specs[p] = g
	} else {
		next.pos[g.Index] = int8(len(next.specs))
		next.specs = append(next.specs, g)
	}
	for _, s := range next.specs {
		if s.Index != 0 || s.Kind != GroupFull || (s.BlockSize != 0 && x.cfg.BlockSize != 0 && s.BlockSize != x.cfg.BlockSize) {
			next.hybrid = true
		}
	}
	if next.hybrid && (old == nil || !old.hybrid) {
		x.hybridPods.Add(1)
	}
	st.groups.Store(next)
}

// hybridCand is a candidate scored by the hybrid walk.
type hybridCand struct {
	cand   int // index in candidates
	pod    uint32
	groups *podGroups
}

// splitHybrid moves the candidates whose pods have hybrid groups out of
// slotOfCand (marking them -1 there, so the longest-prefix walk skips them)
// into sc.hyb, and returns how many it moved.
func (sc *scoreScratch) splitHybrid(reg *podRegistry) int {
	sc.hyb = sc.hyb[:0]
	for i, id := range sc.slotOfCand {
		if id < 0 {
			continue
		}
		if g := reg.state(uint32(id)).groups.Load(); g != nil && g.hybrid {
			sc.hyb = append(sc.hyb, hybridCand{cand: i, pod: uint32(id), groups: g})
			sc.slotOfCand[i] = -1
		}
	}
	return len(sc.hyb)
}

// walkHybrid scores sc.hyb against keys, appending nothing: it leaves each
// hybrid candidate's result in sc.hybScore. It returns the keys it looked
// up and how many of them some hybrid candidate held.
func (x *MemIndex) walkHybrid(keys []Key, sc *scoreScratch) (walked, hits int) {
	n := len(keys)
	words := (n + 63) / 64
	// Per hybrid candidate u and group position g: a bitset of the keys
	// the group holds, at bits[(u*MaxGroups+g)*words:]. Per (u, key): the
	// best tier weight the pod holds the key on.
	nh := len(sc.hyb)
	need := nh * MaxGroups * words
	sc.bits = resized(sc.bits, need)
	clear(sc.bits)
	sc.best = resized(sc.best, nh*n)
	clear(sc.best)
	slotOf := sc.slotOf
	for u, hc := range sc.hyb {
		if int(hc.pod) < len(slotOf) {
			slotOf[hc.pod] = int32(u + 1)
		}
	}
	for i, k := range keys {
		h := mix(uint64(k))
		sc.entries = x.shardOf(h).lookup(h, sc.entries)
		walked++
		held := false
		for _, e := range sc.entries {
			pod := entryPod(e)
			if int(pod) >= len(slotOf) || slotOf[pod] <= 0 {
				continue
			}
			u := int(slotOf[pod] - 1)
			if g := entryGroup(e); g == AllGroups {
				for gp := range sc.hyb[u].groups.specs {
					sc.bits[(u*MaxGroups+gp)*words+i>>6] |= 1 << (i & 63)
				}
			} else if gp := sc.hyb[u].groups.pos[g]; gp >= 0 {
				sc.bits[(u*MaxGroups+int(gp))*words+i>>6] |= 1 << (i & 63)
			} else {
				continue // a group no event described: it constrains nothing
			}
			held = true
			if w := x.weights[entryTier(e)]; w > sc.best[u*n+i] {
				sc.best[u*n+i] = w
			}
		}
		if held {
			hits++
		}
	}
	for _, hc := range sc.hyb {
		if int(hc.pod) < len(slotOf) {
			slotOf[hc.pod] = 0
		}
	}
	sc.hybScore = sc.hybScore[:0]
	for u, hc := range sc.hyb {
		sc.runs = resized(sc.runs, len(hc.groups.specs)*n)
		p := x.hybridHit(n, hc.groups, sc.bits[u*MaxGroups*words:(u+1)*MaxGroups*words], words, sc.runs)
		w := 0.0
		for i := range p {
			if b := sc.best[u*n+i]; b > 0 {
				w += b
			} else {
				// Skipped by every group that needs it: reused without
				// being held, like a GPU block.
				w += x.topWeight
			}
		}
		sc.hybScore = append(sc.hybScore, PodScore{Matched: p, Weighted: w})
	}
	return walked, hits
}

// stride returns how many keys one block of group g spans: its block size
// over the keys' (1 when either is unknown or they do not divide).
func (x *MemIndex) stride(g Group) int {
	bs := x.cfg.BlockSize
	if g.BlockSize <= 0 || bs <= 0 || g.BlockSize%bs != 0 {
		return 1
	}
	return g.BlockSize / bs
}

// hybridHit returns the number of keys, out of n, that vLLM's hybrid
// coordinator reuses for a pod with groups gs whose holdings are in bitsets
// (words words per group position). runs is scratch of at least
// len(gs.specs)*n entries.
func (x *MemIndex) hybridHit(n int, gs *podGroups, bitsets []uint64, words int, runs []int32) int {
	// runs[gp*n+j]: how many consecutive blocks of group gp end at its
	// block j, all held.
	align := 1
	for gp, g := range gs.specs {
		k := x.stride(g)
		if g.Kind != GroupIgnored {
			align = lcm(align, k)
		}
		var run int32
		for j := range n / k {
			key := (j+1)*k - 1
			if bitsets[gp*words+key>>6]&(1<<(key&63)) != 0 {
				run++
			} else {
				run = 0
			}
			runs[gp*n+j] = run
		}
	}
	// The hit is a multiple of every group's block (the lcm of their
	// strides, in keys), and full attention bounds it by its held prefix.
	upper := n / align * align
	for gp, g := range gs.specs {
		if g.Kind != GroupFull {
			continue
		}
		k := x.stride(g)
		blocks := 0
		for blocks < upper/k && runs[gp*n+blocks] == int32(blocks+1) {
			blocks++
		}
		upper = min(upper, blocks*k/align*align)
	}
	for p := upper; p > 0; p -= align {
		if x.hybridHolds(p, n, gs, runs) {
			return p
		}
	}
	return 0
}

// hybridHolds reports whether every sliding-window and Mamba group of gs can
// serve a hit of p > 0 keys (p a multiple of each group's stride).
func (x *MemIndex) hybridHolds(p, n int, gs *podGroups, runs []int32) bool {
	for gp, g := range gs.specs {
		if g.Kind != GroupMamba && g.Kind != GroupSlidingWindow {
			continue // full attention bounded p already; ignored groups never do
		}
		end := p / x.stride(g) // blocks of the group before the hit point
		run := int(runs[gp*n+end-1])
		if g.Kind == GroupMamba && run == 0 || g.Kind == GroupSlidingWindow && run < x.windowBlocks(g, end) {
			return false
		}
	}
	return true
}

// windowBlocks is how many blocks, of the end before a hit point, sliding-
// window group g needs: those covering its last window-1 tokens, as vLLM's
// SlidingWindowManager counts them. Without a known block size or window
// it needs them all, as full attention does.
func (x *MemIndex) windowBlocks(g Group, end int) int {
	tokens := g.BlockSize
	if tokens <= 0 {
		tokens = x.cfg.BlockSize
	}
	if tokens <= 0 || g.SlidingWindow <= 0 {
		return end
	}
	return min(end, (g.SlidingWindow-1+tokens-1)/tokens)
}

func lcm(a, b int) int {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// resized returns s with length n, reusing its array when it is large
// enough; the elements' values are whatever they were.
func resized[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

var _ GroupIndex = (*MemIndex)(nil)
