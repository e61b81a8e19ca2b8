package mpread_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/kvtrack/kvtrack/internal/mpread"
	"github.com/vmihailenco/msgpack/v5"
)

// FuzzReader is a differential test: it walks arbitrary input with a Reader
// and, in lockstep, with vmihailenco/msgpack's Decoder, and requires the
// same values, the same positions, and an error from one exactly when the
// other fails (except where the Reader is stricter by design: a container
// count the bytes left cannot hold). The bulk reads are checked against the
// elements the walk decoded one by one.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0x93, 0xcb, 0x41, 0xda, 0, 0, 0, 0, 0, 0, 0x91, 0x9c, 0xab, 'B', 'l', 'o', 'c', 'k', 'S', 't', 'o', 'r', 'e', 'd'})
	f.Add([]byte{0x92, 0xcf, 1, 2, 3, 4, 5, 6, 7, 8, 0xc4, 4, 1, 2, 3, 4})
	f.Add([]byte{0x94, 0x01, 0xcd, 1, 0x2c, 0xce, 0, 2, 0x4f, 0x9c, 0xff})
	f.Add([]byte{0x82, 0xa1, 'a', 0xc3, 0xa1, 'b', 0xca, 0x3f, 0xc0, 0, 0})
	f.Add([]byte{0xd8, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0xc7, 1, 2, 3})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc1})
	f.Fuzz(func(t *testing.T, p []byte) {
		w := walker{t: t, p: p}
		w.r.Reset(p)
		w.br = bytes.NewReader(p)
		w.d = msgpack.NewDecoder(w.br) // a bytes.Reader is an io.ByteScanner, so d does not read ahead
		for w.r.Remaining() > 0 {
			if _, ok := w.value(0); !ok {
				return
			}
		}
	})
}

type walker struct {
	t  *testing.T
	p  []byte
	r  mpread.Reader
	br *bytes.Reader
	d  *msgpack.Decoder
}

// leaf is what the walk learned of a scalar, for checking the bulk reads.
type leaf struct {
	typ  mpread.Type
	bits uint64 // Int: two's complement
	neg  bool
	bin  []byte
}

func (w *walker) theirPos() int { return len(w.p) - w.br.Len() }

// agree fails the test unless both errors are nil or both are not, and
// reports whether the walk can go on.
func (w *walker) agree(what string, mine, theirs error) bool {
	w.t.Helper()
	if (mine == nil) != (theirs == nil) {
		w.t.Fatalf("%s at offset %d: mpread error %v, msgpack error %v", what, w.r.Offset(), mine, theirs)
	}
	if mine == nil && w.r.Offset() != w.theirPos() {
		w.t.Fatalf("%s: mpread at offset %d, msgpack at %d", what, w.r.Offset(), w.theirPos())
	}
	return mine == nil
}

// value reads one value in both decoders. Values whose offset is a multiple
// of 5 are skipped instead of read, to check Skip against msgpack's.
func (w *walker) value(depth int) (leaf, bool) {
	t := w.t
	c, err := w.r.Peek()
	if err != nil {
		_, theirs := w.d.PeekCode()
		return leaf{}, w.agree("peek", err, theirs)
	}
	typ := mpread.TypeOf(c)
	if w.r.Offset()%5 == 0 || depth > 256 || typ == mpread.Ext || typ == mpread.Invalid {
		err := w.r.Skip()
		if err != nil && !errors.Is(err, mpread.ErrTruncated) && !errors.Is(err, mpread.ErrInvalidCode) {
			t.Fatalf("Skip: unexpected error class %v", err)
		}
		return leaf{typ: mpread.Invalid}, w.agree("skip", err, w.d.Skip())
	}
	switch typ {
	case mpread.Nil:
		if !w.r.Nil() {
			t.Fatalf("Nil() = false on %#x", c)
		}
		return leaf{typ: typ}, w.agree("nil", nil, w.d.DecodeNil())
	case mpread.Bool:
		mine, err := w.r.Bool()
		theirs, err2 := w.d.DecodeBool()
		if err == nil && err2 == nil && mine != theirs {
			t.Fatalf("bool: %v vs %v", mine, theirs)
		}
		return leaf{typ: typ}, w.agree("bool", err, err2)
	case mpread.Int:
		bits, neg, err := w.r.IntBits()
		theirs, err2 := w.d.DecodeUint64() // msgpack returns the two's complement too
		if err == nil && err2 == nil && bits != theirs {
			t.Fatalf("int: %#x vs %#x", bits, theirs)
		}
		return leaf{typ: typ, bits: bits, neg: neg}, w.agree("int", err, err2)
	case mpread.Float:
		mine, err := w.r.Float()
		theirs, err2 := w.d.DecodeFloat64()
		if err == nil && err2 == nil && math.Float64bits(mine) != math.Float64bits(theirs) {
			t.Fatalf("float: %v vs %v", mine, theirs)
		}
		return leaf{typ: typ}, w.agree("float", err, err2)
	case mpread.Str, mpread.Bin:
		mine, err := w.r.Bytes()
		if err != nil {
			// msgpack's DecodeBytes allocates the length the header
			// claims before reading; its Skip reads in bounded steps.
			return leaf{}, w.agree("bytes", err, w.d.Skip())
		}
		theirs, err2 := w.d.DecodeBytes()
		if err == nil && err2 == nil && !bytes.Equal(mine, theirs) {
			t.Fatalf("bytes: %q vs %q", mine, theirs)
		}
		return leaf{typ: typ, bin: mine}, w.agree("bytes", err, err2)
	case mpread.Array:
		n, err := w.r.ArrayLen()
		theirs, err2 := w.d.DecodeArrayLen()
		if errors.Is(err, mpread.ErrLength) {
			if err2 == nil && theirs <= w.br.Len() {
				t.Fatalf("ArrayLen refused %d elements with %d bytes left", theirs, w.br.Len())
			}
			return leaf{}, false
		}
		if !w.agree("array header", err, err2) {
			return leaf{}, false
		}
		if n != theirs {
			t.Fatalf("array of %d vs %d", n, theirs)
		}
		bulk := w.r // a copy, for the bulk reads
		tokens, doneTokens, errTokens := bulk.AppendUint32s(nil, n)
		bulk = w.r
		hashes, doneHashes, errHashes := bulk.AppendHashes(nil, n)
		var elems []leaf
		for range n {
			l, ok := w.value(depth + 1)
			if !ok {
				return leaf{}, false
			}
			elems = append(elems, l)
		}
		checkBulk(t, elems, tokens, doneTokens, errTokens, hashes, doneHashes, errHashes)
		return leaf{typ: typ}, true
	case mpread.Map:
		n, err := w.r.MapLen()
		theirs, err2 := w.d.DecodeMapLen()
		if errors.Is(err, mpread.ErrLength) {
			if err2 == nil && theirs <= w.br.Len()/2 {
				t.Fatalf("MapLen refused %d entries with %d bytes left", theirs, w.br.Len())
			}
			return leaf{}, false
		}
		if !w.agree("map header", err, err2) {
			return leaf{}, false
		}
		if n != theirs {
			t.Fatalf("map of %d vs %d", n, theirs)
		}
		for range 2 * n {
			if _, ok := w.value(depth + 1); !ok {
				return leaf{}, false
			}
		}
		return leaf{typ: typ}, true
	}
	t.Fatalf("unhandled type %v", typ)
	return leaf{}, false
}

// checkBulk compares the bulk reads of an array with its elements as the
// walk decoded them (and msgpack agreed with): AppendUint32s must take
// exactly the leading elements that are integers in [0, 2^32), and
// AppendHashes the leading integers and bins. Elements the walk skipped
// (typ Invalid) end the comparison.
func checkBulk(t *testing.T, elems []leaf, tokens []uint32, doneTokens int, errTokens error, hashes []uint64, doneHashes int, errHashes error) {
	t.Helper()
	if errTokens != nil || errHashes != nil {
		t.Fatalf("bulk reads failed (%v, %v) on an array the walk read whole", errTokens, errHashes)
	}
	for i, e := range elems {
		if e.typ == mpread.Invalid {
			break
		}
		isToken := e.typ == mpread.Int && !e.neg && e.bits <= math.MaxUint32
		switch {
		case i < doneTokens && !isToken:
			t.Fatalf("AppendUint32s took element %d, a %v (%#x, neg %v)", i, e.typ, e.bits, e.neg)
		case i < doneTokens && uint64(tokens[i]) != e.bits:
			t.Fatalf("AppendUint32s element %d = %d, want %d", i, tokens[i], e.bits)
		case i == doneTokens && isToken:
			t.Fatalf("AppendUint32s stopped at element %d, a token id %d", i, e.bits)
		}
		var want uint64
		isHash := true
		switch e.typ {
		case mpread.Int:
			want = e.bits
		case mpread.Bin:
			for _, b := range e.bin[max(0, len(e.bin)-8):] {
				want = want<<8 | uint64(b)
			}
		default:
			isHash = false
		}
		switch {
		case i < doneHashes && !isHash:
			t.Fatalf("AppendHashes took element %d, a %v", i, e.typ)
		case i < doneHashes && hashes[i] != want:
			t.Fatalf("AppendHashes element %d = %#x, want %#x", i, hashes[i], want)
		case i == doneHashes && isHash:
			t.Fatalf("AppendHashes stopped at element %d, a hash", i)
		}
	}
}
