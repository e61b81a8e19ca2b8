package scorer

import (
	"reflect"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// A clone carries everything PreRequest passes to SpeculateResult, each
// batch prompt's looked-up blocks included (they decide how its entry is
// confirmed), and shares no slice with the original.
func TestKeysStateCloneCarriesEveryPromptsBlocks(t *testing.T) {
	st := &keysState{
		keys:        []kvblock.Key{1, 2, 3, 4, 5},
		batch:       [][]kvblock.Key{{1, 2, 3}, {4, 5}},
		blocks:      4,
		batchBlocks: []int{3, 1},
	}
	c := st.Clone().(*keysState)
	if !reflect.DeepEqual(c, st) {
		t.Fatalf("clone %+v, want %+v", c, st)
	}
	c.batchBlocks[0], c.batch[0][0], c.keys[0] = 0, 0, 0
	if st.batchBlocks[0] != 3 || st.batch[0][0] != 1 || st.keys[0] != 1 {
		t.Errorf("changing the clone changed the original: %+v", st)
	}
}
