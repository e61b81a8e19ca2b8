package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seedTemplates are the construct goldens' templates and the real chat
// templates at hand: Qwen3's (committed) and, when fetched, the other
// models'.
func seedTemplates(t testing.TB) []string {
	t.Helper()
	var seeds []string
	data, err := os.ReadFile(filepath.Join("testdata", "goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Cases {
		seeds = append(seeds, c.Template)
	}
	configs, _ := filepath.Glob(filepath.Join("..", "..", "..", "testdata", "fetched", "tokenizers", "*", "tokenizer_config.json"))
	configs = append(configs, filepath.Join("..", "..", "testdata", "qwen3", "tokenizer_config.json"))
	for _, f := range configs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var cfg struct {
			ChatTemplate json.RawMessage `json:"chat_template"`
		}
		var src string
		if json.Unmarshal(data, &cfg) == nil && json.Unmarshal(cfg.ChatTemplate, &src) == nil && src != "" {
			seeds = append(seeds, src)
		}
	}
	return seeds
}

// FuzzTemplate feeds arbitrary templates to the lexer, parser and
// renderer: each must return a template or an error, and a template must
// render or fail with an error, never panic or hang.
//
//	go test -fuzz FuzzTemplate -fuzztime 60s ./tokenization/internal/jinja
func FuzzTemplate(f *testing.F) {
	for _, s := range seedTemplates(f) {
		f.Add(s)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "goldens.json"))
	if err != nil {
		f.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		f.Fatal(err)
	}
	vars := testVars(f, g.Vars)
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 {
				t.Fatalf("Parse error %v is not a *SyntaxError with a line", err)
			}
			return
		}
		if _, err := tpl.Render(vars); err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
		tpl.LoopsOverContent()
	})
}

// TestSeedTemplatesParse: every real template in the fuzz corpus parses.
func TestSeedTemplatesParse(t *testing.T) {
	seeds := seedTemplates(t)
	if len(seeds) < 80 {
		t.Fatalf("only %d seed templates", len(seeds))
	}
}
