package kvcache

import "github.com/kvtrack/kvtrack/kvcache/kvblock"

// keyer turns a prompt's tokens into its full blocks' keys.
type keyer interface {
	// keys appends the keys of tokens' full blocks to dst.
	keys(dst []kvblock.Key, tokens []uint32, lora, salt string) ([]kvblock.Key, error)
}
