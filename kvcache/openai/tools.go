package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// member is one key of a JSON object, its value raw.
type member struct {
	key string
	val json.RawMessage
}

// members returns obj's keys in order.
func members(obj json.RawMessage) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{key: t.(string), val: v})
	}
	return out, nil
}

func get(ms []member, key string) (json.RawMessage, bool) {
	for _, m := range ms {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// writeObject writes the members named by order first (null for a missing
// one unless it is in optional), then every other member in its original
// order: pydantic's model_dump of a model with extra="allow".
func writeObject(b *bytes.Buffer, ms []member, order []string, optional map[string]bool, override map[string]json.RawMessage) {
	b.WriteByte('{')
	n := 0
	field := func(k string, v json.RawMessage) {
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(v)
	}
	declared := map[string]bool{}
	for _, k := range order {
		declared[k] = true
		v, ok := override[k]
		if !ok {
			v, ok = get(ms, k)
		}
		switch {
		case ok:
			field(k, v)
		case !optional[k]:
			field(k, json.RawMessage("null"))
		}
	}
	for _, m := range ms {
		if !declared[m.key] {
			field(m.key, m.val)
		}
	}
	b.WriteByte('}')
}

// normalizeTools returns tools as vLLM hands them to the chat template:
// [tool.model_dump() for tool in request.tools], each a
// ChatCompletionToolsParam {type, function} whose function is a
// FunctionDefinition {name, description, parameters} with the fields vLLM
// declares first, in its order, unset ones as null (defer_loading only when
// set), then any extra keys in the order sent. Values are kept as sent.
func normalizeTools(raw json.RawMessage) (json.RawMessage, error) {
	var tools []json.RawMessage
	if err := json.Unmarshal(raw, &tools); err != nil {
		return nil, invalid("tools must be a list of tool objects")
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, t := range tools {
		tm, err := members(t)
		if err != nil {
			return nil, invalid("tools[%d]: %v", i, err)
		}
		fn, ok := get(tm, "function")
		if !ok {
			return nil, invalid("tools[%d]: function is required", i)
		}
		fm, err := members(fn)
		if err != nil {
			return nil, invalid("tools[%d].function: %v", i, err)
		}
		if name, ok := get(fm, "name"); !ok || len(name) == 0 || name[0] != '"' {
			return nil, invalid("tools[%d].function.name must be a string", i)
		}
		var fb bytes.Buffer
		writeObject(&fb, fm, []string{"name", "description", "parameters", "defer_loading"}, map[string]bool{"defer_loading": true}, nil)
		if i > 0 {
			b.WriteByte(',')
		}
		override := map[string]json.RawMessage{"function": fb.Bytes()}
		if _, ok := get(tm, "type"); !ok {
			override["type"] = json.RawMessage(`"function"`)
		}
		writeObject(&b, tm, []string{"type", "function"}, nil, override)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}
