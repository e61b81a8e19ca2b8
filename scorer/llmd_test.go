package scorer

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fwkdl "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"

	"github.com/kvtrack/kvtrack/internal/testepp"
	"github.com/kvtrack/kvtrack/internal/vllmfake"
)

// guideParameters returns the scorer's parameters from one of llm-d's guide
// EndpointPickerConfigs in kvcache/llmd/testdata (each names its source).
func guideParameters(t *testing.T, file string) json.RawMessage {
	return testepp.PluginParameters(t, filepath.Join("..", "kvcache", "llmd", "testdata", file), PreciseScorerType)
}

// kvtrack's own schema is unaffected: no warnings, unknown fields still
// errors (an llm-d key at the wrong depth is not llm-d's schema).
func TestKVTrackParametersAreNotTakenForLLMD(t *testing.T) {
	cfg, warnings, err := parseAnyParameters(json.RawMessage(baseParams))
	if err != nil || warnings != nil || cfg.Hash.Seed != "42" {
		t.Errorf("kvtrack parameters: cfg seed %q, warnings %v, err %v", cfg.Hash.Seed, warnings, err)
	}
	if _, _, err := parseAnyParameters(json.RawMessage(`{"events": {"zmqEndpoint": "tcp://*:5557"}}`)); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("err = %v, want kvtrack's unknown-field error", err)
	}
}

// The pod-discovery guide's block, with its socket port pointed at a real
// vLLM-protocol publisher, builds a scorer through the factory that follows
// the pod's events and routes by them.
func TestLLMDPodDiscoveryParametersRoute(t *testing.T) {
	pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: "kv@127.0.0.1:8000@m"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(pub.Endpoint(), "tcp://"), ":")
	params := strings.Replace(string(guideParameters(t, "scheduler-pod-discovery.yaml")), `"socketPort":5557`, `"socketPort":`+port, 1)
	if !strings.Contains(params, port) {
		t.Fatalf("socketPort not replaced in %s", params)
	}
	s := newTestScorer(t, params)

	a := endpoint("127.0.0.1", "8000")
	ctx := context.Background()
	if err := s.ExtractEndpoint(ctx, fwkdl.EndpointEvent{Type: fwkdl.EventAddOrUpdate, Endpoint: fwkdl.NewEndpoint(a.GetMetadata(), nil)}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pub.WaitSubscribed(wctx); err != nil {
		t.Fatalf("the scorer did not subscribe: %v", err)
	}
	prompt := seqTokens(1, 128) // two blocks of 64
	keys := vllmKeys(t, s, prompt)
	if _, err := pub.Publish(1, []vllmfake.Event{{Kind: vllmfake.BlockStored, Hashes: keys, Tokens: prompt, BlockSize: 64}}); err != nil {
		t.Fatal(err)
	}
	req := &scheduling.LLMRequest{TokenizedPrompt: &scheduling.TokenizedPrompt{TokenIDs: prompt}}
	waitFor(t, "the stored blocks to reach the index", func() bool {
		return s.Score(ctx, nil, req, []scheduling.Endpoint{a})[a] == 1
	})
	if cfg := s.Indexer().Config(); cfg.Hash.Seed != "42" || cfg.Hash.BlockSize != 64 {
		t.Errorf("indexer hash config %+v, want the guide's seed 42 and block size 64", cfg.Hash)
	}
}
