package tokenization

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// object is a JSON object that keeps its key order, as Python dicts do;
// templates iterate tool schemas with .items() and tojson prints them.
type object struct {
	keys []string
	vals []any
}

func (o *object) get(key string) (any, bool) {
	for i, k := range o.keys {
		if k == key {
			return o.vals[i], true
		}
	}
	return nil, false
}

func (o *object) set(key string, v any) {
	for i, k := range o.keys {
		if k == key {
			o.vals[i] = v
			return
		}
	}
	o.keys = append(o.keys, key)
	o.vals = append(o.vals, v)
}

// decodeJSON decodes one JSON value into objects, []any, string, bool, nil,
// int64 (integer literals) and float64 (the rest), as Python's json does.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &object{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				o.set(kt.(string), v)
			}
			_, err := dec.Token()
			return o, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		s := t.String()
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, nil
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return tok, nil // string, bool or nil
}

// toGonja converts a decoded JSON value into gonja's values: objects become
// ordered *exec.Dict.
func toGonja(v any) any {
	switch t := v.(type) {
	case *object:
		d := exec.NewDict()
		for i, k := range t.keys {
			d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(toGonja(t.vals[i]))})
		}
		return d
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = toGonja(e)
		}
		return out
	case int64:
		return int(t)
	}
	return v
}

// pyJSON writes v as Python's json.dumps(v, ensure_ascii=False,
// sort_keys=False) does: separators ", " and ": " without indent, "," and
// ": " with one, non-ASCII characters as they are.
func pyJSON(b *strings.Builder, v any, indent, depth int) error {
	switch t := v.(type) {
	case *exec.Value:
		if t == nil || !t.Val.IsValid() {
			b.WriteString("null")
			return nil
		}
		return pyJSON(b, t.Interface(), indent, depth)
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case string:
		pyString(b, t)
	case int:
		b.WriteString(strconv.Itoa(t))
	case int64:
		b.WriteString(strconv.FormatInt(t, 10))
	case float64:
		b.WriteString(pyFloat(t))
	case *exec.Dict:
		n := len(t.Pairs)
		return pyContainer(b, '{', '}', n, indent, depth, func(i int) error {
			p := t.Pairs[i]
			key := p.Key.Interface()
			if s, ok := key.(string); ok {
				pyString(b, s)
			} else {
				pyString(b, p.Key.String())
			}
			b.WriteString(": ")
			return pyJSON(b, p.Value, indent, depth+1)
		})
	case *object:
		return pyJSON(b, toGonja(t), indent, depth)
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return pyContainer(b, '{', '}', len(keys), indent, depth, func(i int) error {
			pyString(b, keys[i])
			b.WriteString(": ")
			return pyJSON(b, t[keys[i]], indent, depth+1)
		})
	case []any:
		return pyContainer(b, '[', ']', len(t), indent, depth, func(i int) error {
			return pyJSON(b, t[i], indent, depth+1)
		})
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Slice, reflect.Array:
			return pyContainer(b, '[', ']', rv.Len(), indent, depth, func(i int) error {
				return pyJSON(b, rv.Index(i).Interface(), indent, depth+1)
			})
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			b.WriteString(fmt.Sprint(v))
			return nil
		case reflect.Float32:
			b.WriteString(pyFloat(rv.Float()))
			return nil
		case reflect.Pointer:
			if rv.IsNil() {
				b.WriteString("null")
				return nil
			}
			return pyJSON(b, rv.Elem().Interface(), indent, depth)
		case reflect.Map:
			m := map[string]any{}
			for _, k := range rv.MapKeys() {
				m[fmt.Sprint(k.Interface())] = rv.MapIndex(k).Interface()
			}
			return pyJSON(b, m, indent, depth)
		}
		return fmt.Errorf("tojson: cannot encode %T", v)
	}
	return nil
}

func pyContainer(b *strings.Builder, open, close byte, n, indent, depth int, item func(int) error) error {
	b.WriteByte(open)
	if n == 0 {
		b.WriteByte(close)
		return nil
	}
	for i := range n {
		if i > 0 {
			if indent >= 0 {
				b.WriteByte(',')
			} else {
				b.WriteString(", ")
			}
		}
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*(depth+1)))
		}
		if err := item(i); err != nil {
			return err
		}
	}
	if indent >= 0 {
		b.WriteByte('\n')
		b.WriteString(strings.Repeat(" ", indent*depth))
	}
	b.WriteByte(close)
	return nil
}

func pyString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// pyFloat formats f as Python's float repr.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		return s
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}
