package kvcache

// TEMPORARY: replaced as the hasher, index, events and tokenizer land.

import (
	"errors"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

var errPending = errors.New("kvcache: not wired yet")

func algorithmsPending() []string { return []string{"sha256", "sha256_cbor", "xxhash", "xxhash_cbor", "sha256_cbor_64bit"} }

func newKeyer(Config) (keyer, error)                                     { return nil, errPending }
func newIndex(Config, options) (kvblock.Index, error)                    { return nil, errPending }
func newTokenizer(Config, options) (Tokenizer, error)                    { return nil, nil }
func newEventSource(Config, kvblock.Index, options) (eventSource, error) { return nil, nil }
