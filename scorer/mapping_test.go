package scorer

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"

	fwkdl "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/requesthandling/parsers/openai"

	"github.com/kvtrack/kvtrack/internal/pypub"
	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/internal/testtokenizer"
	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache"
	kvopenai "github.com/kvtrack/kvtrack/kvcache/openai"
)

// gieRequest parses body with GIE's own OpenAI parser, as the EPP does
// before it calls the scorer.
func gieRequest(t *testing.T, path, body string) *scheduling.LLMRequest {
	t.Helper()
	b, err := openai.NewOpenAIParser().ParseRequest(context.Background(), []byte(body), map[string]string{":path": path})
	if err != nil {
		t.Fatalf("GIE parser: %v", err)
	}
	var m struct{ Model string }
	_ = json.Unmarshal([]byte(body), &m)
	return &scheduling.LLMRequest{RequestId: "r", TargetModel: m.Model, Body: b}
}

func tokenizerParams(t *testing.T) string {
	return fmt.Sprintf(`{"hash": {"seed": "42"}, "events": {"enabled": false}, "tokenizer": {"path": %q}}`,
		filepath.Join(testtokenizer.Qwen3Dir(t), "tokenizer.json"))
}

// TestScorerAndRouterKeyAChatAlike: for the same body the scorer (through
// GIE's parsed request, payload kept or not) and the router (the raw body)
// score the same block keys, with vLLM's defaults: an omitted
// add_generation_prompt is true.
func TestScorerAndRouterKeyAChatAlike(t *testing.T) {
	s := newTestScorer(t, tokenizerParams(t))
	ix := s.Indexer()
	system := `You are a terse assistant for a hardware store. Answer with part numbers only, never prose. `
	msgs := fmt.Sprintf(`[{"role":"system","content":%q},{"role":"user","content":[{"type":"text","text":"M6 bolts?"},{"type":"text","text":"stainless"}]}]`, system+system+system)
	keys := func(req kvcache.Request) []uint32 {
		t.Helper()
		toks, err := ix.Tokens(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	withGen := keys(kvcache.Request{Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs), AddGenerationPrompt: true}})
	withoutGen := keys(kvcache.Request{Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs)}})
	if slices.Equal(withGen, withoutGen) {
		t.Fatal("the generation prompt does not change the tokens; the test cannot tell the defaults apart")
	}
	for _, tc := range []struct {
		name, extra string
		want        []uint32
		typed       bool // GIE's typed fields alone give the same answer
	}{
		{"add_generation_prompt omitted", ``, withGen, true},
		{"add_generation_prompt true", `,"add_generation_prompt":true`, withGen, true},
		{"add_generation_prompt false", `,"add_generation_prompt":false`, withoutGen, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"m","messages":` + msgs + tc.extra + `}`
			routed, err := kvopenai.Parse(kvopenai.ChatCompletions, []byte(body), kvopenai.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			gie := gieRequest(t, "/v1/chat/completions", body)
			scored, ok := s.toRequest(gie)
			if !ok {
				t.Fatal("scorer could not map the request")
			}
			if r, sc := keys(routed), keys(scored); !slices.Equal(r, tc.want) || !slices.Equal(sc, tc.want) {
				t.Errorf("router %d tokens, scorer %d tokens, want both the %d of vLLM's rendering", len(r), len(sc), len(tc.want))
			}
			gie.Body.Payload = nil // only GIE's typed fields: an omitted bool reads as false there
			typed, ok := s.toRequest(gie)
			if !ok {
				t.Fatal("scorer could not map the typed request")
			}
			if got := keys(typed); slices.Equal(got, tc.want) != tc.typed {
				t.Errorf("typed fields: equal to vLLM's rendering = %v, want %v", !tc.typed, tc.typed)
			}
		})
	}
}

// TestScorerScoresABatchAsVLLMServesIt: a completions prompt list is one
// request per prompt, through GIE's parsed body.
func TestScorerScoresABatchAsVLLMServesIt(t *testing.T) {
	s := newTestScorer(t, tokenizerParams(t))
	tok := testtokenizer.Qwen3(t)
	short := fmt.Sprint(slices.Repeat([]string{"a short prompt about florists and roses"}, 4)) // a few blocks
	long := fmt.Sprint(slices.Repeat([]string{"a long prompt about locksmiths and keys"}, 12))
	for pod, text := range map[string]string{"10.0.0.1:8000": short, "10.0.0.2:8000": long} {
		ids, _ := tok.Encode(text, true)
		store(t, s, pod, ids)
	}
	a, b := endpoint("10.0.0.1", "8000"), endpoint("10.0.0.2", "8000")
	req := gieRequest(t, "/v1/completions", fmt.Sprintf(`{"model":"m","prompt":[%q,%q]}`, short, long))
	got := s.Score(context.Background(), nil, req, []scheduling.Endpoint{a, b})
	if !(got[b] > got[a] && got[a] > 0) {
		t.Errorf("batch scores: short-holder %v, long-holder %v; want both above 0 and the long-holder ahead", got[a], got[b])
	}
}

// TestLoRARequestScoresThePodHoldingTheAdapterThroughTheEPPPlugin: the
// plugin follows two pods over ZMQ (the Python stand-in publishers); one
// holds the prompt as adapter sql-lora's blocks, the other as the base
// model's. Each request scores 1 only on its own model's pod.
func TestLoRARequestScoresThePodHoldingTheAdapterThroughTheEPPPlugin(t *testing.T) {
	pypub.Require(t)
	port := testnet.FreePort(t)
	prompt := fmt.Sprint(slices.Repeat([]string{"Translate the question into SQL over the orders table."}, 8))
	ids, _ := testtokenizer.Qwen3(t).Encode(prompt, true)
	s := newTestScorer(t, fmt.Sprintf(`{"hash": {"seed": "42"}, "events": {"port": %d}, "tokenizer": {"path": %q}}`,
		port, filepath.Join(testtokenizer.Qwen3Dir(t), "tokenizer.json")))
	eps := map[string]scheduling.Endpoint{}
	var waits []func()
	for name, ip := range map[string]string{"sql-lora": "127.0.0.2", "base": "127.0.0.3"} {
		if ln, err := net.Listen("tcp", ip+":0"); err != nil {
			t.Skipf("cannot listen on %s: %v", ip, err)
		} else {
			ln.Close()
		}
		lora := name
		if name == "base" {
			lora = ""
		}
		ep := endpoint(ip, "8000")
		eps[name] = ep
		waits = append(waits, pypub.Start(t, pypub.Pod{Endpoint: fmt.Sprintf("tcp://%s:%d", ip, port), Topic: "kv@" + ip + ":8000@m",
			Seed: "42", BlockSize: 16, LoRA: lora, Sequences: [][]uint32{ids}}))
		if err := s.ExtractEndpoint(context.Background(), fwkdl.EndpointEvent{Type: fwkdl.EventAddOrUpdate, Endpoint: fwkdl.NewEndpoint(ep.GetMetadata(), nil)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range waits {
		w()
	}
	all := []scheduling.Endpoint{eps["sql-lora"], eps["base"]}
	for model, want := range map[string]string{"sql-lora": "sql-lora", "m": "base"} {
		req := gieRequest(t, "/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":%q}`, model, prompt))
		testwait.For(t, fmt.Sprintf("model %s to score 1 on the %s pod only", model, want), func() bool {
			got := s.Score(context.Background(), nil, req, all)
			return got[eps[want]] == 1 && got[all[0]]+got[all[1]] == 1
		})
	}
}
