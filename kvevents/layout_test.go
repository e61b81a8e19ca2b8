package kvevents

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestLayoutOfSamples(t *testing.T) {
	storedKeys := []string{"type", "block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id",
		"medium", "lora_name", "extra_keys", "group_idx", "kv_cache_spec_kind"}
	tests := []struct {
		file string
		want Layout
	}{
		{"v0.23_array_block_stored.msgpack", Layout{BatchFields: 3, Stored: EventLayout{Fields: 12}}},
		{"v0.24_map_block_stored.msgpack", Layout{BatchFields: 3, Stored: EventLayout{Map: true, Fields: 11, Keys: storedKeys}}},
		{"v0.23_array_block_removed.msgpack", Layout{BatchFields: 3, Removed: EventLayout{Fields: 4}}},
		{"v0.23_array_all_cleared.msgpack", Layout{BatchFields: 3}},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			payload, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Layout(payload)
			if err != nil {
				t.Fatalf("Layout: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLayoutOfEveryArrayVersion(t *testing.T) {
	tests := []struct {
		name    string
		payload mp
		want    Layout
	}{
		{"v0.9.0 batch of 2", mpArr(mpF64(sampleTS), mpArr(storedArray(6))), Layout{BatchFields: 2, Stored: EventLayout{Fields: 6}}},
		{"v0.10.2", batch3(storedArray(7)), Layout{BatchFields: 3, Stored: EventLayout{Fields: 7}}},
		{"v0.22", batch3(storedArray(10)), Layout{BatchFields: 3, Stored: EventLayout{Fields: 10}}},
		{"first of each kind", batch3(mpArr(mpStr("AllBlocksCleared")), storedArray(9), storedArray(12), mpArr(mpStr("BlockRemoved"), mpUints(1), mpStr("GPU"))),
			Layout{BatchFields: 3, Stored: EventLayout{Fields: 9}, Removed: EventLayout{Fields: 3}}},
		{"map batch", mpMap(mpStr("ts"), mpF64(sampleTS), mpStr("events"), mpArr(storedArray(7))),
			Layout{BatchMap: true, BatchFields: 2, Stored: EventLayout{Fields: 7}}},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Layout(tt.payload)
			if err != nil {
				t.Fatalf("Layout: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLayoutRejectsMalformed(t *testing.T) {
	d := NewDecoder()
	for _, payload := range []mp{nil, mpStr("x"), batch3(storedArray(12))[:20]} {
		if _, err := d.Layout(payload); !errors.Is(err, ErrMalformed) {
			t.Errorf("Layout(% x) error = %v, want ErrMalformed", []byte(payload), err)
		}
	}
}

// FuzzLayout checks that Layout never panics, accepts every payload Decode
// accepts, and reports no more elements than the payload has bytes.
func FuzzLayout(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.msgpack")
	for _, name := range files {
		p, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add([]byte(mpMap(mpStr("ts"), mpF64(1), mpStr("events"), mpArr(mpMap(mpStr("type"), mpStr("BlockRemoved"))))))
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, payload []byte) {
		l, lerr := d.Layout(payload)
		if lerr != nil && !errors.Is(lerr, ErrMalformed) {
			t.Fatalf("Layout error %v does not wrap ErrMalformed", lerr)
		}
		if _, err := d.Decode(payload); err == nil && lerr != nil {
			t.Fatalf("Decode accepts the payload, Layout does not: %v", lerr)
		}
		if l.BatchFields+l.Stored.Fields+l.Removed.Fields > len(payload) {
			t.Fatalf("layout %+v claims more elements than %d bytes", l, len(payload))
		}
	})
}
