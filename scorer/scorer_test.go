package scorer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	fwkdl "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
	fwkplugin "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/plugin"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"

	"github.com/kvtrack/kvtrack/internal/testredis"
	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"

	"github.com/kvtrack/kvtrack/internal/testwait"
)

// newTestScorer builds a scorer through the factory, as the EPP does, with
// its metrics on a private registry and its indexer stopped at test end.
func newTestScorer(t testing.TB, params string, opts ...Option) *Scorer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	handle := fwkplugin.NewEppHandle(ctx, func() []types.NamespacedName { return nil })
	opts = append([]Option{WithRegisterer(prometheus.NewRegistry())}, opts...)
	p, err := NewFactory(opts...)("precise", json.RawMessage(params), handle)
	if err != nil {
		t.Fatalf("factory(%s): %v", params, err)
	}
	return p.(*Scorer)
}

func endpoint(addr, port string) scheduling.Endpoint {
	return scheduling.NewEndpoint(&fwkdl.EndpointMetadata{
		NamespacedName: types.NamespacedName{Namespace: "default", Name: "pod-" + addr},
		Address:        addr,
		Port:           port,
	}, fwkdl.NewMetrics(), nil)
}

// seqTokens returns n token IDs starting at from.
func seqTokens(from, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(from + i)
	}
	return out
}

// vllmKeys returns the hashes vLLM publishes for tokens' full blocks under
// the scorer's hash configuration (kvblock's Hasher is checked against
// vLLM's reference vectors).
func vllmKeys(t testing.TB, s *Scorer, tokens []uint32) []kvblock.Key {
	t.Helper()
	cfg := s.Indexer().Config()
	h, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: blockhash.Algorithm(cfg.Hash.Algorithm), Seed: cfg.Hash.Seed, BlockSize: cfg.Hash.BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := h.BlockKeys(nil, tokens, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// store records tokens' blocks on pod the way the event path would.
func store(t testing.TB, s *Scorer, pod string, tokens []uint32) {
	t.Helper()
	if err := s.Indexer().Index().Add(context.Background(), kvblock.Pod{Addr: pod}, kvblock.TierGPU, vllmKeys(t, s, tokens)); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// baseParams configure the tests that feed the (default, in-memory) index
// directly: events are disabled, so no socket dials the made-up pods.
const baseParams = `{"hash": {"seed": "42", "blockSize": 16}, "events": {"enabled": false}}`

func TestFactoryRejectsUnknownParameterByName(t *testing.T) {
	for _, params := range []string{
		`{"hash": {"seed": "42"}, "blockSize": 16}`,
		`{"hash": {"seed": "42", "blockSizeTokens": 16}}`,
		`{"events": {"zmqEndpoint": "tcp://*:5557"}}`,
	} {
		_, err := Factory("p", json.RawMessage(params), nil)
		if err == nil {
			t.Errorf("factory(%s) = nil error, want unknown field", params)
			continue
		}
		var field struct{ name string }
		for _, f := range []string{"blockSize", "hash.blockSizeTokens", "events.zmqEndpoint"} {
			last := f[strings.LastIndexByte(f, '.')+1:]
			if strings.Contains(params, `"`+last+`"`) && strings.Contains(err.Error(), f+": unknown field") {
				field.name = f
			}
		}
		if field.name == "" {
			t.Errorf("factory(%s) = %v, want an unknown-field error naming the field", params, err)
		}
	}
}

func TestFactoryRejectsInvalidValueByField(t *testing.T) {
	_, err := Factory("p", json.RawMessage(`{"hash": {"seed": "42", "algorithm": "md5"}}`), nil)
	if err == nil || !strings.Contains(err.Error(), "hash.algorithm") || !strings.Contains(err.Error(), "sha256_cbor") {
		t.Errorf("factory = %v, want an error naming hash.algorithm and the valid algorithms", err)
	}
	_, err = Factory("p", json.RawMessage(`{}`), nil)
	if err == nil || !strings.Contains(err.Error(), "hash.seed") {
		t.Errorf("factory({}) = %v, want an error asking for hash.seed", err)
	}
	_, err = Factory("p", json.RawMessage(`{"hash": {"seed": "42"}} {"x": 1}`), nil)
	if err == nil || !strings.Contains(err.Error(), "trailing data") {
		t.Errorf("factory(two objects) = %v, want a trailing-data error", err)
	}
}

func TestFactoryBuildsNamedAffinityScorer(t *testing.T) {
	s := newTestScorer(t, baseParams)
	if got := s.TypedName(); got != (fwkplugin.TypedName{Type: "precise-prefix-cache-scorer", Name: "precise"}) {
		t.Errorf("TypedName() = %+v", got)
	}
	if got := s.Category(); got != scheduling.Affinity {
		t.Errorf("Category() = %q, want Affinity", got)
	}
}

func TestRegisterAddsFactoryToRegistry(t *testing.T) {
	Register(WithRegisterer(prometheus.NewRegistry()))
	defer delete(fwkplugin.Registry, PreciseScorerType)
	f, ok := fwkplugin.Registry[PreciseScorerType]
	if !ok {
		t.Fatalf("Registry has no %q", PreciseScorerType)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := f("x", json.RawMessage(baseParams), fwkplugin.NewEppHandle(ctx, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(scheduling.Scorer); !ok {
		t.Errorf("registered factory built %T, not a Scorer", p)
	}
}

func TestScoreIsMatchedOverTotalFromTokenizedPrompt(t *testing.T) {
	s := newTestScorer(t, baseParams)
	prompt := seqTokens(1000, 4*16+5) // 4 full blocks and a partial one
	store(t, s, "10.0.0.1:8000", prompt)
	store(t, s, "10.0.0.2:8000", prompt[:2*16])
	store(t, s, "10.0.0.3:8000", seqTokens(5000, 64)) // an unrelated prompt
	a, b, c, d := endpoint("10.0.0.1", "8000"), endpoint("10.0.0.2", "8000"), endpoint("10.0.0.3", "8000"), endpoint("10.0.0.1", "9000")
	req := &scheduling.LLMRequest{RequestId: "r1", TargetModel: "m", TokenizedPrompt: &scheduling.TokenizedPrompt{TokenIDs: prompt}}

	got := s.Score(context.Background(), nil, req, []scheduling.Endpoint{a, b, c, d})
	want := map[scheduling.Endpoint]float64{a: 1, b: 0.5, c: 0, d: 0}
	for ep, w := range want {
		if got[ep] != w {
			t.Errorf("score(%s) = %v, want %v", EndpointKey(ep.GetMetadata()), got[ep], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Score returned %d entries, want %d", len(got), len(want))
	}
}

func TestScoreMissesOnCacheSalt(t *testing.T) {
	s := newTestScorer(t, baseParams)
	prompt := seqTokens(1, 64)
	store(t, s, "10.0.0.1:8000", prompt)
	a := endpoint("10.0.0.1", "8000")
	req := &scheduling.LLMRequest{
		TokenizedPrompt: &scheduling.TokenizedPrompt{TokenIDs: prompt},
		Body:            &scheduling.LLMRequestBody{Completions: &scheduling.CompletionsRequest{CacheSalt: "tenant-b"}},
	}
	if got := s.Score(context.Background(), nil, req, []scheduling.Endpoint{a})[a]; got != 0 {
		t.Errorf("salted score = %v, want 0: vLLM mixes cache_salt into the first block", got)
	}
}

func TestScoreIsZeroForUnusableRequests(t *testing.T) {
	s := newTestScorer(t, baseParams)
	store(t, s, "10.0.0.1:8000", seqTokens(1, 64))
	a := endpoint("10.0.0.1", "8000")
	for name, req := range map[string]*scheduling.LLMRequest{
		"nil":                nil,
		"no body":            {RequestId: "x"},
		"embeddings":         {Body: &scheduling.LLMRequestBody{Embeddings: &scheduling.EmbeddingsRequest{Input: "hi"}}},
		"text, no tokenizer": {Body: &scheduling.LLMRequestBody{Completions: &scheduling.CompletionsRequest{Prompt: scheduling.Prompt{Raw: "hello"}}}},
		"short prompt":       {TokenizedPrompt: &scheduling.TokenizedPrompt{TokenIDs: seqTokens(1, 15)}},
	} {
		got := s.Score(context.Background(), nil, req, []scheduling.Endpoint{a})
		if v, ok := got[a]; !ok || v != 0 {
			t.Errorf("%s: score = %v (present %v), want 0", name, v, ok)
		}
	}
}

// TestExtractEndpointFollowsPodEvents drives the extractor as the data
// layer does: an endpoint joining the pool makes the scorer dial its event
// publisher (a real libzmq PUB speaking vLLM's wire format), its stored
// blocks raise its score, and its leaving clears them.
func TestExtractEndpointFollowsPodEvents(t *testing.T) {
	pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: "kv@127.0.0.1:8000@m"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(pub.Endpoint(), "tcp://"), ":")
	s := newTestScorer(t, fmt.Sprintf(`{"hash": {"seed": "42", "blockSize": 16}, "events": {"port": %s}}`, port))

	a := endpoint("127.0.0.1", "8000")
	ctx := context.Background()
	if err := s.ExtractEndpoint(ctx, fwkdl.EndpointEvent{Type: fwkdl.EventAddOrUpdate, Endpoint: fwkdl.NewEndpoint(a.GetMetadata(), nil)}); err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribed(testwait.Context(t)); err != nil {
		t.Fatalf("the scorer did not subscribe to the added endpoint: %v", err)
	}

	prompt := seqTokens(1, 64)
	keys := vllmKeys(t, s, prompt)
	if _, err := pub.Publish(1, []vllmfake.Event{{Kind: vllmfake.BlockStored, Hashes: keys, Tokens: prompt, BlockSize: 16}}); err != nil {
		t.Fatal(err)
	}
	req := &scheduling.LLMRequest{TokenizedPrompt: &scheduling.TokenizedPrompt{TokenIDs: prompt}}
	waitFor(t, "the stored blocks to reach the index", func() bool {
		return s.Score(ctx, nil, req, []scheduling.Endpoint{a})[a] == 1
	})

	if err := s.ExtractEndpoint(ctx, fwkdl.EndpointEvent{Type: fwkdl.EventDelete, Endpoint: fwkdl.NewEndpoint(a.GetMetadata(), nil)}); err != nil {
		t.Fatal(err)
	}
	if got := s.Score(ctx, nil, req, []scheduling.Endpoint{a})[a]; got != 0 {
		t.Errorf("score after the endpoint left = %v, want 0", got)
	}
}

// TestFactoryBuildsRedisBackedScorer checks that the parameters select the
// redis backend and that scores are read from the server.
func TestFactoryBuildsRedisBackedScorer(t *testing.T) {
	addr := testredis.Start(t)
	s := newTestScorer(t, fmt.Sprintf(`{"hash": {"seed": "42"}, "events": {"enabled": false},
		"index": {"backend": "redis"}, "redis": {"addr": %q}}`, addr))
	prompt := seqTokens(1, 65) // vLLM looks up all 4 full blocks (never the last token)
	store(t, s, "10.0.0.1:8000", prompt[:32])
	a, b := endpoint("10.0.0.1", "8000"), endpoint("10.0.0.2", "8000")
	req := &scheduling.LLMRequest{TokenizedPrompt: &scheduling.TokenizedPrompt{TokenIDs: prompt}}
	if got := s.Score(context.Background(), nil, req, []scheduling.Endpoint{a, b}); got[a] != 0.5 || got[b] != 0 {
		t.Errorf("scores = %v, want a 0.5, b 0", got)
	}
	st, err := s.Indexer().Index().Stats(context.Background())
	if err != nil || st.Keys != 2 {
		t.Errorf("redis index stats = %+v, %v; want the 2 stored keys", st, err)
	}
}

func TestPreRequestRecordsSpeculativelyUntilTTL(t *testing.T) {
	s := newTestScorer(t, `{"hash": {"seed": "42"}, "events": {"enabled": false}, "speculative": {"enabled": true, "ttl": "200ms"}}`)
	a, b := endpoint("10.0.0.1", "8000"), endpoint("10.0.0.2", "8000")
	req := &scheduling.LLMRequest{RequestId: "r1", TokenizedPrompt: &scheduling.TokenizedPrompt{TokenIDs: seqTokens(1, 64)}}
	eps := []scheduling.Endpoint{a, b}
	if got := s.Score(context.Background(), nil, req, eps); got[a] != 0 || got[b] != 0 {
		t.Fatalf("cold scores = %v, want all 0", got)
	}
	s.PreRequest(context.Background(), req, &scheduling.SchedulingResult{
		PrimaryProfileName: "default",
		ProfileResults:     map[string]*scheduling.ProfileRunResult{"default": {TargetEndpoints: []scheduling.Endpoint{b}}},
	})
	next := &scheduling.LLMRequest{RequestId: "r2", TokenizedPrompt: req.TokenizedPrompt}
	if got := s.Score(context.Background(), nil, next, eps); got[a] != 0 || got[b] != 1 {
		t.Fatalf("scores after routing to b = %v, want a 0, b 1", got)
	}
	waitFor(t, "the speculative entry to expire after its 200ms TTL", func() bool {
		return s.Score(context.Background(), nil, next, eps)[b] == 0
	})
}
