package approxprefix

import (
	"strings"
	"testing"
)

func TestHashFullCharacterBlocksOnly(t *testing.T) {
	ix, err := New(Config{Model: "m"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 64*3+10)
	if got := len(ix.Hash(text, "")); got != 3 {
		t.Errorf("%d hashes for 3 full blocks and a partial one, want 3", got)
	}
	if got := len(ix.Hash(strings.Repeat("y", 64*300), "")); got != DefaultMaxBlocks {
		t.Errorf("%d hashes for 300 blocks, want the cap %d", got, DefaultMaxBlocks)
	}
	a := append([]uint64(nil), ix.Hash("a"+strings.Repeat("z", 127), "")...)
	b := ix.Hash("b"+strings.Repeat("z", 127), "")
	if a[1] == b[1] {
		t.Error("second block's hash ignores the first block: hashes are not chained")
	}
	salted := ix.Hash("a"+strings.Repeat("z", 127), "tenant")
	if salted[0] == a[0] {
		t.Error("cache_salt does not change the first block's hash")
	}
}

func TestNewRejectsBadSizes(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		pods int
	}{
		{Config{}, 0},
		{Config{}, MaxPods + 1},
		{Config{LRUCapacity: -1}, 2},
		{Config{BlockTokens: -16}, 2},
	} {
		if _, err := New(tt.cfg, tt.pods); err == nil {
			t.Errorf("New(%+v, %d) accepted", tt.cfg, tt.pods)
		}
	}
}
