package scorer

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"

	"github.com/kvtrack/kvtrack/internal/testtokenizer"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/tokenization"
)

// benchPods is the pool size of the end-to-end benchmark.
const benchPods = 100

// newBenchScorer builds the scorer as the EPP does, with the real Qwen3
// tokenizer and the memory index, and delivers every benchmark endpoint to
// its extractor as the data layer would. Events are disabled: the index is
// fed directly, so no socket dials the benchmark's made-up addresses.
// keyCacheBytes is the scorer's hash.keyCacheBytes (0: the default).
func newBenchScorer(b *testing.B, keyCacheBytes int) (*Scorer, []scheduling.Endpoint) {
	b.Helper()
	params := fmt.Sprintf(`{"hash": {"seed": "42", "blockSize": 16, "keyCacheBytes": %d}, "events": {"enabled": false},
		"tokenizer": {"path": %q}}`, keyCacheBytes, testtokenizer.Qwen3Dir(b))
	s := newTestScorer(b, params)
	eps := make([]scheduling.Endpoint, benchPods)
	for i := range eps {
		eps[i] = endpoint(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "8000")
		ev := datalayer.EndpointEvent{Type: datalayer.EventAddOrUpdate, Endpoint: datalayer.NewEndpoint(eps[i].GetMetadata(), nil)}
		if err := s.ExtractEndpoint(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
	// Background: every pod holds 2,000 blocks of other prompts, so the
	// index is not a toy and the prompt's keys share shards with others.
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]kvblock.Key, 2000)
	for _, ep := range eps {
		for i := range keys {
			keys[i] = kvblock.Key(rng.Uint64())
		}
		if err := s.Indexer().Index().Add(context.Background(), kvblock.Pod{Addr: EndpointKey(ep.GetMetadata())}, kvblock.TierGPU, keys); err != nil {
			b.Fatal(err)
		}
	}
	return s, eps
}

// benchTokens tokenizes req's body with the Qwen3 tokenizer directly (not
// through the scorer), as vLLM would: completions with special tokens,
// chat rendered by the template.
func benchTokens(b *testing.B, req *scheduling.LLMRequest) []uint32 {
	b.Helper()
	tok := testtokenizer.Qwen3(b)
	if c := req.Body.Completions; c != nil {
		ids, err := tok.Encode(c.Prompt.Raw, true)
		if err != nil {
			b.Fatal(err)
		}
		return ids
	}
	c := req.Body.ChatCompletions
	msgs := make([]map[string]string, len(c.Messages))
	for i, m := range c.Messages {
		msgs[i] = map[string]string{"role": m.Role, "content": m.Content.Raw}
	}
	raw, err := json.Marshal(msgs)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := tok.EncodeChat(&tokenization.ChatRequest{Messages: raw, AddGenerationPrompt: c.AddGenerationPrompt})
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// benchPrompt is n characters of varied English text (whole words, so the
// tokenizer sees realistic pieces rather than one repeated token).
func benchPrompt(n int) string {
	words := strings.Fields(`the precise prefix cache scorer routes each request to the
		engine that already holds the longest part of its prompt in GPU memory, so
		the shared system prompt and few-shot examples are not computed again; the
		events arrive over zmq and name every block by its hash`)
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteString(words[(i*7+i/len(words))%len(words)])
		b.WriteByte(' ')
		if i%23 == 22 {
			fmt.Fprintf(&b, "%d. ", i)
		}
	}
	return b.String()[:n]
}

// BenchmarkScorePrompt measures a request end to end through the plugin's
// Score with the default configuration: prompt text (a completion, or chat
// messages through the chat template) to block keys, warm (the request was
// scored before, so its keys come from the key cache and its tokens from the
// tokenizer's cache), then the index walk over 100 candidate endpoints and
// the score map. One endpoint holds the whole prompt, nine hold its first
// half, the rest other prompts.
func BenchmarkScorePrompt(b *testing.B) { benchScorePrompt(b, 0) }

// BenchmarkScorePromptNoKeyCache is BenchmarkScorePrompt with the key cache
// disabled: a warm tokenizer cache, then vLLM's block hashing every time.
func BenchmarkScorePromptNoKeyCache(b *testing.B) { benchScorePrompt(b, -1) }

func benchScorePrompt(b *testing.B, keyCacheBytes int) {
	s, eps := newBenchScorer(b, keyCacheBytes)
	text := benchPrompt(32 << 10)
	for _, kind := range []string{"completion", "chat"} {
		b.Run(kind+"/chars=32k", func(b *testing.B) {
			req := &scheduling.LLMRequest{TargetModel: "Qwen/Qwen3-0.6B", Body: &scheduling.LLMRequestBody{}}
			if kind == "completion" {
				req.Body.Completions = &scheduling.CompletionsRequest{Prompt: scheduling.Prompt{Raw: text}}
			} else {
				req.Body.ChatCompletions = &scheduling.ChatCompletionsRequest{AddGenerationPrompt: true, Messages: []scheduling.Message{
					{Role: "system", Content: scheduling.Content{Raw: text[:4096]}},
					{Role: "user", Content: scheduling.Content{Raw: text[4096:]}},
				}}
			}
			tokens := benchTokens(b, req)
			store(b, s, EndpointKey(eps[0].GetMetadata()), tokens)
			for _, ep := range eps[1:10] {
				store(b, s, EndpointKey(ep.GetMetadata()), tokens[:len(tokens)/2])
			}
			ctx := context.Background()
			got := s.Score(ctx, nil, req, eps) // warms the tokenizer cache
			if got[eps[0]] != 1 || got[eps[1]] < 0.45 || got[eps[1]] > 0.51 || got[eps[10]] != 0 {
				b.Fatalf("scores: holder %v, half %v, stranger %v; want 1, ~0.5, 0", got[eps[0]], got[eps[1]], got[eps[10]])
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				s.Score(ctx, nil, req, eps)
			}
			b.ReportMetric(float64(len(tokens)), "tokens/op")
		})
	}
}
