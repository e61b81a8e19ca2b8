package kvblock

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// Defaults for MemIndexConfig's zero fields.
const (
	// DefaultCapacity bounds the index at 16M (key, pod, tier) entries:
	// 100 pods holding 160k blocks each, about 0.5 GiB at the measured
	// 25-35 bytes per entry.
	DefaultCapacity = 1 << 24

	// DefaultShards is 256. Two readers or writers contend only when their
	// keys fall in the same shard (1 in 256), and at DefaultCapacity a shard
	// holds 64k entries, so the longest lock hold — doubling one shard's
	// table — stays near a millisecond. More shards cost only their locks.
	DefaultShards = 256

	// MaxShards bounds MemIndexConfig.Shards.
	MaxShards = 1 << 16
)

// ErrInvalidConfig is wrapped by every configuration error NewMemIndex and
// MemIndexConfig.Validate return.
var ErrInvalidConfig = errors.New("kvblock: invalid config")

// MemIndexConfig configures a MemIndex. The zero value is a usable config:
// every zero field takes its documented default.
type MemIndexConfig struct {
	// Capacity bounds the number of (key, pod, tier) entries. Past it the
	// index evicts whole keys, least recently stored or scored first
	// (approximately: CLOCK per shard). Each shard enforces its share,
	// Capacity/Shards rounded up, so the total stays within Capacity plus
	// Shards-1. Zero means DefaultCapacity; it must not be below Shards.
	Capacity int `json:"capacity,omitempty"`

	// Shards is the number of independently locked parts, a power of two
	// from 1 to MaxShards. Zero means DefaultShards.
	Shards int `json:"shards,omitempty"`

	// TierWeights weighs each medium in PodScore.Weighted. Weights must be
	// finite and non-negative; media absent from the map weigh 0. Nil means
	// DefaultTierWeights().
	TierWeights TierWeights `json:"tierWeights,omitempty"`
}

// withDefaults returns c with its zero fields set.
func (c MemIndexConfig) withDefaults() MemIndexConfig {
	if c.Capacity == 0 {
		c.Capacity = DefaultCapacity
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.TierWeights == nil {
		c.TierWeights = DefaultTierWeights()
	}
	return c
}

// Validate reports the first invalid field of c, after defaults, wrapping
// ErrInvalidConfig.
func (c MemIndexConfig) Validate() error {
	c = c.withDefaults()
	if c.Shards < 1 || c.Shards > MaxShards || c.Shards&(c.Shards-1) != 0 {
		return fmt.Errorf("%w: Shards must be a power of two from 1 to %d (0 for %d), got %d",
			ErrInvalidConfig, MaxShards, DefaultShards, c.Shards)
	}
	if c.Capacity < c.Shards {
		return fmt.Errorf("%w: Capacity must be at least Shards (%d), or 0 for %d; got %d",
			ErrInvalidConfig, c.Shards, DefaultCapacity, c.Capacity)
	}
	for _, medium := range slices.Sorted(maps.Keys(c.TierWeights)) {
		w := c.TierWeights[medium]
		if medium == "" {
			return fmt.Errorf("%w: TierWeights has an empty medium name; use \"GPU\", \"CPU\", \"STORAGE\" or another medium vLLM reports",
				ErrInvalidConfig)
		}
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return fmt.Errorf("%w: TierWeights[%q] must be a finite number >= 0, got %v",
				ErrInvalidConfig, medium, w)
		}
	}
	return nil
}

// MemIndex is the in-memory Index: a fixed array of shards, each a
// pointer-free open-addressing table from block key to the compact set of
// (pod, tier, refcount) entries that hold it. See doc.go for the layout's
// cost; it stores one (block, pod) entry in roughly 20-35 bytes.
//
// Writers lock one shard per key; Score takes each key's shard lock for
// reading, so readers never wait behind writers on other shards, and only
// for one key's update on their own. ClearPod and Clear sweep shard by
// shard, in chunks, rather than stopping the index.
//
// Add, Remove and Score never fail except that Add returns ErrTooManyPods
// once MaxPods distinct pods have been seen; ClearPod and Clear return
// ctx.Err() if ctx ends mid-sweep, leaving what they cleared cleared.
//
// Tiers at or above MaxTiers are folded into the last tier, as TierOf does.
//
// The zero MemIndex is not usable; call NewMemIndex.
type MemIndex struct {
	shards  []shard
	shift   uint // h>>shift picks the shard
	cfg     MemIndexConfig
	weights [MaxTiers]float64
	pods    podRegistry
	scratch sync.Pool // *scoreScratch

	// Score's counters; on their own line, away from the read-mostly
	// fields above.
	_       [64]byte
	lookups atomic.Uint64
	hits    atomic.Uint64
}

var _ Index = (*MemIndex)(nil)

// NewMemIndex returns an empty index, or an error wrapping ErrInvalidConfig
// that names the offending field.
func NewMemIndex(cfg MemIndexConfig) (*MemIndex, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	x := &MemIndex{
		shards:  make([]shard, cfg.Shards),
		shift:   uint(64 - bits.TrailingZeros(uint(cfg.Shards))),
		cfg:     cfg,
		weights: cfg.TierWeights.Table(),
	}
	limit := (cfg.Capacity + cfg.Shards - 1) / cfg.Shards
	for i := range x.shards {
		x.shards[i].limit = limit
	}
	x.scratch.New = func() any { return new(scoreScratch) }
	return x, nil
}

// Config returns the configuration the index runs with, defaults applied.
func (x *MemIndex) Config() MemIndexConfig {
	c := x.cfg
	c.TierWeights = maps.Clone(c.TierWeights)
	return c
}

func (x *MemIndex) shardOf(h uint64) *shard {
	// Shifting a uint64 by 64 yields 0, which is right for one shard.
	return &x.shards[h>>x.shift]
}

func foldTier(t Tier) Tier {
	return min(t, MaxTiers-1)
}

// Add records that pod holds keys on tier; see Index.Add.
func (x *MemIndex) Add(_ context.Context, pod Pod, tier Tier, keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	id, err := x.pods.intern(pod)
	if err != nil {
		return fmt.Errorf("kvblock: add %d keys for %s: %w", len(keys), pod, err)
	}
	count := &x.pods.state(id).entries
	e := entryOf(id, foldTier(tier))
	for _, k := range keys {
		h := mix(uint64(k))
		s := x.shardOf(h)
		s.mu.Lock()
		if s.addLocked(h, e) {
			count.Add(1)
			if s.entries > s.limit {
				s.evictLocked(&x.pods)
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// Remove drops one reference to each (key, pod, tier); see Index.Remove.
func (x *MemIndex) Remove(_ context.Context, pod Pod, tier Tier, keys []Key) error {
	id, ok := x.pods.lookup(pod)
	if !ok {
		return nil
	}
	count := &x.pods.state(id).entries
	e := entryOf(id, foldTier(tier)) & entryIDMask
	for _, k := range keys {
		h := mix(uint64(k))
		s := x.shardOf(h)
		s.mu.Lock()
		if s.removeLocked(h, e) {
			count.Add(-1)
		}
		s.mu.Unlock()
	}
	return nil
}

// ClearPod drops every entry of pod. It sweeps each shard in chunks of
// sweepChunk slots, releasing the lock between chunks, and stops early once
// the pod's entry count reaches zero. An Add for the same pod running
// concurrently may or may not survive.
func (x *MemIndex) ClearPod(ctx context.Context, pod Pod) error {
	id, ok := x.pods.lookup(pod)
	if !ok {
		return nil
	}
	count := &x.pods.state(id).entries
	for i := range x.shards {
		if count.Load() <= 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kvblock: clear pod %s: %w", pod, err)
		}
		s := &x.shards[i]
		pos, gen := 0, uint64(0)
		for done := false; !done; {
			s.mu.Lock()
			if s.gen != gen {
				// The table was replaced since the last chunk: start over.
				// Only growth replaces it, so this ends.
				pos, gen = 0, s.gen
			}
			var n int
			n, done = s.sweepPodLocked(&pos, id)
			count.Add(-int64(n))
			s.mu.Unlock()
		}
	}
	return nil
}

// Clear drops every entry, one shard at a time.
func (x *MemIndex) Clear(ctx context.Context) error {
	var dropped []int64
	for i := range x.shards {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kvblock: clear: %w", err)
		}
		s := &x.shards[i]
		s.mu.Lock()
		// Pods interned before this lock are all the pods this shard
		// can hold entries for.
		if n := int(x.pods.n.Load()); len(dropped) < n {
			dropped = append(dropped, make([]int64, n-len(dropped))...)
		}
		s.resetLocked(dropped)
		s.mu.Unlock()
	}
	for id, n := range dropped {
		if n != 0 {
			x.pods.state(uint32(id)).entries.Add(-n)
		}
	}
	return nil
}

// Stats reports the index's size and counters. Each shard is read under its
// own lock, so under concurrent writes the totals are a near-snapshot.
func (x *MemIndex) Stats(context.Context) (Stats, error) {
	var st Stats
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.RLock()
		st.Keys += int64(s.keys)
		st.Entries += int64(s.entries)
		st.Admissions += s.admissions
		st.Evictions += s.evictions
		st.Removals += s.removals
		s.mu.RUnlock()
	}
	st.Pods = x.pods.liveCount()
	st.Lookups = x.lookups.Load()
	st.Hits = x.hits.Load()
	return st, nil
}

// scoreScratch is Score's working memory, pooled so that a warm Score
// allocates nothing. Candidates are numbered by first appearance ("slots");
// the walk keeps them as bitsets.
type scoreScratch struct {
	ids      []int32   // per candidate: pod id, or -1 if never seen
	slotOf   []int32   // per pod id: 1 + the candidate slot, 0 if not a candidate
	uniq     []uint32  // pod id per slot, to reset slotOf
	alive    []uint64  // slots still matching every key so far
	present  []uint64  // slots holding the current key
	cur      []float64 // per slot: best tier weight for the current key
	weighted []float64 // per slot
	matched  []int32   // per slot, set when the slot drops out
}

// Score walks keys in order for the candidates; see Index.Score. With a dst
// of sufficient capacity it allocates nothing.
func (x *MemIndex) Score(_ context.Context, keys []Key, candidates []Pod, dst []PodScore) ([]PodScore, error) {
	if len(candidates) == 0 {
		return dst, nil
	}
	dst = slices.Grow(dst, len(candidates))
	sc := x.scratch.Get().(*scoreScratch)
	n := sc.prepare(x.pods.idMap(), candidates)
	if n > 0 && len(keys) > 0 {
		walked, hits := x.walk(keys, sc, n)
		x.lookups.Add(uint64(walked))
		x.hits.Add(uint64(hits))
	}
	for i, p := range candidates {
		ps := PodScore{Pod: p}
		if id := sc.ids[i]; id >= 0 {
			u := sc.slotOf[id] - 1
			ps.Matched = int(sc.matched[u])
			ps.Weighted = sc.weighted[u]
		}
		dst = append(dst, ps)
	}
	sc.reset()
	x.scratch.Put(sc)
	return dst, nil
}

// prepare resolves candidates against the id map and sizes the scratch for
// them; it returns the number of distinct candidates the index knows.
func (sc *scoreScratch) prepare(ids map[Pod]uint32, candidates []Pod) int {
	sc.ids = slices.Grow(sc.ids[:0], len(candidates))[:len(candidates)]
	if len(sc.slotOf) < len(ids) {
		sc.slotOf = make([]int32, len(ids)+len(ids)/4)
	}
	for i, p := range candidates {
		id, ok := ids[p]
		if !ok {
			sc.ids[i] = -1
			continue
		}
		sc.ids[i] = int32(id)
		if sc.slotOf[id] == 0 {
			sc.uniq = append(sc.uniq, id)
			sc.slotOf[id] = int32(len(sc.uniq))
		}
	}
	n := len(sc.uniq)
	words := (n + 63) / 64
	sc.alive = slices.Grow(sc.alive[:0], words)[:words]
	sc.present = slices.Grow(sc.present[:0], words)[:words]
	for w := range sc.alive {
		sc.alive[w] = ^uint64(0)
		sc.present[w] = 0
	}
	if n%64 != 0 {
		sc.alive[words-1] = 1<<(n%64) - 1
	}
	sc.cur = slices.Grow(sc.cur[:0], n)[:n]
	sc.weighted = slices.Grow(sc.weighted[:0], n)[:n]
	sc.matched = slices.Grow(sc.matched[:0], n)[:n]
	clear(sc.weighted)
	clear(sc.matched)
	return n
}

func (sc *scoreScratch) reset() {
	for _, id := range sc.uniq {
		sc.slotOf[id] = 0
	}
	sc.uniq = sc.uniq[:0]
}

// walk runs the longest-prefix walk over keys for the n prepared candidate
// slots, leaving matched and weighted filled in. It returns how many keys it
// looked up and how many of those extended at least one candidate's prefix.
func (x *MemIndex) walk(keys []Key, sc *scoreScratch, n int) (walked, hits int) {
	alive, present := sc.alive, sc.present
	slotOf, cur, weighted, matched := sc.slotOf, sc.cur, sc.weighted, sc.matched
	left := n
	// see marks entry e's pod present for the current key if it is a
	// candidate still alive, keeping its best tier weight.
	see := func(e uint64) {
		pod := entryPod(e)
		if int(pod) >= len(slotOf) {
			return // interned after this Score began: not a candidate
		}
		u := slotOf[pod] - 1
		if u < 0 {
			return
		}
		w, b := u>>6, uint64(1)<<(u&63)
		if alive[w]&b == 0 {
			return
		}
		wt := x.weights[entryTier(e)]
		if present[w]&b == 0 {
			present[w] |= b
			cur[u] = wt
		} else if wt > cur[u] {
			cur[u] = wt
		}
	}
	for i, k := range keys {
		h := mix(uint64(k))
		s := x.shardOf(h)
		s.mu.RLock()
		if j, v := s.findShared(h); j >= 0 {
			s.touchShared(j, v)
			if v&runBit == 0 {
				see(v & payloadMask)
			} else {
				for _, e := range s.runShared(v) {
					see(e)
				}
			}
		}
		s.mu.RUnlock()
		walked++
		hit := false
		for w := range alive {
			p := present[w]
			if gone := alive[w] &^ p; gone != 0 {
				alive[w] = p
				left -= bits.OnesCount64(gone)
				for ; gone != 0; gone &= gone - 1 {
					matched[w<<6|bits.TrailingZeros64(gone)] = int32(i)
				}
			}
			if p != 0 {
				hit = true
				for ; p != 0; p &= p - 1 {
					u := w<<6 | bits.TrailingZeros64(p)
					weighted[u] += cur[u]
				}
				present[w] = 0
			}
		}
		if hit {
			hits++
		}
		if left == 0 {
			return walked, hits
		}
	}
	for w, a := range alive {
		for ; a != 0; a &= a - 1 {
			matched[w<<6|bits.TrailingZeros64(a)] = int32(len(keys))
		}
	}
	return walked, hits
}
