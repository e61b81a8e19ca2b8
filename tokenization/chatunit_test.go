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
		// The value travels as a tool definition so that tojson sees the
		// decoded JSON, as templates do.
		req := msgs(`[{"role":"user","content":"x"}]`)
		req.Tools = json.RawMessage(`[` + tc.content + `]`)
		got, err := render(t, `{{ tools[0] | tojson }}`, req)
		if err != nil || got != tc.want {
			t.Errorf("tojson(%s) = %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	req := msgs(`[{"role":"user","content":"x"}]`)
	req.Tools = json.RawMessage(`[{"a": [1, {"b": 2}]}]`)
	got, err := render(t, `{{ tools[0] | tojson(indent=2) }}`, req)
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
		{"openai-format template keeps parts", `{% for p in messages[0]['content'] %}[{{ p.text }}]{% endfor %}`, msgs(`[{"role":"user","content":"a"}]`), "[a]"},
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
		"no messages":       {},
		"not an array":      msgs(`{"role":"user"}`),
		"message not obj":   msgs(`["hi"]`),
		"no role":           msgs(`[{"content":"hi"}]`),
		"image part":        msgs(`[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]`),
		"bad tool args":     msgs(`[{"role":"assistant","content":"","tool_calls":[{"function":{"arguments":"{not json"}}]}]`),
		"invalid JSON":      msgs(`[{"role":`),
		"kwargs not object": {Messages: json.RawMessage(`[]`), ChatTemplateKwargs: json.RawMessage(`[1]`)},
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
	}{{"", "plain"}, {`[{"type":"function"}]`, "tools"}} {
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
