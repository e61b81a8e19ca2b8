package kvevents

import (
	"context"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// ParentObserver is implemented by an index that also wants, for each
// BlockStored it applies, the key of the block before the stored run: a
// run's parent was in the engine's cache for the request that stored it.
// kvcache's speculative entries use it to learn that a request whose full
// prompt blocks were all cached has been scheduled, when the first block
// its output completes is stored. tier and g are those the run was
// applied with (a hybrid model stores a run once per KV-cache group, and
// each store is told).
type ParentObserver interface {
	StoredAfter(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, g kvblock.Group, parent kvblock.Key)
}

// storedAfter tells the index, if it is a ParentObserver, the key of the
// parent of a BlockStored just applied with tier and g.
func (w *worker) storedAfter(ctx context.Context, s *stream, ev *Event, tier kvblock.Tier, g kvblock.Group) {
	o := w.p.parents
	if o == nil || !ev.HasParent {
		return
	}
	parent := kvblock.Key(ev.ParentHash)
	if s.engine != nil {
		var ok bool
		if parent, ok = s.engine.get(ev.ParentHash); !ok {
			return
		}
	}
	o.StoredAfter(ctx, s.pod, tier, g, parent)
}
