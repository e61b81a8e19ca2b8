package kvevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The hashes of vllm-hash-vectors.json case current/sha256_cbor/seed=42/bs=16/exact32
// (tokens 100..131), the blocks every sample payload names.
const (
	sampleHash0 = 6658331277240515430
	sampleHash1 = 8353329011930047756
	sampleTS    = 1767225600.125
)

func seqTokens(from, n int) []uint32 {
	ts := make([]uint32, n)
	for i := range ts {
		ts[i] = uint32(from + i)
	}
	return ts
}

// normalize makes an event comparable with reflect.DeepEqual regardless of
// whether the decoder reused buffers (empty vs nil slices).
func normalize(evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		if len(e.BlockHashes) == 0 {
			e.BlockHashes = nil
		}
		if len(e.TokenIDs) == 0 {
			e.TokenIDs = nil
		}
		if len(e.ExtraKeys) == 0 {
			e.ExtraKeys = nil
		}
		out[i] = e
	}
	return out
}

var storedSample = Event{
	Kind:        BlockStored,
	BlockHashes: []uint64{sampleHash0, sampleHash1},
	TokenIDs:    seqTokens(100, 32),
	BlockSize:   16,
	Medium:      "GPU",
	ExtraKeys:   [][]ExtraKey{nil, nil},
	GroupIdx:    0, HasGroupIdx: true,
	SpecKind: "full_attention",
}

func TestDecodeSamples(t *testing.T) {
	removed := func(h uint64) Event {
		return Event{Kind: BlockRemoved, BlockHashes: []uint64{h}, Medium: "GPU", HasGroupIdx: true}
	}
	tests := []struct {
		file string
		want []Event
	}{
		{"v0.23_array_block_stored.msgpack", []Event{storedSample}},
		{"v0.24_map_block_stored.msgpack", []Event{storedSample}},
		{"v0.23_array_block_removed.msgpack", []Event{removed(sampleHash1), removed(sampleHash0)}},
		{"v0.23_array_all_cleared.msgpack", []Event{{Kind: AllBlocksCleared}}},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			payload, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			b, err := d.Decode(payload)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if b.TS != sampleTS || !b.HasRank || b.DPRank != 0 {
				t.Errorf("ts, rank = %v, %v/%v; want %v, 0/true", b.TS, b.DPRank, b.HasRank, sampleTS)
			}
			if got := normalize(b.Events); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events:\n got %+v\nwant %+v", got, tt.want)
			}
			if b.UnknownTags+b.UnknownFields+b.MalformedEvents != 0 {
				t.Errorf("skipped %d tags, %d fields, %d events; want none", b.UnknownTags, b.UnknownFields, b.MalformedEvents)
			}
		})
	}
}

// TestDecodeSamplesMatchJSON checks the payload files against the decoded
// form samples.json records for them, so the copies cannot drift.
func TestDecodeSamplesMatchJSON(t *testing.T) {
	raw, err := os.ReadFile("testdata/samples.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Samples []struct {
			File       string `json:"file"`
			PayloadHex string `json:"payload_hex"`
		} `json:"samples"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Samples) == 0 {
		t.Fatal("samples.json lists no samples")
	}
	for _, s := range doc.Samples {
		payload, err := os.ReadFile(filepath.Join("testdata", s.File))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", payload); got != s.PayloadHex {
			t.Errorf("%s differs from samples.json payload_hex", s.File)
		}
	}
}

// stored builds a BlockStored array event of the given vLLM layout length
// (including the tag), with the sample's values.
func storedArray(length int) mp {
	fields := []mp{
		mpStr("BlockStored"),
		mpUints(sampleHash0, sampleHash1),
		mpNil(),
		mpTokens(seqTokens(100, 32)),
		mpInt(16),
		mpNil(),
		mpStr("GPU"),
		mpNil(),
		mpArr(mpNil(), mpNil()),
		mpInt(0),
		mpStr("full_attention"),
		mpNil(),
		mpStr("future-field"),
	}
	return mpArr(fields[:length]...)
}

// storedAt returns the sample event as a layout of that length carries it.
func storedAt(length int) Event {
	e := Event{Kind: BlockStored, BlockHashes: []uint64{sampleHash0, sampleHash1}, TokenIDs: seqTokens(100, 32), BlockSize: 16}
	if length >= 7 {
		e.Medium = "GPU"
	}
	if length >= 9 {
		e.ExtraKeys = [][]ExtraKey{nil, nil}
	}
	if length >= 10 {
		e.HasGroupIdx = true
	}
	if length >= 11 {
		e.SpecKind = "full_attention"
	}
	return e
}

func batch3(events ...mp) mp { return mpArr(mpF64(sampleTS), mpArr(events...), mpInt(0)) }

func TestDecodeLayouts(t *testing.T) {
	removedV09 := mpArr(mpStr("BlockRemoved"), mpUints(sampleHash1))
	removedV0102 := mpArr(mpStr("BlockRemoved"), mpUints(sampleHash1), mpStr("GPU"))
	removedV020 := mpArr(mpStr("BlockRemoved"), mpUints(sampleHash1), mpStr("CPU"), mpInt(1))
	type want struct {
		events                    []Event
		rank                      int
		hasRank                   bool
		unknownTags, unknownField int
		malformedEvents           int
	}
	tests := []struct {
		name    string
		payload mp
		want    want
	}{
		{"v0.9.0 batch of 2, stored 6", mpArr(mpF64(sampleTS), mpArr(storedArray(6), removedV09, mpArr(mpStr("AllBlocksCleared")))),
			want{events: []Event{storedAt(6), {Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}, {Kind: AllBlocksCleared}}}},
		{"v0.9.1 stored 6 with rank", mpArr(mpF64(sampleTS), mpArr(storedArray(6)), mpInt(3)),
			want{events: []Event{storedAt(6)}, rank: 3, hasRank: true}},
		{"v0.10.2 stored 7, removed 3", batch3(storedArray(7), removedV0102),
			want{events: []Event{storedAt(7), {Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}, Medium: "GPU"}}, hasRank: true}},
		{"v0.15 stored 8", batch3(storedArray(8)), want{events: []Event{storedAt(8)}, hasRank: true}},
		{"v0.18 stored 9", batch3(storedArray(9)), want{events: []Event{storedAt(9)}, hasRank: true}},
		{"v0.22 stored 10, removed 4", batch3(storedArray(10), removedV020),
			want{events: []Event{storedAt(10), {Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}, Medium: "CPU", GroupIdx: 1, HasGroupIdx: true}}, hasRank: true}},
		{"v0.23 stored 12", batch3(storedArray(12)), want{events: []Event{storedAt(12)}, hasRank: true}},
		{"future stored 13 skips trailing field", batch3(storedArray(13)), want{events: []Event{storedAt(12)}, hasRank: true, unknownField: 1}},
		{"batch with nil rank", mpArr(mpF64(sampleTS), mpArr(storedArray(7)), mpNil()), want{events: []Event{storedAt(7)}}},
		{"batch with trailing element", mpArr(mpF64(sampleTS), mpArr(storedArray(7)), mpInt(0), mpStr("x")),
			want{events: []Event{storedAt(7)}, hasRank: true, unknownField: 1}},
		{"map batch", mpMap(mpStr("ts"), mpF64(sampleTS), mpStr("events"), mpArr(storedArray(7)), mpStr("data_parallel_rank"), mpInt(2)),
			want{events: []Event{storedAt(7)}, rank: 2, hasRank: true}},
		{"map batch, keys reordered, unknown key", mpMap(mpStr("events"), mpArr(storedArray(7)), mpStr("origin"), mpStr("x"), mpStr("ts"), mpF64(sampleTS)),
			want{events: []Event{storedAt(7)}, unknownField: 1}},
		{"integer ts", mpArr(mpInt(1767225600), mpArr(), mpInt(0)), want{hasRank: true}},
		{"unknown tag skipped, rest kept", batch3(mpArr(mpStr("BlockUpdated"), mpUints(1), mpStr("GPU")), removedV0102),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}, Medium: "GPU"}}, hasRank: true, unknownTags: 1}},
		{"non-string tag is unknown", batch3(mpArr(mpInt(7), mpUints(1)), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, unknownTags: 1}},
		{"map event without type", batch3(mpMap(mpStr("block_hashes"), mpUints(1)), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, unknownTags: 1}},
		{"event of wrong type skipped", batch3(mpStr("BlockStored"), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, malformedEvents: 1}},
		{"empty event array skipped", batch3(mpArr(), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, malformedEvents: 1}},
		{"field of wrong type drops only that event", batch3(
			mpArr(mpStr("BlockStored"), mpUints(1), mpNil(), mpStr("not tokens"), mpInt(16), mpNil(), mpStr("GPU")), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, malformedEvents: 1}},
		{"negative token drops the event", batch3(
			mpArr(mpStr("BlockStored"), mpUints(1), mpNil(), mpArr(mpInt(5), mpInt(-1), mpInt(6)), mpInt(16), mpNil()), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, malformedEvents: 1}},
		{"token beyond 32 bits drops the event", batch3(
			mpArr(mpStr("BlockStored"), mpUints(1), mpNil(), mpArr(mpU64(1<<40)), mpInt(16), mpNil()), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, malformedEvents: 1}},
		{"hash of wrong type drops the event", batch3(mpArr(mpStr("BlockRemoved"), mpArr(mpInt(1), mpStr("x"), mpInt(2))), removedV09),
			want{events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}}}, hasRank: true, malformedEvents: 1}},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := d.Decode(tt.payload)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := normalize(b.Events); !reflect.DeepEqual(got, normalize(tt.want.events)) {
				t.Errorf("events:\n got %+v\nwant %+v", got, tt.want.events)
			}
			if b.DPRank != tt.want.rank || b.HasRank != tt.want.hasRank {
				t.Errorf("rank = %d/%v, want %d/%v", b.DPRank, b.HasRank, tt.want.rank, tt.want.hasRank)
			}
			if b.UnknownTags != tt.want.unknownTags || b.UnknownFields != tt.want.unknownField || b.MalformedEvents != tt.want.malformedEvents {
				t.Errorf("skipped tags/fields/events = %d/%d/%d, want %d/%d/%d", b.UnknownTags, b.UnknownFields, b.MalformedEvents,
					tt.want.unknownTags, tt.want.unknownField, tt.want.malformedEvents)
			}
		})
	}
}

func TestDecodeMapEvents(t *testing.T) {
	stored := mpMap(
		mpStr("type"), mpStr("BlockStored"),
		mpStr("block_hashes"), mpUints(sampleHash0, sampleHash1),
		mpStr("parent_block_hash"), mpU64(42),
		mpStr("token_ids"), mpTokens(seqTokens(100, 32)),
		mpStr("block_size"), mpInt(16),
		mpStr("lora_id"), mpInt(7),
		mpStr("medium"), mpStr("CPU"),
		mpStr("lora_name"), mpStr("sql-adapter"),
		mpStr("extra_keys"), mpArr(mpArr(mpStr("sql-adapter"), mpStr("salt")), mpNil()),
		mpStr("group_idx"), mpInt(1),
		mpStr("kv_cache_spec_kind"), mpStr("sliding_window"),
		mpStr("kv_cache_spec_sliding_window"), mpInt(4096),
		mpStr("locality"), mpStr("REMOTE"),
		mpStr("new_in_v0_30"), mpArr(mpInt(1), mpMap(mpStr("a"), mpNil())),
	)
	// Another encoder may put the tag anywhere.
	removed := mpMap(mpStr("block_hashes"), mpArr(mpU64(sampleHash1)), mpStr("medium"), mpStr("GPU"), mpStr("type"), mpStr("BlockRemoved"))
	cleared := mpMap(mpStr("type"), mpStr("AllBlocksCleared"))
	b, err := NewDecoder().Decode(batch3(stored, removed, cleared))
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{Kind: BlockStored, BlockHashes: []uint64{sampleHash0, sampleHash1}, ParentHash: 42, HasParent: true,
			TokenIDs: seqTokens(100, 32), BlockSize: 16, LoraID: 7, HasLoraID: true, Medium: "CPU", LoraName: "sql-adapter",
			ExtraKeys: [][]ExtraKey{{{Kind: ExtraStr, Str: "sql-adapter"}, {Kind: ExtraStr, Str: "salt"}}, nil},
			GroupIdx:  1, HasGroupIdx: true, SpecKind: "sliding_window", SlidingWindow: 4096, HasSlidingWindow: true, Locality: "REMOTE"},
		{Kind: BlockRemoved, BlockHashes: []uint64{sampleHash1}, Medium: "GPU"},
		{Kind: AllBlocksCleared},
	}
	if got := normalize(b.Events); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %+v\nwant %+v", got, want)
	}
	if b.UnknownFields != 1 {
		t.Errorf("UnknownFields = %d, want 1", b.UnknownFields)
	}
}

// SGLang publishes vLLM's array layouts: [ts, events] or [ts, events, rank|nil],
// one BlockStored per page, hashes as signed int64 of a SHA-256 prefix.
func TestDecodeSGLang(t *testing.T) {
	const h1, h2 = -5764607523034234880, 1234567890123456789
	page := func(h, parent int64, from int) mp {
		p := mpNil()
		if parent != 0 {
			p = mpInt(parent)
		}
		return mpArr(mpStr("BlockStored"), mpArr(mpInt(h)), p, mpTokens(seqTokens(from, 4)), mpInt(4), mpNil(), mpStr("GPU"))
	}
	for _, tail := range [][]mp{nil, {mpNil()}} {
		payload := mpArr(append([]mp{mpF64(sampleTS), mpArr(page(h1, 0, 0), page(h2, h1, 4), mpArr(mpStr("BlockRemoved"), mpArr(mpInt(h1)), mpStr("GPU")))}, tail...)...)
		b, err := NewDecoder().Decode(payload)
		if err != nil {
			t.Fatal(err)
		}
		u1 := uint64(0xb000000000000000) // two's complement of h1
		want := []Event{
			{Kind: BlockStored, BlockHashes: []uint64{u1}, TokenIDs: seqTokens(0, 4), BlockSize: 4, Medium: "GPU"},
			{Kind: BlockStored, BlockHashes: []uint64{h2}, ParentHash: u1, HasParent: true, TokenIDs: seqTokens(4, 4), BlockSize: 4, Medium: "GPU"},
			{Kind: BlockRemoved, BlockHashes: []uint64{u1}, Medium: "GPU"},
		}
		if got := normalize(b.Events); !reflect.DeepEqual(got, want) {
			t.Errorf("%d-element batch:\n got %+v\nwant %+v", 2+len(tail), got, want)
		}
		if b.HasRank {
			t.Errorf("HasRank = true, want false")
		}
	}
}

func TestDecodeHashForms(t *testing.T) {
	digest32 := make([]byte, 32)
	for i := range digest32 {
		digest32[i] = byte(i)
	}
	tests := []struct {
		name string
		v    mp
		want uint64
	}{
		{"fixint", mpInt(5), 5},
		{"u8", mpU8(200), 200},
		{"u16", mpU16(60000), 60000},
		{"u32", mpU32(4000000000), 4000000000},
		{"u64", mpU64(sampleHash0), sampleHash0},
		{"u64 small value", mpU64(7), 7},
		{"negative fixint", mpInt(-3), 0xfffffffffffffffd},
		{"i8", mpI8(-100), 0xffffffffffffff9c},
		{"i16", mpI16(-1000), 0xfffffffffffffc18},
		{"i32", mpI32(-100000), 0xfffffffffffe7960},
		{"i64", mpI64(-1), 0xffffffffffffffff},
		{"i64 positive", mpI64(sampleHash1), sampleHash1},
		{"bin 32 (sha256) -> last 8 bytes", mpBin(digest32), 0x18191a1b1c1d1e1f},
		{"bin 16 (xxh3-128) -> last 8 bytes", mpBin(digest32[:16]), 0x08090a0b0c0d0e0f},
		{"bin 8", mpBin(digest32[24:]), 0x18191a1b1c1d1e1f},
		{"bin shorter than 8", mpBin([]byte{1, 2}), 0x0102},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := d.Decode(batch3(
				mpArr(mpStr("BlockStored"), mpArr(tt.v), tt.v, mpArr(), mpInt(16), mpNil(), mpStr("GPU")),
			))
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Events) != 1 {
				t.Fatalf("got %d events, want 1 (malformed %d)", len(b.Events), b.MalformedEvents)
			}
			e := b.Events[0]
			if len(e.BlockHashes) != 1 || e.BlockHashes[0] != tt.want {
				t.Errorf("block_hashes = %#x, want [%#x]", e.BlockHashes, tt.want)
			}
			if !e.HasParent || e.ParentHash != tt.want {
				t.Errorf("parent = %#x/%v, want %#x/true", e.ParentHash, e.HasParent, tt.want)
			}
		})
	}
}

func TestDecodeParentZeroIsNone(t *testing.T) {
	for _, parent := range []mp{mpNil(), mpInt(0), mpU64(0), mpBin(make([]byte, 32))} {
		b, err := NewDecoder().Decode(batch3(mpArr(mpStr("BlockStored"), mpUints(1), parent, mpArr(), mpInt(16), mpNil())))
		if err != nil {
			t.Fatal(err)
		}
		if e := b.Events[0]; e.HasParent || e.ParentHash != 0 {
			t.Errorf("parent % x: got %#x/%v, want none", []byte(parent), e.ParentHash, e.HasParent)
		}
	}
}

func TestDecodeTokenWidths(t *testing.T) {
	// A simulator packs every token id as uint32; vLLM packs the smallest form.
	tokens := mpArr(mpU32(1), mpU8(2), mpU16(300), mpU32(151644), mpI8(5), mpI16(6), mpI32(7), mpI64(8), mpU64(9), mpInt(127))
	b, err := NewDecoder().Decode(batch3(mpArr(mpStr("BlockStored"), mpUints(1), mpNil(), tokens, mpInt(10), mpNil())))
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{1, 2, 300, 151644, 5, 6, 7, 8, 9, 127}
	if got := b.Events[0].TokenIDs; !reflect.DeepEqual(got, want) {
		t.Errorf("token_ids = %v, want %v", got, want)
	}
}

func TestDecodeExtraKeys(t *testing.T) {
	digest := []byte{0xde, 0xad, 0xbe, 0xef}
	extra := mpArr(
		mpArr(mpStr("lora-a"), mpStr("salt")),
		mpNil(),
		mpArr(mpInt(3), mpArr(mpStr("img-hash"), mpInt(-4)), mpBin(digest), mpF64(1.5),
			mpArr(mpStr("img-hash"), mpU64(1<<63))), // an offset beyond int64: not a multimodal key
	)
	b, err := NewDecoder().Decode(batch3(mpArr(mpStr("BlockStored"), mpUints(1, 2, 3), mpNil(), mpArr(), mpInt(16), mpNil(), mpNil(), mpNil(), extra)))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]ExtraKey{
		{{Kind: ExtraStr, Str: "lora-a"}, {Kind: ExtraStr, Str: "salt"}},
		nil,
		{{Kind: ExtraInt, Int: 3}, {Kind: ExtraMM, Str: "img-hash", Int: -4}, {Kind: ExtraBytes, Bytes: digest}, {Kind: ExtraUnknown}, {Kind: ExtraUnknown}},
	}
	if got := b.Events[0].ExtraKeys; !reflect.DeepEqual(got, want) {
		t.Errorf("extra_keys:\n got %+v\nwant %+v", got, want)
	}
}

// TestDecodeReuse checks that a decoder's second batch does not leak values
// of its first through reused buffers.
func TestDecodeReuse(t *testing.T) {
	d := NewDecoder()
	if _, err := d.Decode(batch3(storedArray(12), storedArray(12))); err != nil {
		t.Fatal(err)
	}
	b, err := d.Decode(batch3(mpArr(mpStr("BlockRemoved"), mpUints(9)), mpArr(mpStr("BlockStored"), mpUints(1), mpNil(), mpArr(), mpInt(16), mpNil())))
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{Kind: BlockRemoved, BlockHashes: []uint64{9}}, {Kind: BlockStored, BlockHashes: []uint64{1}, BlockSize: 16}}
	if got := normalize(b.Events); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	sample, err := os.ReadFile("testdata/v0.23_array_block_stored.msgpack")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload []byte
		want    string // substring of the error
	}{
		{"empty", nil, "truncated"},
		{"not a container", mpInt(3), "want an array or a map"},
		{"batch of one", mpArr(mpF64(1)), "has 1 elements"},
		{"ts not a number", mpArr(mpStr("x"), mpArr()), "ts is"},
		{"events not an array", mpArr(mpF64(1), mpInt(3)), "events is"},
		{"rank not an int", mpArr(mpF64(1), mpArr(), mpStr("0")), "data_parallel_rank is"},
		{"map batch without events", mpMap(mpStr("ts"), mpF64(1)), "no events key"},
		{"truncated sample", sample[:len(sample)-20], "remaining bytes"},
		{"truncated in a hash", sample[:35], "truncated"},
		{"trailing bytes", append(append([]byte{}, sample...), 0x00), "trailing bytes"},
		{"array length beyond payload", mp{0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff}, "remaining bytes"},
		{"map length beyond payload", mp{0xdf, 0x7f, 0xff, 0xff, 0xff}, "remaining bytes"},
		{"token array beyond payload", batch3(cat(mp{0x96}, mpStr("BlockStored"), mpUints(1), mpNil(), mp{0xdd, 0, 0x10, 0, 0})), "remaining bytes"},
		{"invalid code in skipped field", batch3(mpArr(mpStr("Unknown"), mp{0xc1})), "invalid msgpack code"},
		{"string length beyond payload", batch3(mpArr(mpStr("BlockStored"), mpUints(1), mpNil(), mpArr(), mpInt(1), mpNil(), mp{0xdb, 0xff, 0xff, 0xff, 0xff})), "truncated"},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := d.Decode(tt.payload)
			if err == nil {
				t.Fatalf("Decode succeeded with %d events, want an error containing %q", len(b.Events), tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	// The decoder is still usable after errors.
	if _, err := d.Decode(sample); err != nil {
		t.Errorf("Decode after errors: %v", err)
	}
}

func TestDecodeSteadyStateAllocs(t *testing.T) {
	payloads := map[string][]byte{}
	for _, f := range []string{"v0.23_array_block_stored.msgpack", "v0.24_map_block_stored.msgpack", "v0.23_array_block_removed.msgpack"} {
		p, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		payloads[f] = p
	}
	d := NewDecoder()
	for name, p := range payloads {
		if _, err := d.Decode(p); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = d.Decode(p) }); n != 0 {
			t.Errorf("%s: %v allocations per Decode in steady state, want 0", name, n)
		}
	}
}
