package hf

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// jsonScanner reads the two big parts of tokenizer.json, the vocabulary
// and the merges, several times faster than encoding/json's reflection,
// which dominated load time (Gemma-3 has 262k tokens and 515k merges). The
// input has already been validated by encoding/json; the scanner still
// checks every step and returns errors, never panics.
type jsonScanner struct {
	s []byte
	i int
}

func (p *jsonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jsonScanner) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (p *jsonScanner) peek() byte {
	p.skipSpace()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *jsonScanner) expect(c byte) error {
	if p.peek() != c {
		return p.errorf("want %q", c)
	}
	p.i++
	return nil
}

func (p *jsonScanner) str() (string, error) {
	p.skipSpace()
	start := p.i
	escaped, err := p.skipString()
	if err != nil {
		return "", err
	}
	if !escaped {
		return string(p.s[start+1 : p.i-1]), nil
	}
	var out string
	if err := json.Unmarshal(p.s[start:p.i], &out); err != nil {
		return "", p.errorf("%v", err)
	}
	return out, nil
}

func (p *jsonScanner) uint32() (uint32, error) {
	p.skipSpace()
	start := p.i
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
	}
	n, err := strconv.ParseUint(string(p.s[start:p.i]), 10, 32)
	if err != nil {
		return 0, p.errorf("want a token ID: %v", err)
	}
	return uint32(n), nil
}

// list calls item for each element of a JSON array or object (open is '['
// or '{').
func (p *jsonScanner) list(open, close byte, item func() error) error {
	if err := p.expect(open); err != nil {
		return err
	}
	if p.peek() == close {
		p.i++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case close:
			p.i++
			return nil
		default:
			return p.errorf("want ',' or %q", close)
		}
	}
}

// members calls value for each member of a JSON object, positioned at the
// member's value.
func (p *jsonScanner) members(value func(key string) error) error {
	return p.list('{', '}', func() error {
		k, err := p.str()
		if err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		return value(k)
	})
}

func parseVocab(raw json.RawMessage) (map[string]uint32, error) {
	if isNull(raw) {
		return map[string]uint32{}, nil
	}
	p := &jsonScanner{s: raw}
	vocab := make(map[string]uint32, len(raw)/16)
	err := p.members(func(k string) error {
		v, err := p.uint32()
		if err != nil {
			return err
		}
		vocab[k] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("model.vocab: %w", err)
	}
	return vocab, nil
}

// maxJSONDepth bounds nesting so that a hostile file cannot exhaust the
// stack.
const maxJSONDepth = 256

// skipString moves past a JSON string and tells whether it holds escapes.
func (p *jsonScanner) skipString() (escaped bool, err error) {
	if err := p.expect('"'); err != nil {
		return false, err
	}
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '\\':
			escaped = true
			p.i += 2
			continue
		case '"':
			p.i++
			return escaped, nil
		}
		p.i++
	}
	return false, p.errorf("unterminated string")
}

// skipValue moves past one JSON value.
func (p *jsonScanner) skipValue(depth int) error {
	if depth > maxJSONDepth {
		return p.errorf("nesting deeper than %d", maxJSONDepth)
	}
	switch p.peek() {
	case '"':
		_, err := p.skipString()
		return err
	case '{':
		return p.list('{', '}', func() error {
			if _, err := p.skipString(); err != nil {
				return err
			}
			if err := p.expect(':'); err != nil {
				return err
			}
			return p.skipValue(depth + 1)
		})
	case '[':
		return p.list('[', ']', func() error { return p.skipValue(depth + 1) })
	}
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E') {
			break
		}
		p.i++
	}
	if p.i == start {
		return p.errorf("want a JSON value")
	}
	return nil
}

// rawObject splits a JSON object into its members, unparsed; a repeated
// key keeps its last value, as encoding/json does.
func rawObject(data []byte) (map[string]json.RawMessage, error) {
	p := &jsonScanner{s: data}
	out := map[string]json.RawMessage{}
	err := p.members(func(k string) error {
		p.skipSpace()
		start := p.i
		if err := p.skipValue(1); err != nil {
			return err
		}
		out[k] = data[start:p.i]
		return nil
	})
	if err != nil {
		return nil, err
	}
	if p.peek() != 0 {
		return nil, p.errorf("trailing data after the JSON object")
	}
	return out, nil
}

// decodeMembers fills dst (a struct pointer) from the members of raw other
// than skip, through encoding/json, and returns the skipped members raw.
func decodeMembers(raw json.RawMessage, dst any, skip ...string) (map[string]json.RawMessage, error) {
	members, err := rawObject(raw)
	if err != nil {
		return nil, err
	}
	kept := map[string]json.RawMessage{}
	for _, k := range skip {
		if v, ok := members[k]; ok {
			kept[k] = v
			delete(members, k)
		}
	}
	rest, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(rest, dst); err != nil {
		return nil, err
	}
	return kept, nil
}
