package doctor

import (
	"slices"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// commonSeeds are PYTHONHASHSEED values often found in deployments, for
// guessSeed.
var commonSeeds = []string{"0", "42", "1", "123", "1234", "12345", "2024", "2025", "2026", "1337", "random"}

// guessSeed looks for the engine's seed when blockhash.DiagnoseHashes found no
// algorithm that reproduces published with the configured seed: it tries
// each of seeds with every algorithm, at cfg's block size, and returns the
// first pair that reproduces every published hash. Extra keys are as for
// DiagnoseHashes. It costs one hash chain per (seed, algorithm).
func guessSeed(cfg blockhash.HashConfig, tokens []uint32, extra [][]blockhash.ExtraKey, published []kvblock.Key, seeds []string) (seed string, algo blockhash.Algorithm, ok bool) {
	n := len(published)
	if n == 0 || cfg.BlockSize <= 0 || len(tokens) < n*cfg.BlockSize || (extra != nil && len(extra) < n) {
		return "", "", false
	}
	tokens = tokens[:n*cfg.BlockSize]
	if extra != nil {
		extra = extra[:n]
	}
	var keys []kvblock.Key
	for _, s := range seeds {
		for _, a := range blockhash.Algorithms() {
			h, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: a, Seed: s, BlockSize: cfg.BlockSize})
			if err != nil {
				continue
			}
			if keys, err = h.BlockKeys(keys[:0], tokens, extra); err == nil && slices.Equal(keys, published) {
				return s, a, true
			}
		}
	}
	return "", "", false
}
