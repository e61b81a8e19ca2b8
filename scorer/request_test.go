package scorer

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	fwkplugin "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/plugin"

	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/openai"
)

// TestPayloadMapFastPathAgreesWithTheMapper: every body the fast path
// takes gives the same tokens to hash as kvcache/openai's mapper, and the
// bodies it declines are the ones it must not guess.
func TestPayloadMapFastPathAgreesWithTheMapper(t *testing.T) {
	tests := []struct {
		name    string
		api     openai.API
		body    string
		handled bool
	}{
		{"completion", openai.Completions, `{"model": "m", "prompt": "hello world", "max_tokens": 5}`, true},
		{"completion without special tokens", openai.Completions, `{"prompt": "hi", "add_special_tokens": false, "cache_salt": "s"}`, true},
		{"completion batch", openai.Completions, `{"prompt": ["a", "b"]}`, false},
		{"completion token IDs", openai.Completions, `{"prompt": [1, 2, 3]}`, false},
		{"completion embeds", openai.Completions, `{"prompt": "x", "prompt_embeds": "AAAA"}`, false},
		{"empty salt", openai.Completions, `{"prompt": "x", "cache_salt": ""}`, false},
		{"chat defaults", openai.ChatCompletions, `{"messages": [{"role": "user", "content": "hi"}]}`, true},
		{"chat continued", openai.ChatCompletions, `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure"}], "continue_final_message": true}`, true},
		{"chat generation prompt off", openai.ChatCompletions, `{"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": false, "add_special_tokens": true}`, true},
		{"chat both true", openai.ChatCompletions, `{"messages": [{"role": "user", "content": "hi"}], "continue_final_message": true, "add_generation_prompt": true}`, false},
		{"chat content parts", openai.ChatCompletions, `{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}`, false},
		{"chat tool calls", openai.ChatCompletions, `{"messages": [{"role": "assistant", "content": "", "tool_calls": []}]}`, false},
		{"chat tools", openai.ChatCompletions, `{"messages": [{"role": "user", "content": "hi"}], "tools": []}`, false},
		{"chat kwargs", openai.ChatCompletions, `{"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"enable_thinking": false}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pm scheduling.PayloadMap
			if err := json.Unmarshal([]byte(tt.body), &pm); err != nil {
				t.Fatal(err)
			}
			fast, handled := fromPayloadMap(tt.api, pm)
			if handled != tt.handled {
				t.Fatalf("handled = %v, want %v", handled, tt.handled)
			}
			if !handled {
				return
			}
			want, err := openai.Parse(tt.api, []byte(tt.body), openai.Limits{})
			if err != nil {
				t.Fatalf("the mapper refuses a body the fast path took: %v", err)
			}
			if !reflect.DeepEqual(normalize(t, fast), normalize(t, want)) {
				t.Errorf("fast path %+v, mapper %+v", normalize(t, fast), normalize(t, want))
			}
		})
	}
}

// normalize renders a request's chat as what tokenization receives, so a
// chat given as typed messages and one given as raw JSON compare equal.
func normalize(t *testing.T, r kvcache.Request) any {
	t.Helper()
	if r.Chat == nil {
		return r
	}
	tr, err := r.Chat.TokenizationRequest()
	if err != nil {
		t.Fatal(err)
	}
	var msgs any
	if err := json.Unmarshal(tr.Messages, &msgs); err != nil {
		t.Fatal(err)
	}
	r.Chat = nil
	return struct {
		R            kvcache.Request
		Msgs         any
		Gen, Cont    bool
		Special      bool
		ChatTemplate string
	}{r, msgs, tr.AddGenerationPrompt, tr.ContinueFinalMessage, tr.AddSpecialTokens, tr.ChatTemplate}
}

// TestTypedBodyTakesTheFastPath: a body GIE kept only as typed fields (no
// payload) with plain messages is mapped without a JSON round trip; unset
// typed slices must not read as tools or documents.
func TestTypedBodyTakesTheFastPath(t *testing.T) {
	b := &scheduling.LLMRequestBody{ChatCompletions: &scheduling.ChatCompletionsRequest{
		Messages: []scheduling.Message{{Role: "user", Content: scheduling.Content{Raw: "hi"}}},
	}}
	req, handled := fromPayloadMap(openai.ChatCompletions, typedPayload(b))
	if !handled || req.Chat == nil || !req.Chat.AddGenerationPrompt || len(req.Chat.Messages) != 1 {
		t.Errorf("typed chat: handled %v, %+v; want the fast path with vLLM's generation prompt", handled, req.Chat)
	}
	c := &scheduling.LLMRequestBody{Completions: &scheduling.CompletionsRequest{Prompt: scheduling.Prompt{Raw: "hello"}, CacheSalt: "s"}}
	req, handled = fromPayloadMap(openai.Completions, typedPayload(c))
	if !handled || req.Prompt != "hello" || req.CacheSalt != "s" {
		t.Errorf("typed completion: handled %v, %+v", handled, req)
	}
}

// TestFactoryFailsOnABindConflict: an EPP whose event port is taken must
// not start and look healthy while every score is 0; the factory returns
// the bind error, and a second try after the port is free succeeds on the
// same metrics registry (the failed one released its registrations).
func TestFactoryFailsOnABindConflict(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	params := json.RawMessage(`{"hash": {"seed": "42"}, "events": {"mode": "bind", "endpoint": "tcp://` + addr + `"}}`)
	reg := prometheus.NewRegistry()
	factory := NewFactory(WithRegisterer(reg))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handle := fwkplugin.NewEppHandle(ctx, func() []types.NamespacedName { return nil })
	if _, err := factory("p", params, handle); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("factory with a taken event port = %v, want an error naming %s", err, addr)
	}
	ln.Close()
	p, err := factory("p", params, handle)
	if err != nil {
		t.Fatalf("factory after the port was freed: %v", err)
	}
	if p.(*Scorer).Indexer() == nil {
		t.Fatal("no indexer")
	}
}
