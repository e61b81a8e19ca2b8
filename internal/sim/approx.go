package sim

import (
	"context"

	"github.com/kvtrack/kvtrack/internal/sim/approxprefix"
)

// approximate is the Gateway API Inference Extension's approximate prefix
// routing (v1.5.0 approx-prefix-cache-producer + prefix-cache-scorer, as
// approxprefix re-implements it and its differential test proves against
// GIE's own code): it never sees the engines' caches. It hashes the
// request's text in 64-character blocks, scores each pod by the blocks its
// own per-pod LRU says the pod holds, and after routing records the
// request's blocks on the chosen pod, in an LRU that autoTune sizes to the
// pod's number of KV blocks.
type approximate struct {
	affinity
	ix      *approxprefix.Indexer
	matched []int
	prefix  []float64
}

// simModel is the served model name: the approximate router's hash seed and
// the model in the pods' KV-event topics.
const simModel = "sim-model"

func newApproximate(a affinity, pods, lruCapacity int) (*approximate, error) {
	ix, err := approxprefix.New(approxprefix.Config{Model: simModel, LRUCapacity: lruCapacity}, pods)
	if err != nil {
		return nil, err
	}
	return &approximate{affinity: a, ix: ix, matched: make([]int, pods), prefix: make([]float64, pods)}, nil
}

func (ap *approximate) route(_ context.Context, r *request, c cluster) (int, error) {
	hashes := ap.ix.Hash(r.text, r.salt)
	ap.ix.Match(hashes, ap.matched)
	approxprefix.Scores(ap.matched, len(hashes), ap.prefix)
	pod := ap.pick(ap.prefix, nil, c)
	ap.ix.Record(hashes, pod) // PreRequest
	return pod, nil
}
