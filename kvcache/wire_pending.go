//go:build !kvtrack_wiring

package kvcache

// TEMPORARY: replaced as the hasher, index, events and tokenizer land.

import (
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func newEventSource(Config, kvblock.Index, options) (eventSource, error) { return nil, nil }
