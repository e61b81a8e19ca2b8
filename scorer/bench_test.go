//go:build kvtrack_wiring

// Enabled once the tokenizer (tokenization) and the event pool (kvevents)
// are on main and wired into kvcache: it needs both.

package scorer

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"
)

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
// Score: prompt text (a completion, or chat messages through the chat
// template) to tokens with a warm tokenizer cache, block keys, index walk
// and the per-endpoint score map. Eight endpoints; one holds the whole
// prompt, one half.
func BenchmarkScorePrompt(b *testing.B) {
	s := newBenchScorer(b)
	for _, kind := range []string{"completion", "chat"} {
		b.Run(kind+"/chars=32k", func(b *testing.B) {
			text := benchPrompt(32 << 10)
			var req *scheduling.LLMRequest
			if kind == "completion" {
				req = &scheduling.LLMRequest{TargetModel: "Qwen/Qwen3-0.6B", Body: &scheduling.LLMRequestBody{
					Completions: &scheduling.CompletionsRequest{Prompt: scheduling.Prompt{Raw: text}}}}
			} else {
				req = &scheduling.LLMRequest{TargetModel: "Qwen/Qwen3-0.6B", Body: &scheduling.LLMRequestBody{
					ChatCompletions: &scheduling.ChatCompletionsRequest{AddGenerationPrompt: true, Messages: []scheduling.Message{
						{Role: "system", Content: scheduling.Content{Raw: text[:4096]}},
						{Role: "user", Content: scheduling.Content{Raw: text[4096:]}},
					}}}}
			}
			eps := make([]scheduling.Endpoint, 8)
			for i := range eps {
				eps[i] = endpoint(fmt.Sprintf("10.0.0.%d", i+1), "8000")
			}
			tokens := benchTokens(b, s, req)
			store(b, s, "10.0.0.1:8000", tokens)
			store(b, s, "10.0.0.2:8000", tokens[:len(tokens)/2])
			ctx := context.Background()
			got := s.Score(ctx, nil, req, eps) // warms the tokenizer cache
			if got[eps[0]] != 1 || got[eps[2]] != 0 {
				b.Fatalf("scores = %v, want 1 for the holder and 0 for a stranger", got)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			b.ResetTimer()
			for b.Loop() {
				s.Score(ctx, nil, req, eps)
			}
			b.ReportMetric(float64(len(tokens)), "tokens/op")
		})
	}
}
