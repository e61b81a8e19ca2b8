package tokenization

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// ChatRequest is the part of an OpenAI-style chat completion request that
// decides the prompt. JSON fields stay raw so that key order survives into
// the template, as it does in Python.
type ChatRequest struct {
	// Messages is the JSON array of messages (role, content as a string or
	// a list of parts, tool_calls, tool_call_id, name).
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
	// ChatTemplate, when set, replaces the tokenizer's template.
	ChatTemplate string `json:"chat_template,omitempty"`
	// ChatTemplateKwargs is a JSON object of extra template variables
	// (for example {"enable_thinking": false}).
	ChatTemplateKwargs json.RawMessage `json:"chat_template_kwargs,omitempty"`
}

// ErrNoChatTemplate is returned for chat requests to a tokenizer without a
// chat template.
var ErrNoChatTemplate = errors.New("tokenizer has no chat template")

// ChatTemplate renders chat requests with a Jinja template the way
// transformers' apply_chat_template does for vLLM: trim_blocks,
// lstrip_blocks, loop controls, a tojson identical to Python's json.dumps,
// raise_exception, strftime_now, the special tokens as variables, and vLLM's
// message preprocessing. It is safe for concurrent use.
type ChatTemplate struct {
	templates map[string]*exec.Template // by name; "default" always set
	format    string                    // vLLM content format: "string" or "openai"
	vars      map[string]any            // special tokens (bos_token, ...)
	now       func() time.Time
}

// ChatTemplateOptions configures NewChatTemplate. The zero value is ready to use.
type ChatTemplateOptions struct {
	// SpecialTokens are the template variables bos_token, eos_token and so
	// on, usually from tokenizer_config.json.
	SpecialTokens map[string]string
	// Now is the clock of strftime_now; nil means time.Now.
	Now func() time.Time
}

// NewChatTemplate parses templates. sources maps template names to
// sources: "default" is the template, and "tool_use", when present, is
// picked for requests with tools. Without a "default", only requests that
// bring their own template render.
func NewChatTemplate(sources map[string]string, opts ChatTemplateOptions) (*ChatTemplate, error) {
	ct := &ChatTemplate{templates: map[string]*exec.Template{}, vars: map[string]any{}, now: opts.Now, format: "string"}
	if ct.now == nil {
		ct.now = time.Now
	}
	for k, v := range opts.SpecialTokens {
		ct.vars[k] = v
	}
	for name, src := range sources {
		t, err := parseTemplate(src)
		if err != nil {
			return nil, fmt.Errorf("chat template %q: %w", name, err)
		}
		ct.templates[name] = t
		if name == "default" {
			ct.format = contentFormat(src)
		}
	}
	return ct, nil
}

var (
	envOnce sync.Once
	env     *exec.Environment
	gonjaCf *config.Config
)

// environment is gonja's built-in environment with Python's tojson and
// raise_exception: transformers' ImmutableSandboxedEnvironment as far as
// chat templates can tell.
func environment() (*exec.Environment, *config.Config) {
	envOnce.Do(func() {
		filters := exec.NewFilterSet(map[string]exec.FilterFunction{})
		filters.Update(builtins.Filters)
		_ = filters.Replace("tojson", filterToJSON)
		ctx := exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables)
		ctx.Set("raise_exception", raiseException)
		methods := builtins.Methods
		methods.Dict = orderedDictMethods(builtins.Methods.Dict)
		env = &exec.Environment{
			Context:           ctx,
			Filters:           filters,
			Tests:             builtins.Tests,
			ControlStructures: builtins.ControlStructures,
			Methods:           methods,
		}
		gonjaCf = config.New()
		gonjaCf.TrimBlocks = true
		gonjaCf.LeftStripBlocks = true
	})
	return env, gonjaCf
}

// orderedDictMethods returns gonja's dict methods with keys, values and
// items in insertion order, as Python's dicts give them (gonja sorts).
func orderedDictMethods(base *exec.MethodSet[map[string]any]) *exec.MethodSet[map[string]any] {
	m := map[string]exec.Method[map[string]any]{}
	for _, name := range []string{"get", "pop", "setdefault", "update", "copy", "clear"} {
		if f, ok := base.Get(name); ok {
			m[name] = f
		}
	}
	ordered := func(name string, pick func(p *exec.Pair) any) {
		orig, _ := base.Get(name)
		m[name] = func(self map[string]any, selfValue *exec.Value, args *exec.VarArgs) (any, error) {
			d, ok := selfValue.Interface().(*exec.Dict)
			if !ok || len(args.Args) > 0 || len(args.KwArgs) > 0 {
				return orig(self, selfValue, args)
			}
			out := make([]any, len(d.Pairs))
			for i, p := range d.Pairs {
				out[i] = pick(p)
			}
			return out, nil
		}
	}
	ordered("keys", func(p *exec.Pair) any { return p.Key.Interface() })
	ordered("values", func(p *exec.Pair) any { return p.Value.Interface() })
	ordered("items", func(p *exec.Pair) any { return []any{p.Key.Interface(), p.Value.Interface()} })
	return exec.NewMethodSet(m)
}

func parseTemplate(src string) (t *exec.Template, err error) {
	e, cf := environment()
	// gonja can panic on templates it does not understand; a bad template
	// must be an error, never a crash.
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("gonja: %v", r)
		}
	}()
	loader, err := loaders.NewShiftedLoader("chat_template", strings.NewReader(src), nil)
	if err != nil {
		return nil, err
	}
	return exec.NewTemplate("chat_template", cf, loader, e)
}

// templateError is raised by raise_exception in a template.
type templateError struct{ msg string }

func (e *templateError) Error() string { return "template raised: " + e.msg }

func raiseException(_ *exec.Evaluator, params *exec.VarArgs) (string, error) {
	msg := ""
	if len(params.Args) > 0 {
		msg = params.Args[0].String()
	}
	return "", &templateError{msg}
}

func filterToJSON(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	indent := -1
	if v, ok := params.KwArgs["indent"]; ok && v.IsInteger() {
		indent = v.Integer()
	} else if len(params.Args) > 0 && params.Args[0].IsInteger() {
		indent = params.Args[0].Integer()
	}
	var b strings.Builder
	if err := pyJSON(&b, in, indent, 0); err != nil {
		return exec.AsValue(err)
	}
	return exec.AsSafeValue(b.String())
}

// contentFormatRE finds a loop over a message's content, which is how vLLM
// recognises templates that expect OpenAI-style content part lists.
var contentFormatRE = regexp.MustCompile(`for\s+\w+\s+in\s+[\w.\[\]'"]*(\.content|\[\s*['"]content['"]\s*\])\s*(%|-|\|)`)

func contentFormat(src string) string {
	if contentFormatRE.MatchString(src) {
		return "openai"
	}
	return "string"
}

// Render returns the prompt text for req.
func (ct *ChatTemplate) Render(req *ChatRequest) (string, error) {
	tpl, ok := ct.templates["default"]
	format := ct.format
	if !ok && req.ChatTemplate == "" {
		return "", ErrNoChatTemplate
	}
	if req.ChatTemplate != "" {
		var err error
		if tpl, err = parseTemplate(req.ChatTemplate); err != nil {
			return "", fmt.Errorf("request chat_template: %w", err)
		}
		format = contentFormat(req.ChatTemplate)
	} else if len(req.Tools) > 0 && string(req.Tools) != "null" {
		if t, ok := ct.templates["tool_use"]; ok {
			tpl = t
		}
	}
	messages, final, err := preprocessMessages(req.Messages, format)
	if err != nil {
		return "", err
	}
	data := exec.NewContext(map[string]any{})
	for k, v := range ct.vars {
		data.Set(k, v)
	}
	data.Set("messages", toGonja(messages))
	for name, raw := range map[string]json.RawMessage{"tools": req.Tools, "documents": req.Documents} {
		var v any
		if len(raw) > 0 {
			if v, err = decodeJSON(raw); err != nil {
				return "", fmt.Errorf("chat request %s: %w", name, err)
			}
		}
		data.Set(name, toGonja(v))
	}
	data.Set("add_generation_prompt", req.AddGenerationPrompt)
	now := ct.now
	data.Set("strftime_now", func(_ *exec.Evaluator, params *exec.VarArgs) (string, error) {
		if len(params.Args) != 1 {
			return "", errors.New("strftime_now takes one format argument")
		}
		return strftime(now(), params.Args[0].String()), nil
	})
	if len(req.ChatTemplateKwargs) > 0 && string(req.ChatTemplateKwargs) != "null" {
		kw, err := decodeJSON(req.ChatTemplateKwargs)
		if err != nil {
			return "", fmt.Errorf("chat_template_kwargs: %w", err)
		}
		obj, ok := kw.(*object)
		if !ok {
			return "", errors.New("chat_template_kwargs: not a JSON object")
		}
		for i, k := range obj.keys {
			data.Set(k, toGonja(obj.vals[i]))
		}
	}
	out, err := execute(tpl, data)
	if err != nil {
		return "", err
	}
	if req.ContinueFinalMessage {
		if out, err = cutAfterFinal(out, final); err != nil {
			return "", err
		}
	}
	return out, nil
}

func execute(tpl *exec.Template, data *exec.Context) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat template: gonja: %v", r)
		}
	}()
	out, err = tpl.ExecuteToString(data)
	if err != nil {
		var te *templateError
		if errors.As(err, &te) {
			return "", fmt.Errorf("chat template: %w", te)
		}
		return "", fmt.Errorf("chat template: %w", err)
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

// preprocessMessages applies vLLM's chat preprocessing: each message keeps
// role, content, tool_calls (assistant; arguments parsed from JSON),
// tool_call_id (tool) and name. Content becomes a string of its text parts
// joined with "\n" for "string" templates, a list of text parts for
// "openai" ones. final is the last message's text content.
func preprocessMessages(raw json.RawMessage, format string) (msgs []any, final string, err error) {
	if len(raw) == 0 {
		return nil, "", errors.New("chat request: no messages")
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, "", fmt.Errorf("chat request messages: %w", err)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, "", errors.New("chat request messages: not a JSON array")
	}
	for i, m := range list {
		in, ok := m.(*object)
		if !ok {
			return nil, "", fmt.Errorf("chat request messages[%d]: not a JSON object", i)
		}
		roleV, _ := in.get("role")
		role, ok := roleV.(string)
		if !ok {
			return nil, "", fmt.Errorf("chat request messages[%d]: role is missing or not a string", i)
		}
		texts, err := contentTexts(in)
		if err != nil {
			return nil, "", fmt.Errorf("chat request messages[%d]: %w", i, err)
		}
		out := &object{}
		out.set("role", role)
		if format == "openai" {
			parts := make([]any, len(texts))
			for j, t := range texts {
				p := &object{}
				p.set("type", "text")
				p.set("text", t)
				parts[j] = p
			}
			out.set("content", parts)
		} else {
			out.set("content", strings.Join(texts, "\n"))
		}
		if role == "assistant" {
			if calls, ok := in.get("tool_calls"); ok && calls != nil {
				if err := parseToolArguments(calls); err != nil {
					return nil, "", fmt.Errorf("chat request messages[%d]: %w", i, err)
				}
				out.set("tool_calls", calls)
			}
		}
		if id, ok := in.get("tool_call_id"); ok && role == "tool" {
			out.set("tool_call_id", id)
		}
		if name, ok := in.get("name"); ok {
			if s, ok := name.(string); ok {
				out.set("name", s)
			}
		}
		msgs = append(msgs, out)
		final = strings.Join(texts, "\n")
	}
	return msgs, final, nil
}

// contentTexts returns a message's text parts: a string content is one
// part, null none. Non-text parts (images, audio) are not supported here.
func contentTexts(m *object) ([]string, error) {
	c, _ := m.get("content")
	switch t := c.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{t}, nil
	case []any:
		var texts []string
		for j, p := range t {
			po, ok := p.(*object)
			if !ok {
				return nil, fmt.Errorf("content[%d]: not a JSON object", j)
			}
			typ, _ := po.get("type")
			if typ != "text" {
				return nil, fmt.Errorf("content[%d]: part type %v is not supported (text only)", j, typ)
			}
			text, _ := po.get("text")
			s, ok := text.(string)
			if !ok {
				return nil, fmt.Errorf("content[%d]: text is not a string", j)
			}
			texts = append(texts, s)
		}
		return texts, nil
	}
	return nil, errors.New("content is neither a string nor a list of parts")
}

// parseToolArguments turns each tool call's JSON-string arguments into an
// object (empty or missing arguments become {}), as vLLM does before
// rendering.
func parseToolArguments(calls any) error {
	list, ok := calls.([]any)
	if !ok {
		return errors.New("tool_calls is not a list")
	}
	for i, c := range list {
		co, ok := c.(*object)
		if !ok {
			continue
		}
		fnV, _ := co.get("function")
		fn, ok := fnV.(*object)
		if !ok {
			continue
		}
		args, _ := fn.get("arguments")
		switch a := args.(type) {
		case *object, []any:
		case string:
			if a == "" {
				fn.set("arguments", &object{})
				continue
			}
			v, err := decodeJSON([]byte(a))
			if err != nil {
				return fmt.Errorf("tool_calls[%d].function.arguments: %w", i, err)
			}
			fn.set("arguments", v)
		default:
			if args == nil || args == false || args == int64(0) {
				fn.set("arguments", &object{})
			}
		}
	}
	return nil
}

// strftime implements the C directives chat templates use.
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
