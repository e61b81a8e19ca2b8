// Package mpread reads MessagePack values straight from a byte slice.
//
// It exists for kvevents' decoder, which turns vLLM's KV-event batches into
// reused Go structs on the ingest hot path. A Reader never allocates on the
// success path and never copies: strings and binaries come back as sub-slices
// of the input, valid as long as the input is. Besides the generic reads
// (type peek, array and map headers, str/bin, integers of every width,
// floats, nil, bool, skip) it has the two bulk reads that dominate vLLM's
// batches: token-id arrays (AppendUint32s) and block-hash arrays
// (AppendHashes: integers, or digests such as vLLM's 32-byte hashes).
//
// A Reader trusts nothing it reads. Every length is checked against the bytes
// left before it is used, so a hostile header cannot drive an allocation or
// an out-of-range slice, and Skip walks nested containers with a counter
// instead of recursion, so no nesting depth can exhaust the stack. Errors
// wrap one of the package's sentinels. A read that fails with ErrType
// consumes nothing; after any other error the position is unspecified and
// the input should be abandoned.
//
// A Reader has no internal synchronisation: use one per goroutine. Its zero
// value reads an empty input.
package mpread

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Errors wrapped by the Reader's methods.
var (
	// ErrTruncated: the input ends inside a value.
	ErrTruncated = errors.New("msgpack: truncated")
	// ErrInvalidCode: a byte no msgpack value starts with (0xc1).
	ErrInvalidCode = errors.New("invalid msgpack code")
	// ErrLength: an array or map header claims more elements than the
	// bytes left could hold (each element takes at least one byte).
	ErrLength = errors.New("msgpack: length beyond the remaining bytes")
	// ErrType: the next value is not of the type asked for. Nothing is
	// consumed.
	ErrType = errors.New("msgpack: unexpected type")
	// ErrRange: an integer does not fit the Go type asked for. The value
	// is consumed.
	ErrRange = errors.New("msgpack: integer out of range")
)

// Type is the kind of a msgpack value, told by its first byte.
type Type uint8

// The msgpack types. Int covers every integer encoding, signed or
// unsigned, fixed or sized; Float covers float32 and float64.
const (
	Invalid Type = iota // 0xc1, which msgpack never uses
	Nil
	Bool
	Int
	Float
	Str
	Bin
	Array
	Map
	Ext
)

var typeNames = [...]string{"invalid", "nil", "bool", "int", "float", "str", "bin", "array", "map", "ext"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// msgpack codes, from the specification.
const (
	codeNil     = 0xc0
	codeFalse   = 0xc2
	codeTrue    = 0xc3
	codeBin8    = 0xc4
	codeBin16   = 0xc5
	codeBin32   = 0xc6
	codeExt8    = 0xc7
	codeExt16   = 0xc8
	codeExt32   = 0xc9
	codeFloat32 = 0xca
	codeFloat64 = 0xcb
	codeUint8   = 0xcc
	codeUint16  = 0xcd
	codeUint32  = 0xce
	codeUint64  = 0xcf
	codeInt8    = 0xd0
	codeInt16   = 0xd1
	codeInt32   = 0xd2
	codeInt64   = 0xd3
	codeFixExt1 = 0xd4
	codeFixExt2 = 0xd5
	codeFixExt4 = 0xd6
	codeFixExt8 = 0xd7
	codeFixExt6 = 0xd8 // fixext 16
	codeStr8    = 0xd9
	codeStr16   = 0xda
	codeStr32   = 0xdb
	codeArr16   = 0xdc
	codeArr32   = 0xdd
	codeMap16   = 0xde
	codeMap32   = 0xdf
)

// types maps every first byte to its Type. It is filled once at package
// initialisation and only read afterwards.
var types = func() (t [256]Type) {
	for c := range 256 {
		switch {
		case c <= 0x7f || c >= 0xe0:
			t[c] = Int
		case c <= 0x8f:
			t[c] = Map
		case c <= 0x9f:
			t[c] = Array
		case c <= 0xbf:
			t[c] = Str
		}
	}
	t[codeNil] = Nil
	t[codeFalse], t[codeTrue] = Bool, Bool
	t[codeBin8], t[codeBin16], t[codeBin32] = Bin, Bin, Bin
	t[codeExt8], t[codeExt16], t[codeExt32] = Ext, Ext, Ext
	t[codeFloat32], t[codeFloat64] = Float, Float
	for c := codeUint8; c <= codeInt64; c++ {
		t[c] = Int
	}
	for c := codeFixExt1; c <= codeFixExt6; c++ {
		t[c] = Ext
	}
	t[codeStr8], t[codeStr16], t[codeStr32] = Str, Str, Str
	t[codeArr16], t[codeArr32] = Array, Array
	t[codeMap16], t[codeMap32] = Map, Map
	return t
}()

// TypeOf returns the Type of a value whose first byte is c.
func TypeOf(c byte) Type { return types[c] }

// Reader reads msgpack values from a byte slice, front to back.
type Reader struct {
	b []byte
	i int // offset of the next value in b
}

// Reset makes r read b from its start.
func (r *Reader) Reset(b []byte) { r.b, r.i = b, 0 }

// Remaining returns the number of bytes not read yet.
func (r *Reader) Remaining() int { return len(r.b) - r.i }

// Offset returns the number of bytes read so far.
func (r *Reader) Offset() int { return r.i }

// Peek returns the first byte of the next value without consuming it.
func (r *Reader) Peek() (byte, error) {
	if r.i >= len(r.b) {
		return 0, ErrTruncated
	}
	return r.b[r.i], nil
}

// PeekType returns the Type of the next value without consuming it.
func (r *Reader) PeekType() (Type, error) {
	c, err := r.Peek()
	return types[c], err
}

// Nil consumes the next value if it is nil and reports whether it was.
func (r *Reader) Nil() bool {
	if r.i < len(r.b) && r.b[r.i] == codeNil {
		r.i++
		return true
	}
	return false
}

// Bool reads a boolean.
func (r *Reader) Bool() (bool, error) {
	c, err := r.Peek()
	if err != nil {
		return false, err
	}
	if c != codeFalse && c != codeTrue {
		return false, ErrType
	}
	r.i++
	return c == codeTrue, nil
}

// ArrayLen reads an array header and returns its element count. A count
// the remaining bytes cannot hold is ErrLength, so a hostile count never
// reaches an allocation.
func (r *Reader) ArrayLen() (int, error) {
	return r.containerLen(0x90, codeArr16, codeArr32, 1, "array")
}

// MapLen reads a map header and returns its entry count, checked like
// ArrayLen's (an entry takes at least two bytes).
func (r *Reader) MapLen() (int, error) { return r.containerLen(0x80, codeMap16, codeMap32, 2, "map") }

// containerLen reads the header of an array or map: a fix form (fix to
// fix+15), a 16-bit and a 32-bit length form. Each element takes at least
// size bytes.
func (r *Reader) containerLen(fix, c16, c32 byte, size int, what string) (int, error) {
	c, err := r.Peek()
	if err != nil {
		return 0, err
	}
	var n int
	switch {
	case c >= fix && c <= fix+0x0f:
		r.i++
		n = int(c & 0x0f)
	case c == c16:
		n, err = r.header(2)
	case c == c32:
		n, err = r.header(4)
	default:
		return 0, ErrType
	}
	if err != nil {
		return 0, err
	}
	return n, r.fits(n, size, what)
}

func (r *Reader) fits(n, size int, what string) error {
	if n > r.Remaining()/size {
		return fmt.Errorf("%w: %s of %d elements in %d remaining bytes", ErrLength, what, n, r.Remaining())
	}
	return nil
}

// header consumes a code byte and the big-endian length of w bytes after it.
func (r *Reader) header(w int) (int, error) {
	if r.Remaining() < 1+w {
		return 0, ErrTruncated
	}
	p := r.b[r.i+1 : r.i+1+w]
	r.i += 1 + w
	switch w {
	case 1:
		return int(p[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(p)), nil
	}
	n := int(binary.BigEndian.Uint32(p))
	if n < 0 {
		// Only where int is 32 bits: a length over 2^31 is more than any
		// input there can hold.
		return 0, ErrTruncated
	}
	return n, nil
}

// Bytes reads a str or bin value and returns its bytes, a sub-slice of the
// input (not a copy). msgpack does not promise that a str is UTF-8, and
// Bytes does not check.
func (r *Reader) Bytes() ([]byte, error) {
	c, err := r.Peek()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case c >= 0xa0 && c <= 0xbf: // fixstr: every key and tag vLLM sends
		n = int(c & 0x1f)
		r.i++
	case c == codeStr8 || c == codeBin8:
		n, err = r.header(1)
	case c == codeStr16 || c == codeBin16:
		n, err = r.header(2)
	case c == codeStr32 || c == codeBin32:
		n, err = r.header(4)
	default:
		return nil, ErrType
	}
	if err != nil {
		return nil, err
	}
	if n > r.Remaining() {
		return nil, ErrTruncated
	}
	s := r.b[r.i : r.i+n : r.i+n]
	r.i += n
	return s, nil
}

// IntBits reads an integer of any encoding and returns its 64-bit two's
// complement pattern; neg reports whether the value is negative (only a
// signed encoding can carry one).
func (r *Reader) IntBits() (v uint64, neg bool, err error) {
	if r.i >= len(r.b) {
		return 0, false, ErrTruncated
	}
	c := r.b[r.i]
	if c <= 0x7f {
		r.i++
		return uint64(c), false, nil
	}
	if c >= 0xe0 {
		r.i++
		return uint64(int64(int8(c))), true, nil
	}
	var size int
	switch c {
	case codeUint8, codeInt8:
		size = 1
	case codeUint16, codeInt16:
		size = 2
	case codeUint32, codeInt32:
		size = 4
	case codeUint64, codeInt64:
		size = 8
	default:
		return 0, false, ErrType
	}
	if r.Remaining() < 1+size {
		return 0, false, ErrTruncated
	}
	p := r.b[r.i+1 : r.i+1+size]
	r.i += 1 + size
	switch c {
	case codeUint8:
		return uint64(p[0]), false, nil
	case codeInt8:
		v := int64(int8(p[0]))
		return uint64(v), v < 0, nil
	case codeUint16:
		return uint64(binary.BigEndian.Uint16(p)), false, nil
	case codeInt16:
		v := int64(int16(binary.BigEndian.Uint16(p)))
		return uint64(v), v < 0, nil
	case codeUint32:
		return uint64(binary.BigEndian.Uint32(p)), false, nil
	case codeInt32:
		v := int64(int32(binary.BigEndian.Uint32(p)))
		return uint64(v), v < 0, nil
	case codeUint64:
		return binary.BigEndian.Uint64(p), false, nil
	}
	v = binary.BigEndian.Uint64(p) // codeInt64
	return v, int64(v) < 0, nil
}

// Int reads an integer of any encoding. An unsigned value above
// math.MaxInt64 is ErrRange.
func (r *Reader) Int() (int64, error) {
	v, neg, err := r.IntBits()
	if err != nil {
		return 0, err
	}
	if !neg && v > math.MaxInt64 {
		return 0, ErrRange
	}
	return int64(v), nil
}

// Uint reads an integer of any encoding. A negative value is ErrRange.
func (r *Reader) Uint() (uint64, error) {
	v, neg, err := r.IntBits()
	if err != nil {
		return 0, err
	}
	if neg {
		return 0, ErrRange
	}
	return v, nil
}

// Float reads a float32, a float64 or an integer as a float64.
func (r *Reader) Float() (float64, error) {
	c, err := r.Peek()
	if err != nil {
		return 0, err
	}
	switch c {
	case codeFloat32:
		if r.Remaining() < 5 {
			return 0, ErrTruncated
		}
		f := math.Float32frombits(binary.BigEndian.Uint32(r.b[r.i+1:]))
		r.i += 5
		return float64(f), nil
	case codeFloat64:
		if r.Remaining() < 9 {
			return 0, ErrTruncated
		}
		f := math.Float64frombits(binary.BigEndian.Uint64(r.b[r.i+1:]))
		r.i += 9
		return f, nil
	}
	v, neg, err := r.IntBits()
	if err != nil {
		return 0, err
	}
	if neg {
		return float64(int64(v)), nil
	}
	return float64(v), nil
}

// SkipN skips n values.
func (r *Reader) SkipN(n int) error {
	for range n {
		if err := r.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// Skip skips one value of any type, containers with all they hold. It
// does not recurse: it counts the values still to skip, and a count beyond
// the bytes left is ErrTruncated at once, so neither deep nesting nor a
// hostile length costs more than one pass over the input.
func (r *Reader) Skip() error {
	for pending := 1; pending > 0; pending-- {
		if pending > r.Remaining() {
			return ErrTruncated
		}
		c := r.b[r.i]
		var size, count int // bytes to skip after the header; values to add
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0:
			r.i++
		case c <= 0x8f: // fixmap
			r.i++
			count = 2 * int(c&0x0f)
		case c <= 0x9f: // fixarray
			r.i++
			count = int(c & 0x0f)
		case c <= 0xbf: // fixstr
			r.i++
			size = int(c & 0x1f)
		default:
			switch c {
			case codeNil, codeFalse, codeTrue:
				r.i++
			case codeUint8, codeInt8:
				r.i, size = r.i+1, 1
			case codeUint16, codeInt16:
				r.i, size = r.i+1, 2
			case codeUint32, codeInt32, codeFloat32:
				r.i, size = r.i+1, 4
			case codeUint64, codeInt64, codeFloat64:
				r.i, size = r.i+1, 8
			case codeBin8, codeStr8:
				size, err = r.header(1)
			case codeBin16, codeStr16:
				size, err = r.header(2)
			case codeBin32, codeStr32:
				size, err = r.header(4)
			case codeArr16:
				count, err = r.header(2)
			case codeArr32:
				count, err = r.header(4)
			case codeMap16:
				count, err = r.header(2)
				count *= 2
			case codeMap32:
				count, err = r.header(4)
				count *= 2
			case codeFixExt1, codeFixExt2, codeFixExt4, codeFixExt8, codeFixExt6:
				r.i, size = r.i+1, 1+1<<(c-codeFixExt1) // the type byte, then the data
			case codeExt8, codeExt16, codeExt32:
				size, err = r.header(1 << (c - codeExt8))
				size++ // the type byte
			default: // 0xc1
				return fmt.Errorf("%w %#x at offset %d", ErrInvalidCode, c, r.i)
			}
		}
		if err != nil {
			return err
		}
		if size > r.Remaining() {
			return ErrTruncated
		}
		r.i += size
		pending += count
	}
	return nil
}
