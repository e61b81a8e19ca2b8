package kvevents

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// parentIndex is a reference index that records what it is told.
type parentIndex struct {
	*refIndex
	mu   sync.Mutex
	runs []toldRun
}

// toldRun is one StoredAfter call.
type toldRun struct {
	tier   kvblock.Tier
	group  int
	kind   kvblock.GroupKind
	parent kvblock.Key
}

func (x *parentIndex) StoredAfter(_ context.Context, _ kvblock.Pod, tier kvblock.Tier, g kvblock.Group, parent kvblock.Key) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.runs = append(x.runs, toldRun{tier, g.Index, g.Kind, parent})
}

func (x *parentIndex) told() []toldRun {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.runs)
}

// An index that is a ParentObserver is told the key of the block before
// every stored run that has one, in the key scheme the pool indexes with;
// a run from the root has no parent to tell.
func TestParentObserverToldEachStoredRunsParent(t *testing.T) {
	th, err := blockhash.NewTokenHasher(16)
	if err != nil {
		t.Fatal(err)
	}
	tokA, tokB := seqTokens(1000, 32), seqTokens(2000, 16)
	keysA, _ := th.BlockKeys(nil, 0, tokA, nil)
	for _, tc := range []struct {
		scheme KeyScheme
		want   kvblock.Key
	}{
		{SchemeVLLM, kvblock.Key(0xa1)}, // the engine's hash is the key
		{SchemeTokens, keysA[1]},        // the key derived from the parent's tokens
	} {
		t.Run(string(tc.scheme), func(t *testing.T) {
			idx := &parentIndex{refIndex: newRefIndex()}
			p := startPool(t, Config{Mode: ModeConnect, KeyScheme: tc.scheme}, idx)
			pub := newGoPublisher(t, pubOpts{})
			addPub(t, p, pub)
			pub.publish(false, pub.stored([]uint64{0xa0, 0xa1}, 0, tokA, "GPU"))
			pub.publish(false, pub.stored([]uint64{0xb0}, 0xa1, tokB, "GPU"))
			eventually(t, "the second run's parent to be told", func() bool { return len(idx.told()) > 0 })
			if got := idx.told(); !slices.Equal(got, []toldRun{{kvblock.TierGPU, 0, kvblock.GroupFull, tc.want}}) {
				t.Errorf("parents told %v, want [%v]", got, tc.want)
			}
		})
	}
}

// The parent is told with the tier the run was applied with: a medium of
// the configured table gets the table's tier, not TierOther.
func TestParentObserverToldTheConfiguredMediumsTier(t *testing.T) {
	media := kvblock.NewMedia("NVME")
	nvme, _ := media.Tier("NVME")
	idx := &parentIndex{refIndex: newRefIndex()}
	p := startPool(t, Config{Mode: ModeConnect, Media: media}, idx)
	pub := newGoPublisher(t, pubOpts{})
	addPub(t, p, pub)
	pub.publish(false, pub.stored([]uint64{0xa0}, 0, seqTokens(1000, 16), "NVME"))
	pub.publish(false, pub.stored([]uint64{0xb0}, 0xa0, seqTokens(2000, 16), "NVME"))
	eventually(t, "the second run's parent to be told", func() bool { return len(idx.told()) > 0 })
	if got := idx.told(); !slices.Equal(got, []toldRun{{nvme, 0, kvblock.GroupFull, 0xa0}}) {
		t.Errorf("told %v, want parent 0xa0 on NVME's tier %d", got, nvme)
	}
}
