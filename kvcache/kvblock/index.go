package kvblock

import "context"

// Index records which pods hold which blocks, on which tier, and scores a
// prompt's keys against a set of candidate pods.
//
// An Index is safe for concurrent use: the event path writes while the
// request path scores. Implementations return errors only for failures of
// their backing store (a network error for a remote index); the in-memory
// index never fails.
//
// Stores carry no parent hash: vLLM evicts blocks in any order, so a pod may
// hold a chain with holes, and the index must answer from what each key's
// own entries say rather than from chain structure.
type Index interface {
	// Add records that pod holds keys on tier. Adding a (key, pod, tier) that
	// is already present takes another reference: vLLM does not de-duplicate
	// stores, and hybrid models store a block once per KV-cache group.
	Add(ctx context.Context, pod Pod, tier Tier, keys []Key) error

	// Remove drops one reference to each (key, pod, tier); the entry goes
	// when its last reference does. Unknown entries are ignored.
	Remove(ctx context.Context, pod Pod, tier Tier, keys []Key) error

	// ClearPod drops every entry of pod, on every tier.
	ClearPod(ctx context.Context, pod Pod) error

	// Clear drops every entry of every pod.
	Clear(ctx context.Context) error

	// Score walks keys in order and, for each candidate, counts the
	// consecutive keys from the first one that the candidate holds on any
	// tier (for a pod with hybrid KV-cache groups, in an index that keeps
	// them, the hit vLLM's hybrid coordinator finds; see GroupIndex). It appends one PodScore per candidate, in candidate order, to dst
	// and returns the extended slice; a candidate listed twice is scored
	// twice, alike. Candidates the index has never seen score zero, as do
	// all candidates when keys is empty. dst is owned by the caller; Score
	// keeps no reference to it.
	Score(ctx context.Context, keys []Key, candidates []Pod, dst []PodScore) ([]PodScore, error)

	// Stats reports the index's size and counters.
	Stats(ctx context.Context) (Stats, error)
}

// PodScore is one candidate's result from Index.Score.
type PodScore struct {
	Pod Pod
	// Matched is the number of consecutive keys, from the first, that the pod
	// holds on any tier; for a hybrid pod, the keys vLLM's hybrid coordinator
	// reuses.
	Matched int
	// Weighted is the sum over the matched keys of the highest tier weight
	// among the tiers the pod holds the key on (for a hybrid pod, a key no
	// group needs and none holds counts as the highest weight). The
	// Indexer ranks pods by it.
	Weighted float64
}

// Fraction returns Matched/total in [0, 1], the score kvtrack publishes; it
// is 0 when total is 0.
func (s PodScore) Fraction(total int) float64 {
	if total <= 0 {
		return 0
	}
	return float64(s.Matched) / float64(total)
}

// Stats describes an index at one moment. Counters are cumulative since the
// index was created.
type Stats struct {
	Keys       int64  // distinct keys held by at least one pod
	Entries    int64  // (key, pod, tier) entries
	Pods       int64  // pods with at least one entry
	Admissions uint64 // entries created
	Evictions  uint64 // entries dropped by the capacity bound
	Removals   uint64 // entries dropped by Remove, ClearPod or Clear
	Lookups    uint64 // keys looked up by Score
	Hits       uint64 // looked-up keys held by at least one candidate still matching
}
