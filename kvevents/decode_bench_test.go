package kvevents

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// benchStored encodes one BlockStored of blocks full 16-token blocks the way
// vLLM v0.23 (array) or v0.24 (map) does, with realistic token ids (most
// need a uint16 or uint32) and uint64 hashes.
func benchStored(layout string, blocks int, rng *rand.Rand) mp {
	hashes := make([]uint64, blocks)
	for i := range hashes {
		hashes[i] = rng.Uint64() | 1<<63
	}
	tokens := make([]uint32, blocks*16)
	for i := range tokens {
		tokens[i] = uint32(rng.IntN(151000))
	}
	extra := make([]mp, blocks)
	for i := range extra {
		extra[i] = mpNil()
	}
	if layout == "array" {
		return mpArr(mpStr("BlockStored"), mpUints(hashes...), mpU64(rng.Uint64()|1<<63), mpTokens(tokens), mpInt(16),
			mpNil(), mpStr("GPU"), mpNil(), mpArr(extra...), mpInt(0), mpStr("full_attention"), mpNil())
	}
	return mpMap(
		mpStr("type"), mpStr("BlockStored"),
		mpStr("block_hashes"), mpUints(hashes...),
		mpStr("parent_block_hash"), mpU64(rng.Uint64()|1<<63),
		mpStr("token_ids"), mpTokens(tokens),
		mpStr("block_size"), mpInt(16),
		mpStr("lora_id"), mpNil(),
		mpStr("medium"), mpStr("GPU"),
		mpStr("lora_name"), mpNil(),
		mpStr("extra_keys"), mpArr(extra...),
		mpStr("group_idx"), mpInt(0),
		mpStr("kv_cache_spec_kind"), mpStr("full_attention"),
	)
}

func BenchmarkDecode(b *testing.B) {
	for _, layout := range []string{"array", "map"} {
		for _, blocks := range []int{1, 64} {
			payload := batch3(benchStored(layout, blocks, rand.New(rand.NewPCG(1, 2))))
			b.Run(fmt.Sprintf("%s/blocks=%d", layout, blocks), func(b *testing.B) {
				d := NewDecoder()
				b.ReportAllocs()
				b.SetBytes(int64(len(payload)))
				for b.Loop() {
					if _, err := d.Decode(payload); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecodeMsgpackGeneric is the baseline a decoder without typed
// structs pays: msgpack's generic decoding into []any trees.
func BenchmarkDecodeMsgpackGeneric(b *testing.B) {
	payload := batch3(benchStored("array", 1, rand.New(rand.NewPCG(1, 2))))
	var r bytes.Reader
	d := msgpack.NewDecoder(&r)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(payload)
		if _, err := d.DecodeInterface(); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.msgpack")
	for _, name := range files {
		p, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	f.Add([]byte(batch3(benchStored("array", 3, rng))))
	f.Add([]byte(batch3(benchStored("map", 2, rng))))
	f.Add([]byte(mpMap(mpStr("ts"), mpF64(1), mpStr("events"), mpArr(mpMap(mpStr("type"), mpStr("BlockRemoved"), mpStr("block_hashes"), mpArr(mpBin(make([]byte, 32))))))))
	f.Add([]byte(batch3(mpArr(mpStr("BlockStored"), mpUints(1, 2), mpNil(), mpArr(), mpInt(16), mpNil(), mpNil(), mpNil(),
		mpArr(mpArr(mpStr("a"), mpArr(mpStr("mm"), mpInt(-2)), mpBin([]byte{1})), mpNil())))))
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := d.Decode(payload)
		if err != nil {
			return
		}
		// Decoded slices can only come from the payload's bytes: every
		// element takes at least one byte on the wire.
		n := 0
		for _, e := range b.Events {
			n += len(e.BlockHashes) + len(e.TokenIDs) + len(e.ExtraKeys)
		}
		if n > len(payload) {
			t.Fatalf("decoded %d elements from %d bytes", n, len(payload))
		}
		if cap(d.extraBytes) > 2*len(payload)+64 && len(payload) > 0 {
			t.Fatalf("byte arena grew to %d for a %d-byte payload", cap(d.extraBytes), len(payload))
		}
	})
}
