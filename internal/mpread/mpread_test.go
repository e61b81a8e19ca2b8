package mpread_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/internal/mpread"
)

// b builds a payload from bytes and byte slices, so each case shows its
// exact wire form.
func b(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			out = append(out, byte(p))
		case []byte:
			out = append(out, p...)
		case string:
			out = append(out, p...)
		}
	}
	return out
}

func reader(p []byte) *mpread.Reader {
	var r mpread.Reader
	r.Reset(p)
	return &r
}

func TestTypeOf(t *testing.T) {
	tests := []struct {
		codes []byte
		want  mpread.Type
	}{
		{[]byte{0x00, 0x7f, 0xe0, 0xff, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3}, mpread.Int},
		{[]byte{0x80, 0x8f, 0xde, 0xdf}, mpread.Map},
		{[]byte{0x90, 0x9f, 0xdc, 0xdd}, mpread.Array},
		{[]byte{0xa0, 0xbf, 0xd9, 0xda, 0xdb}, mpread.Str},
		{[]byte{0xc4, 0xc5, 0xc6}, mpread.Bin},
		{[]byte{0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8}, mpread.Ext},
		{[]byte{0xca, 0xcb}, mpread.Float},
		{[]byte{0xc2, 0xc3}, mpread.Bool},
		{[]byte{0xc0}, mpread.Nil},
		{[]byte{0xc1}, mpread.Invalid},
	}
	for _, tt := range tests {
		for _, c := range tt.codes {
			if got := mpread.TypeOf(c); got != tt.want {
				t.Errorf("TypeOf(%#x) = %v, want %v", c, got, tt.want)
			}
		}
	}
}

func TestIntegers(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		bits    uint64
		neg     bool
		intErr  error // from Int
		uintErr error // from Uint
	}{
		{"positive fixint", b(0x7f), 127, false, nil, nil},
		{"negative fixint", b(0xff), math.MaxUint64, true, nil, mpread.ErrRange},
		{"uint8", b(0xcc, 0xff), 255, false, nil, nil},
		{"uint16", b(0xcd, 0x01, 0x2c), 300, false, nil, nil},
		{"uint32", b(0xce, 0x00, 0x02, 0x4f, 0x9c), 151452, false, nil, nil},
		{"uint64 max", b(0xcf, bytes.Repeat([]byte{0xff}, 8)), math.MaxUint64, false, mpread.ErrRange, nil},
		{"int8", b(0xd0, 0x80), uint64(1<<64 - 128), true, nil, mpread.ErrRange},
		{"int16 positive", b(0xd1, 0x00, 0x06), 6, false, nil, nil},
		{"int32", b(0xd2, 0xff, 0xff, 0xff, 0xfe), math.MaxUint64 - 1, true, nil, mpread.ErrRange},
		{"int64 min", b(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0), 1 << 63, true, nil, mpread.ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bits, neg, err := reader(tt.in).IntBits()
			if err != nil || bits != tt.bits || neg != tt.neg {
				t.Errorf("IntBits() = %#x, %v, %v; want %#x, %v, nil", bits, neg, err, tt.bits, tt.neg)
			}
			r := reader(tt.in)
			i, err := r.Int()
			if !errors.Is(err, tt.intErr) || (err == nil && i != int64(tt.bits)) {
				t.Errorf("Int() = %d, %v; want %d, %v", i, err, int64(tt.bits), tt.intErr)
			}
			if r.Remaining() != 0 {
				t.Errorf("Int left %d bytes, want the value consumed even when out of range", r.Remaining())
			}
			u, err := reader(tt.in).Uint()
			if !errors.Is(err, tt.uintErr) || (err == nil && u != tt.bits) {
				t.Errorf("Uint() = %d, %v; want %d, %v", u, err, tt.bits, tt.uintErr)
			}
			f, err := reader(tt.in).Float()
			want := float64(tt.bits)
			if tt.neg {
				want = float64(int64(tt.bits))
			}
			if err != nil || f != want {
				t.Errorf("Float() = %v, %v; want %v", f, err, want)
			}
		})
	}
}

func TestFloats(t *testing.T) {
	tests := []struct {
		in   []byte
		want float64
	}{
		{b(0xca, 0x3f, 0xc0, 0, 0), 1.5},
		{b(0xcb, binary.BigEndian.AppendUint64(nil, math.Float64bits(1767225600.125))), 1767225600.125},
		{b(0xcb, binary.BigEndian.AppendUint64(nil, math.Float64bits(math.Inf(-1)))), math.Inf(-1)},
	}
	for _, tt := range tests {
		if got, err := reader(tt.in).Float(); err != nil || got != tt.want {
			t.Errorf("Float(% x) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestStrBinNilBool(t *testing.T) {
	long := strings.Repeat("x", 300)
	p := b(0xa3, "abc", 0xd9, 3, "def", 0xda, 0x01, 0x2c, long, 0xc4, 2, 0xde, 0xad, 0xc6, 0, 0, 0, 1, 7, 0xc0, 0xc2, 0xc3)
	r := reader(p)
	for _, want := range []string{"abc", "def", long, "\xde\xad", "\x07"} {
		got, err := r.Bytes()
		if err != nil || string(got) != want {
			t.Fatalf("Bytes() = %q, %v; want %q", got, err, want)
		}
		if len(got) > 0 && &got[0] != &p[r.Offset()-len(got)] {
			t.Errorf("Bytes() copied %q; want a sub-slice of the input", want)
		}
	}
	if !r.Nil() || r.Nil() {
		t.Errorf("Nil() did not consume exactly one nil")
	}
	for _, want := range []bool{false, true} {
		if got, err := r.Bool(); err != nil || got != want {
			t.Errorf("Bool() = %v, %v; want %v", got, err, want)
		}
	}
	if r.Remaining() != 0 {
		t.Errorf("%d bytes left", r.Remaining())
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		mapHdr  bool
		want    int
		wantErr error
	}{
		{"fixarray", b(0x92, 1, 2), false, 2, nil},
		{"array16", b(0xdc, 0, 3, 1, 2, 3), false, 3, nil},
		{"array32", b(0xdd, 0, 0, 0, 1, 0xc0), false, 1, nil},
		{"array beyond the input", b(0xdd, 0xff, 0xff, 0xff, 0xff, 1), false, 0, mpread.ErrLength},
		{"array header truncated", b(0xdc, 0), false, 0, mpread.ErrTruncated},
		{"fixmap", b(0x81, 0xa1, "k", 1), true, 1, nil},
		{"map16", b(0xde, 0, 1, 0xa1, "k", 1), true, 1, nil},
		{"map beyond the input", b(0xdf, 0x7f, 0xff, 0xff, 0xff), true, 0, mpread.ErrLength},
		{"fixmap beyond the input", b(0x82, 1, 2, 3), true, 0, mpread.ErrLength},
		{"not an array", b(0xc0), false, 0, mpread.ErrType},
		{"not a map", b(0x91, 1), true, 0, mpread.ErrType},
		{"empty input", nil, false, 0, mpread.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := reader(tt.in)
			var n int
			var err error
			if tt.mapHdr {
				n, err = r.MapLen()
			} else {
				n, err = r.ArrayLen()
			}
			if !errors.Is(err, tt.wantErr) || (err == nil && n != tt.want) {
				t.Errorf("len = %d, %v; want %d, %v", n, err, tt.want, tt.wantErr)
			}
			if errors.Is(err, mpread.ErrLength) && !strings.Contains(err.Error(), "remaining bytes") {
				t.Errorf("error %q does not say how many bytes remain", err)
			}
			if errors.Is(err, mpread.ErrType) && r.Offset() != 0 {
				t.Errorf("a read of the wrong type consumed %d bytes", r.Offset())
			}
		})
	}
}

func TestWrongTypeConsumesNothing(t *testing.T) {
	p := b(0xa1, "s")
	r := reader(p)
	if _, err := r.Int(); !errors.Is(err, mpread.ErrType) {
		t.Errorf("Int() on a str: %v, want ErrType", err)
	}
	if _, err := r.Float(); !errors.Is(err, mpread.ErrType) {
		t.Errorf("Float() on a str: %v, want ErrType", err)
	}
	if _, err := r.Bool(); !errors.Is(err, mpread.ErrType) {
		t.Errorf("Bool() on a str: %v, want ErrType", err)
	}
	if _, err := r.Hash(); !errors.Is(err, mpread.ErrType) {
		t.Errorf("Hash() on a str: %v, want ErrType", err)
	}
	if r.Offset() != 0 {
		t.Fatalf("reads of the wrong type consumed %d bytes", r.Offset())
	}
	if _, err := reader(b(0x01)).Bytes(); !errors.Is(err, mpread.ErrType) {
		t.Errorf("Bytes() on an int: %v, want ErrType", err)
	}
}

func TestSkip(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"fixint", b(0x05), nil},
		{"nested containers", b(0x82, 0xa1, "a", 0x92, 0x01, 0xc3, 0xa1, "b", 0x81, 0x01, 0xc0), nil},
		{"every width", b(0x96, 0xcd, 0, 1, 0xd2, 0, 0, 0, 1, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xda, 0, 1, "x", 0xc5, 0, 0, 0xdc, 0, 0), nil},
		{"fixext 16", b(0xd8, 0x01, make([]byte, 16)), nil},
		{"ext8", b(0xc7, 3, 0x05, 1, 2, 3), nil},
		{"ext32", b(0xc9, 0, 0, 0, 1, 0x05, 9), nil},
		{"invalid code", b(0x91, 0xc1), mpread.ErrInvalidCode},
		{"truncated str", b(0xdb, 0xff, 0xff, 0xff, 0xff), mpread.ErrTruncated},
		{"truncated array", b(0x93, 1, 2), mpread.ErrTruncated},
		{"hostile count", b(0xdd, 0xff, 0xff, 0xff, 0xff), mpread.ErrTruncated},
		{"truncated ext", b(0xd7, 0x01, 1, 2), mpread.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if tt.wantErr == nil {
				in = append(in, 0x2a) // a marker the Skip must stop before
			}
			r := reader(in)
			err := r.Skip()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Skip() = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if v, err := r.Int(); err != nil || v != 0x2a {
				t.Errorf("after Skip the next value is %d, %v; want 42 (the marker after the skipped value)", v, err)
			}
		})
	}
}

// TestSkipDeepNesting: a megabyte of nested one-element arrays must neither
// exhaust the stack nor take more than a pass.
func TestSkipDeepNesting(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x91}, 1<<20), 0xc0)
	r := reader(deep)
	if err := r.Skip(); err != nil || r.Remaining() != 0 {
		t.Errorf("Skip() = %v with %d bytes left, want nil and 0", err, r.Remaining())
	}
	if err := reader(deep[:len(deep)-1]).Skip(); !errors.Is(err, mpread.ErrTruncated) {
		t.Errorf("Skip() of unterminated nesting = %v, want ErrTruncated", err)
	}
}

func TestAppendUint32s(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		n        int
		want     []uint32
		wantRest int // bytes left unread
		wantErr  error
	}{
		{"every non-negative width", b(0x01, 0xcc, 0xff, 0xcd, 0x01, 0x2c, 0xce, 0, 0x02, 0x4f, 0x9c, 0xd0, 5, 0xd3, 0, 0, 0, 0, 0, 0, 0, 8, 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), 7,
			[]uint32{1, 255, 300, 151452, 5, 8, math.MaxUint32}, 0, nil},
		{"stops before a negative", b(0x01, 0xff, 0x02), 3, []uint32{1}, 2, nil},
		{"stops before 2^32", b(0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0), 2, []uint32{1}, 9, nil},
		{"stops before a str", b(0x01, 0xa1, "x"), 2, []uint32{1}, 2, nil},
		{"truncated uint32", b(0x01, 0xce, 0, 0), 2, []uint32{1}, 3, mpread.ErrTruncated},
		{"truncated list", b(0x01), 2, []uint32{1}, 0, mpread.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := reader(tt.in)
			got, done, err := r.AppendUint32s(nil, tt.n)
			if !errors.Is(err, tt.wantErr) || done != len(tt.want) || !slices.Equal(got, tt.want) {
				t.Errorf("AppendUint32s = %v, %d, %v; want %v, %d, %v", got, done, err, tt.want, len(tt.want), tt.wantErr)
			}
			if err == nil && r.Remaining() != tt.wantRest {
				t.Errorf("%d bytes left, want %d (the stopping value unread)", r.Remaining(), tt.wantRest)
			}
		})
	}
}

func TestHashes(t *testing.T) {
	digest := make([]byte, 32) // vLLM's sha256 digest: the last 8 bytes are the hash
	for i := range digest {
		digest[i] = byte(i)
	}
	tests := []struct {
		name     string
		in       []byte
		want     []uint64
		wantRest int
	}{
		{"uint64", b(0xcf, 0x80, 0, 0, 0, 0, 0, 0, 1), []uint64{1<<63 | 1}, 0},
		{"small and signed ints", b(0x05, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe), []uint64{5, math.MaxUint64 - 1}, 0},
		{"32-byte bin", b(0xc4, 32, digest), []uint64{0x18191a1b1c1d1e1f}, 0},
		{"short bin", b(0xc4, 2, 0x01, 0x02), []uint64{0x0102}, 0},
		{"stops before a str", b(0x05, 0xa1, "x", 0x06), []uint64{5}, 3},
		{"stops before nil", b(0x05, 0xc0), []uint64{5}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := reader(tt.in)
			got, done, err := r.AppendHashes(nil, 3)
			if err != nil && !errors.Is(err, mpread.ErrTruncated) {
				t.Fatalf("AppendHashes: %v", err)
			}
			if done != len(tt.want) || !slices.Equal(got, tt.want) {
				t.Errorf("AppendHashes = %#x (%d), want %#x", got, done, tt.want)
			}
			if r.Remaining() != tt.wantRest {
				t.Errorf("%d bytes left, want %d", r.Remaining(), tt.wantRest)
			}
		})
	}
}

func TestReadsAllocateNothing(t *testing.T) {
	p := b(0x93, 0xa3, "abc", 0xcd, 1, 2, 0x92, 0xce, 0, 1, 0, 0, 0xcf, 1, 2, 3, 4, 5, 6, 7, 8)
	var r mpread.Reader
	dst32 := make([]uint32, 0, 4)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(p)
		_, _ = r.ArrayLen()
		_, _ = r.Bytes()
		_, _ = r.Int()
		n, _ := r.ArrayLen()
		dst32, _, _ = r.AppendUint32s(dst32[:0], n)
		r.Reset(p)
		_ = r.Skip()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per pass, want 0", allocs)
	}
}
