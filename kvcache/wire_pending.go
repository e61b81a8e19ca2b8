//go:build !kvtrack_wiring

package kvcache

// TEMPORARY: replaced as the hasher, index, events and tokenizer land.

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

var errPending = errors.New("kvcache: not wired yet")

func newTokenizer(Config, options) (Tokenizer, error)                    { return nil, nil }
func newEventSource(Config, kvblock.Index, options) (eventSource, error) { return nil, nil }
func newMemIndex(Config, prometheus.Registerer) (kvblock.Index, error)   { return nil, errPending }
