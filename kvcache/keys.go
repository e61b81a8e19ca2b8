package kvcache

import (
	"fmt"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// keyer turns a prompt's tokens into its full blocks' keys.
type keyer interface {
	// keys appends the keys of tokens' full blocks to dst.
	keys(dst []kvblock.Key, tokens []uint32, lora, salt string) ([]kvblock.Key, error)
}

func newKeyer(cfg Config) (keyer, error) {
	switch cfg.KeyScheme {
	case KeySchemeTokens:
		h, err := blockhash.NewTokenHasher(cfg.Hash.BlockSize)
		if err != nil {
			return nil, fmt.Errorf("kvcache: %w", err)
		}
		return tokenKeyer{h}, nil
	default:
		h, err := blockhash.NewHasher(blockhash.HashConfig{
			Algorithm: blockhash.Algorithm(cfg.Hash.Algorithm),
			Seed:      cfg.Hash.Seed,
			BlockSize: cfg.Hash.BlockSize,
		})
		if err != nil {
			return nil, fmt.Errorf("kvcache: %w", err)
		}
		k := vllmKeyer{h: h, blockSize: cfg.Hash.BlockSize}
		if cfg.Hash.ChainCacheBytes > 0 {
			k.chain = newChainCache(cfg.Hash.ChainCacheBytes)
		}
		return k, nil
	}
}

// vllmKeyer computes exactly the hashes vLLM publishes.
type vllmKeyer struct {
	h         *blockhash.Hasher
	blockSize int
	chain     *chainCache // nil when hash.chainCacheBytes is -1
}

func (k vllmKeyer) keys(dst []kvblock.Key, tokens []uint32, lora, salt string) ([]kvblock.Key, error) {
	if k.chain != nil {
		return k.chain.keys(k.h, k.blockSize, dst, tokens, lora, salt)
	}
	extras := blockhash.RequestExtras{LoRAName: lora, CacheSalt: salt}
	return k.h.BlockKeys(dst, tokens, extras.PerBlock(len(tokens)/k.blockSize))
}

// tokenKeyer chains the token-derived keys the event path computes from
// each BlockStored's token IDs, with the same extra keys.
type tokenKeyer struct{ h *blockhash.TokenHasher }

func (k tokenKeyer) keys(dst []kvblock.Key, tokens []uint32, lora, salt string) ([]kvblock.Key, error) {
	extras := blockhash.RequestExtras{LoRAName: lora, CacheSalt: salt}
	return k.h.BlockKeys(dst, 0, tokens, extras.PerBlock(len(tokens)/k.h.BlockSize()))
}
