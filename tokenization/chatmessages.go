package tokenization

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/kvtrack/kvtrack/tokenization/internal/jinja"
)

// textPartKeys maps the content part types vLLM reads as text to the key
// holding the text.
var textPartKeys = map[string]string{
	"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal", "thinking": "thinking",
}

// mediaPartTypes are the parts vLLM turns into multimodal inputs, whose
// placeholders depend on the model's processor: not supported here.
var mediaPartTypes = []string{"image_url", "input_image", "image_embeds", "image_pil", "audio_url", "input_audio",
	"audio_embeds", "video_url", "prompt_embeds"}

// preprocessMessages applies vLLM's chat message parsing
// (parse_chat_messages): each message becomes role and content (text
// parts joined with "\n" for "string" templates, a list of {"type":
// "text", "text": ...} parts for "openai" ones), then tool_calls (with
// JSON-string arguments parsed, unparsable ones as {}), reasoning and
// reasoning_content for assistants, tool_call_id for tools, name, task,
// and tools for developer messages. final is the final message's text as
// transformers finds it for continue_final_message.
func preprocessMessages(raw json.RawMessage, format string) (msgs []any, final string, err error) {
	if len(raw) == 0 {
		return nil, "", errors.New("chat request: no messages")
	}
	v, err := jinja.FromJSON(raw)
	if err != nil {
		return nil, "", fmt.Errorf("chat request messages: %w", err)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, "", errors.New("chat request messages: not a JSON array")
	}
	msgs = make([]any, 0, len(list))
	for i, m := range list {
		in, ok := m.(*jinja.Dict)
		if !ok {
			return nil, "", fmt.Errorf("chat request messages[%d]: not a JSON object", i)
		}
		out, text, err := preprocessMessage(in, format)
		if err != nil {
			return nil, "", fmt.Errorf("chat request messages[%d]: %w", i, err)
		}
		msgs = append(msgs, out)
		final = text
	}
	return msgs, final, nil
}

func preprocessMessage(in *jinja.Dict, format string) (*jinja.Dict, string, error) {
	roleV, _ := in.Get("role")
	role, ok := roleV.(string)
	if !ok {
		return nil, "", errors.New("role is missing or not a string")
	}
	parts, err := contentParts(in, format)
	if err != nil {
		return nil, "", err
	}
	out := jinja.NewDict(4)
	out.Set("role", role)
	var content any
	final := ""
	if format == "openai" {
		content = parts
		for j := len(parts) - 1; j >= 0; j-- {
			if t, ok := parts[j].(*jinja.Dict).Get("text"); ok {
				final, _ = t.(string)
				break
			}
		}
	} else {
		texts := make([]string, len(parts))
		for j, p := range parts {
			texts[j] = p.(string)
		}
		final = strings.Join(texts, "\n")
		content = final
	}
	out.Set("content", content)
	switch role {
	case "assistant":
		if calls, ok := in.Get("tool_calls"); ok && calls != nil {
			if err := setToolCalls(out, calls); err != nil {
				return nil, "", err
			}
		}
		if r, ok := in.Get("reasoning"); ok && r != nil {
			out.Set("reasoning", r)
			out.Set("reasoning_content", r)
		}
	case "tool":
		if id, ok := in.Get("tool_call_id"); ok {
			out.Set("tool_call_id", id)
		}
		if list, ok := content.([]any); ok && allText(list) {
			texts := make([]string, len(list))
			for j, p := range list {
				t, _ := p.(*jinja.Dict).Get("text")
				texts[j], _ = t.(string)
			}
			out.Set("content", strings.Join(texts, "\n"))
		}
	}
	for _, key := range []string{"name", "task"} {
		if s, ok := in.Get(key); ok {
			if _, isStr := s.(string); isStr {
				out.Set(key, s)
			}
		}
	}
	if role == "developer" {
		tools, _ := in.Get("tools")
		out.Set("tools", tools)
	}
	return out, final, nil
}

func allText(parts []any) bool {
	for _, p := range parts {
		if t, _ := p.(*jinja.Dict).Get("type"); t != "text" {
			return false
		}
	}
	return true
}

// contentParts returns a message's parts as vLLM parses them: strings for
// "string" templates, {"type": ...} dicts for "openai" ones. A string
// content is one text part, null none.
func contentParts(m *jinja.Dict, format string) ([]any, error) {
	wrap := format == "openai"
	c, _ := m.Get("content")
	var in []any
	switch t := c.(type) {
	case nil:
		return []any{}, nil
	case string:
		in = []any{t}
	case []any:
		in = t
	default:
		return nil, errors.New("content is neither a string nor a list of parts")
	}
	out := make([]any, 0, len(in))
	textPart := func(s string) any {
		if !wrap {
			return s
		}
		d := jinja.NewDict(2)
		d.Set("type", "text")
		d.Set("text", s)
		return d
	}
	for j, p := range in {
		if s, ok := p.(string); ok {
			out = append(out, textPart(s))
			continue
		}
		po, ok := p.(*jinja.Dict)
		if !ok {
			return nil, fmt.Errorf("content[%d]: not a string or a JSON object", j)
		}
		typV, _ := po.Get("type")
		typ, _ := typV.(string)
		if key, ok := textPartKeys[typ]; ok {
			text, _ := po.Get(key)
			if text == nil && (typ == "text" || typ == "refusal") {
				continue // vLLM skips text parts without text
			}
			s, ok := text.(string)
			if !ok {
				return nil, fmt.Errorf("content[%d]: %s is not a string", j, key)
			}
			out = append(out, textPart(s))
			continue
		}
		if typ == "tool_reference" {
			name, _ := po.Get("name")
			s, ok := name.(string)
			if !ok {
				return nil, fmt.Errorf("content[%d]: tool_reference name is not a string", j)
			}
			if !wrap {
				out = append(out, s)
				continue
			}
			d := jinja.NewDict(2)
			d.Set("type", "tool_reference")
			d.Set("name", s)
			out = append(out, d)
			continue
		}
		for _, media := range mediaPartTypes {
			if _, has := po.Get(media); typ == media || typV == nil && has {
				return nil, fmt.Errorf("content[%d]: %s parts are not supported (their placeholders depend on the model's processor)", j, media)
			}
		}
		if typV == nil {
			return nil, fmt.Errorf("content[%d]: missing 'type' field", j)
		}
		return nil, fmt.Errorf("content[%d]: unsupported content part type %v", j, typV)
	}
	return out, nil
}

// setToolCalls copies an assistant's tool calls with their arguments
// decoded, as vLLM's _postprocess_messages does: a JSON string becomes its
// value, any other string or a non-container {}; an empty list of calls
// is dropped.
func setToolCalls(out *jinja.Dict, calls any) error {
	list, ok := calls.([]any)
	if !ok {
		out.Set("tool_calls", calls)
		return nil
	}
	if len(list) == 0 {
		return nil
	}
	for i, c := range list {
		co, ok := c.(*jinja.Dict)
		if !ok {
			return fmt.Errorf("tool_calls[%d]: not a JSON object", i)
		}
		fnV, _ := co.Get("function")
		fn, ok := fnV.(*jinja.Dict)
		if !ok {
			return fmt.Errorf("tool_calls[%d]: function is missing or not an object", i)
		}
		args, _ := fn.Get("arguments")
		switch a := args.(type) {
		case *jinja.Dict, []any:
		case string:
			v, err := jinja.FromJSON([]byte(a))
			if err != nil {
				v = jinja.NewDict(0)
			}
			fn.Set("arguments", v)
		default:
			fn.Set("arguments", jinja.NewDict(0))
		}
	}
	out.Set("tool_calls", list)
	return nil
}

// normalizeTools gives tool definitions the shape vLLM passes to templates
// (its pydantic models' model_dump): "type" and "function" first, the
// function's name, description, parameters and strict always present
// (null when absent), then any other keys in request order.
func normalizeTools(raw json.RawMessage) (any, error) {
	v, err := jinja.FromJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("chat request tools: %w", err)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("chat request tools: not a JSON array")
	}
	out := make([]any, len(list))
	for i, t := range list {
		tool, ok := t.(*jinja.Dict)
		if !ok {
			return nil, fmt.Errorf("chat request tools[%d]: not a JSON object", i)
		}
		typ, ok := tool.Get("type")
		if !ok {
			typ = "function"
		}
		if typ != "function" {
			out[i] = tool
			continue
		}
		fnV, _ := tool.Get("function")
		fn, ok := fnV.(*jinja.Dict)
		if !ok {
			return nil, fmt.Errorf("chat request tools[%d]: function is missing or not an object", i)
		}
		if name, _ := fn.Get("name"); name == nil {
			return nil, fmt.Errorf("chat request tools[%d]: function has no name", i)
		}
		nf := jinja.NewDict(fn.Len() + 3)
		fields := []string{"name", "description", "parameters", "strict"}
		for _, k := range fields {
			v, _ := fn.Get(k)
			nf.Set(k, v)
		}
		copyExtra(nf, fn, fields)
		nt := jinja.NewDict(tool.Len())
		nt.Set("type", typ)
		nt.Set("function", nf)
		copyExtra(nt, tool, []string{"type", "function"})
		out[i] = nt
	}
	return out, nil
}

func copyExtra(dst, src *jinja.Dict, skip []string) {
	src.Each(func(k, v any) {
		for _, s := range skip {
			if k == s {
				return
			}
		}
		dst.Set(k, v)
	})
}
