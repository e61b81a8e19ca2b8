package vllmfake

import (
	"encoding/binary"
	"math"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Layout is the msgpack shape of the events in a batch.
type Layout int

const (
	// LayoutArray is vLLM up to v0.23: every event a positional array of all
	// its fields (12 for BlockStored, 4 for BlockRemoved).
	LayoutArray Layout = iota
	// LayoutMap is vLLM v0.24+: every event a map keyed by field name, with
	// the tag under "type" and None-valued optional fields omitted.
	LayoutMap
)

// Kind is an event's type.
type Kind uint8

// The events vLLM's GPU block pool emits.
const (
	BlockStored Kind = iota
	BlockRemoved
	AllBlocksCleared
)

// Event is one KV-cache event.
type Event struct {
	Kind Kind
	// Hashes are the blocks stored or removed, in chain order.
	Hashes []kvblock.Key
	// Parent is the hash of the block before Hashes[0]; HasParent is false
	// when Hashes[0] is the first block of the prompt.
	Parent    kvblock.Key
	HasParent bool
	// Tokens are the token IDs of the stored blocks (BlockStored only).
	Tokens    []uint32
	BlockSize int
	// Medium is where the blocks live: "" is vLLM's "GPU"; "CPU" or
	// "STORAGE" as its offloading connectors publish them.
	Medium string
}

// medium returns e's medium as vLLM writes it.
func (e *Event) medium() string {
	if e.Medium == "" {
		return "GPU"
	}
	return e.Medium
}

// AppendBatch appends to dst the msgpack encoding of vLLM's EventBatch
// [ts, events, data_parallel_rank] with events in layout, exactly as vLLM's
// msgspec encoder writes it (medium "GPU" unless the event names another,
// group 0, full attention).
func AppendBatch(dst []byte, layout Layout, ts float64, rank int, events []Event) []byte {
	dst = append(dst, 0x93)
	dst = appendFloat(dst, ts)
	dst = appendArrayHeader(dst, len(events))
	for i := range events {
		if layout == LayoutMap {
			dst = appendEventMap(dst, &events[i])
		} else {
			dst = appendEventArray(dst, &events[i])
		}
	}
	return appendInt(dst, int64(rank))
}

func appendEventArray(dst []byte, e *Event) []byte {
	switch e.Kind {
	case BlockStored:
		dst = append(dst, 0x9c) // fixarray(12)
		dst = appendStr(dst, "BlockStored")
		dst = appendHashes(dst, e.Hashes)
		dst = appendParent(dst, e)
		dst = appendTokens(dst, e.Tokens)
		dst = appendInt(dst, int64(e.BlockSize))
		dst = append(dst, 0xc0) // lora_id
		dst = appendStr(dst, e.medium())
		dst = append(dst, 0xc0) // lora_name
		dst = appendNoExtraKeys(dst, len(e.Hashes))
		dst = appendInt(dst, 0) // group_idx
		dst = appendStr(dst, "full_attention")
		return append(dst, 0xc0) // kv_cache_spec_sliding_window
	case BlockRemoved:
		dst = append(dst, 0x94)
		dst = appendStr(dst, "BlockRemoved")
		dst = appendHashes(dst, e.Hashes)
		dst = appendStr(dst, e.medium())
		return appendInt(dst, 0)
	default:
		dst = append(dst, 0x91)
		return appendStr(dst, "AllBlocksCleared")
	}
}

func appendEventMap(dst []byte, e *Event) []byte {
	switch e.Kind {
	case BlockStored:
		dst = append(dst, 0x8b) // 11 entries written (sliding window omitted)
		dst = appendStr(dst, "type")
		dst = appendStr(dst, "BlockStored")
		dst = appendStr(dst, "block_hashes")
		dst = appendHashes(dst, e.Hashes)
		dst = appendStr(dst, "parent_block_hash")
		dst = appendParent(dst, e)
		dst = appendStr(dst, "token_ids")
		dst = appendTokens(dst, e.Tokens)
		dst = appendStr(dst, "block_size")
		dst = appendInt(dst, int64(e.BlockSize))
		dst = appendStr(dst, "lora_id")
		dst = append(dst, 0xc0)
		dst = appendStr(dst, "medium")
		dst = appendStr(dst, e.medium())
		dst = appendStr(dst, "lora_name")
		dst = append(dst, 0xc0)
		dst = appendStr(dst, "extra_keys")
		dst = appendNoExtraKeys(dst, len(e.Hashes))
		dst = appendStr(dst, "group_idx")
		dst = appendInt(dst, 0)
		dst = appendStr(dst, "kv_cache_spec_kind")
		return appendStr(dst, "full_attention")
	case BlockRemoved:
		dst = append(dst, 0x84)
		dst = appendStr(dst, "type")
		dst = appendStr(dst, "BlockRemoved")
		dst = appendStr(dst, "block_hashes")
		dst = appendHashes(dst, e.Hashes)
		dst = appendStr(dst, "medium")
		dst = appendStr(dst, e.medium())
		dst = appendStr(dst, "group_idx")
		return appendInt(dst, 0)
	default:
		dst = append(dst, 0x81)
		dst = appendStr(dst, "type")
		return appendStr(dst, "AllBlocksCleared")
	}
}

func appendParent(dst []byte, e *Event) []byte {
	if !e.HasParent {
		return append(dst, 0xc0)
	}
	return appendUint(dst, uint64(e.Parent))
}

func appendHashes(dst []byte, hs []kvblock.Key) []byte {
	dst = appendArrayHeader(dst, len(hs))
	for _, h := range hs {
		dst = appendUint(dst, uint64(h))
	}
	return dst
}

func appendTokens(dst []byte, ts []uint32) []byte {
	dst = appendArrayHeader(dst, len(ts))
	for _, t := range ts {
		dst = appendUint(dst, uint64(t))
	}
	return dst
}

// appendNoExtraKeys writes extra_keys as vLLM does for blocks without any:
// one nil per block.
func appendNoExtraKeys(dst []byte, n int) []byte {
	dst = appendArrayHeader(dst, n)
	for range n {
		dst = append(dst, 0xc0)
	}
	return dst
}

func appendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(n))
	}
}

func appendStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
	}
	return append(dst, s...)
}

// appendUint writes v in the smallest unsigned msgpack form, as msgspec does.
func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
	}
}

func appendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(dst, uint64(v))
	}
	switch {
	case v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
	}
}

func appendFloat(dst []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(f))
}
