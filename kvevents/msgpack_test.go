package kvevents

import (
	"encoding/binary"
	"math"
)

// A tiny msgpack writer for tests. Each helper returns the exact bytes of one
// value, so a test states the wire form it exercises (integer widths,
// fixarray vs array16, ...) instead of trusting an encoder's choices.

type mp []byte

func cat(parts ...mp) mp {
	var out mp
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func mpNil() mp { return mp{0xc0} }

// mpInt encodes v the way msgspec and msgpack-python do: the smallest form,
// unsigned family for non-negative values.
func mpInt(v int64) mp {
	switch {
	case v >= 0 && v <= 0x7f:
		return mp{byte(v)}
	case v >= 0:
		return mpUint(uint64(v))
	case v >= -32:
		return mp{byte(int8(v))}
	case v >= math.MinInt8:
		return mp{0xd0, byte(int8(v))}
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(mp{0xd1}, uint16(int16(v)))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(mp{0xd2}, uint32(int32(v)))
	}
	return binary.BigEndian.AppendUint64(mp{0xd3}, uint64(v))
}

func mpUint(v uint64) mp {
	switch {
	case v <= 0x7f:
		return mp{byte(v)}
	case v <= math.MaxUint8:
		return mp{0xcc, byte(v)}
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(mp{0xcd}, uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(mp{0xce}, uint32(v))
	}
	return binary.BigEndian.AppendUint64(mp{0xcf}, v)
}

// Fixed-width integers, as some publishers send them.
func mpU8(v uint8) mp   { return mp{0xcc, v} }
func mpU16(v uint16) mp { return binary.BigEndian.AppendUint16(mp{0xcd}, v) }
func mpU32(v uint32) mp { return binary.BigEndian.AppendUint32(mp{0xce}, v) }
func mpU64(v uint64) mp { return binary.BigEndian.AppendUint64(mp{0xcf}, v) }
func mpI8(v int8) mp    { return mp{0xd0, byte(v)} }
func mpI16(v int16) mp  { return binary.BigEndian.AppendUint16(mp{0xd1}, uint16(v)) }
func mpI32(v int32) mp  { return binary.BigEndian.AppendUint32(mp{0xd2}, uint32(v)) }
func mpI64(v int64) mp  { return binary.BigEndian.AppendUint64(mp{0xd3}, uint64(v)) }

func mpF64(v float64) mp { return binary.BigEndian.AppendUint64(mp{0xcb}, math.Float64bits(v)) }

func mpStr(s string) mp {
	n := len(s)
	var h mp
	switch {
	case n < 32:
		h = mp{0xa0 | byte(n)}
	case n <= math.MaxUint8:
		h = mp{0xd9, byte(n)}
	case n <= math.MaxUint16:
		h = binary.BigEndian.AppendUint16(mp{0xda}, uint16(n))
	default:
		h = binary.BigEndian.AppendUint32(mp{0xdb}, uint32(n))
	}
	return append(h, s...)
}

func mpBin(b []byte) mp {
	n := len(b)
	var h mp
	switch {
	case n <= math.MaxUint8:
		h = mp{0xc4, byte(n)}
	case n <= math.MaxUint16:
		h = binary.BigEndian.AppendUint16(mp{0xc5}, uint16(n))
	default:
		h = binary.BigEndian.AppendUint32(mp{0xc6}, uint32(n))
	}
	return append(h, b...)
}

func mpArr(elems ...mp) mp {
	n := len(elems)
	var h mp
	switch {
	case n < 16:
		h = mp{0x90 | byte(n)}
	case n <= math.MaxUint16:
		h = binary.BigEndian.AppendUint16(mp{0xdc}, uint16(n))
	default:
		h = binary.BigEndian.AppendUint32(mp{0xdd}, uint32(n))
	}
	return append(h, cat(elems...)...)
}

// mpMap takes alternating keys and values.
func mpMap(kv ...mp) mp {
	n := len(kv) / 2
	var h mp
	switch {
	case n < 16:
		h = mp{0x80 | byte(n)}
	default:
		h = binary.BigEndian.AppendUint16(mp{0xde}, uint16(n))
	}
	return append(h, cat(kv...)...)
}

func mpUints(vs ...uint64) mp {
	elems := make([]mp, len(vs))
	for i, v := range vs {
		elems[i] = mpUint(v)
	}
	return mpArr(elems...)
}

func mpTokens(ts []uint32) mp {
	elems := make([]mp, len(ts))
	for i, v := range ts {
		elems[i] = mpUint(uint64(v))
	}
	return mpArr(elems...)
}

func mpOptStr(s string) mp {
	if s == "" {
		return mpNil()
	}
	return mpStr(s)
}
