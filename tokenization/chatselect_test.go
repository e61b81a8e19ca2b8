package tokenization

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles writes name -> content files under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func namedTemplatesConfig(t *testing.T) string {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"chat_template": []map[string]string{
		{"name": "default", "template": "config-default"},
		{"name": "tool_use", "template": "config-tool_use"},
		{"name": "rag", "template": "config-rag"},
	}})
	return string(cfg)
}

// TestChatTemplateSelection: templates are found and chosen as
// transformers does for vLLM.
func TestChatTemplateSelection(t *testing.T) {
	user := json.RawMessage(`[{"role":"user","content":"hi"}]`)
	tools := json.RawMessage(`[{"type":"function","function":{"name":"f"}}]`)
	for _, tc := range []struct {
		name     string
		files    map[string]string // besides the tiny tokenizer
		override string            // LoadOptions.ChatTemplate
		req      ChatRequest
		want     string
	}{
		{name: "config list: default", files: map[string]string{"tokenizer_config.json": namedTemplatesConfig(t)},
			req: ChatRequest{Messages: user}, want: "config-default"},
		{name: "config list: tool_use for requests with tools", files: map[string]string{"tokenizer_config.json": namedTemplatesConfig(t)},
			req: ChatRequest{Messages: user, Tools: tools}, want: "config-tool_use"},
		{name: "config list: a request names a template", files: map[string]string{"tokenizer_config.json": namedTemplatesConfig(t)},
			req: ChatRequest{Messages: user, Tools: tools, ChatTemplate: "rag"}, want: "config-rag"},
		{name: "config list: --chat-template names a template", files: map[string]string{"tokenizer_config.json": namedTemplatesConfig(t)},
			override: "rag", req: ChatRequest{Messages: user}, want: "config-rag"},
		{name: "config list: a request brings a template source", files: map[string]string{"tokenizer_config.json": namedTemplatesConfig(t)},
			req: ChatRequest{Messages: user, ChatTemplate: "{{ messages[0].content }}!"}, want: "hi!"},
		{name: "chat_template.jinja takes precedence over the config",
			files: map[string]string{"tokenizer_config.json": namedTemplatesConfig(t), "chat_template.jinja": "jinja-file\n"},
			req:   ChatRequest{Messages: user, Tools: tools}, want: "jinja-file"},
		{name: "additional_chat_templates are named templates",
			files: map[string]string{"chat_template.jinja": "jinja-file", "additional_chat_templates/tool_use.jinja": "extra-tool_use"},
			req:   ChatRequest{Messages: user, Tools: tools}, want: "extra-tool_use"},
		{name: "chat_template.json takes precedence over the config",
			files: map[string]string{"tokenizer_config.json": namedTemplatesConfig(t), "chat_template.json": `{"chat_template": "json-file"}`},
			req:   ChatRequest{Messages: user}, want: "json-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTiny(t, dir)
			writeFiles(t, dir, tc.files)
			l, err := Load(context.Background(), dir, LoadOptions{ChatTemplate: tc.override})
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.RenderChat(&tc.req)
			if err != nil || got != tc.want {
				t.Fatalf("RenderChat = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestChatTemplateWithoutDefaultNeedsAName(t *testing.T) {
	ct, err := NewChatTemplate(map[string]string{"a": "A", "b": "B"}, ChatTemplateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ct.Render(msgs(`[]`)); err == nil || !strings.Contains(err.Error(), "default") {
		t.Errorf("Render without a default: err = %v, want one asking for a name", err)
	}
	req := msgs(`[]`)
	req.ChatTemplate = "b"
	if got, err := ct.Render(req); err != nil || got != "B" {
		t.Errorf("Render naming b = %q, %v", got, err)
	}
}

// TestChatTemplateUnsupportedConstructFailsLoudly: a template the renderer
// cannot handle fails with the construct's name and line, at load for
// syntax and at render for constructs met while rendering.
func TestChatTemplateUnsupportedConstructFailsLoudly(t *testing.T) {
	_, err := NewChatTemplate(map[string]string{"default": "line one\n{% include 'x.jinja' %}"}, ChatTemplateOptions{})
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "include") {
		t.Errorf("include: err = %v, want the construct and line 2", err)
	}
	ct, err := NewChatTemplate(map[string]string{"default": "ok\n\n{{ messages[0].content.center(9) }}"}, ChatTemplateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ct.Render(msgs(`[{"role":"user","content":"x"}]`))
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "center") {
		t.Errorf("str.center: err = %v, want the construct and line 3", err)
	}
}
