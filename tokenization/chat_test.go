package tokenization

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/tokenization/internal/fixtures"
)

type chatGolden struct {
	Now           string `json:"now"`
	Conversations []struct {
		Name                 string          `json:"name"`
		Messages             json.RawMessage `json:"messages"`
		Tools                json.RawMessage `json:"tools"`
		Documents            json.RawMessage `json:"documents"`
		AddGenerationPrompt  bool            `json:"add_generation_prompt"`
		ContinueFinalMessage bool            `json:"continue_final_message"`
		ChatTemplateKwargs   json.RawMessage `json:"chat_template_kwargs"`
	} `json:"conversations"`
	Formats    map[string]string                     `json:"formats"`
	Renderings map[string]map[string]json.RawMessage `json:"renderings"`
	IDs        map[string]map[string][]uint32        `json:"ids"`
}

func readChatGolden(t *testing.T) *chatGolden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures.TestdataDir(), "goldens", "chat.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g chatGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

var (
	localMu sync.Mutex
	locals  = map[string]*Local{}
)

// loadLocal loads a fixture model once per test binary, with the clock the
// chat goldens were rendered at.
func loadLocal(t testing.TB, model string) *Local {
	t.Helper()
	localMu.Lock()
	defer localMu.Unlock()
	if l := locals[model]; l != nil {
		return l
	}
	l, err := Load(context.Background(), fixtures.Dir(t, model), LoadOptions{Now: pinnedNow})
	if err != nil {
		t.Fatalf("load %s: %v", model, err)
	}
	locals[model] = l
	return l
}

func pinnedNow() time.Time { return time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC) }

// TestChatGoldens renders every conversation with every fetched model's
// chat template and compares the text with Python Jinja2's in
// transformers' environment (an error where Jinja2 raised one), the
// content format with vLLM's detection, and the token IDs with the Rust
// tokenizer's.
func TestChatGoldens(t *testing.T) {
	g := readChatGolden(t)
	if want := pinnedNow().Format("2006-01-02T15:04:05"); g.Now != want {
		t.Fatalf("goldens rendered at %s, tests pin %s", g.Now, want)
	}
	for _, model := range []string{"qwen3", "llama3_1", "deepseek_v3", "gemma3"} {
		t.Run(model, func(t *testing.T) {
			l := loadLocal(t, model)
			if l.chatErr != nil {
				t.Fatal(l.chatErr)
			}
			if got := l.chat.templates["default"].format; got != g.Formats[model] {
				t.Errorf("content format %q, vLLM's detection says %q", got, g.Formats[model])
			}
			same := 0
			for _, c := range g.Conversations {
				req := &ChatRequest{Messages: c.Messages, Tools: c.Tools, Documents: c.Documents, AddGenerationPrompt: c.AddGenerationPrompt,
					ContinueFinalMessage: c.ContinueFinalMessage, ChatTemplateKwargs: c.ChatTemplateKwargs}
				var want string
				if err := json.Unmarshal(g.Renderings[model][c.Name], &want); err != nil {
					_, err := l.RenderChat(req)
					if err == nil {
						t.Errorf("%s: rendered, but Jinja2 raised %s", c.Name, g.Renderings[model][c.Name])
					}
					continue
				}
				got, err := l.RenderChat(req)
				if err != nil {
					t.Errorf("%s: %v", c.Name, err)
					continue
				}
				if got != want {
					t.Errorf("%s: rendering differs from Jinja2:\n got %q\nwant %q", c.Name, got, want)
					continue
				}
				ids, err := l.EncodeChat(req)
				if err != nil {
					t.Errorf("%s: %v", c.Name, err)
					continue
				}
				if !slices.Equal(ids, g.IDs[model][c.Name]) {
					t.Errorf("%s: ids\n got %v\nwant %v", c.Name, ids, g.IDs[model][c.Name])
					continue
				}
				same++
			}
			t.Logf("%s: %d/%d conversations render and tokenize identically", model, same, len(g.Conversations))
		})
	}
}

// TestChatGemma3Renders: Gemma-3's template, which gonja could not parse
// (an inline if inside parentheses), renders chat requests, and
// completions still work.
func TestChatGemma3Renders(t *testing.T) {
	l := loadLocal(t, "gemma3")
	got, err := l.RenderChat(&ChatRequest{Messages: json.RawMessage(`[{"role":"user","content":"hi"}]`), AddGenerationPrompt: true})
	if want := "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"; err != nil || got != want {
		t.Fatalf("RenderChat = %q, %v; want %q", got, err, want)
	}
	ids, err := l.Encode("hi", true)
	if err != nil || len(ids) == 0 {
		t.Fatalf("Encode = %v, %v; want ids", ids, err)
	}
}
