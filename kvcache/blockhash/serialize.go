package blockhash

import (
	"encoding/binary"
	"slices"
)

// This file holds hand-written encoders for the narrow set of values vLLM
// hashes: (parent, tokens tuple, extra keys tuple or None). They append to a
// caller-owned buffer and allocate nothing. hash_test.go proves them
// byte-identical to fxamacker/cbor's canonical encoder and to CPython's
// pickle on every reference vector.

// ---- canonical CBOR (cbor2.dumps(obj, canonical=True)) ----

const (
	cborUint  = 0 << 5
	cborNeg   = 1 << 5
	cborBytes = 2 << 5
	cborText  = 3 << 5
	cborArray = 4 << 5
	cborNull  = 0xf6
)

// cborHead appends a CBOR head with the shortest argument encoding.
func cborHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= 0xff:
		return append(b, major|24, byte(n))
	case n <= 0xffff:
		return append(b, major|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, major|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, major|27)
	return binary.BigEndian.AppendUint64(b, n)
}

func cborInt(b []byte, v int64) []byte {
	if v >= 0 {
		return cborHead(b, cborUint, uint64(v))
	}
	return cborHead(b, cborNeg, uint64(-(v + 1)))
}

func cborExtra(b []byte, extra []ExtraKey) []byte {
	if extra == nil {
		return append(b, cborNull)
	}
	b = cborHead(b, cborArray, uint64(len(extra)))
	for _, k := range extra {
		switch k.kind {
		case extraString:
			b = cborHead(b, cborText, uint64(len(k.s)))
			b = append(b, k.s...)
		case extraInt:
			b = cborInt(b, k.i)
		case extraMM:
			b = append(b, cborArray|2)
			b = cborHead(b, cborText, uint64(len(k.s)))
			b = append(b, k.s...)
			b = cborInt(b, k.i)
		case extraBytes:
			b = cborHead(b, cborBytes, uint64(len(k.b)))
			b = append(b, k.b...)
		}
	}
	return b
}

// cborBlock appends cbor((parent, tuple(tokens), extra)) with parent as a
// byte string.
func cborBlock(b, parent []byte, tokens []uint32, extra []ExtraKey) []byte {
	b = append(b, cborArray|3)
	b = cborHead(b, cborBytes, uint64(len(parent)))
	b = append(b, parent...)
	return cborTokensExtra(b, tokens, extra)
}

// cborBlock64 appends cbor((parent, tuple(tokens), extra)) with parent as an
// unsigned integer, as vLLM v0.10.0-v0.10.1's sha256_cbor_64bit chains.
func cborBlock64(b []byte, parent uint64, tokens []uint32, extra []ExtraKey) []byte {
	b = append(b, cborArray|3)
	b = cborHead(b, cborUint, parent)
	return cborTokensExtra(b, tokens, extra)
}

func cborTokensExtra(b []byte, tokens []uint32, extra []ExtraKey) []byte {
	b = cborHead(b, cborArray, uint64(len(tokens)))
	for _, t := range tokens {
		b = cborHead(b, cborUint, uint64(t))
	}
	return cborExtra(b, extra)
}

func cborText1(b []byte, s string) []byte {
	b = cborHead(b, cborText, uint64(len(s)))
	return append(b, s...)
}

// ---- pickle protocol 5 (pickle.dumps(obj, protocol=5), CPython's C pickler) ----

const (
	pkProto          = 0x80
	pkFrame          = 0x95
	pkStop           = '.'
	pkMark           = '('
	pkTuple          = 't'
	pkEmptyTuple     = ')'
	pkTuple1         = 0x85
	pkTuple2         = 0x86
	pkTuple3         = 0x87
	pkMemoize        = 0x94
	pkNone           = 'N'
	pkBinInt         = 'J'
	pkBinInt1        = 'K'
	pkBinInt2        = 'M'
	pkLong1          = 0x8a
	pkShortBinBytes  = 'C'
	pkBinBytes       = 'B'
	pkShortBinUnicde = 0x8c
	pkBinUnicode     = 'X'

	// The C pickler frames its output: a FRAME opcode and an 8-byte length
	// lead each frame; a frame is closed at the first object boundary after
	// it reaches 64 KiB, and a frame shorter than 4 bytes gets no header.
	pkFrameHeader = 9
	pkFrameTarget = 64 * 1024
	pkFrameMin    = 4
)

// pickler appends a pickle stream to buf, tracking the open frame.
type pickler struct {
	buf        []byte
	frameStart int // offset of the open frame's header, or -1
}

func (p *pickler) begin(buf []byte) {
	p.buf = append(buf, pkProto, 5)
	p.frameStart = -1
}

// open starts a frame lazily, as the C pickler does on its first write.
func (p *pickler) open() {
	if p.frameStart < 0 {
		p.frameStart = len(p.buf)
		p.buf = append(p.buf, make([]byte, pkFrameHeader)...)
	}
}

func (p *pickler) commit() {
	if p.frameStart < 0 {
		return
	}
	n := len(p.buf) - p.frameStart - pkFrameHeader
	if n >= pkFrameMin {
		p.buf[p.frameStart] = pkFrame
		binary.LittleEndian.PutUint64(p.buf[p.frameStart+1:], uint64(n))
	} else {
		copy(p.buf[p.frameStart:], p.buf[p.frameStart+pkFrameHeader:])
		p.buf = p.buf[:len(p.buf)-pkFrameHeader]
	}
	p.frameStart = -1
}

// boundary is called after each object is saved.
func (p *pickler) boundary() {
	if p.frameStart >= 0 && len(p.buf)-p.frameStart-pkFrameHeader >= pkFrameTarget {
		p.commit()
	}
}

func (p *pickler) op(b ...byte) {
	p.open()
	p.buf = append(p.buf, b...)
}

func (p *pickler) int(v int64) {
	p.open()
	switch {
	case v >= 0 && v <= 0xff:
		p.buf = append(p.buf, pkBinInt1, byte(v))
	case v >= 0 && v <= 0xffff:
		p.buf = append(p.buf, pkBinInt2, byte(v), byte(v>>8))
	case v >= -1<<31 && v < 1<<31:
		p.buf = append(p.buf, pkBinInt)
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(v))
	default:
		// LONG1: minimal little-endian two's complement.
		var le [9]byte
		binary.LittleEndian.PutUint64(le[:], uint64(v))
		if v < 0 {
			le[8] = 0xff
		}
		n := 9
		for n > 1 {
			top, next := le[n-1], le[n-2]
			if (top == 0 && next&0x80 == 0) || (top == 0xff && next&0x80 != 0) {
				n--
				continue
			}
			break
		}
		p.buf = append(p.buf, pkLong1, byte(n))
		p.buf = append(p.buf, le[:n]...)
	}
	p.boundary()
}

func (p *pickler) str(s string) {
	p.open()
	if len(s) <= 0xff {
		p.buf = append(p.buf, pkShortBinUnicde, byte(len(s)))
	} else {
		p.buf = append(p.buf, pkBinUnicode)
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(s)))
	}
	p.buf = append(p.buf, s...)
	p.buf = append(p.buf, pkMemoize)
	p.boundary()
}

func (p *pickler) bytes(b []byte) {
	p.open()
	if len(b) <= 0xff {
		p.buf = append(p.buf, pkShortBinBytes, byte(len(b)))
	} else {
		p.buf = append(p.buf, pkBinBytes)
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(b)))
	}
	p.buf = append(p.buf, b...)
	p.buf = append(p.buf, pkMemoize)
	p.boundary()
}

// tupleStart and tupleEnd bracket the items of an n-tuple (n > 0): tuples
// of 1 to 3 items use TUPLE1..3, longer ones MARK ... TUPLE.
func (p *pickler) tupleStart(n int) {
	if n > 3 {
		p.op(pkMark)
	}
}

func (p *pickler) tupleEnd(n int) {
	switch n {
	case 0:
		p.op(pkEmptyTuple) // the empty tuple is a singleton: no MEMOIZE
		p.boundary()
		return
	case 1:
		p.op(pkTuple1, pkMemoize)
	case 2:
		p.op(pkTuple2, pkMemoize)
	case 3:
		p.op(pkTuple3, pkMemoize)
	default:
		p.op(pkTuple, pkMemoize)
	}
	p.boundary()
}

func (p *pickler) end() []byte {
	p.op(pkStop)
	p.commit()
	return p.buf
}

// pickleBlock appends pickle.dumps((parent, tuple(tokens), extra), 5).
func pickleBlock(b, parent []byte, tokens []uint32, extra []ExtraKey) []byte {
	if extra == nil && len(tokens) > 3 && len(parent) <= 0xff && 32+len(parent)+7*len(tokens) < pkFrameTarget {
		return pickleBlockOneFrame(b, parent, tokens)
	}
	return pickleBlockGeneral(b, parent, tokens, extra)
}

// pickleBlockOneFrame is pickleBlock's fast path for the common block: no
// extra keys, more than 3 tokens, and short enough to fit one frame (so no
// frame boundary can fall inside it).
func pickleBlockOneFrame(b, parent []byte, tokens []uint32) []byte {
	start := len(b)
	b = append(b, pkProto, 5, pkFrame, 0, 0, 0, 0, 0, 0, 0, 0)
	b = append(b, pkShortBinBytes, byte(len(parent)))
	b = append(b, parent...)
	b = append(b, pkMemoize, pkMark)
	b = slices.Grow(b, 7*len(tokens)+8)
	for _, t := range tokens {
		switch {
		case t <= 0xff:
			b = append(b, pkBinInt1, byte(t))
		case t <= 0xffff:
			b = append(b, pkBinInt2, byte(t), byte(t>>8))
		case t < 1<<31:
			b = append(b, pkBinInt, byte(t), byte(t>>8), byte(t>>16), byte(t>>24))
		default: // LONG1, 5 bytes: the sign byte keeps it positive
			b = append(b, pkLong1, 5, byte(t), byte(t>>8), byte(t>>16), byte(t>>24), 0)
		}
	}
	b = append(b, pkTuple, pkMemoize, pkNone, pkTuple3, pkMemoize, pkStop)
	binary.LittleEndian.PutUint64(b[start+3:], uint64(len(b)-start-2-pkFrameHeader))
	return b
}

func pickleBlockGeneral(b, parent []byte, tokens []uint32, extra []ExtraKey) []byte {
	var p pickler
	p.begin(b)
	p.tupleStart(3)
	p.bytes(parent)
	p.tupleStart(len(tokens))
	for _, t := range tokens {
		p.int(int64(t))
	}
	p.tupleEnd(len(tokens))
	if extra == nil {
		p.op(pkNone)
		p.boundary()
	} else {
		p.tupleStart(len(extra))
		for _, k := range extra {
			switch k.kind {
			case extraString:
				p.str(k.s)
			case extraInt:
				p.int(k.i)
			case extraMM:
				p.tupleStart(2)
				p.str(k.s)
				p.int(k.i)
				p.tupleEnd(2)
			case extraBytes:
				p.bytes(k.b)
			}
		}
		p.tupleEnd(len(extra))
	}
	p.tupleEnd(3)
	return p.end()
}

// pickleStr appends pickle.dumps(s, 5).
func pickleStr(b []byte, s string) []byte {
	var p pickler
	p.begin(b)
	p.str(s)
	return p.end()
}
