package kvevents

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/kvtrack/kvtrack/internal/mpread"
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
	r mpread.Reader

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
	return &Decoder{strs: make(map[string]string)}
}

// Decode decodes one batch payload. The Batch and everything it references
// belong to d and stay valid until the next call to Decode.
//
// Unknown event tags, unknown fields and events of a known kind with a field
// of the wrong type are skipped and counted in the Batch; the rest of the
// batch still decodes. An error (wrapping ErrMalformed) means the payload as
// a whole is unusable: truncated, not msgpack, or not a batch.
func (d *Decoder) Decode(payload []byte) (*Batch, error) {
	d.r.Reset(payload)
	d.extraHeads = d.extraHeads[:0]
	d.extraItems = d.extraItems[:0]
	d.extraBytes = d.extraBytes[:0]
	b := &d.batch
	*b = Batch{Events: b.Events[:0]}
	if err := d.decodeBatch(b); err != nil {
		b.Events = b.Events[:0]
		return nil, err
	}
	if d.r.Remaining() != 0 {
		return nil, malformed("%d trailing bytes after the batch", d.r.Remaining())
	}
	return b, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// structural wraps an error from the msgpack layer (truncation, a code that
// is not msgpack, a length beyond the payload) as malformed.
func structural(what string, err error) error {
	if errors.Is(err, ErrMalformed) {
		return err
	}
	if errors.Is(err, mpread.ErrTruncated) {
		return malformed("truncated in %s", what)
	}
	return malformed("%s: %v", what, err)
}

func (d *Decoder) decodeBatch(b *Batch) error {
	c, err := d.r.Peek()
	if err != nil {
		return structural("batch", err)
	}
	switch {
	case mpread.TypeOf(c) == mpread.Array:
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
			if err := d.r.Skip(); err != nil {
				return structural("batch", err)
			}
			b.UnknownFields++
		}
		return nil
	case mpread.TypeOf(c) == mpread.Map:
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
	if err := d.r.Skip(); err != nil {
		return structural("unknown field", err)
	}
	return nil
}

func (d *Decoder) decodeTS(b *Batch) error {
	c, err := d.r.Peek()
	if err != nil {
		return structural("ts", err)
	}
	switch mpread.TypeOf(c) {
	case mpread.Nil:
		d.r.Nil()
	case mpread.Float, mpread.Int:
		if b.TS, err = d.r.Float(); err != nil {
			return structural("ts", err)
		}
	default:
		return malformed("ts is msgpack code %#x, want a number", c)
	}
	return nil
}

func (d *Decoder) decodeRank(b *Batch) error {
	c, err := d.r.Peek()
	if err != nil {
		return structural("data_parallel_rank", err)
	}
	switch mpread.TypeOf(c) {
	case mpread.Nil:
		d.r.Nil()
	case mpread.Int:
		r, neg, err := d.r.IntBits()
		if err != nil {
			return structural("data_parallel_rank", err)
		}
		if neg || r > math.MaxInt32 {
			return malformed("data_parallel_rank %d out of range", int64(r))
		}
		b.DPRank, b.HasRank = int(r), true
	default:
		return malformed("data_parallel_rank is msgpack code %#x, want an int", c)
	}
	return nil
}

func (d *Decoder) decodeEvents(b *Batch) error {
	c, err := d.r.Peek()
	if err != nil {
		return structural("events", err)
	}
	if d.r.Nil() {
		return nil
	}
	if mpread.TypeOf(c) != mpread.Array {
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
	c, err := d.r.Peek()
	if err != nil {
		return structural("event", err)
	}
	switch {
	case mpread.TypeOf(c) == mpread.Array:
		return d.decodeArrayEvent(b)
	case mpread.TypeOf(c) == mpread.Map:
		return d.decodeMapEvent(b)
	}
	b.MalformedEvents++
	if err := d.r.Skip(); err != nil {
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
			if err := d.r.Skip(); err != nil {
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
		err = d.r.Skip()
	}
	if err != nil {
		return structural("event field", err)
	}
	return nil
}

// wrongType skips the value at the cursor and marks the event bad.
func (d *Decoder) wrongType() error {
	d.bad = true
	return d.r.Skip()
}

// arrayLen reads an array header. The reader rejects a length the rest of
// the payload cannot hold, so a hostile length never drives an allocation.
func (d *Decoder) arrayLen() (int, error) { return d.r.ArrayLen() }

func (d *Decoder) mapLen() (int, error) { return d.r.MapLen() }

// mapKey reads a map key. ok is false (and the key skipped) when it is not a
// string.
func (d *Decoder) mapKey() (key []byte, ok bool, err error) {
	return d.strBytes()
}

// strBytes reads a str (or bin) value without copying; ok is false, and the
// value skipped, for any other type, nil included.
func (d *Decoder) strBytes() (s []byte, ok bool, err error) {
	s, err = d.r.Bytes()
	if err == mpread.ErrType {
		return nil, false, d.r.Skip()
	}
	return s, err == nil, err
}

// optString reads a str or nil, interning the string.
func (d *Decoder) optString() (string, error) {
	if d.r.Nil() {
		return "", nil
	}
	c, err := d.r.Peek()
	if err != nil {
		return "", err
	}
	if mpread.TypeOf(c) != mpread.Str {
		return "", d.wrongType()
	}
	s, err := d.r.Bytes()
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

// optInt reads an int of any width, or nil. ok is false for nil and for an
// int beyond int64, which also marks the event bad.
func (d *Decoder) optInt() (v int64, ok bool, err error) {
	if d.r.Nil() {
		return 0, false, nil
	}
	v, err = d.r.Int()
	switch err {
	case nil:
		return v, true, nil
	case mpread.ErrType:
		return 0, false, d.wrongType()
	case mpread.ErrRange:
		d.bad = true
		return 0, false, nil
	}
	return 0, false, err
}

// hash reads one block hash: nil (ok false), an int of any width (negative
// values are their two's complement, as Python's signed hashes map to
// uint64), or bytes (their last 8 bytes, big-endian, as vLLM converts them).
func (d *Decoder) hash() (h uint64, ok bool, err error) {
	if d.r.Nil() {
		return 0, false, nil
	}
	h, err = d.r.Hash()
	if err == mpread.ErrType {
		return 0, false, d.wrongType()
	}
	return h, err == nil, err
}

// arrayOrNil reads the header of an array that may be nil, which reads as
// an empty array.
func (d *Decoder) arrayOrNil() (int, error) {
	if d.r.Nil() {
		return 0, nil
	}
	n, err := d.r.ArrayLen()
	if err == mpread.ErrType {
		return 0, d.wrongType()
	}
	return n, err
}

// hashes reads an array of block hashes into dst[:0].
func (d *Decoder) hashes(dst []uint64) ([]uint64, error) {
	dst = dst[:0]
	n, err := d.arrayOrNil()
	if n <= 0 || err != nil {
		return dst, err
	}
	dst, done, err := d.r.AppendHashes(slices.Grow(dst, n), n)
	return dst, d.finishArray(n, done, err)
}

// tokens reads an array of token ids into dst[:0]. Token ids are
// non-negative and fit 32 bits; anything else marks the event bad.
func (d *Decoder) tokens(dst []uint32) ([]uint32, error) {
	dst = dst[:0]
	n, err := d.arrayOrNil()
	if n <= 0 || err != nil {
		return dst, err
	}
	dst, done, err := d.r.AppendUint32s(slices.Grow(dst, n), n)
	return dst, d.finishArray(n, done, err)
}

// finishArray ends a bulk read that stopped after done of n elements: one
// of the wrong type marks the event bad, and it and the rest are skipped.
func (d *Decoder) finishArray(n, done int, err error) error {
	if err != nil || done == n {
		return err
	}
	d.bad = true
	return d.r.SkipN(n - done)
}

// extraKeys reads nil or an array, one entry per block, of nil or an array
// of extra-key items.
func (d *Decoder) extraKeys() ([][]ExtraKey, error) {
	if d.r.Nil() {
		return nil, nil
	}
	n, err := d.r.ArrayLen()
	if err == mpread.ErrType {
		return nil, d.wrongType()
	}
	if err != nil {
		return nil, err
	}
	start := len(d.extraHeads)
	for i := range n {
		if d.r.Nil() {
			d.extraHeads = append(d.extraHeads, nil)
			continue
		}
		m, err := d.r.ArrayLen()
		if err == mpread.ErrType {
			d.bad = true
			return nil, d.r.SkipN(n - i)
		}
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
	c, err := d.r.Peek()
	if err != nil {
		return err
	}
	var k ExtraKey
	switch mpread.TypeOf(c) {
	case mpread.Str:
		k.Kind = ExtraStr
		k.Str, err = d.optString()
	case mpread.Int:
		k.Kind = ExtraInt
		k.Int, _, err = d.optInt()
	case mpread.Bin:
		var b []byte
		b, err = d.r.Bytes()
		start := len(d.extraBytes)
		d.extraBytes = append(d.extraBytes, b...)
		k.Kind, k.Bytes = ExtraBytes, d.extraBytes[start:len(d.extraBytes):len(d.extraBytes)]
	case mpread.Array:
		err = d.mmItem(&k)
	default:
		err = d.r.Skip()
	}
	d.extraItems = append(d.extraItems, k)
	return err
}

// mmItem reads a multimodal (identifier, offset) pair; other arrays stay
// ExtraUnknown.
func (d *Decoder) mmItem(k *ExtraKey) error {
	n, err := d.r.ArrayLen()
	if err != nil {
		return err
	}
	if n != 2 {
		return d.r.SkipN(n)
	}
	c, err := d.r.Peek()
	if err != nil {
		return err
	}
	if mpread.TypeOf(c) != mpread.Str {
		return d.r.SkipN(2)
	}
	s, err := d.r.Bytes()
	if err != nil {
		return err
	}
	off, err := d.r.Int()
	switch err {
	case nil:
		k.Kind, k.Str, k.Int = ExtraMM, d.intern(s), off
		return nil
	case mpread.ErrType:
		return d.r.Skip()
	case mpread.ErrRange: // an offset beyond int64 only makes the item unknown
		return nil
	}
	return err
}
