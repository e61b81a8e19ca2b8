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

	"github.com/kvtrack/kvtrack/internal/fielderr"
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

	// BlockSize is the number of tokens per block of the keys Score is
	// given (the hash block size). It relates a hybrid model's groups to
	// the keys: a group whose blocks are larger spans several keys per
	// block, and a sliding window in tokens becomes a number of blocks.
	// Zero: every group's block size is taken to be the keys', and a
	// sliding-window group that reports no block size needs every block.
	// It must not be negative.
	BlockSize int `json:"blockSize,omitempty"`
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

// Validate reports every invalid field of c, after defaults: an error
// that wraps ErrInvalidConfig and, for each field, a *fielderr.Error
// naming it as spelled in JSON ("shards", "tierWeights.CPU") and what it
// accepts, in the style kvcache's configuration errors use.
func (c MemIndexConfig) Validate() error {
	c = c.withDefaults()
	var errs fielderr.List
	bad := errs.Add
	if c.Shards < 1 || c.Shards > MaxShards || c.Shards&(c.Shards-1) != 0 {
		bad("shards", "%d out of range (valid: a power of two from 1 to %d, or 0 for %d)", c.Shards, MaxShards, DefaultShards)
	}
	if c.BlockSize < 0 {
		bad("blockSize", "%d is negative (valid: the keys' block size in tokens, or 0)", c.BlockSize)
	}
	if c.Capacity < c.Shards {
		bad("capacity", "%d is below shards (%d) (valid: a number of entries no smaller than shards, or 0 for %d)", c.Capacity, c.Shards, DefaultCapacity)
	}
	for _, medium := range slices.Sorted(maps.Keys(c.TierWeights)) {
		w := c.TierWeights[medium]
		switch {
		case medium == "":
			bad("tierWeights", "an empty medium name (valid: \"GPU\", \"CPU\", \"STORAGE\" or another medium vLLM reports)")
		case math.IsNaN(w) || math.IsInf(w, 0) || w < 0:
			bad("tierWeights."+medium, "%v (valid: a finite number >= 0)", w)
		}
	}
	if err := c.TierWeights.Validate(); err != nil {
		bad("tierWeights", "%w", err)
	}
	if err := errs.Err(); err != nil {
		return invalidConfig{err}
	}
	return nil
}

// invalidConfig is Validate's error: the fields' errors, and
// ErrInvalidConfig to errors.Is.
type invalidConfig struct{ fields error }

func (e invalidConfig) Error() string        { return e.fields.Error() }
func (e invalidConfig) Unwrap() []error      { return []error{ErrInvalidConfig, e.fields} }
func (e invalidConfig) Is(target error) bool { return target == ErrInvalidConfig }

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
// Tiers are numbered by TierWeights.Media of the configured weights; give
// the event source the same table. Tiers at or above MaxTiers are folded
// into TierOther.
//
// The zero MemIndex is not usable; call NewMemIndex.
type MemIndex struct {
	shards  []shard
	shift   uint // h>>shift picks the shard
	cfg     MemIndexConfig
	weights [MaxTiers]float64
	// topWeight is the largest of weights: the weight of a block on the
	// best tier, which Score's accounting is relative to.
	topWeight float64
	topTiers  uint32 // bit t set when tier t weighs topWeight
	pods      podRegistry
	scratch   sync.Pool // *scoreScratch

	groupMu    sync.Mutex   // serialises changes to pods' group descriptions
	hybridPods atomic.Int64 // pods with hybrid groups; Score skips its check while 0

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
	x.topWeight = slices.Max(x.weights[:])
	for t, w := range x.weights {
		if w == x.topWeight {
			x.topTiers |= 1 << t
		}
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
	e := entryOf(id, foldTier(tier))
	for _, k := range keys {
		h := mix(uint64(k))
		x.shardOf(h).add(h, e, &x.pods)
	}
	return nil
}

// Remove drops one reference to each (key, pod, tier); see Index.Remove.
func (x *MemIndex) Remove(_ context.Context, pod Pod, tier Tier, keys []Key) error {
	id, ok := x.pods.lookup(pod)
	if !ok {
		return nil
	}
	e := entryOf(id, foldTier(tier)) & entryIDMask
	for _, k := range keys {
		h := mix(uint64(k))
		x.shardOf(h).remove(h, e, &x.pods)
	}
	return nil
}

// ClearPod drops every entry of pod. It sweeps each shard in chunks of
// sweepChunk slots, releasing the shard between chunks, and stops early
// once the pod's entry count reaches zero. An Add for the same pod running
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
		pos, gen := 0, uint64(0)
		for done := false; !done; {
			_, done = x.shards[i].sweepPod(&pos, &gen, id, &x.pods)
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
		dropped = x.shards[i].reset(dropped, &x.pods)
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
		x.shards[i].stats(&st)
	}
	st.Pods = x.pods.liveCount()
	st.Lookups = x.lookups.Load()
	st.Hits = x.hits.Load()
	return st, nil
}

// scoreScratch is Score's working memory, pooled so that a warm Score
// allocates nothing. Distinct known candidates are numbered by first
// appearance ("slots"); the walk keeps sets of slots as bitsets.
type scoreScratch struct {
	slotOfCand []int32   // per candidate: its slot, or -1 if the index never saw it
	slotOf     []int32   // per pod id: 1 + its slot while it still matches, else 0
	bitOf      []uint64  // per pod id: walk64's bit for its slot while it still matches, else 0
	podOf      []uint32  // per slot: pod id
	alive      []uint64  // slots matching every key so far
	present    []uint64  // slots holding the current key
	acc        []slotAcc // per slot
	matched    []int32   // per slot, set when the slot drops out
	entries    []uint64  // the current key's entries
	sink       uint64    // keeps the walk's lookahead loads alive

	// The hybrid walk's (see hybrid.go).
	hyb      []hybridCand
	hybScore []PodScore
	bits     []uint64
	best     []float64
	runs     []int32
}

// slotAcc accumulates one candidate slot's weight. The walk does not add
// a weight per matched key: it adds, for keys whose best tier weighs less
// than the top weight, the shortfall, and finish computes the weight as
// matched*top - deficit. Keys held on the top tier, the common case, cost
// nothing.
type slotAcc struct {
	cur      float64 // best tier weight for the current key, if below top
	deficit  float64 // sum of top - best over the keys matched so far
	weighted float64 // set by finish
}

// Score walks keys in order for the candidates; see Index.Score. It takes
// no lock: it reads each key's shard optimistically and retries if a writer
// changed it meanwhile. With a dst of sufficient capacity it allocates
// nothing.
func (x *MemIndex) Score(_ context.Context, keys []Key, candidates []Pod, dst []PodScore) ([]PodScore, error) {
	if len(candidates) == 0 {
		return dst, nil
	}
	dst = slices.Grow(dst, len(candidates))
	sc := x.scratch.Get().(*scoreScratch)
	known := sc.resolve(x.pods.idMap(), candidates)
	hybrid := 0
	if known > 0 && x.hybridPods.Load() > 0 {
		hybrid = sc.splitHybrid(&x.pods)
		known -= hybrid
	}
	if known > 0 && len(keys) > 0 {
		// Only candidates holding the first key can match anything:
		// number just those, so the walk usually fits walk64.
		h := mix(uint64(keys[0]))
		sc.entries = x.shardOf(h).lookup(h, sc.entries)
		walked, hits := 1, 0
		if n := sc.number(sc.entries); n > 0 {
			walk := x.walk
			if n <= 64 {
				walk = x.walk64
			}
			walked, hits = walk(keys, sc, n)
		}
		x.lookups.Add(uint64(walked))
		x.hits.Add(uint64(hits))
	} else {
		sc.number(nil)
	}
	sc.finish(len(keys), x.topWeight)
	for i, p := range candidates {
		ps := PodScore{Pod: p}
		if u := sc.slotOfCand[i]; u >= 0 {
			ps.Matched = int(sc.matched[u])
			ps.Weighted = sc.acc[u].weighted
		}
		dst = append(dst, ps)
	}
	if hybrid > 0 && len(keys) > 0 {
		walked, hits := x.walkHybrid(keys, sc)
		x.lookups.Add(uint64(walked))
		x.hits.Add(uint64(hits))
		base := len(dst) - len(candidates)
		for u, hc := range sc.hyb {
			ps := &dst[base+hc.cand]
			ps.Matched, ps.Weighted = sc.hybScore[u].Matched, sc.hybScore[u].Weighted
		}
	}
	x.scratch.Put(sc)
	return dst, nil
}

// resolve looks candidates up in the id map, leaving each one's pod id, or
// -1, in slotOfCand; it returns how many the index knows.
func (sc *scoreScratch) resolve(ids map[Pod]uint32, candidates []Pod) (known int) {
	sc.slotOfCand = slices.Grow(sc.slotOfCand[:0], len(candidates))[:len(candidates)]
	if len(sc.slotOf) < len(ids) {
		sc.slotOf = make([]int32, len(ids)+len(ids)/4)
		sc.bitOf = make([]uint64, len(sc.slotOf))
	}
	for i, p := range candidates {
		id, ok := ids[p]
		if !ok {
			sc.slotOfCand[i] = -1
			continue
		}
		sc.slotOfCand[i] = int32(id)
		known++
	}
	return known
}

// holdsFirst marks, in slotOf, a pod holding the first key while number
// runs.
const holdsFirst = -1

// number gives a slot to each distinct resolved candidate among the pods of
// the first key's entries, turning slotOfCand from pod ids into slots (-1
// for candidates that score 0), and sizes the scratch for them. It returns
// the number of slots.
func (sc *scoreScratch) number(first []uint64) int {
	slotOf := sc.slotOf
	for _, e := range first {
		if p := entryPod(e); int(p) < len(slotOf) {
			slotOf[p] = holdsFirst
		}
	}
	sc.podOf = sc.podOf[:0]
	for i, id := range sc.slotOfCand {
		if id < 0 {
			continue
		}
		if slotOf[id] == holdsFirst {
			sc.podOf = append(sc.podOf, uint32(id))
			slotOf[id] = int32(len(sc.podOf))
		}
		sc.slotOfCand[i] = slotOf[id] - 1 // -1 unless it holds the first key
	}
	for _, e := range first {
		if p := entryPod(e); int(p) < len(slotOf) && slotOf[p] == holdsFirst {
			slotOf[p] = 0
		}
	}
	n := len(sc.podOf)
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
	sc.acc = slices.Grow(sc.acc[:0], n)[:n]
	sc.matched = slices.Grow(sc.matched[:0], n)[:n]
	clear(sc.acc)
	return n
}

// finish records matched = total for the slots still alive, computes the
// weights, and clears slotOf for the next Score.
func (sc *scoreScratch) finish(total int, top float64) {
	for w, a := range sc.alive {
		for ; a != 0; a &= a - 1 {
			sc.matched[w<<6|bits.TrailingZeros64(a)] = int32(total)
		}
	}
	for u := range sc.acc {
		a := &sc.acc[u]
		a.weighted = max(0, float64(sc.matched[u])*top-a.deficit)
	}
	for _, id := range sc.podOf {
		sc.slotOf[id] = 0
	}
}

// lookahead is how many keys ahead of the current one the walk touches.
const lookahead = 4

// walk64 is walk for at most 64 candidates, the common case. The candidate
// sets live in registers, and each key's entries are read in place from the
// shard under its sequence count: present is only trusted, and weights only
// added, once the read validates.
//
// An entry costs a table load and an OR: bitOf maps a pod id straight to
// its candidate bit (0 once it stopped matching or if it is no candidate),
// and entries on a top-weight tier, the common case, need nothing else.
func (x *MemIndex) walk64(keys []Key, sc *scoreScratch, _ int) (walked, hits int) {
	podOf, acc, matched := sc.podOf, sc.acc, sc.matched
	bitOf := sc.bitOf
	for u, id := range podOf {
		bitOf[id] = 1 << u
	}
	weights := &x.weights
	top, topTiers := x.topWeight, x.topTiers
	alive := sc.alive[0]
	// onTop: candidates holding the current key on a top-weight tier;
	// below: those holding it on a lighter one, their best weight in
	// acc[u].cur.
	var onTop, below uint64
	var sink uint64
	// visit records entry e for its candidate, if any.
	visit := func(e uint64) {
		pod := entryPod(e)
		if int(pod) >= len(bitOf) {
			return // interned after this Score began: not a candidate
		}
		b := bitOf[pod]
		tier := entryTier(e)
		if topTiers>>tier&1 != 0 {
			onTop |= b
			return
		}
		if b == 0 {
			return
		}
		a := &acc[bits.TrailingZeros64(b)]
		if wt := weights[tier]; below&b == 0 {
			below |= b
			a.cur = wt
		} else if wt > a.cur {
			a.cur = wt
		}
	}
	for i, k := range keys {
		if i+lookahead < len(keys) {
			ha := mix(uint64(keys[i+lookahead]))
			sink += x.shardOf(ha).touch(ha)
		}
		h := mix(uint64(k))
		s := x.shardOf(h)
		for attempt := 0; ; attempt++ {
			onTop, below = 0, 0
			if attempt == readRetries {
				sc.entries = s.lookup(h, sc.entries)
				for _, e := range sc.entries {
					visit(e)
				}
				break
			}
			v, view, seq, ok := s.locate(h)
			if !ok {
				continue
			}
			if v&runBit == 0 {
				if v != 0 {
					visit(v & payloadMask)
				}
			} else {
				run, ok := runIn(view, v)
				if !ok {
					continue
				}
				for j := range run {
					visit(atomic.LoadUint64(&run[j]))
				}
			}
			if s.unchanged(seq) {
				break
			}
		}
		walked++
		present := onTop | below
		if present != 0 {
			hits++
			for short := below &^ onTop; short != 0; short &= short - 1 {
				a := &acc[bits.TrailingZeros64(short)]
				a.deficit += top - a.cur
			}
		}
		if gone := alive &^ present; gone != 0 {
			alive &= present
			for ; gone != 0; gone &= gone - 1 {
				u := bits.TrailingZeros64(gone)
				matched[u] = int32(i)
				bitOf[podOf[u]] = 0
			}
		}
		if alive == 0 {
			break
		}
	}
	for _, id := range podOf {
		bitOf[id] = 0
	}
	sc.sink = sink
	sc.alive[0] = alive
	return walked, hits
}

// walk runs the longest-prefix walk over keys for the n prepared candidate
// slots, leaving matched and weighted filled in. It returns how many keys it
// looked up and how many of those extended at least one candidate's prefix.
func (x *MemIndex) walk(keys []Key, sc *scoreScratch, n int) (walked, hits int) {
	alive, present := sc.alive, sc.present
	slotOf, podOf, acc, matched := sc.slotOf, sc.podOf, sc.acc, sc.matched
	weights, top := &x.weights, x.topWeight
	entries := sc.entries
	left := n
	var sink uint64
	for i, k := range keys {
		if i+lookahead < len(keys) {
			ha := mix(uint64(keys[i+lookahead]))
			sink += x.shardOf(ha).touch(ha)
		}
		h := mix(uint64(k))
		entries = x.shardOf(h).lookup(h, entries)
		for _, e := range entries {
			// Mark the entry's pod present if it is a candidate still
			// matching, keeping its best tier weight for this key.
			pod := entryPod(e)
			if int(pod) >= len(slotOf) {
				continue // interned after this Score began: not a candidate
			}
			u := slotOf[pod] - 1
			if u < 0 {
				continue
			}
			w, b := u>>6, uint64(1)<<(u&63)
			a := &acc[u]
			wt := weights[entryTier(e)]
			if present[w]&b == 0 {
				present[w] |= b
				a.cur = wt
			} else if wt > a.cur {
				a.cur = wt
			}
		}
		walked++
		hit := false
		for w, p := range present {
			if p == 0 && alive[w] == 0 {
				continue
			}
			present[w] = 0
			if p != 0 {
				hit = true
				for q := p; q != 0; q &= q - 1 {
					a := &acc[w<<6|bits.TrailingZeros64(q)]
					a.deficit += top - a.cur
				}
			}
			gone := alive[w] &^ p
			if gone == 0 {
				continue
			}
			alive[w] = p
			left -= bits.OnesCount64(gone)
			for ; gone != 0; gone &= gone - 1 {
				u := w<<6 | bits.TrailingZeros64(gone)
				matched[u] = int32(i)
				slotOf[podOf[u]] = 0 // so later keys skip it
			}
		}
		if hit {
			hits++
		}
		if left == 0 {
			break
		}
	}
	sc.entries, sc.sink = entries, sink
	return walked, hits
}
