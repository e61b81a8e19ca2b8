package openai

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache"
)

func TestParseAppliesVLLMDefaults(t *testing.T) {
	msgs := `[{"role":"user","content":"hi"}]`
	chat := func(extra string) string { return `{"model":"m","messages":` + msgs + extra + `}` }
	tests := []struct {
		name string
		api  API
		body string
		want kvcache.Request
	}{
		{"chat without add_generation_prompt gets vLLM's true", ChatCompletions, chat(``),
			kvcache.Request{Model: "m", Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs), AddGenerationPrompt: true}}},
		{"chat with add_generation_prompt false keeps it", ChatCompletions, chat(`,"add_generation_prompt":false`),
			kvcache.Request{Model: "m", Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs)}}},
		{"continue_final_message without add_generation_prompt means false", ChatCompletions, chat(`,"continue_final_message":true`),
			kvcache.Request{Model: "m", Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs), ContinueFinalMessage: true}}},
		{"chat add_special_tokens defaults to false and can be set", ChatCompletions, chat(`,"add_special_tokens":true`),
			kvcache.Request{Model: "m", Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs), AddGenerationPrompt: true, AddSpecialTokens: true}}},
		{"documents, template and kwargs pass as sent", ChatCompletions, chat(`,"documents":[{"title":"a","text":"b"}],"chat_template":"{{x}}","chat_template_kwargs":{"enable_thinking":false}`),
			kvcache.Request{Model: "m", Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs), AddGenerationPrompt: true,
				RawDocuments: json.RawMessage(`[{"title":"a","text":"b"}]`), ChatTemplate: "{{x}}", RawTemplateKWArgs: json.RawMessage(`{"enable_thinking":false}`)}}},
		{"tools in vLLM's model_dump order, unset fields null", ChatCompletions, chat(`,"tools":[{"function":{"parameters":{"b":1,"a":2},"name":"f","strict":true}}]`),
			kvcache.Request{Model: "m", Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs), AddGenerationPrompt: true,
				RawTools: json.RawMessage(`[{"type":"function","function":{"name":"f","description":null,"parameters":{"b":1,"a":2},"strict":true}}]`)}}},
		{"cache_salt", ChatCompletions, chat(`,"cache_salt":"tenant-a"`),
			kvcache.Request{Model: "m", CacheSalt: "tenant-a", Chat: &kvcache.ChatRequest{RawMessages: json.RawMessage(msgs), AddGenerationPrompt: true}}},
		{"completion string", Completions, `{"model":"m","prompt":"hello"}`, kvcache.Request{Model: "m", Prompt: "hello"}},
		{"completion add_special_tokens false", Completions, `{"model":"m","prompt":"hello","add_special_tokens":false}`,
			kvcache.Request{Model: "m", Prompt: "hello", NoSpecialTokens: true}},
		{"completion token IDs", Completions, `{"model":"m","prompt":[1,2,3]}`, kvcache.Request{Model: "m", TokenIDs: []uint32{1, 2, 3}}},
		{"batch of strings", Completions, `{"model":"m","prompt":["a","b"]}`,
			kvcache.Request{Model: "m", Prompts: []kvcache.BatchPrompt{{Text: "a"}, {Text: "b"}}}},
		{"batch of token-ID lists", Completions, `{"model":"m","prompt":[[1,2],[3]],"cache_salt":"s"}`,
			kvcache.Request{Model: "m", CacheSalt: "s", Prompts: []kvcache.BatchPrompt{{TokenIDs: []uint32{1, 2}}, {TokenIDs: []uint32{3}}}}},
		{"adapter model kept for the Indexer to key", Completions, `{"model":"sql-lora","prompt":"x"}`, kvcache.Request{Model: "sql-lora", Prompt: "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.api, []byte(tc.body), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(tc.want)
				t.Errorf("Parse(%s)\n got %s\nwant %s", tc.body, gj, wj)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	lim := Limits{MaxMessages: 2, MaxPromptChars: 10, MaxPromptTokens: 4, MaxBatchPrompts: 2}
	tests := []struct {
		name string
		api  API
		body string
		want error // ErrInvalid, ErrNotScorable, or a *LimitError's Field+What
		what string
	}{
		{"not JSON", Completions, `{"prompt":`, ErrInvalid, ""},
		{"prompt of the wrong type", Completions, `{"prompt":{"a":1}}`, ErrInvalid, ""},
		{"negative token ID", Completions, `{"prompt":[1,-2]}`, ErrInvalid, ""},
		{"mixed list", Completions, `{"prompt":["a",[1]]}`, ErrInvalid, ""},
		{"empty cache_salt", Completions, `{"prompt":"a","cache_salt":""}`, ErrInvalid, ""},
		{"both generation prompt and continue", ChatCompletions, `{"messages":[{"role":"user","content":"a"}],"add_generation_prompt":true,"continue_final_message":true}`, ErrInvalid, ""},
		{"messages not a list", ChatCompletions, `{"messages":"hi"}`, ErrInvalid, ""},
		{"prompt_embeds", Completions, `{"prompt_embeds":"AAAA"}`, ErrNotScorable, ""},
		{"empty prompt", Completions, `{"prompt":""}`, ErrNotScorable, ""},
		{"too many messages", ChatCompletions, `{"messages":[{},{},{"role":"user","content":"[,]"}]}`, nil, "messages/messages"},
		{"too many chat characters", ChatCompletions, `{"messages":[{"role":"user","content":"hello"}]}`, nil, "messages/characters"},
		{"too many characters", Completions, `{"prompt":"hello world!"}`, nil, "prompt/characters"},
		{"too many tokens", Completions, `{"prompt":[1,2,3,4,5]}`, nil, "prompt/tokens"},
		{"too many batch tokens", Completions, `{"prompt":[[1,2,3],[4,5]]}`, nil, "prompt/tokens"},
		{"too many prompts", Completions, `{"prompt":["a","b","c"]}`, nil, "prompt/prompts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := lim
			if tc.want != nil {
				l = Limits{} // the error must not depend on a limit
			}
			_, err := Parse(tc.api, []byte(tc.body), l)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Errorf("Parse(%s) = %v, want %v", tc.body, err, tc.want)
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || le.Field+"/"+le.What != tc.what {
				t.Errorf("Parse(%s) = %v, want a LimitError on %s", tc.body, err, tc.what)
			}
		})
	}
}

func TestScannersCountWithoutDecoding(t *testing.T) {
	tests := []struct {
		arr       string
		n, nested int
		first     byte
	}{
		{`[]`, 0, 0, 0},
		{` [ 1 , 22, 333 ] `, 3, 0, '1'},
		{`["a,]", "b\"]", "c"]`, 3, 0, '"'},
		{`[[1,2],[3],[]]`, 3, 3, '['},
		{`[{"a":[1,2,3],"b":"]"},{}]`, 2, 0, '{'},
	}
	for _, tc := range tests {
		n, first := arrayShape([]byte(tc.arr), 0)
		if n != tc.n || first != tc.first || countNested([]byte(tc.arr), 0) != tc.nested {
			t.Errorf("%s: arrayShape %d %q, countNested %d; want %d %q %d", tc.arr, n, first, countNested([]byte(tc.arr), 0), tc.n, tc.first, tc.nested)
		}
	}
}

func TestTopLevelSlicesMembersWithoutCopying(t *testing.T) {
	body := []byte(` { "a" : [1, {"x": "]"}] , "b\u0022c":"s\"}", "n": -1.5e3,"a":null, "o":{"k":[]} } `)
	got, ok := topLevel(body)
	want := map[string]string{"a": "null", `b"c`: `"s\"}"`, "n": "-1.5e3", "o": `{"k":[]}`}
	if !ok || len(got) != len(want) {
		t.Fatalf("topLevel = %q, %v; want %q", got, ok, want)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("member %q = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := topLevel([]byte(`[1]`)); ok {
		t.Error("topLevel accepted an array")
	}
}

// TestOversizeListsAreRefusedBeforeValidation checks that a list prompt or
// chat over its limit is refused counting no further than the limit: the
// body's tail, never read, may be anything, and the error says "more than".
func TestOversizeListsAreRefusedBeforeValidation(t *testing.T) {
	lim := Limits{MaxMessages: 2, MaxPromptTokens: 4, MaxBatchPrompts: 2}
	const garbage = `,x]}}]]`
	tests := []struct {
		name, body string
		api        API
		what, text string
	}{
		{"token IDs", `{"prompt":[1,2,3,4,5,6` + garbage, Completions, "prompt/tokens", "prompt: more than 4 tokens is over the limit"},
		{"token-ID lists", `{"prompt":[[1,2],[3,4],[5` + garbage, Completions, "prompt/prompts", "prompt: more than 2 prompts is over the limit"},
		{"nested tokens", `{"prompt":[[1,2,3],[4,5,6` + garbage, Completions, "prompt/tokens", "prompt: more than 4 tokens is over the limit"},
		{"messages", `{"messages":[{},{},{}` + garbage, ChatCompletions, "messages/messages", "messages: more than 2 messages is over the limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.api, []byte(tc.body), lim)
			var le *LimitError
			if !errors.As(err, &le) || le.Field+"/"+le.What != tc.what || err.Error() != tc.text {
				t.Errorf("Parse(%s) = %v, want the LimitError %q", tc.body, err, tc.text)
			}
		})
	}
}

// TestEachListKindCountsToItsOwnLimit checks that a batch is counted up to
// MaxBatchPrompts and token IDs up to MaxPromptTokens, whichever is larger:
// the refusal names the right bound, never a count cut at the other one.
func TestEachListKindCountsToItsOwnLimit(t *testing.T) {
	lim := Limits{MaxPromptTokens: 100, MaxBatchPrompts: 3}
	tests := []struct{ body, text string }{
		{`{"prompt":["a","b","c","d","e","f","g","h"]}`, "prompt: more than 3 prompts is over the limit"},
		{`{"prompt":[` + strings.Repeat("1,", 150) + `1]}`, "prompt: more than 100 tokens is over the limit"},
	}
	for _, tc := range tests {
		if _, err := Parse(Completions, []byte(tc.body), lim); err == nil || err.Error() != tc.text {
			t.Errorf("Parse(%.40s...) = %v, want %q", tc.body, err, tc.text)
		}
	}
	lim = Limits{MaxPromptTokens: 2, MaxBatchPrompts: 100}
	if _, err := Parse(Completions, []byte(`{"prompt":[1,2,3,4,5,6,7,8]}`), lim); err == nil || err.Error() != "prompt: more than 2 tokens is over the limit" {
		t.Errorf("token IDs with a larger batch limit: %v", err)
	}
}

// FuzzParse feeds arbitrary bytes to both APIs: an error or a request,
// never a panic, whatever the limits.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"prompt":[1,2]}`, `{"prompt":[[1],[2`, `{"messages":[{"role":"user","content":"a"}]}`, `{"a"`, `{"`, `{"a":`, `{"a" 1,"prompt":["x"]}`, `{"\`} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, body []byte, limit uint8) {
		lim := Limits{MaxMessages: int(limit), MaxPromptTokens: int(limit), MaxBatchPrompts: int(limit), MaxPromptChars: int(limit)}
		for _, api := range []API{Completions, ChatCompletions} {
			_, _ = Parse(api, body, lim)
		}
	})
}
