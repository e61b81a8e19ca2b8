package tokenization

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func render(t *testing.T, src string, req *ChatRequest) (string, error) {
	t.Helper()
	ct, err := NewChatTemplate(map[string]string{"default": src}, ChatTemplateOptions{
		SpecialTokens: map[string]string{"bos_token": "<s>"},
		Now:           func() time.Time { return time.Date(2026, 7, 4, 9, 5, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return ct.Render(req)
}

func msgs(s string) *ChatRequest { return &ChatRequest{Messages: json.RawMessage(s)} }

// TestToJSONMatchesPython: the expected strings are Python's
// json.dumps(x, ensure_ascii=False) output for the same values.
func TestToJSONMatchesPython(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{`{"b": 1, "a": [1.5, 2.0, 1e-07, 1e16, 12345678.9, -0.0], "c": null, "d": true}`,
			`{"b": 1, "a": [1.5, 2.0, 1e-07, 1e+16, 12345678.9, -0.0], "c": null, "d": true}`},
		{`{"s": "Zürich \"q\" \\ <tag> & 'x' \u2028 \n\t\u0001 😀"}`,
			`{"s": "Zürich \"q\" \\ <tag> & 'x' ` + "\u2028" + ` \n\t\u0001 😀"}`},
		{`[]`, `[]`},
		{`{}`, `{}`},
	} {
		// The value travels as a chat_template_kwargs variable so that
		// tojson sees the decoded JSON, as templates do.
		req := msgs(`[{"role":"user","content":"x"}]`)
		req.ChatTemplateKwargs = json.RawMessage(`{"v": ` + tc.content + `}`)
		got, err := render(t, `{{ v | tojson }}`, req)
		if err != nil || got != tc.want {
			t.Errorf("tojson(%s) = %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	req := msgs(`[{"role":"user","content":"x"}]`)
	req.ChatTemplateKwargs = json.RawMessage(`{"v": {"a": [1, {"b": 2}]}}`)
	got, err := render(t, `{{ v | tojson(indent=2) }}`, req)
	want := "{\n  \"a\": [\n    1,\n    {\n      \"b\": 2\n    }\n  ]\n}"
	if err != nil || got != want {
		t.Errorf("tojson(indent=2) = %q, %v; want %q", got, err, want)
	}
}

func TestRenderTemplateFeatures(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		req       *ChatRequest
		want      string
	}{
		{"special tokens and generation prompt", `{{ bos_token }}{{ messages[0].content }}{% if add_generation_prompt %}>{% endif %}`,
			&ChatRequest{Messages: json.RawMessage(`[{"role":"user","content":"hi"}]`), AddGenerationPrompt: true}, "<s>hi>"},
		{"strftime_now with the injected clock", `{{ strftime_now("%d %b %Y %H:%M") }}`, msgs(`[]`), "04 Jul 2026 09:05"},
		{"kwargs", `{{ enable_thinking }}`, &ChatRequest{Messages: json.RawMessage(`[]`), ChatTemplateKwargs: json.RawMessage(`{"enable_thinking": false}`)}, "False"},
		{"trim_blocks and lstrip_blocks", "{% for m in messages %}\n  {% if true %}\n{{ m.role }}\n  {% endif %}\n{% endfor %}", msgs(`[{"role":"a","content":""},{"role":"b","content":""}]`), "a\nb\n"},
		{"content parts joined with newlines", `{{ messages[0].content }}`, msgs(`[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]`), "a\nb"},
		{"openai-format template keeps parts", `{% for m in messages %}{% for p in m['content'] %}[{{ p.text }}]{% endfor %}{% endfor %}`,
			msgs(`[{"role":"user","content":[{"type":"text","text":"a"},"b",{"type":"refusal","refusal":"c"}]}]`), "[a][b][c]"},
		{"vLLM's detection needs a loop over messages", `{% for p in messages[0]['content'] %}[{{ p.text }}]{% endfor %}`, msgs(`[{"role":"user","content":"a"}]`), "[]"},
		{"openai-format tool content becomes a string", `{% for m in messages %}{% for p in m.content %}{% endfor %}{{ m.content }}{% endfor %}`,
			msgs(`[{"role":"tool","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]`), "a\nb"},
		{"unparsable tool-call arguments become {}", `{{ messages[0].tool_calls[0].function.arguments | tojson }}`,
			msgs(`[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":"{not json"}}]}]`), "{}"},
		{"empty tool calls are dropped", `{{ messages[0].tool_calls is defined }}`, msgs(`[{"role":"assistant","content":"","tool_calls":[]}]`), "False"},
		{"reasoning is passed as reasoning and reasoning_content", `{{ messages[0].reasoning }}|{{ messages[0].reasoning_content }}`,
			msgs(`[{"role":"assistant","content":"x","reasoning":"r"}]`), "r|r"},
		{"tools shaped as vLLM dumps them", `{{ tools | tojson }}`,
			&ChatRequest{Messages: json.RawMessage(`[]`), Tools: json.RawMessage(`[{"function":{"x":1,"name":"f"},"extra":true}]`)},
			`[{"type": "function", "function": {"name": "f", "description": null, "parameters": null, "strict": null, "x": 1}, "extra": true}]`},
		{"documents passed through", `{% for d in documents %}{{ d.title }}{% endfor %}`,
			&ChatRequest{Messages: json.RawMessage(`[]`), Documents: json.RawMessage(`[{"title":"T1"},{"title":"T2"}]`)}, "T1T2"},
		{"kwargs shadow special tokens", `{{ bos_token }}`, &ChatRequest{Messages: json.RawMessage(`[]`), ChatTemplateKwargs: json.RawMessage(`{"bos_token": "B"}`)}, "B"},
		{"null content is empty", `[{{ messages[0].content }}]`, msgs(`[{"role":"assistant","content":null}]`), "[]"},
		{"tool-call arguments parsed", `{{ messages[0].tool_calls[0].function.arguments.city }}`,
			msgs(`[{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{\"city\": \"Oslo\"}"}}]}]`), "Oslo"},
		{"items keep key order", `{% for k, v in messages[0].tool_calls[0].function.arguments.items() %}{{ k }}{% endfor %}`,
			msgs(`[{"role":"assistant","content":"","tool_calls":[{"function":{"arguments":{"z":1,"a":2,"m":3}}}]}]`), "zam"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render(t, tc.src, tc.req)
			if err != nil || got != tc.want {
				t.Errorf("Render = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRenderContinueFinalMessage(t *testing.T) {
	req := &ChatRequest{Messages: json.RawMessage(`[{"role":"user","content":"q"},{"role":"assistant","content":"One, two"}]`), ContinueFinalMessage: true}
	got, err := render(t, `{% for m in messages %}<{{ m.role }}>{{ m.content }}</end>{% endfor %}`, req)
	if want := "<user>q</end><assistant>One, two"; err != nil || got != want {
		t.Errorf("Render = %q, %v; want %q", got, err, want)
	}
}

func TestRenderErrors(t *testing.T) {
	_, err := render(t, `{{ raise_exception("roles must alternate") }}`, msgs(`[]`))
	if err == nil || !strings.Contains(err.Error(), "roles must alternate") {
		t.Errorf("raise_exception: err = %v", err)
	}
	for name, req := range map[string]*ChatRequest{
		"no messages":                         {},
		"not an array":                        msgs(`{"role":"user"}`),
		"message not obj":                     msgs(`["hi"]`),
		"no role":                             msgs(`[{"content":"hi"}]`),
		"image part":                          msgs(`[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]`),
		"tool call no func":                   msgs(`[{"role":"assistant","content":"","tool_calls":[{"id":"x"}]}]`),
		"unknown part type":                   msgs(`[{"role":"user","content":[{"type":"hologram"}]}]`),
		"part without type":                   msgs(`[{"role":"user","content":[{"text":"x"}]}]`),
		"both continue and generation prompt": {Messages: json.RawMessage(`[{"role":"user","content":"x"}]`), ContinueFinalMessage: true, AddGenerationPrompt: true},
		"reserved kwarg":                      {Messages: json.RawMessage(`[]`), ChatTemplateKwargs: json.RawMessage(`{"tokenize": true}`)},
		"tool without name":                   {Messages: json.RawMessage(`[]`), Tools: json.RawMessage(`[{"type":"function","function":{}}]`)},
		"invalid JSON":                        msgs(`[{"role":`),
		"kwargs not object":                   {Messages: json.RawMessage(`[]`), ChatTemplateKwargs: json.RawMessage(`[1]`)},
	} {
		if _, err := render(t, `{{ messages }}`, req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := NewChatTemplate(map[string]string{"default": "{% for %}"}, ChatTemplateOptions{}); err == nil {
		t.Error("a broken template parsed")
	}
	none, _ := NewChatTemplate(nil, ChatTemplateOptions{})
	if _, err := none.Render(msgs(`[]`)); !errors.Is(err, ErrNoChatTemplate) {
		t.Errorf("Render without a template: err = %v, want ErrNoChatTemplate", err)
	}
}

func TestRenderPicksToolUseTemplate(t *testing.T) {
	ct, err := NewChatTemplate(map[string]string{"default": "plain", "tool_use": "tools"}, ChatTemplateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tools, want string
	}{{"", "plain"}, {`[{"type":"function","function":{"name":"f"}}]`, "tools"}} {
		req := msgs(`[]`)
		req.Tools = json.RawMessage(tc.tools)
		if got, err := ct.Render(req); err != nil || got != tc.want {
			t.Errorf("tools %q: Render = %q, %v; want %q", tc.tools, got, err, tc.want)
		}
	}
}

func TestLlama2HasNoChatTemplate(t *testing.T) {
	l := loadLocal(t, "llama2")
	if _, err := l.EncodeChat(msgs(`[{"role":"user","content":"hi"}]`)); !errors.Is(err, ErrNoChatTemplate) {
		t.Errorf("EncodeChat: err = %v, want ErrNoChatTemplate", err)
	}
}

func TestRenderDictIterationKeepsKeyOrder(t *testing.T) {
	req := msgs(`[{"role":"assistant","content":"","tool_calls":[{"function":{"arguments":{"z":1,"a":{"y":2,"b":3},"m":3}}}]}]`)
	for src, want := range map[string]string{
		`{% for k in messages[0].tool_calls[0].function.arguments.keys() %}{{ k }}{% endfor %}`:                       "zam",
		`{% for v in messages[0].tool_calls[0].function.arguments.values() %}{{ v is mapping }}{% endfor %}`:          "FalseTrueFalse",
		`{% for k, v in messages[0].tool_calls[0].function.arguments.items() %}{{ k }}={{ v | tojson }};{% endfor %}`: `z=1;a={"y": 2, "b": 3};m=3;`,
		`{% for k in messages[0].tool_calls[0].function.arguments %}{{ k }}{% endfor %}`:                              "zam",
	} {
		got, err := render(t, src, req)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", src, got, err, want)
		}
	}
}
