package doctor

import (
	"slices"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

func TestPickChainFindsTheProbeAmongOtherTraffic(t *testing.T) {
	ours := []uint32{10, 11, 12, 13, 14, 15, 16, 17, 18}
	shifted := append([]uint32{1}, ours...) // a tokenizer adding a leading token
	stores := []stored{
		{hashes: []kvblock.Key{100}, tokens: []uint32{90, 91, 92, 93}, blockSize: 4}, // other traffic
		{hashes: []kvblock.Key{1, 2}, tokens: shifted[:8], blockSize: 4},
		{hashes: []kvblock.Key{200}, hasParent: true, parent: 100, tokens: []uint32{94, 95, 96, 97}, blockSize: 4},
		{hashes: []kvblock.Key{3}, hasParent: true, parent: 2, tokens: shifted[8:10], blockSize: 4},
	}
	ch := pickChain(stores, ours)
	if !slices.Equal(ch.hashes, []kvblock.Key{1, 2, 3}) || !slices.Equal(ch.tokens, shifted) {
		t.Errorf("chain hashes %v tokens %v; want [1 2 3] and the shifted prompt", ch.hashes, ch.tokens)
	}
	if len(pickChain(stores[2:3], ours).hashes) != 0 {
		t.Error("a chain was built without a root store")
	}
}

func TestDescribeLayout(t *testing.T) {
	tests := []struct {
		l           kvevents.EventLayout
		batchFields int
		want        string
	}{
		{kvevents.EventLayout{Fields: 6}, 2, "v0.9.0 (or SGLang)"},
		{kvevents.EventLayout{Fields: 6}, 3, "v0.9.1 to v0.10.1 (or SGLang)"},
		{kvevents.EventLayout{Fields: 7}, 3, "v0.10.2 to about v0.14 (or SGLang)"},
		{kvevents.EventLayout{Fields: 12}, 3, "v0.23"},
		{kvevents.EventLayout{Fields: 13}, 3, "newer than v0.23 (unknown trailing fields)"},
		{kvevents.EventLayout{Map: true, Fields: 11}, 3, "v0.24 or later"},
		{kvevents.EventLayout{Map: true, Fields: 12, Keys: []string{"type", "locality"}}, 3, "v0.25/v0.26 or later"},
	}
	for _, tt := range tests {
		if _, got := describeLayout(tt.l, tt.batchFields); got != tt.want {
			t.Errorf("describeLayout(%+v, %d) = %q, want %q", tt.l, tt.batchFields, got, tt.want)
		}
	}
}

func TestPodFromTopic(t *testing.T) {
	tests := []struct {
		topic, pod string
		ok         bool
	}{
		{"kv@10.0.0.7:8000@Qwen/Qwen3-8B", "10.0.0.7:8000", true},
		{"kv@10.0.0.7:8000@model@with@ats", "10.0.0.7:8000", true},
		{"kv-events", "", false},
		{"kv@@m", "", false},
		{"kv@10.0.0.7:8000", "", false},
	}
	for _, tt := range tests {
		if pod, ok := podFromTopic(tt.topic); pod != tt.pod || ok != tt.ok {
			t.Errorf("podFromTopic(%q) = %q, %v; want %q, %v", tt.topic, pod, ok, tt.pod, tt.ok)
		}
	}
}
