package tokenization

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/kvtrack/kvtrack/tokenization/internal/jinja"
)

// ChatRequest is the part of an OpenAI-style chat completion request that
// decides the prompt. JSON fields stay raw so that key order survives into
// the template, as it does in Python.
type ChatRequest struct {
	// Messages is the JSON array of messages (role, content as a string or
	// a list of parts, tool_calls, tool_call_id, name, reasoning).
	Messages json.RawMessage `json:"messages"`
	// Tools is the JSON array of tool definitions, or empty.
	Tools json.RawMessage `json:"tools,omitempty"`
	// Documents is the JSON array of documents for RAG templates, or empty.
	Documents json.RawMessage `json:"documents,omitempty"`
	// AddGenerationPrompt appends the assistant turn header.
	AddGenerationPrompt bool `json:"add_generation_prompt,omitempty"`
	// ContinueFinalMessage leaves the final message open, as vLLM does:
	// the rendering is cut after that message's content.
	ContinueFinalMessage bool `json:"continue_final_message,omitempty"`
	// AddSpecialTokens tokenizes the rendering with the post-processor's
	// special tokens. vLLM's default for chat is false: the template
	// carries them.
	AddSpecialTokens bool `json:"add_special_tokens,omitempty"`
	// ChatTemplate, when set, replaces the tokenizer's template: the name
	// of one of the tokenizer's named templates, else a template source.
	ChatTemplate string `json:"chat_template,omitempty"`
	// ChatTemplateKwargs is a JSON object of extra template variables
	// (for example {"enable_thinking": false}).
	ChatTemplateKwargs json.RawMessage `json:"chat_template_kwargs,omitempty"`
}

// ErrNoChatTemplate is returned for chat requests to a tokenizer without a
// chat template.
var ErrNoChatTemplate = errors.New("tokenizer has no chat template")

// ChatTemplate renders chat requests with a Jinja template the way vLLM
// does through transformers' apply_chat_template: package jinja's renderer
// in transformers' environment (trim_blocks, lstrip_blocks, loop controls,
// json.dumps's tojson, raise_exception, strftime_now), the special tokens
// as variables, and vLLM's message preprocessing with its content format
// detection. It is safe for concurrent use.
type ChatTemplate struct {
	templates map[string]*compiledTemplate // by name
	vars      map[string]any               // special tokens (bos_token, ...)
	now       func() time.Time

	// adhoc caches templates that requests bring, bounded.
	adhocMu sync.Mutex
	adhoc   map[string]*compiledTemplate
}

type compiledTemplate struct {
	tpl    *jinja.Template
	format string // vLLM content format: "string" or "openai"
}

const maxAdhocTemplates = 16

// ChatTemplateOptions configures NewChatTemplate. The zero value is ready to use.
type ChatTemplateOptions struct {
	// SpecialTokens are the template variables bos_token, eos_token and so
	// on, usually from tokenizer_config.json.
	SpecialTokens map[string]string
	// Now is the clock of strftime_now; nil means time.Now.
	Now func() time.Time
}

// NewChatTemplate parses templates. sources maps template names to
// sources: "default" is the template, "tool_use", when present, is picked
// for requests with tools, and any name can be picked by a request's
// ChatTemplate. Without templates, only requests that bring their own
// template render. A template that does not parse is an error naming the
// construct and its line.
func NewChatTemplate(sources map[string]string, opts ChatTemplateOptions) (*ChatTemplate, error) {
	ct := &ChatTemplate{templates: map[string]*compiledTemplate{}, vars: map[string]any{}, now: opts.Now}
	if ct.now == nil {
		ct.now = time.Now
	}
	for k, v := range opts.SpecialTokens {
		ct.vars[k] = v
	}
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	sort.Strings(names) // a deterministic first error
	for _, name := range names {
		c, err := compileTemplate(sources[name])
		if err != nil {
			return nil, fmt.Errorf("chat template %q: %w", name, err)
		}
		ct.templates[name] = c
	}
	return ct, nil
}

func compileTemplate(src string) (*compiledTemplate, error) {
	tpl, err := jinja.Parse(src)
	if err != nil {
		return nil, err
	}
	format := "string"
	if tpl.LoopsOverContent() {
		format = "openai"
	}
	return &compiledTemplate{tpl: tpl, format: format}, nil
}

// pick chooses the template as transformers' get_chat_template does: a
// request's template by name or source, else "tool_use" when the request
// has tools, else "default".
func (ct *ChatTemplate) pick(req *ChatRequest, hasTools bool) (*compiledTemplate, error) {
	if req.ChatTemplate != "" {
		if c, ok := ct.templates[req.ChatTemplate]; ok {
			return c, nil
		}
		return ct.adhocTemplate(req.ChatTemplate)
	}
	if len(ct.templates) == 0 {
		return nil, ErrNoChatTemplate
	}
	if c, ok := ct.templates["tool_use"]; ok && hasTools {
		return c, nil
	}
	if c, ok := ct.templates["default"]; ok {
		return c, nil
	}
	return nil, errors.New("chat template: the tokenizer has several named chat templates and no \"default\"; name one in the request's chat_template")
}

func (ct *ChatTemplate) adhocTemplate(src string) (*compiledTemplate, error) {
	ct.adhocMu.Lock()
	c, ok := ct.adhoc[src]
	ct.adhocMu.Unlock()
	if ok {
		return c, nil
	}
	c, err := compileTemplate(src)
	if err != nil {
		return nil, fmt.Errorf("request chat_template: %w", err)
	}
	ct.adhocMu.Lock()
	if ct.adhoc == nil || len(ct.adhoc) >= maxAdhocTemplates {
		ct.adhoc = map[string]*compiledTemplate{}
	}
	ct.adhoc[src] = c
	ct.adhocMu.Unlock()
	return c, nil
}

// reservedKwargs are chat_template_kwargs vLLM refuses.
var reservedKwargs = []string{"chat_template", "tokenize"}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// Render returns the prompt text for req.
func (ct *ChatTemplate) Render(req *ChatRequest) (string, error) {
	if req.ContinueFinalMessage && req.AddGenerationPrompt {
		return "", errors.New("chat request: continue_final_message and add_generation_prompt cannot both be set")
	}
	hasTools := present(req.Tools)
	c, err := ct.pick(req, hasTools)
	if err != nil {
		return "", err
	}
	messages, final, err := preprocessMessages(req.Messages, c.format)
	if err != nil {
		return "", err
	}
	vars := make(map[string]any, len(ct.vars)+8)
	for k, v := range ct.vars {
		vars[k] = v
	}
	now := ct.now
	vars["strftime_now"] = jinja.Func(func(args []any, _ *jinja.Dict) (any, error) {
		if len(args) != 1 {
			return nil, errors.New("strftime_now takes one format argument")
		}
		f, ok := args[0].(string)
		if !ok {
			return nil, errors.New("strftime_now: the format is not a string")
		}
		return jinja.Strftime(now(), f), nil
	})
	if present(req.ChatTemplateKwargs) {
		kw, err := jinja.FromJSON(req.ChatTemplateKwargs)
		if err != nil {
			return "", fmt.Errorf("chat_template_kwargs: %w", err)
		}
		obj, ok := kw.(*jinja.Dict)
		if !ok {
			return "", errors.New("chat_template_kwargs: not a JSON object")
		}
		var kwErr error
		obj.Each(func(k, v any) {
			name := k.(string)
			for _, r := range reservedKwargs {
				if name == r && kwErr == nil {
					kwErr = fmt.Errorf("chat_template_kwargs: %q is not allowed", name)
				}
			}
			vars[name] = v
		})
		if kwErr != nil {
			return "", kwErr
		}
	}
	vars["messages"] = messages
	vars["tools"] = nil
	if hasTools {
		if vars["tools"], err = normalizeTools(req.Tools); err != nil {
			return "", err
		}
	}
	vars["documents"] = nil
	if present(req.Documents) {
		if vars["documents"], err = jinja.FromJSON(req.Documents); err != nil {
			return "", fmt.Errorf("chat request documents: %w", err)
		}
	}
	vars["add_generation_prompt"] = req.AddGenerationPrompt
	out, err := c.tpl.Render(vars)
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	if req.ContinueFinalMessage {
		if out, err = cutAfterFinal(out, final); err != nil {
			return "", err
		}
	}
	return out, nil
}

// cutAfterFinal ends the rendering after the final message's content, as
// transformers does for continue_final_message.
func cutAfterFinal(out, final string) (string, error) {
	trimmed := strings.TrimFunc(final, isPySpace)
	loc := strings.LastIndex(out, trimmed)
	if loc < 0 {
		return "", errors.New("continue_final_message: the final message does not appear in the rendering")
	}
	end := loc + len(strings.TrimLeftFunc(final, isPySpace))
	if end <= len(out) && out[loc:end] == final {
		return out[:end], nil // the template kept the message's spacing
	}
	return out[:loc+len(trimmed)], nil
}

// isPySpace is Python's str.isspace for one character.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}
