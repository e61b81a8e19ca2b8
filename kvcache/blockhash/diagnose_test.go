package blockhash

import (
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func TestDiagnoseHashes(t *testing.T) {
	tokens := make([]uint32, 48)
	for i := range tokens {
		tokens[i] = uint32(1000 + i*37)
	}
	publish := func(algo Algorithm, seed string, bs int) []kvblock.Key {
		h, err := NewHasher(HashConfig{Algorithm: algo, Seed: seed, BlockSize: bs})
		if err != nil {
			t.Fatal(err)
		}
		k, _ := h.BlockKeys(nil, tokens, nil)
		return k
	}
	cfg := HashConfig{Algorithm: SHA256, Seed: "42", BlockSize: 16}
	tests := []struct {
		name        string
		published   []kvblock.Key
		engineBS    int
		wantVerdict HashVerdict
		wantAlgo    Algorithm
		wantFix     string
	}{
		{"same config", publish(SHA256, "42", 16), 16, HashMatch, SHA256, ""},
		{"engine uses sha256_cbor", publish(SHA256CBOR, "42", 16), 16, HashOtherAlgorithm, SHA256CBOR, `"sha256_cbor"`},
		{"engine uses xxhash", publish(XXHash, "42", 16), 16, HashOtherAlgorithm, XXHash, `"xxhash"`},
		{"engine seed differs", publish(SHA256, "0", 16), 16, HashSeedOrExtras, "", "PYTHONHASHSEED"},
		{"engine block size differs", publish(SHA256, "42", 8), 8, HashBlockSize, "", "block size to 8"},
		{"nothing published", nil, 16, HashNotComparable, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DiagnoseHashes(cfg, tt.engineBS, tokens, nil, tt.published)
			if d.Verdict != tt.wantVerdict || d.Algorithm != tt.wantAlgo {
				t.Errorf("got %v/%q, want %v/%q", d.Verdict, d.Algorithm, tt.wantVerdict, tt.wantAlgo)
			}
			if fix := d.Fix(); !strings.Contains(fix, tt.wantFix) || (tt.wantFix == "") != (fix == "") {
				t.Errorf("Fix() = %q, want one containing %q", fix, tt.wantFix)
			}
		})
	}
}

func TestDiagnoseHashesReportsFirstMismatch(t *testing.T) {
	tokens := make([]uint32, 48)
	h, _ := NewHasher(HashConfig{Seed: "42", BlockSize: 16})
	keys, _ := h.BlockKeys(nil, tokens, nil)
	keys[2]++
	d := DiagnoseHashes(h.Config(), 16, tokens, nil, keys)
	if d.FirstMismatch != 2 {
		t.Errorf("FirstMismatch = %d, want 2", d.FirstMismatch)
	}
}

func TestDiagnoseHashesInfersAbsentBlockSize(t *testing.T) {
	tokens := make([]uint32, 64)
	h, _ := NewHasher(HashConfig{Seed: "42", BlockSize: 32})
	keys, _ := h.BlockKeys(nil, tokens, nil)
	d := DiagnoseHashes(HashConfig{Seed: "42", BlockSize: 16}, 0, tokens, nil, keys)
	if d.Verdict != HashBlockSize || d.BlockSize != 32 {
		t.Errorf("got %v/%d, want %v/32", d.Verdict, d.BlockSize, HashBlockSize)
	}
}
