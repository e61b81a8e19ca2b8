package kvcache

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestBatchScoresSumOfMatchedOverSumOfBlocks: vLLM serves each prompt of a
// batch as its own request on the chosen pod.
func TestBatchScoresSumOfMatchedOverSumOfBlocks(t *testing.T) {
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ix := newIndexer(t, cfg)
			p1, p2 := seq(1, 4*16), seq(1000, 2*16+3) // 4 blocks, 2 blocks
			storeKeys(t, ix, "a:1", p1, "", "")       // all of p1
			storeKeys(t, ix, "b:1", p2, "", "")       // all of p2
			storeKeys(t, ix, "c:1", p1[:16], "", "")  // p1's first block
			res, err := ix.Score(context.Background(), Request{
				Prompts: []BatchPrompt{{TokenIDs: p1}, {TokenIDs: p2}},
				Pods:    []string{"a:1", "b:1", "c:1", "d:1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			// vLLM looks up at most n-1 tokens of each prompt: 3 of p1's 4
			// blocks (64 tokens) and both of p2's (35 tokens), 5 in all.
			want := []struct {
				matched int
				score   float64
			}{{3, 3.0 / 5}, {2, 2.0 / 5}, {1, 1.0 / 5}, {0, 0}}
			if res.Blocks != 5 || len(res.Keys) != 6 || len(res.Batch) != 2 || len(res.Batch[0]) != 4 {
				t.Errorf("blocks %d, keys %d, batch %d: want 5 blocks looked up of 6, in two prompts of 4 and 2", res.Blocks, len(res.Keys), len(res.Batch))
			}
			for i, w := range want {
				if ps := res.Pods[i]; ps.Matched != w.matched || ps.Score != w.score {
					t.Errorf("%s: matched %d score %v, want %d and %v", ps.Pod, ps.Matched, ps.Score, w.matched, w.score)
				}
			}
		})
	}
}

// TestSpeculateResultRecordsEveryPromptOfABatch: each prompt of a batch is
// recorded as its own chain on the pod the batch was routed to.
func TestSpeculateResultRecordsEveryPromptOfABatch(t *testing.T) {
	ix := newIndexer(t, Config{Speculative: SpeculativeConfig{Enabled: true}, Events: EventsConfig{Enabled: new(bool)}})
	p1, p2 := seq(1, 2*16), seq(500, 3*16)
	res, err := ix.Score(context.Background(), Request{Prompts: []BatchPrompt{{TokenIDs: p1}, {TokenIDs: p2}}, Pods: []string{"a:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.SpeculateResult(context.Background(), "a:1", res); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]uint32{p1, p2} {
		// All of the prompt's blocks that vLLM looks up (n-1 tokens).
		if got, want := matchedOn(t, ix, Request{TokenIDs: p, Pods: []string{"a:1"}}), (len(p)-1)/16; got != want {
			t.Errorf("prompt of %d blocks: %d matched after speculation, want %d", len(p)/16, got, want)
		}
	}
}

// TestLoRAAdaptersAreKeyedWithTheirName: a request whose model is an
// adapter (configured, or named by an event's lora_name) is keyed with the
// adapter's name as vLLM v0.11.1+ hashes it; base models never are.
func TestLoRAAdaptersAreKeyedWithTheirName(t *testing.T) {
	ix := newIndexer(t, Config{LoRA: LoRAConfig{Adapters: []string{"configured"}, BaseModels: []string{"base"}}, Events: EventsConfig{Enabled: new(bool)}})
	prompt := seq(1, 3*16)
	for _, a := range []string{"configured", "learned", "base"} {
		storeKeys(t, ix, a+":1", prompt, a, "")
	}
	storeKeys(t, ix, "plain:1", prompt, "", "")
	pods := []string{"configured:1", "learned:1", "base:1", "plain:1"}
	ix.lora.observe("learned")
	ix.lora.observe("base") // a base model is never an adapter
	for model, want := range map[string]string{"configured": "configured:1", "learned": "learned:1", "base": "plain:1", "unknown": "plain:1"} {
		res, err := ix.Score(context.Background(), Request{Model: model, TokenIDs: prompt, Pods: pods})
		if err != nil {
			t.Fatal(err)
		}
		for _, ps := range res.Pods {
			if full := ps.Score == 1; full != (ps.Pod == want) {
				t.Errorf("model %s: pod %s scores %v, want 1 only on %s", model, ps.Pod, ps.Score, want)
			}
		}
	}
	if got := strings.Join(ix.Adapters(), ","); got != "configured,learned" {
		t.Errorf("Adapters() = %s, want configured,learned", got)
	}
}

func TestLoRAConfigIsValidated(t *testing.T) {
	for _, tc := range []struct {
		cfg   LoRAConfig
		field string
	}{
		{LoRAConfig{Adapters: []string{""}}, "lora.adapters[0]"},
		{LoRAConfig{BaseModels: []string{"m", ""}}, "lora.baseModels[1]"},
		{LoRAConfig{Adapters: []string{"m"}, BaseModels: []string{"m"}}, "lora.adapters[0]"},
	} {
		err := Config{Hash: HashConfig{Seed: "1"}, LoRA: tc.cfg}.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
}

// TestRemoteTokenizerGetsTheRequestsModel: with tokenizer.url, each
// request is tokenized by the model it names, as the docs promise.
func TestRemoteTokenizerGetsTheRequestsModel(t *testing.T) {
	var mu sync.Mutex
	var models []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Model string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		models = append(models, body.Model)
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"tokens": seq(1, 33)}) // 2 blocks looked up (n-1 tokens)
	}))
	defer srv.Close()
	ix := newIndexer(t, Config{Tokenizer: TokenizerConfig{URL: srv.URL, Model: "default"}, Events: EventsConfig{Enabled: new(bool)}})
	for _, req := range []Request{
		{Model: "m1", Prompt: "hello"},
		{Model: "m2", Chat: &ChatRequest{Messages: []ChatMessage{{"user", "hi"}}}},
		{Prompt: "no model"},
	} {
		req.Pods = []string{"a:1"}
		if res, err := ix.Score(context.Background(), req); err != nil || res.Blocks != 2 {
			t.Fatalf("Score(%+v) = %d blocks, %v", req, res.Blocks, err)
		}
	}
	if got := strings.Join(models, ","); got != "m1,m2,default" {
		t.Errorf("the remote tokenizer was asked for models %s, want m1,m2,default", got)
	}
}
