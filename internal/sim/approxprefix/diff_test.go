package approxprefix_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	k8stypes "k8s.io/apimachinery/pkg/types"
	fwkdl "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/plugin"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/requestcontrol"
	fwksched "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/requestcontrol/dataproducer/approximateprefix"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/scheduling/scorer/prefix"

	"github.com/kvtrack/kvtrack/internal/sim/approxprefix"
)

// gie is GIE v1.5.0's approximate prefix routing as an EPP builds it: the
// prefix-cache-scorer plus the approx-prefix-cache-producer the config
// loader adds for it, with the scorer's parameters (here none: GIE's
// defaults, autoTune on).
type gie struct {
	producer interface {
		requestcontrol.PrepareDataPlugin
		requestcontrol.PreRequest
	}
	scorer *prefix.Plugin
	wg     *sync.WaitGroup // the producer's pending PreRequest updates
}

func newGIE(t *testing.T, ctx context.Context, params json.RawMessage) *gie {
	t.Helper()
	handle := plugin.NewEppHandle(ctx, func() []k8stypes.NamespacedName { return nil })
	p, err := approximateprefix.ApproxPrefixCacheFactory(approximateprefix.ApproxPrefixCachePluginType, params, handle)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := prefix.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g := &gie{scorer: sc}
	var ok bool
	if g.producer, ok = p.(interface {
		requestcontrol.PrepareDataPlugin
		requestcontrol.PreRequest
	}); !ok {
		t.Fatalf("%T is not a PrepareData and PreRequest plugin", p)
	}
	// PreRequest updates the index in a goroutine and exposes no way to
	// wait for it but its unexported WaitGroup, which GIE's own tests use.
	// Waiting keeps the stream's order, so both sides see the same state.
	wg := reflect.ValueOf(p).Elem().FieldByName("wg")
	if !wg.IsValid() || wg.Type() != reflect.TypeOf(sync.WaitGroup{}) {
		t.Fatalf("GIE's producer has no wg sync.WaitGroup field: the differential test needs updating for this GIE version")
	}
	g.wg = (*sync.WaitGroup)(unsafe.Pointer(wg.UnsafeAddr()))
	return g
}

// step is one request through GIE: PrepareRequestData, then the scorer.
func (g *gie) score(ctx context.Context, req *fwksched.LLMRequest, eps []fwksched.Endpoint) ([]float64, error) {
	if err := g.producer.PrepareRequestData(ctx, req, eps); err != nil {
		return nil, err
	}
	m := g.scorer.Score(ctx, fwksched.NewCycleState(), req, eps)
	out := make([]float64, len(eps))
	for i, ep := range eps {
		out[i] = m[ep]
	}
	return out, nil
}

func (g *gie) routed(ctx context.Context, req *fwksched.LLMRequest, ep fwksched.Endpoint) {
	g.producer.PreRequest(ctx, req, &fwksched.SchedulingResult{
		PrimaryProfileName: "default",
		ProfileResults:     map[string]*fwksched.ProfileRunResult{"default": {TargetEndpoints: []fwksched.Endpoint{ep}}},
	})
	g.wg.Wait()
}

// streamReq is one request of the differential stream.
type streamReq struct {
	prompt string // a completion prompt, or "" for chat
	chat   []fwksched.Message
	salt   string
}

// text is what GIE hashes: the prompt, or the JSON of the messages.
func (r streamReq) text(t *testing.T) string {
	if r.chat == nil {
		return r.prompt
	}
	b, err := json.Marshal(r.chat)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (r streamReq) llm(id int, model string) *fwksched.LLMRequest {
	body := &fwksched.LLMRequestBody{}
	if r.chat == nil {
		body.Completions = &fwksched.CompletionsRequest{Prompt: fwksched.Prompt{Raw: r.prompt}, CacheSalt: r.salt}
	} else {
		body.ChatCompletions = &fwksched.ChatCompletionsRequest{Messages: r.chat, CacheSalt: r.salt}
	}
	return &fwksched.LLMRequest{RequestId: fmt.Sprintf("req-%d", id), TargetModel: model, Body: body}
}

// stream builds n requests over a few shared prefixes of different lengths,
// with salts, chat requests, prompts shorter than a block and prompts longer
// than maxPrefixBlocksToMatch.
func stream(rng *rand.Rand, n int) []streamReq {
	word := func() string {
		b := make([]byte, 2+rng.IntN(9))
		for i := range b {
			b[i] = 'a' + byte(rng.IntN(26))
		}
		return string(b)
	}
	text := func(chars int) string {
		var sb strings.Builder
		for sb.Len() < chars {
			sb.WriteString(word())
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	prefixes := []string{text(200), text(1000), text(3000), text(20_000), "tiny"}
	salts := []string{"", "", "tenant-a", "tenant-b"}
	reqs := make([]streamReq, n)
	for i := range reqs {
		p := prefixes[rng.IntN(len(prefixes))]
		r := streamReq{salt: salts[rng.IntN(len(salts))]}
		q := text(rng.IntN(400))
		if rng.IntN(4) == 0 {
			r.chat = []fwksched.Message{
				{Role: "system", Content: fwksched.Content{Raw: p}},
				{Role: "user", Content: fwksched.Content{Raw: q}},
			}
		} else {
			r.prompt = p + q
		}
		reqs[i] = r
	}
	return reqs
}

// TestMatchesGIE drives GIE v1.5.0's approx-prefix-cache-producer and
// prefix-cache-scorer and this package with the same requests and the same
// routing decisions, and requires the same score for every pod at every
// step.
func TestMatchesGIE(t *testing.T) {
	const model = "Qwen/Qwen3-32B"
	tests := []struct {
		name string
		// blockSize and numBlocks are what each pod reports
		// (vllm:cache_config_info); autoTune uses them.
		blockSize, numBlocks int
		params               json.RawMessage // the scorer's parameters in the EPP config
		cfg                  Config
	}{
		{
			name:      "defaults with autoTune, LRUs that evict",
			blockSize: 16, numBlocks: 120,
			cfg: Config{BlockTokens: 16, LRUCapacity: 120},
		},
		{
			name:      "autoTune takes the pods' block size",
			blockSize: 32, numBlocks: 400,
			cfg: Config{BlockTokens: 32, LRUCapacity: 400},
		},
		{
			name:      "pods that report nothing: GIE's fixed defaults",
			blockSize: 0, numBlocks: 0,
			cfg: Config{},
		},
		{
			// GIE v1.5.0 never reads lruCapacityPerServer: PreRequest
			// always gives the indexer a positive size, the pod's block
			// count under autoTune and 31250 otherwise.
			name:      "explicit parameters, autoTune off: lruCapacityPerServer is ignored",
			blockSize: 16, numBlocks: 120,
			params: json.RawMessage(`{"autoTune": false, "blockSizeTokens": 8, "maxPrefixBlocksToMatch": 40, "lruCapacityPerServer": 90}`),
			cfg:    Config{BlockTokens: 8, MaxBlocks: 40, LRUCapacity: approxprefix.DefaultLRUCapacity},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const pods = 5
			g := newGIE(t, ctx, tt.params)
			tt.cfg.Model = model
			ours, err := New(tt.cfg, pods)
			if err != nil {
				t.Fatal(err)
			}
			eps := make([]fwksched.Endpoint, pods)
			for i := range eps {
				m := fwkdl.NewMetrics()
				m.CacheBlockSize, m.CacheNumBlocks = tt.blockSize, tt.numBlocks
				eps[i] = fwksched.NewEndpoint(&fwkdl.EndpointMetadata{NamespacedName: k8stypes.NamespacedName{Namespace: "llm", Name: fmt.Sprintf("pod-%d", i)}}, m, fwkdl.NewAttributes())
			}
			rng := rand.New(rand.NewPCG(7, 11))
			matched := make([]int, pods)
			want := make([]float64, pods)
			nonzero := 0
			for i, r := range stream(rng, 600) {
				req := r.llm(i, model)
				got, err := g.score(ctx, req, eps)
				if err != nil {
					t.Fatalf("request %d: GIE: %v", i, err)
				}
				hashes := ours.Hash(r.text(t), r.salt)
				ours.Match(hashes, matched)
				Scores(matched, len(hashes), want)
				if !slices.Equal(got, want) {
					t.Fatalf("request %d (%d blocks, salt %q, chat %v): GIE scores %v, approxprefix %v", i, len(hashes), r.salt, r.chat != nil, got, want)
				}
				for _, s := range got {
					if s > 0 {
						nonzero++
					}
				}
				// Route as an EPP would, mostly to the best score, sometimes
				// elsewhere (load), and tell both.
				pod := argmax(want)
				if rng.IntN(3) == 0 {
					pod = rng.IntN(pods)
				}
				g.routed(ctx, req, eps[pod])
				ours.Record(hashes, pod)
			}
			if nonzero < 100 {
				t.Fatalf("only %d non-zero scores: the stream does not exercise prefix matching", nonzero)
			}
		})
	}
}

// Config is the package's, re-exported for the table's brevity.
type Config = approxprefix.Config

var (
	New    = approxprefix.New
	Scores = approxprefix.Scores
)

func argmax(xs []float64) int {
	best := 0
	for i, x := range xs {
		if x > xs[best] {
			best = i
		}
	}
	return best
}
