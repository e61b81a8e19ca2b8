package kvevents

import "github.com/kvtrack/kvtrack/kvcache/blockhash"

// Kind is the type of a KV-cache event, vLLM's msgspec tag.
type Kind uint8

// The event kinds vLLM, SGLang and compatible publishers emit.
const (
	KindUnknown Kind = iota
	// BlockStored: the engine filled and cached new blocks.
	BlockStored
	// BlockRemoved: the engine evicted blocks.
	BlockRemoved
	// AllBlocksCleared: the engine reset its prefix cache.
	AllBlocksCleared
)

// String returns vLLM's tag for the kind.
func (k Kind) String() string {
	switch k {
	case BlockStored:
		return "BlockStored"
	case BlockRemoved:
		return "BlockRemoved"
	case AllBlocksCleared:
		return "AllBlocksCleared"
	}
	return "Unknown"
}

// Batch is one decoded publisher message: vLLM's EventBatch.
//
// A Batch returned by Decoder.Decode, and every slice and string in it, is
// owned by the Decoder and valid only until its next Decode call.
type Batch struct {
	TS      float64 // publisher wall clock, seconds since the epoch
	DPRank  int     // data_parallel_rank; meaningful when HasRank
	HasRank bool    // false for v0.9.0 batches and an explicit nil
	Events  []Event // the events that decoded; skipped ones are counted below

	// What the decoder skipped while keeping the rest of the batch.
	UnknownTags     int // events whose tag is not a known kind
	UnknownFields   int // map keys and trailing array elements not understood
	MalformedEvents int // events of a known kind with a field of the wrong type
}

// Event is one KV-cache event. Fields a layout does not carry are zero:
// vLLM's None is an empty string, a nil slice, or a false Has flag.
type Event struct {
	Kind Kind

	// BlockHashes are the blocks' 64-bit hashes as vLLM publishes them
	// (bytes hashes are reduced to their last 8 bytes, big-endian).
	BlockHashes []uint64
	// ParentHash is the hash of the block before the first stored one;
	// HasParent is false when the stored run starts at the root (nil or 0 on
	// the wire).
	ParentHash uint64
	HasParent  bool

	TokenIDs  []uint32 // all tokens of the stored blocks (BlockStored)
	BlockSize int      // tokens per block (BlockStored)

	LoraID    int64 // deprecated adapter id; meaningful when HasLoraID
	HasLoraID bool
	LoraName  string
	Medium    string // "GPU", "CPU", "STORAGE", ...; "" when absent

	// ExtraKeys has one entry per stored block (a nil entry: the block has
	// no extra keys), or is nil when the event carries none.
	ExtraKeys [][]ExtraKey

	GroupIdx    int // KV-cache group (hybrid models); meaningful when HasGroupIdx
	HasGroupIdx bool

	SpecKind         string // kv_cache_spec_kind, e.g. "full_attention"
	SlidingWindow    int64  // kv_cache_spec_sliding_window; meaningful when HasSlidingWindow
	HasSlidingWindow bool

	Locality string // "LOCAL" or "REMOTE"; "" when absent
}

// ExtraKind is the type of one extra-key item.
type ExtraKind uint8

// The extra-key item types vLLM emits (vllm-block-hashing.md §4.3).
const (
	ExtraUnknown ExtraKind = iota // a value of another type; it defeats hash checks
	ExtraStr                      // LoRA name, multimodal identifier, cache_salt
	ExtraInt                      // LoRA int id (vLLM <= v0.11.0)
	ExtraMM                       // (identifier, offset) tuple, vLLM v0.19+
	ExtraBytes                    // prompt-embeds digest
)

// ExtraKey is one item of a block's extra keys.
type ExtraKey struct {
	Kind  ExtraKind
	Str   string // ExtraStr, and the identifier of ExtraMM
	Int   int64  // ExtraInt, and the offset of ExtraMM
	Bytes []byte // ExtraBytes
}

// reset clears e for reuse, keeping the capacity of its slices.
func (e *Event) reset() {
	*e = Event{
		BlockHashes: e.BlockHashes[:0],
		TokenIDs:    e.TokenIDs[:0],
		ExtraKeys:   e.ExtraKeys[:0:0],
	}
}

// Block returns the item as a blockhash.ExtraKey, for recomputing block
// hashes; ok is false for an ExtraUnknown item, which no hasher can
// reproduce.
func (k ExtraKey) Block() (_ blockhash.ExtraKey, ok bool) {
	switch k.Kind {
	case ExtraStr:
		return blockhash.ExtraString(k.Str), true
	case ExtraInt:
		return blockhash.ExtraInt(k.Int), true
	case ExtraMM:
		return blockhash.ExtraMM(k.Str, k.Int), true
	case ExtraBytes:
		return blockhash.ExtraBytes(k.Bytes), true
	}
	return blockhash.ExtraKey{}, false
}
