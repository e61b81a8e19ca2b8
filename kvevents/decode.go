package kvevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrMalformed is wrapped by every error Decode returns: the payload is not
// a KV-event batch in any layout the decoder knows. Nothing of such a batch
// should be applied.
var ErrMalformed = errors.New("malformed event batch")

// maxInterned bounds the decoder's string table (media, kinds, LoRA names),
// so a publisher sending ever-new strings cannot grow it without bound.
const maxInterned = 1024

// Decoder decodes vLLM KV-event batches (frame 3 of a publisher message) in
// every layout from vLLM v0.9.0 to today, and SGLang's.
//
// It decodes straight into a reused Batch: after the first few messages a
// batch decodes without allocating. A Decoder is not safe for concurrent use;
// give each goroutine its own.
type Decoder struct {
	r  sliceReader
	md *msgpack.Decoder

	batch Batch

	// Arenas behind Event.ExtraKeys, reused across Decode calls.
	extraHeads [][]ExtraKey
	extraItems []ExtraKey
	extraBytes []byte

	strs map[string]string // interned strings
	bad  bool              // the event being decoded has a field of the wrong type
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	d := &Decoder{strs: make(map[string]string)}
	d.md = msgpack.NewDecoder(&d.r)
	return d
}

// Decode decodes one batch payload. The Batch and everything it references
// belong to d and stay valid until the next call to Decode.
//
// Unknown event tags, unknown fields and events of a known kind with a field
// of the wrong type are skipped and counted in the Batch; the rest of the
// batch still decodes. An error (wrapping ErrMalformed) means the payload as
// a whole is unusable: truncated, not msgpack, or not a batch.
func (d *Decoder) Decode(payload []byte) (*Batch, error) {
	d.r.reset(payload)
	d.extraHeads = d.extraHeads[:0]
	d.extraItems = d.extraItems[:0]
	d.extraBytes = d.extraBytes[:0]
	b := &d.batch
	*b = Batch{Events: b.Events[:0]}
	if err := d.decodeBatch(b); err != nil {
		b.Events = b.Events[:0]
		return nil, err
	}
	if d.r.remaining() != 0 {
		return nil, malformed("%d trailing bytes after the batch", d.r.remaining())
	}
	return b, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// structural wraps an error from the msgpack layer (truncation, a code that
// is not msgpack) as malformed.
func structural(what string, err error) error {
	if errors.Is(err, ErrMalformed) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return malformed("truncated in %s", what)
	}
	return malformed("%s: %v", what, err)
}

func (d *Decoder) decodeBatch(b *Batch) error {
	c, err := d.peek()
	if err != nil {
		return structural("batch", err)
	}
	switch {
	case isArray(c):
		n, err := d.arrayLen()
		if err != nil {
			return structural("batch", err)
		}
		if n < 2 {
			return malformed("batch array has %d elements, want [ts, events(, data_parallel_rank)]", n)
		}
		if err := d.decodeTS(b); err != nil {
			return err
		}
		if err := d.decodeEvents(b); err != nil {
			return err
		}
		if n >= 3 {
			if err := d.decodeRank(b); err != nil {
				return err
			}
		}
		for i := 3; i < n; i++ {
			if err := d.r.skip(); err != nil {
				return structural("batch", err)
			}
			b.UnknownFields++
		}
		return nil
	case isMap(c):
		n, err := d.mapLen()
		if err != nil {
			return structural("batch", err)
		}
		sawEvents := false
		for range n {
			key, ok, err := d.mapKey()
			if err != nil {
				return structural("batch key", err)
			}
			switch {
			case !ok:
				err = d.skipUnknown(b)
			case string(key) == "ts":
				err = d.decodeTS(b)
			case string(key) == "events":
				sawEvents = true
				err = d.decodeEvents(b)
			case string(key) == "data_parallel_rank":
				err = d.decodeRank(b)
			default:
				err = d.skipUnknown(b)
			}
			if err != nil {
				return err
			}
		}
		if !sawEvents {
			return malformed("batch map has no events key")
		}
		return nil
	}
	return malformed("batch is msgpack code %#x, want an array or a map", c)
}

func (d *Decoder) skipUnknown(b *Batch) error {
	b.UnknownFields++
	if err := d.r.skip(); err != nil {
		return structural("unknown field", err)
	}
	return nil
}

func (d *Decoder) decodeTS(b *Batch) error {
	c, err := d.peek()
	if err != nil {
		return structural("ts", err)
	}
	switch {
	case c == codeNil:
		d.r.i++
	case c == codeFloat32 || c == codeFloat64 || isInt(c):
		b.TS, err = d.md.DecodeFloat64()
		if err != nil {
			return structural("ts", err)
		}
	default:
		return malformed("ts is msgpack code %#x, want a number", c)
	}
	return nil
}

func (d *Decoder) decodeRank(b *Batch) error {
	c, err := d.peek()
	if err != nil {
		return structural("data_parallel_rank", err)
	}
	switch {
	case c == codeNil:
		d.r.i++
	case isInt(c):
		r, err := d.md.DecodeInt64()
		if err != nil {
			return structural("data_parallel_rank", err)
		}
		if r < 0 || r > math.MaxInt32 {
			return malformed("data_parallel_rank %d out of range", r)
		}
		b.DPRank, b.HasRank = int(r), true
	default:
		return malformed("data_parallel_rank is msgpack code %#x, want an int", c)
	}
	return nil
}

func (d *Decoder) decodeEvents(b *Batch) error {
	c, err := d.peek()
	if err != nil {
		return structural("events", err)
	}
	if c == codeNil {
		d.r.i++
		return nil
	}
	if !isArray(c) {
		return malformed("events is msgpack code %#x, want an array", c)
	}
	n, err := d.arrayLen()
	if err != nil {
		return structural("events", err)
	}
	for range n {
		if err := d.decodeEvent(b); err != nil {
			return err
		}
	}
	return nil
}

// field names one event field; the array layouts list them by position.
type field uint8

const (
	fUnknown field = iota
	fType
	fBlockHashes
	fParent
	fTokenIDs
	fBlockSize
	fLoraID
	fMedium
	fLoraName
	fExtraKeys
	fGroupIdx
	fSpecKind
	fSlidingWindow
	fLocality
)

// Positional layouts after the tag (spec §3.1). Later vLLM versions append
// fields; shorter arrays are older versions, longer ones newer.
var (
	storedLayout  = []field{fBlockHashes, fParent, fTokenIDs, fBlockSize, fLoraID, fMedium, fLoraName, fExtraKeys, fGroupIdx, fSpecKind, fSlidingWindow}
	removedLayout = []field{fBlockHashes, fMedium, fGroupIdx}
)

func fieldOf(key []byte) field {
	switch string(key) {
	case "type":
		return fType
	case "block_hashes":
		return fBlockHashes
	case "parent_block_hash":
		return fParent
	case "token_ids":
		return fTokenIDs
	case "block_size":
		return fBlockSize
	case "lora_id":
		return fLoraID
	case "medium":
		return fMedium
	case "lora_name":
		return fLoraName
	case "extra_keys":
		return fExtraKeys
	case "group_idx":
		return fGroupIdx
	case "kv_cache_spec_kind":
		return fSpecKind
	case "kv_cache_spec_sliding_window":
		return fSlidingWindow
	case "locality":
		return fLocality
	}
	return fUnknown
}

func kindOf(tag []byte) Kind {
	switch string(tag) {
	case "BlockStored":
		return BlockStored
	case "BlockRemoved":
		return BlockRemoved
	case "AllBlocksCleared":
		return AllBlocksCleared
	}
	return KindUnknown
}

// newEvent appends a cleared event slot to b, reusing an old slot's slices.
func newEvent(b *Batch) *Event {
	n := len(b.Events)
	if n < cap(b.Events) {
		b.Events = b.Events[:n+1]
	} else {
		b.Events = append(b.Events, Event{})
	}
	ev := &b.Events[n]
	ev.reset()
	return ev
}

func (d *Decoder) decodeEvent(b *Batch) error {
	c, err := d.peek()
	if err != nil {
		return structural("event", err)
	}
	switch {
	case isArray(c):
		return d.decodeArrayEvent(b)
	case isMap(c):
		return d.decodeMapEvent(b)
	}
	b.MalformedEvents++
	if err := d.r.skip(); err != nil {
		return structural("event", err)
	}
	return nil
}

func (d *Decoder) decodeArrayEvent(b *Batch) error {
	n, err := d.arrayLen()
	if err != nil {
		return structural("event", err)
	}
	if n == 0 {
		b.MalformedEvents++
		return nil
	}
	kind, err := d.tag()
	if err != nil {
		return err
	}
	var layout []field
	switch kind {
	case BlockStored:
		layout = storedLayout
	case BlockRemoved:
		layout = removedLayout
	case AllBlocksCleared:
	default:
		b.UnknownTags++
		for i := 1; i < n; i++ {
			if err := d.r.skip(); err != nil {
				return structural("event", err)
			}
		}
		return nil
	}
	ev := newEvent(b)
	ev.Kind = kind
	d.bad = false
	for i := 1; i < n; i++ {
		f := fUnknown
		if i-1 < len(layout) {
			f = layout[i-1]
		}
		if f == fUnknown {
			b.UnknownFields++
		}
		if err := d.decodeField(ev, f); err != nil {
			return err
		}
	}
	d.finishEvent(b)
	return nil
}

func (d *Decoder) decodeMapEvent(b *Batch) error {
	n, err := d.mapLen()
	if err != nil {
		return structural("event", err)
	}
	ev := newEvent(b)
	d.bad = false
	for range n {
		key, ok, err := d.mapKey()
		if err != nil {
			return structural("event key", err)
		}
		f := fUnknown
		if ok {
			f = fieldOf(key)
		}
		if f == fType {
			if ev.Kind, err = d.tag(); err != nil {
				return err
			}
			continue
		}
		if f == fUnknown {
			b.UnknownFields++
		}
		if err := d.decodeField(ev, f); err != nil {
			return err
		}
	}
	if ev.Kind == KindUnknown {
		b.UnknownTags++
		b.Events = b.Events[:len(b.Events)-1]
		return nil
	}
	d.finishEvent(b)
	return nil
}

// finishEvent drops the last event of b if one of its fields had the wrong
// type, counting it.
func (d *Decoder) finishEvent(b *Batch) {
	if d.bad {
		b.MalformedEvents++
		b.Events = b.Events[:len(b.Events)-1]
	}
}

// tag reads an event tag. A tag that is not a string is an unknown kind.
func (d *Decoder) tag() (Kind, error) {
	s, ok, err := d.strBytes()
	if err != nil {
		return 0, structural("event tag", err)
	}
	if !ok {
		return KindUnknown, nil
	}
	return kindOf(s), nil
}

// decodeField decodes the value at the cursor into f of ev. A value of the
// wrong type is skipped and marks the event bad; only a structural problem
// (truncation, invalid msgpack) is an error.
func (d *Decoder) decodeField(ev *Event, f field) error {
	var err error
	switch f {
	case fBlockHashes:
		ev.BlockHashes, err = d.hashes(ev.BlockHashes)
	case fParent:
		ev.ParentHash, ev.HasParent, err = d.hash()
		ev.HasParent = ev.HasParent && ev.ParentHash != 0
	case fTokenIDs:
		ev.TokenIDs, err = d.tokens(ev.TokenIDs)
	case fBlockSize:
		var v int64
		v, _, err = d.optInt()
		if v < 0 || v > math.MaxInt32 {
			d.bad = true
		}
		ev.BlockSize = int(v)
	case fLoraID:
		ev.LoraID, ev.HasLoraID, err = d.optInt()
	case fMedium:
		ev.Medium, err = d.optString()
	case fLoraName:
		ev.LoraName, err = d.optString()
	case fExtraKeys:
		ev.ExtraKeys, err = d.extraKeys()
	case fGroupIdx:
		var v int64
		v, ev.HasGroupIdx, err = d.optInt()
		if v < 0 || v > math.MaxInt32 {
			d.bad = true
		}
		ev.GroupIdx = int(v)
	case fSpecKind:
		ev.SpecKind, err = d.optString()
	case fSlidingWindow:
		ev.SlidingWindow, ev.HasSlidingWindow, err = d.optInt()
	case fLocality:
		ev.Locality, err = d.optString()
	default:
		err = d.r.skip()
	}
	if err != nil {
		return structural("event field", err)
	}
	return nil
}

// wrongType skips the value at the cursor and marks the event bad.
func (d *Decoder) wrongType() error {
	d.bad = true
	return d.r.skip()
}

// arrayLen reads an array header and rejects a length the rest of the
// payload cannot hold (every element takes at least one byte), so a hostile
// length never drives an allocation.
func (d *Decoder) arrayLen() (int, error) {
	n, err := d.md.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n > d.r.remaining() {
		return 0, malformed("array of %d elements in %d remaining bytes", n, d.r.remaining())
	}
	return max(n, 0), nil
}

func (d *Decoder) mapLen() (int, error) {
	n, err := d.md.DecodeMapLen()
	if err != nil {
		return 0, err
	}
	if n > d.r.remaining()/2 {
		return 0, malformed("map of %d entries in %d remaining bytes", n, d.r.remaining())
	}
	return max(n, 0), nil
}

// mapKey reads a map key. ok is false (and the key skipped) when it is not a
// string.
func (d *Decoder) mapKey() (key []byte, ok bool, err error) {
	return d.strBytes()
}

// strBytes reads a str (or bin) value without copying; ok is false, and the
// value skipped, for any other type, nil included.
func (d *Decoder) strBytes() (s []byte, ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return nil, false, err
	}
	if c >= 0xa0 && c <= 0xbf { // fixstr: every key and tag vLLM sends
		d.r.i++
		s, err = d.r.next(int(c & 0x1f))
		return s, err == nil, err
	}
	if !isStr(c) && !isBin(c) {
		return nil, false, d.r.skip()
	}
	n, err := d.md.DecodeBytesLen()
	if err != nil {
		return nil, false, err
	}
	s, err = d.r.next(n)
	return s, err == nil, err
}

// optString reads a str or nil, interning the string.
func (d *Decoder) optString() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if c == codeNil {
		d.r.i++
		return "", nil
	}
	if !isStr(c) {
		return "", d.wrongType()
	}
	s, _, err := d.strBytes()
	if err != nil {
		return "", err
	}
	return d.intern(s), nil
}

func (d *Decoder) intern(b []byte) string {
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.strs) < maxInterned {
		d.strs[s] = s
	}
	return s
}

// optInt reads an int of any width, or nil.
func (d *Decoder) optInt() (v int64, ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return 0, false, err
	}
	if c == codeNil {
		d.r.i++
		return 0, false, nil
	}
	if !isInt(c) {
		return 0, false, d.wrongType()
	}
	if c == codeUint64 {
		u, err := d.md.DecodeUint64()
		if u > math.MaxInt64 {
			d.bad = true
		}
		return int64(u), err == nil, err
	}
	v, err = d.md.DecodeInt64()
	return v, err == nil, err
}

// hash reads one block hash: nil (ok false), an int of any width (negative
// values are their two's complement, as Python's signed hashes map to
// uint64), or bytes (their last 8 bytes, big-endian, as vLLM converts them).
func (d *Decoder) hash() (h uint64, ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return 0, false, err
	}
	if c == codeNil {
		d.r.i++
		return 0, false, nil
	}
	h, ok, err = d.r.hash()
	if err == nil && !ok {
		return 0, false, d.wrongType()
	}
	return h, ok, err
}

// arrayOrNil reads the header of an array that may be nil, which reads as
// an empty array.
func (d *Decoder) arrayOrNil() (int, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if c == codeNil {
		d.r.i++
		return 0, nil
	}
	if !isArray(c) {
		return 0, d.wrongType()
	}
	return d.arrayLen()
}

// hashes reads an array of block hashes into dst[:0].
func (d *Decoder) hashes(dst []uint64) ([]uint64, error) {
	dst = dst[:0]
	n, err := d.arrayOrNil()
	if n <= 0 || err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, n)
	for i := range n {
		var h uint64
		if r := &d.r; r.i+9 <= len(r.b) && r.b[r.i] == codeUint64 { // vLLM's usual form
			h = binary.BigEndian.Uint64(r.b[r.i+1:])
			r.i += 9
		} else {
			var ok bool
			h, ok, err = r.hash()
			if err != nil {
				return dst, err
			}
			if !ok {
				d.bad = true
				return dst, d.r.skipN(n - i)
			}
		}
		dst = append(dst, h)
	}
	return dst, nil
}

// tokens reads an array of token ids into dst[:0]. Token ids are
// non-negative and fit 32 bits; anything else marks the event bad.
func (d *Decoder) tokens(dst []uint32) ([]uint32, error) {
	dst = dst[:0]
	n, err := d.arrayOrNil()
	if n <= 0 || err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, n)
	dst, done, err := d.r.appendUint32s(dst, n)
	if err != nil || done == n {
		return dst, err
	}
	d.bad = true
	return dst, d.r.skipN(n - done)
}

// extraKeys reads nil or an array, one entry per block, of nil or an array
// of extra-key items.
func (d *Decoder) extraKeys() ([][]ExtraKey, error) {
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c == codeNil {
		d.r.i++
		return nil, nil
	}
	if !isArray(c) {
		return nil, d.wrongType()
	}
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	start := len(d.extraHeads)
	for i := range n {
		c, err := d.peek()
		if err != nil {
			return nil, err
		}
		if c == codeNil {
			d.r.i++
			d.extraHeads = append(d.extraHeads, nil)
			continue
		}
		if !isArray(c) {
			d.bad = true
			return nil, d.r.skipN(n - i)
		}
		m, err := d.arrayLen()
		if err != nil {
			return nil, err
		}
		first := len(d.extraItems)
		for range m {
			if err := d.extraItem(); err != nil {
				return nil, err
			}
		}
		d.extraHeads = append(d.extraHeads, d.extraItems[first:len(d.extraItems):len(d.extraItems)])
	}
	return d.extraHeads[start:len(d.extraHeads):len(d.extraHeads)], nil
}

// extraItem appends one extra-key item to d.extraItems.
func (d *Decoder) extraItem() error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	var k ExtraKey
	switch {
	case isStr(c):
		k.Kind = ExtraStr
		k.Str, err = d.optString()
	case isInt(c):
		k.Kind = ExtraInt
		k.Int, _, err = d.optInt()
	case isBin(c):
		var b []byte
		b, _, err = d.strBytes()
		start := len(d.extraBytes)
		d.extraBytes = append(d.extraBytes, b...)
		k.Kind, k.Bytes = ExtraBytes, d.extraBytes[start:len(d.extraBytes):len(d.extraBytes)]
	case isArray(c):
		err = d.mmItem(&k)
	default:
		err = d.r.skip()
	}
	d.extraItems = append(d.extraItems, k)
	return err
}

// mmItem reads a multimodal (identifier, offset) pair; other arrays stay
// ExtraUnknown.
func (d *Decoder) mmItem(k *ExtraKey) error {
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	if n != 2 {
		return d.r.skipN(n)
	}
	c, err := d.peek()
	if err != nil {
		return err
	}
	if !isStr(c) {
		return d.r.skipN(2)
	}
	s, _, err := d.strBytes()
	if err != nil {
		return err
	}
	if c, err = d.peek(); err != nil {
		return err
	}
	if !isInt(c) {
		return d.r.skip()
	}
	bad := d.bad
	off, _, err := d.optInt()
	d.bad = bad // an offset beyond int64 only makes the item unknown
	k.Kind, k.Str, k.Int = ExtraMM, d.intern(s), off
	return err
}

// msgpack type codes the decoder dispatches on.
const (
	codeNil     = 0xc0
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
	codeBin8    = 0xc4
	codeBin16   = 0xc5
	codeBin32   = 0xc6
	codeStr8    = 0xd9
	codeStr16   = 0xda
	codeStr32   = 0xdb
	codeArr16   = 0xdc
	codeArr32   = 0xdd
	codeMap16   = 0xde
	codeMap32   = 0xdf
)

func isInt(c byte) bool {
	return c <= 0x7f || c >= 0xe0 || (c >= codeUint8 && c <= codeInt64)
}
func isStr(c byte) bool   { return (c >= 0xa0 && c <= 0xbf) || (c >= codeStr8 && c <= codeStr32) }
func isBin(c byte) bool   { return c >= codeBin8 && c <= codeBin32 }
func isArray(c byte) bool { return (c >= 0x90 && c <= 0x9f) || c == codeArr16 || c == codeArr32 }
func isMap(c byte) bool   { return (c >= 0x80 && c <= 0x8f) || c == codeMap16 || c == codeMap32 }

// sliceReader is the io.Reader and io.ByteScanner the msgpack.Decoder reads
// from. Because it does not buffer, the decoder's position is always r.i,
// which lets the hot integer arrays (token ids, hashes) be read straight from
// the bytes: through the msgpack.Decoder each integer costs a few interface
// calls, which for a 64-block batch (1,024 token ids) is most of the time.
type sliceReader struct {
	b []byte
	i int
}

func (r *sliceReader) reset(b []byte) { r.b, r.i = b, 0 }

func (r *sliceReader) remaining() int { return len(r.b) - r.i }

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func (r *sliceReader) ReadByte() (byte, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

func (r *sliceReader) UnreadByte() error {
	if r.i == 0 {
		return errors.New("kvevents: UnreadByte at start of payload")
	}
	r.i--
	return nil
}

// next returns the next n bytes without copying.
func (r *sliceReader) next(n int) ([]byte, error) {
	if n < 0 || n > r.remaining() {
		return nil, io.ErrUnexpectedEOF
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b, nil
}

// int reads a msgpack integer of any width as its 64-bit two's complement
// pattern. ok is false, with nothing consumed, if the next value is not an
// integer.
func (r *sliceReader) int() (v uint64, neg, ok bool, err error) {
	if r.i >= len(r.b) {
		return 0, false, false, io.ErrUnexpectedEOF
	}
	c := r.b[r.i]
	if c <= 0x7f {
		r.i++
		return uint64(c), false, true, nil
	}
	if c >= 0xe0 {
		r.i++
		return uint64(int64(int8(c))), true, true, nil
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
		return 0, false, false, nil
	}
	if r.remaining() < 1+size {
		return 0, false, false, io.ErrUnexpectedEOF
	}
	p := r.b[r.i+1 : r.i+1+size]
	r.i += 1 + size
	switch c {
	case codeUint8:
		return uint64(p[0]), false, true, nil
	case codeInt8:
		v := int64(int8(p[0]))
		return uint64(v), v < 0, true, nil
	case codeUint16:
		return uint64(binary.BigEndian.Uint16(p)), false, true, nil
	case codeInt16:
		v := int64(int16(binary.BigEndian.Uint16(p)))
		return uint64(v), v < 0, true, nil
	case codeUint32:
		return uint64(binary.BigEndian.Uint32(p)), false, true, nil
	case codeInt32:
		v := int64(int32(binary.BigEndian.Uint32(p)))
		return uint64(v), v < 0, true, nil
	case codeUint64:
		return binary.BigEndian.Uint64(p), false, true, nil
	default: // codeInt64
		v := binary.BigEndian.Uint64(p)
		return v, int64(v) < 0, true, nil
	}
}

// appendUint32s appends up to n token ids to dst, stopping before the first
// value that is not a non-negative integer fitting 32 bits; done counts the
// values appended. This is the decoder's hottest loop: a 64-block batch has
// 1,024 token ids, so the common encodings are handled inline.
func (r *sliceReader) appendUint32s(dst []uint32, n int) (_ []uint32, done int, err error) {
	b, i := r.b, r.i
	for done < n {
		if i >= len(b) {
			r.i = i
			return dst, done, io.ErrUnexpectedEOF
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
		default:
			r.i = i
			var ok bool
			if v, ok, err = r.uint32(); err != nil || !ok {
				r.i = i
				return dst, done, err
			}
			i = r.i
		}
		dst = append(dst, v)
		done++
	}
	r.i = i
	return dst, done, nil
}

// uint32 reads a non-negative integer that fits 32 bits. ok is false if
// the next value is anything else; the caller rewinds and skips it.
func (r *sliceReader) uint32() (uint32, bool, error) {
	if r.i < len(r.b) && r.b[r.i] <= 0x7f { // most token ids in small vocabularies
		c := r.b[r.i]
		r.i++
		return uint32(c), true, nil
	}
	v, neg, ok, err := r.int()
	if err != nil || !ok || neg || v > math.MaxUint32 {
		return 0, false, err
	}
	return uint32(v), true, nil
}

// hash reads a block hash: an int of any width, or bytes reduced to their
// last 8 bytes big-endian. ok is false, with nothing consumed, for any other
// type.
func (r *sliceReader) hash() (uint64, bool, error) {
	if r.i >= len(r.b) {
		return 0, false, io.ErrUnexpectedEOF
	}
	c := r.b[r.i]
	if isBin(c) {
		start := r.i
		r.i++
		var n int
		switch c {
		case codeBin8:
			p, err := r.next(1)
			if err != nil {
				return 0, false, err
			}
			n = int(p[0])
		case codeBin16:
			p, err := r.next(2)
			if err != nil {
				return 0, false, err
			}
			n = int(binary.BigEndian.Uint16(p))
		default:
			p, err := r.next(4)
			if err != nil {
				return 0, false, err
			}
			n = int(binary.BigEndian.Uint32(p))
		}
		p, err := r.next(n)
		if err != nil {
			r.i = start
			return 0, false, err
		}
		if len(p) > 8 {
			p = p[len(p)-8:]
		}
		var h uint64
		for _, b := range p {
			h = h<<8 | uint64(b)
		}
		return h, true, nil
	}
	v, _, ok, err := r.int()
	return v, ok, err
}

// skipN skips n values.
func (r *sliceReader) skipN(n int) error {
	for range n {
		if err := r.skip(); err != nil {
			return err
		}
	}
	return nil
}

// skip skips one value of any type without recursion or allocation: it
// counts the values still to skip, so deep nesting cannot exhaust the stack,
// and it checks every length against the bytes left.
func (r *sliceReader) skip() error {
	for pending := 1; pending > 0; pending-- {
		if pending > r.remaining() {
			return io.ErrUnexpectedEOF
		}
		c := r.b[r.i]
		r.i++
		var size, count int // bytes to skip, values to add
		switch {
		case c <= 0x7f || c >= 0xe0:
		case c <= 0x8f: // fixmap
			count = 2 * int(c&0x0f)
		case c <= 0x9f: // fixarray
			count = int(c & 0x0f)
		case c <= 0xbf: // fixstr
			size = int(c & 0x1f)
		default:
			switch c {
			case codeNil, 0xc2, 0xc3:
			case codeUint8, codeInt8:
				size = 1
			case codeUint16, codeInt16:
				size = 2
			case codeUint32, codeInt32, codeFloat32:
				size = 4
			case codeUint64, codeInt64, codeFloat64:
				size = 8
			case codeBin8, codeStr8:
				n, err := r.lenN(1)
				if err != nil {
					return err
				}
				size = n
			case codeBin16, codeStr16:
				n, err := r.lenN(2)
				if err != nil {
					return err
				}
				size = n
			case codeBin32, codeStr32:
				n, err := r.lenN(4)
				if err != nil {
					return err
				}
				size = n
			case codeArr16, codeArr32, codeMap16, codeMap32:
				w := 2
				if c == codeArr32 || c == codeMap32 {
					w = 4
				}
				n, err := r.lenN(w)
				if err != nil {
					return err
				}
				count = n
				if c == codeMap16 || c == codeMap32 {
					count = 2 * n
				}
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16, plus the type byte
				size = 1 + 1<<(c-0xd4)
			case 0xc7, 0xc8, 0xc9: // ext 8/16/32
				n, err := r.lenN(1 << (c - 0xc7))
				if err != nil {
					return err
				}
				size = 1 + n
			default: // 0xc1 is never used
				return malformed("invalid msgpack code %#x", c)
			}
		}
		if size > r.remaining() {
			return io.ErrUnexpectedEOF
		}
		r.i += size
		pending += count
	}
	return nil
}

// lenN reads a big-endian length of w bytes.
func (r *sliceReader) lenN(w int) (int, error) {
	p, err := r.next(w)
	if err != nil {
		return 0, err
	}
	switch w {
	case 1:
		return int(p[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(p)), nil
	}
	return int(binary.BigEndian.Uint32(p)), nil
}

// peek returns the next msgpack code without consuming it. It is
// msgpack.Decoder.PeekCode without the two interface calls, which matter at
// a dozen peeks per event.
func (d *Decoder) peek() (byte, error) {
	if d.r.i >= len(d.r.b) {
		return 0, io.ErrUnexpectedEOF
	}
	return d.r.b[d.r.i], nil
}
