package simulate

import (
	"context"
	"errors"
)

// kvtrackRun is kvtrack running for one simulation: an Indexer bound to one
// ZMQ endpoint that every simulated pod publishes to.
type kvtrackRun struct{}

var errNotLanded = errors.New("kvtrack's Indexer (kvcache) is not on this branch yet")

func startKVTrack(ctx context.Context, cfg Config, pods []string) (*kvtrackRun, error) {
	return nil, errNotLanded
}

func (k *kvtrackRun) endpoint() string { return "" }
func (k *kvtrackRun) waitApplied(ctx context.Context, stored, removed uint64) error {
	return errNotLanded
}
func (k *kvtrackRun) score(ctx context.Context, tokens []uint32, pods []string, matched []int) (int, error) {
	return 0, errNotLanded
}
func (k *kvtrackRun) close() {}
