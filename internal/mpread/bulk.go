package mpread

import (
	"encoding/binary"
	"errors"
	"math"
)

// The bulk reads below are what a vLLM KV-event batch is made of: a
// 64-block BlockStored carries 1,024 token ids and 64 block hashes, so
// their common encodings are decoded inline, byte by byte, rather than
// value by value through the generic methods.

// AppendUint32s reads up to n integers that are non-negative and fit 32 bits
// (token ids) and appends them to dst. It stops before the first value that
// is anything else, leaving it unread; done counts the values appended. The
// caller has read the array header and decides what a stop means.
func (r *Reader) AppendUint32s(dst []uint32, n int) (_ []uint32, done int, err error) {
	b, i := r.b, r.i
	for done < n {
		if i >= len(b) {
			r.i = i
			return dst, done, ErrTruncated
		}
		var v uint32
		switch c := b[i]; {
		case c <= 0x7f:
			v = uint32(c)
			i++
		case c == codeUint16 && i+3 <= len(b):
			v = uint32(b[i+1])<<8 | uint32(b[i+2])
			i += 3
		case c == codeUint32 && i+5 <= len(b):
			v = binary.BigEndian.Uint32(b[i+1:])
			i += 5
		default: // other widths, signed encodings, truncation, other types
			r.i = i
			u, err := r.Uint()
			if err != nil || u > math.MaxUint32 {
				if errors.Is(err, ErrTruncated) {
					return dst, done, err
				}
				r.i = i
				return dst, done, nil
			}
			v, i = uint32(u), r.i
		}
		dst = append(dst, v)
		done++
	}
	r.i = i
	return dst, done, nil
}

// Hash reads a block hash: an integer of any encoding as its 64-bit two's
// complement (Python's signed hashes map to the same uint64 as the
// unsigned ones), or a bin as its last 8 bytes, big-endian, the way vLLM
// reduces its 32-byte digests (fewer than 8 bytes are zero-extended). Any
// other type is ErrType.
func (r *Reader) Hash() (uint64, error) {
	c, err := r.Peek()
	if err != nil {
		return 0, err
	}
	if types[c] != Bin {
		v, _, err := r.IntBits()
		return v, err
	}
	p, err := r.Bytes()
	if err != nil {
		return 0, err
	}
	if len(p) > 8 {
		p = p[len(p)-8:]
	}
	var h uint64
	for _, b := range p {
		h = h<<8 | uint64(b)
	}
	return h, nil
}

// AppendHashes reads up to n block hashes (see Hash) and appends them to
// dst. Like AppendUint32s it stops before the first value that is not a
// hash, leaving it unread; done counts the hashes appended.
func (r *Reader) AppendHashes(dst []uint64, n int) (_ []uint64, done int, err error) {
	for ; done < n; done++ {
		if r.i+9 <= len(r.b) && r.b[r.i] == codeUint64 { // vLLM's usual form
			dst = append(dst, binary.BigEndian.Uint64(r.b[r.i+1:]))
			r.i += 9
			continue
		}
		h, err := r.Hash()
		if err != nil {
			if err == ErrType {
				err = nil
			}
			return dst, done, err
		}
		dst = append(dst, h)
	}
	return dst, done, nil
}
