package doctor

import (
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
)

func TestGuessSeed(t *testing.T) {
	tokens := make([]uint32, 40)
	for i := range tokens {
		tokens[i] = uint32(7 * i)
	}
	h, _ := blockhash.NewHasher(blockhash.HashConfig{Algorithm: blockhash.XXHashCBOR, Seed: "1234", BlockSize: 16})
	keys, _ := h.BlockKeys(nil, tokens, nil)
	cfg := blockhash.HashConfig{Seed: "42", BlockSize: 16}
	seed, algo, ok := guessSeed(cfg, tokens, nil, keys, commonSeeds)
	if !ok || seed != "1234" || algo != blockhash.XXHashCBOR {
		t.Errorf("guessSeed = %q, %q, %v; want \"1234\", %q, true", seed, algo, ok, blockhash.XXHashCBOR)
	}
	if _, _, ok := guessSeed(cfg, tokens, nil, keys, []string{"7", "8"}); ok {
		t.Error("guessSeed found a seed that is not among the candidates")
	}
}
