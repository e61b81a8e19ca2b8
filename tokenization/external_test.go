package tokenization

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/tokenization/internal/jinja"
)

// TestExternalTemplates compares the renderer with Jinja2 on templates
// that are read locally and never committed (vLLM's example templates,
// gpt-oss's harmony template): hack/compare-chat-templates.py renders them
// with the oracle, this test with ChatTemplate, and it logs a verdict per
// template. It runs only when KVTRACK_TEMPLATES (the directory) and
// KVTRACK_TEMPLATE_RESULTS (the oracle's JSON) are set. A template may
// fail to render here with an error naming the construct, but it must
// never render differently.
func TestExternalTemplates(t *testing.T) {
	dir, results := os.Getenv("KVTRACK_TEMPLATES"), os.Getenv("KVTRACK_TEMPLATE_RESULTS")
	if dir == "" || results == "" {
		t.Skip("set KVTRACK_TEMPLATES and KVTRACK_TEMPLATE_RESULTS (see hack/compare-chat-templates.py)")
	}
	data, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Special       map[string]string `json:"special_tokens"`
		Conversations []struct {
			Name                 string          `json:"name"`
			Messages             json.RawMessage `json:"messages"`
			Tools                json.RawMessage `json:"tools"`
			AddGenerationPrompt  bool            `json:"add_generation_prompt"`
			ContinueFinalMessage bool            `json:"continue_final_message"`
			ChatTemplateKwargs   json.RawMessage `json:"chat_template_kwargs"`
		} `json:"conversations"`
		Templates map[string]struct {
			Format     string                     `json:"format"`
			ParseError string                     `json:"parse_error"`
			Renderings map[string]json.RawMessage `json:"renderings"`
		} `json:"templates"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(r.Templates))
	for n := range r.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	var table strings.Builder
	for _, name := range names {
		want := r.Templates[name]
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		ct, err := NewChatTemplate(map[string]string{"default": string(src)}, ChatTemplateOptions{SpecialTokens: r.Special, Now: pinnedNow})
		if err != nil {
			verdict := "fail: " + err.Error()
			if want.ParseError != "" {
				verdict = "pass (both refuse to parse)"
			}
			fmt.Fprintf(&table, "| %s | %s |\n", name, verdict)
			continue
		}
		if got := ct.templates["default"].format; got != want.Format {
			t.Errorf("%s: content format %s, vLLM's detection %s", name, got, want.Format)
		}
		same, bothErr, unsupported, wrong := 0, 0, map[string]bool{}, []string{}
		for _, c := range r.Conversations {
			req := &ChatRequest{Messages: c.Messages, Tools: c.Tools, AddGenerationPrompt: c.AddGenerationPrompt,
				ContinueFinalMessage: c.ContinueFinalMessage, ChatTemplateKwargs: c.ChatTemplateKwargs}
			got, err := ct.Render(req)
			var text string
			pyErr := json.Unmarshal(want.Renderings[c.Name], &text) != nil
			switch {
			case pyErr && err != nil:
				bothErr++
			case !pyErr && err == nil && got == text:
				same++
			case !pyErr && err != nil && isUnsupported(err):
				unsupported[err.Error()] = true
			default:
				wrong = append(wrong, c.Name)
				t.Errorf("%s/%s: WRONG: got %q, %v; Jinja2 %s", name, c.Name, got, err, want.Renderings[c.Name])
			}
		}
		verdict := fmt.Sprintf("pass: %d renderings identical, %d errors in both", same, bothErr)
		if len(unsupported) > 0 {
			msgs := make([]string, 0, len(unsupported))
			for m := range unsupported {
				msgs = append(msgs, m)
			}
			sort.Strings(msgs)
			verdict = fmt.Sprintf("fail, refused (%d identical, %d errors in both): %s", same, bothErr, strings.Join(msgs, "; "))
		}
		if len(wrong) > 0 {
			verdict = "FAIL, wrong rendering: " + strings.Join(wrong, ", ")
		}
		fmt.Fprintf(&table, "| %s | %s |\n", name, verdict)
	}
	t.Logf("\n%s", table.String())
}

func isUnsupported(err error) bool {
	var ue *jinja.UnsupportedError
	var se *jinja.SyntaxError
	return errors.As(err, &ue) || errors.As(err, &se)
}
