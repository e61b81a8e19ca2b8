package kvblock

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Key names one KV-cache block. In the vllm key scheme it is the 64-bit value
// vLLM publishes in BlockStored events (the last 8 bytes of the block hash,
// big-endian); in the tokens scheme it is a blockhash.TokenHasher key.
type Key uint64

// Pod identifies one inference engine: the address:port that requests are
// routed to (what the EPP calls an endpoint) and its data-parallel rank. Each
// DP rank of a vLLM server is an independent engine with its own KV cache and
// its own event stream.
type Pod struct {
	Addr string // "10.0.0.7:8000"
	Rank int    // data-parallel rank; 0 without data parallelism
}

// String returns Addr for rank 0 and "Addr/dpN" otherwise.
func (p Pod) String() string {
	if p.Rank == 0 {
		return p.Addr
	}
	return p.Addr + "/dp" + strconv.Itoa(p.Rank)
}

// Tier is the storage medium an engine keeps a block on, as a small number
// an index can pack into its entries. The zero value is TierGPU, which is
// what vLLM means when an event carries no medium.
//
// Tier numbers are deterministic: the built-in media below are constants,
// every medium a Media table names gets the number its sorted position
// gives it, and every other medium is TierOther. No state is shared
// between tables or learned from events, so a publisher naming ever-new
// media cannot grow anything, and two processes (or two indexes in one)
// configured alike number their tiers alike.
type Tier uint8

// The built-in tiers.
const (
	TierGPU     Tier = iota // "GPU": vLLM's GPU block pool
	TierCPU                 // "CPU": CPU offload
	TierStorage             // "STORAGE": disk or remote offload
	// TierSpeculative ("SPECULATIVE") holds entries a router records for
	// blocks it expects a pod to compute, before any event confirms them.
	// No event medium maps to it, so an engine cannot touch those entries.
	TierSpeculative
	numBuiltinTiers

	// TierOther is every medium its table does not name: media absent from
	// the configuration share it (they weigh 0), and tiers beyond MaxTiers
	// fold into it.
	TierOther Tier = MaxTiers - 1
)

// MaxTiers bounds the number of tiers; an index packs a tier into 5 bits.
const MaxTiers = 32

// MaxMedia is the number of media a Media table can name besides the
// built-in ones.
const MaxMedia = int(TierOther - numBuiltinTiers)

// Names of the built-in tiers and of TierOther. The parentheses keep
// TierOther's name from being any medium's.
var builtinNames = [numBuiltinTiers]string{"GPU", "CPU", "STORAGE", "SPECULATIVE"}

const otherName = "(other)"

// builtinTier returns the built-in tier named medium. The empty medium is
// GPU (events before vLLM v0.10.2 carry none).
func builtinTier(medium string) (Tier, bool) {
	switch medium {
	case "", "GPU":
		return TierGPU, true
	case "CPU":
		return TierCPU, true
	case "STORAGE":
		return TierStorage, true
	case "SPECULATIVE":
		return TierSpeculative, true
	}
	return TierOther, false
}

// TierOf returns the tier of an event's medium in the table of built-in
// media only, (*Media)(nil): GPU for "" and "GPU", CPU, STORAGE, and
// TierOther for anything else, "SPECULATIVE" included.
func TierOf(medium string) Tier {
	t, _ := (*Media)(nil).Tier(medium)
	return t
}

// String returns the tier's name in the table of built-in media: the
// medium for a built-in tier, "(other)" for TierOther, "tier<N>" for a
// tier only a Media table can name.
func (t Tier) String() string { return (*Media)(nil).Name(t) }

// Media is an immutable table of the media an index and the event pool
// feeding it tell apart. It numbers the built-in media as their constants
// do and the others it names from numBuiltinTiers on, in sorted order, so
// the same names always give the same numbers. Build it once from the
// configuration (TierWeights.Media) and give the same table to the index
// and to the pool. A nil *Media names the built-in media only.
//
// A Media is safe for concurrent use: nothing changes it after NewMedia.
type Media struct {
	names []string // by tier, from numBuiltinTiers
	ids   map[string]Tier
}

// NewMedia returns the table naming the built-in media and names. Built-in
// names among names, duplicates and the empty name are ignored. Past
// MaxMedia distinct names, the last in sorted order are left out (they are
// TierOther); TierWeights.Validate reports that as an error.
func NewMedia(names ...string) *Media {
	extra := make([]string, 0, len(names))
	for _, n := range names {
		if _, builtin := builtinTier(n); !builtin && n != otherName {
			extra = append(extra, n)
		}
	}
	slices.Sort(extra)
	extra = slices.Compact(extra)
	extra = extra[:min(len(extra), MaxMedia)]
	m := &Media{names: extra, ids: make(map[string]Tier, len(extra))}
	for i, n := range extra {
		m.ids[n] = numBuiltinTiers + Tier(i)
	}
	return m
}

// Tier returns the tier of an event's medium; ok is false, and the tier
// TierOther, for a medium the table does not name. "SPECULATIVE" is never
// an event's medium: it too is TierOther, not ok.
func (m *Media) Tier(medium string) (t Tier, ok bool) {
	if t, ok := builtinTier(medium); ok {
		if t == TierSpeculative {
			return TierOther, false
		}
		return t, true
	}
	if m != nil {
		if t, ok := m.ids[medium]; ok {
			return t, true
		}
	}
	return TierOther, false
}

// Name returns the medium of tier t: its built-in name, a name of the
// table, "(other)" for TierOther (and for tiers beyond MaxTiers, which
// fold into it), or "tier<N>" for a number the table does not use.
func (m *Media) Name(t Tier) string {
	switch {
	case t < numBuiltinTiers:
		return builtinNames[t]
	case t >= TierOther:
		return otherName
	case m != nil && int(t-numBuiltinTiers) < len(m.names):
		return m.names[t-numBuiltinTiers]
	}
	return "tier" + strconv.Itoa(int(t))
}

// Len returns the number of tiers the table names, the built-in ones
// included (TierOther is not counted).
func (m *Media) Len() int {
	if m == nil {
		return int(numBuiltinTiers)
	}
	return int(numBuiltinTiers) + len(m.names)
}

// TierWeights maps a medium name to the weight a block held on that medium
// contributes to a pod's weighted score. Media absent from the map weigh 0.
type TierWeights map[string]float64

// DefaultTierWeights returns the weights kvtrack uses unless configured:
// a block in GPU memory is worth 1, one offloaded to CPU memory 0.8 (it must
// be copied back before use), one in storage 0.5.
func DefaultTierWeights() TierWeights {
	return TierWeights{"GPU": 1.0, "CPU": 0.8, "STORAGE": 0.5}
}

// ErrTooManyMedia is wrapped by TierWeights.Validate when the weights name
// more than MaxMedia media besides the built-in ones.
var ErrTooManyMedia = errors.New("more media than tiers")

// Validate reports weights that no table can hold: more than MaxMedia
// media besides the built-in ones, or the name of TierOther.
func (w TierWeights) Validate() error {
	n := 0
	for name := range w {
		if name == otherName {
			return fmt.Errorf("%q names the tier of unconfigured media, not a medium", otherName)
		}
		if _, builtin := builtinTier(name); !builtin {
			n++
		}
	}
	if n > MaxMedia {
		return fmt.Errorf("%w: %d media besides GPU, CPU, STORAGE and SPECULATIVE; at most %d", ErrTooManyMedia, n, MaxMedia)
	}
	return nil
}

// Media returns the table of the media w names (and the built-in ones).
func (w TierWeights) Media() *Media {
	return NewMedia(slices.Collect(maps.Keys(w))...)
}

// Table resolves the weights into a table indexed by Tier, numbered as
// w.Media() numbers them. TierOther weighs 0.
func (w TierWeights) Table() [MaxTiers]float64 {
	return w.TableFor(w.Media())
}

// TableFor resolves the weights into a table indexed by m's tiers.
func (w TierWeights) TableFor(m *Media) [MaxTiers]float64 {
	var t [MaxTiers]float64
	for i := range m.Len() {
		t[i] = w[m.Name(Tier(i))]
	}
	return t
}
