package vllmfake

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// The golden payloads were produced by vLLM's own msgspec encoder (see
// /work/shared/testdata/vllm-events/samples.json upstream of this copy).
func TestAppendBatchMatchesVLLMEncoder(t *testing.T) {
	tokens := make([]uint32, 32)
	for i := range tokens {
		tokens[i] = uint32(100 + i)
	}
	const (
		h0 = kvblock.Key(6658331277240515430)
		h1 = kvblock.Key(8353329011930047756)
		ts = 1767225600.125
	)
	stored := []Event{{Kind: BlockStored, Hashes: []kvblock.Key{h0, h1}, Tokens: tokens, BlockSize: 16}}
	tests := []struct {
		golden string
		layout Layout
		events []Event
	}{
		{"v0.23_array_block_stored.msgpack", LayoutArray, stored},
		{"v0.24_map_block_stored.msgpack", LayoutMap, stored},
		{"v0.23_array_block_removed.msgpack", LayoutArray, []Event{
			{Kind: BlockRemoved, Hashes: []kvblock.Key{h1}},
			{Kind: BlockRemoved, Hashes: []kvblock.Key{h0}},
		}},
		{"v0.23_array_all_cleared.msgpack", LayoutArray, []Event{{Kind: AllBlocksCleared}}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", tt.golden))
			if err != nil {
				t.Fatal(err)
			}
			got := AppendBatch(nil, tt.layout, ts, 0, tt.events)
			if !bytes.Equal(got, want) {
				t.Errorf("encoding differs from vLLM's:\n got %x\nwant %x", got, want)
			}
		})
	}
}
