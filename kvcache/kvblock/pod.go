package kvblock

import (
	"strconv"
	"sync"
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

// Tier is the storage medium an engine keeps a block on. The zero value is
// TierGPU, which is what vLLM means when an event carries no medium.
type Tier uint8

// The media vLLM names today. Other media seen in events are interned by
// TierOf under their own names, after these.
const (
	TierGPU     Tier = iota // "GPU": vLLM's GPU block pool
	TierCPU                 // "CPU": CPU offload
	TierStorage             // "STORAGE": disk or remote offload
	numBuiltinTiers
)

// MaxTiers bounds the number of distinct media. A stream that names more
// media than this gets the extra ones folded into the last tier, so a
// misbehaving publisher cannot grow the table without bound.
const MaxTiers = 32

var tiers = struct {
	mu    sync.RWMutex // guards names and ids
	names []string
	ids   map[string]Tier
}{
	names: []string{"GPU", "CPU", "STORAGE"},
	ids:   map[string]Tier{"GPU": TierGPU, "CPU": TierCPU, "STORAGE": TierStorage},
}

// TierOf returns the tier for an event's medium string. The empty string is
// GPU (events before vLLM v0.10.2 carry no medium). Unknown media are interned
// under their own names; past MaxTiers they share the last tier.
func TierOf(medium string) Tier {
	switch medium {
	case "", "GPU":
		return TierGPU
	case "CPU":
		return TierCPU
	case "STORAGE":
		return TierStorage
	}
	tiers.mu.RLock()
	t, ok := tiers.ids[medium]
	tiers.mu.RUnlock()
	if ok {
		return t
	}
	tiers.mu.Lock()
	defer tiers.mu.Unlock()
	if t, ok := tiers.ids[medium]; ok {
		return t
	}
	if len(tiers.names) >= MaxTiers {
		return Tier(MaxTiers - 1)
	}
	t = Tier(len(tiers.names))
	tiers.names = append(tiers.names, medium)
	tiers.ids[medium] = t
	return t
}

// String returns the medium name the tier was created from.
func (t Tier) String() string {
	tiers.mu.RLock()
	defer tiers.mu.RUnlock()
	if int(t) < len(tiers.names) {
		return tiers.names[t]
	}
	return "tier" + strconv.Itoa(int(t))
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

// Table resolves the weights into a table indexed by Tier, interning the
// names it carries.
func (w TierWeights) Table() [MaxTiers]float64 {
	var t [MaxTiers]float64
	for name, v := range w {
		t[TierOf(name)] = v
	}
	return t
}
