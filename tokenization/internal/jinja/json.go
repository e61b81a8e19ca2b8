package jinja

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// filterToJSON is transformers' tojson: json.dumps(x, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False).
func filterToJSON(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	if truth(param(args, kw, 0, "ensure_ascii", false)) {
		return nil, &UnsupportedError{What: "tojson(ensure_ascii=True)"}
	}
	j := jsonWriter{itemSep: ", ", keySep: ": "}
	switch ind := param(args, kw, 1, "indent", nil).(type) {
	case nil:
	case string:
		j.indent, j.pretty = ind, true
	default:
		n, ok := integer(ind)
		if !ok {
			return nil, fmt.Errorf("indent must be an int or a str, not %s", typeName(ind))
		}
		j.indent, j.pretty = strings.Repeat(" ", int(max(n, 0))), true
		j.itemSep = ","
	}
	if j.pretty {
		j.itemSep = ","
	}
	if seps := param(args, kw, 2, "separators", nil); seps != nil {
		s, ok := seqOf(seps)
		if !ok || len(s) != 2 {
			return nil, errors.New("separators must be a pair of strings")
		}
		j.itemSep, j.keySep = str(s[0]), str(s[1])
	}
	j.sortKeys = truth(param(args, kw, 3, "sort_keys", false))
	if err := j.write(v, 0); err != nil {
		return nil, err
	}
	return j.b.String(), nil
}

// ToJSON writes v as Python's json.dumps(v, ensure_ascii=False) does.
func ToJSON(v any) (string, error) {
	j := jsonWriter{itemSep: ", ", keySep: ": "}
	err := j.write(v, 0)
	return j.b.String(), err
}

type jsonWriter struct {
	b               strings.Builder
	indent          string
	pretty          bool
	itemSep, keySep string
	sortKeys        bool
}

func (j *jsonWriter) newline(depth int) {
	if j.pretty {
		j.b.WriteByte('\n')
		for range depth {
			j.b.WriteString(j.indent)
		}
	}
}

func (j *jsonWriter) write(v any, depth int) error {
	if depth > 500 {
		return errors.New("tojson: nesting too deep")
	}
	switch t := v.(type) {
	case nil:
		j.b.WriteString("null")
	case bool:
		j.b.WriteString(strconv.FormatBool(t))
	case int64:
		j.b.WriteString(strconv.FormatInt(t, 10))
	case float64:
		switch {
		case math.IsNaN(t):
			j.b.WriteString("NaN")
		case math.IsInf(t, 1):
			j.b.WriteString("Infinity")
		case math.IsInf(t, -1):
			j.b.WriteString("-Infinity")
		default:
			j.b.WriteString(pyFloatDigits(t))
		}
	case string:
		writeJSONString(&j.b, t)
	case Markup:
		writeJSONString(&j.b, string(t))
	case []any, Tuple:
		items, _ := seqOf(t)
		return j.seq(items, depth)
	case *Dict:
		keys, vals := t.Keys(), t.Values()
		if j.sortKeys {
			idx := make([]any, len(keys))
			for i := range keys {
				idx[i] = int64(i)
			}
			if err := sortValues(idx, func(i any) any { return keys[i.(int64)] }, false); err != nil {
				return err
			}
			sk, sv := make([]any, len(keys)), make([]any, len(keys))
			for n, i := range idx {
				sk[n], sv[n] = keys[i.(int64)], vals[i.(int64)]
			}
			keys, vals = sk, sv
		}
		j.b.WriteByte('{')
		if len(keys) == 0 {
			j.b.WriteByte('}')
			return nil
		}
		for i, k := range keys {
			if i > 0 {
				j.b.WriteString(j.itemSep)
			}
			j.newline(depth + 1)
			switch kt := k.(type) {
			case string:
				writeJSONString(&j.b, kt)
			case nil, bool, int64, float64:
				var kb jsonWriter
				_ = kb.write(kt, 0)
				writeJSONString(&j.b, kb.b.String())
			default:
				return fmt.Errorf("keys must be str, int, float, bool or None, not %s", typeName(k))
			}
			j.b.WriteString(j.keySep)
			if err := j.write(vals[i], depth+1); err != nil {
				return err
			}
		}
		j.newline(depth)
		j.b.WriteByte('}')
	default:
		return fmt.Errorf("Object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

func (j *jsonWriter) seq(items []any, depth int) error {
	j.b.WriteByte('[')
	if len(items) == 0 {
		j.b.WriteByte(']')
		return nil
	}
	for i, e := range items {
		if i > 0 {
			j.b.WriteString(j.itemSep)
		}
		j.newline(depth + 1)
		if err := j.write(e, depth+1); err != nil {
			return err
		}
	}
	j.newline(depth)
	j.b.WriteByte(']')
	return nil
}

func writeJSONString(b *strings.Builder, s string) {
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
