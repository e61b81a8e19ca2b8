package jinja

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Values are Go values standing for Python's:
//
//	nil          None
//	Undefined    jinja2.Undefined (a missing variable, attribute or key)
//	bool         bool
//	int64        int
//	float64      float
//	string       str
//	[]any        list
//	Tuple        tuple
//	*Dict        dict (insertion-ordered)
//	*Namespace   namespace()
//	Callable     functions, methods and macros
type (
	// Undefined is a missing name, attribute or item; it renders as "".
	Undefined struct {
		Name string
		at   expr // the expression that produced it, named in errors
	}
	// Tuple is a Python tuple.
	Tuple []any
	// dictItems is what dict.items() returns.
	dictItems []any
	// Namespace is the mutable object namespace() returns.
	Namespace struct{ d *Dict }
	// Callable is a function the template can call.
	Callable func(r *renderer, args []any, kw *Dict) (any, error)
)

// Dict is an insertion-ordered dictionary, as Python's dicts are.
type Dict struct {
	entries []entry
}

type entry struct {
	key, val any
}

// NewDict returns an empty Dict with room for n entries.
func NewDict(n int) *Dict { return &Dict{entries: make([]entry, 0, n)} }

// Len is the number of entries.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.entries)
}

// Get returns the value under key.
func (d *Dict) Get(key any) (any, bool) {
	if d == nil {
		return nil, false
	}
	if s, ok := key.(string); ok {
		for i := range d.entries {
			if ks, ok := d.entries[i].key.(string); ok && ks == s {
				return d.entries[i].val, true
			}
		}
		return nil, false
	}
	for i := range d.entries {
		if equal(d.entries[i].key, key) {
			return d.entries[i].val, true
		}
	}
	return nil, false
}

// Set adds or replaces key's value, keeping the key's first position.
func (d *Dict) Set(key, val any) {
	for i := range d.entries {
		if equal(d.entries[i].key, key) {
			d.entries[i].val = val
			return
		}
	}
	d.entries = append(d.entries, entry{key, val})
}

// Keys returns the keys in order.
func (d *Dict) Keys() []any {
	if d == nil {
		return nil
	}
	out := make([]any, len(d.entries))
	for i, e := range d.entries {
		out[i] = e.key
	}
	return out
}

// Values returns the values in key order.
func (d *Dict) Values() []any {
	if d == nil {
		return nil
	}
	out := make([]any, len(d.entries))
	for i, e := range d.entries {
		out[i] = e.val
	}
	return out
}

// all returns the entries; a nil Dict has none.
func (d *Dict) all() []entry {
	if d == nil {
		return nil
	}
	return d.entries
}

// Each calls f for every entry in order.
func (d *Dict) Each(f func(key, val any)) {
	if d == nil {
		return
	}
	for _, e := range d.entries {
		f(e.key, e.val)
	}
}

// undefinedAt is the undefined result of the lookup at (or of name when
// the lookup has no expression); describing at is left to the error path.
func undefinedAt(at expr, name string) Undefined { return Undefined{Name: name, at: at} }

func isUndefined(v any) bool { _, ok := v.(Undefined); return ok }

// truth is Python's bool(v).
func truth(v any) bool {
	switch t := v.(type) {
	case Markup:
		return t != ""
	case nil, Undefined:
		return false
	case bool:
		return t
	case int64:
		return t != 0
	case float64:
		return t != 0
	case string:
		return t != ""
	case []any:
		return len(t) > 0
	case Tuple:
		return len(t) > 0
	case dictItems:
		return len(t) > 0
	case *Dict:
		return t.Len() > 0
	}
	return true
}

// typeName is Python's type(v).__name__.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case Undefined:
		return "Undefined"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case Markup:
		return "Markup"
	case []any:
		return "list"
	case Tuple:
		return "tuple"
	case dictItems:
		return "dict_items"
	case generator:
		return "generator"
	case *Dict:
		return "dict"
	case *Namespace:
		return "Namespace"
	case Callable, *macro:
		return "function"
	}
	return fmt.Sprintf("%T", v)
}

// str is Python's str(v) as Jinja2 prints it.
func str(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case Markup:
		return string(t)
	case Undefined:
		return ""
	}
	return repr(v)
}

// repr is Python's repr(v).
func repr(v any) string {
	var b strings.Builder
	writeRepr(&b, v)
	return b.String()
}

func writeRepr(b *strings.Builder, v any) {
	switch t := v.(type) {
	case nil:
		b.WriteString("None")
	case Undefined:
		b.WriteString("")
	case bool:
		if t {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case int64:
		b.WriteString(strconv.FormatInt(t, 10))
	case float64:
		b.WriteString(pyFloatRepr(t))
	case string:
		writeStrRepr(b, t)
	case Markup:
		b.WriteString("Markup(")
		writeStrRepr(b, string(t))
		b.WriteByte(')')
	case []any:
		writeSeqRepr(b, "[", "]", t)
	case Tuple:
		if len(t) == 1 {
			b.WriteByte('(')
			writeRepr(b, t[0])
			b.WriteString(",)")
			return
		}
		writeSeqRepr(b, "(", ")", t)
	case dictItems:
		b.WriteString("dict_items(")
		writeSeqRepr(b, "[", "]", t)
		b.WriteByte(')')
	case *Dict:
		b.WriteByte('{')
		for i, e := range t.entries {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e.key)
			b.WriteString(": ")
			writeRepr(b, e.val)
		}
		b.WriteByte('}')
	case *Namespace:
		b.WriteString("<Namespace ")
		writeRepr(b, t.d)
		b.WriteByte('>')
	default:
		fmt.Fprintf(b, "<%s>", typeName(v))
	}
}

func writeSeqRepr(b *strings.Builder, open, close string, items []any) {
	b.WriteString(open)
	for i, e := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		writeRepr(b, e)
	}
	b.WriteString(close)
}

// writeStrRepr quotes s as Python's repr: single quotes unless s has a
// single quote and no double quote.
func writeStrRepr(b *strings.Builder, s string) {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\x%02x`, r)
		case r >= 0x80 && r < 0xa0 || r == 0xad:
			fmt.Fprintf(b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
}

// pyFloatRepr formats f as Python's repr(float).
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return pyFloatDigits(f)
}

// pyFloatDigits is the shortest round-trip form in Python's layout:
// exponent form below 1e-4 and from 1e16, "x.0" for integral values.
func pyFloatDigits(f float64) string {
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// Go writes e+16 / e-05; Python writes e+16 / e-05 as well.
		return s
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// number returns v as a float and whether it is a number (bools count,
// as in Python).
func number(v any) (float64, bool) {
	switch t := v.(type) {
	case int64:
		return float64(t), true
	case float64:
		return t, true
	case bool:
		if t {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func integer(v any) (int64, bool) {
	switch t := v.(type) {
	case int64:
		return t, true
	case bool:
		if t {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// equal is Python's ==.
func equal(a, b any) bool {
	a, b = plain(a), plain(b)
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case nil:
		return b == nil
	case Undefined:
		return isUndefined(b)
	case int64, float64, bool:
		fa, _ := number(a)
		fb, ok := number(b)
		if !ok {
			return false
		}
		ia, aInt := integer(a)
		ib, bInt := integer(b)
		if aInt && bInt {
			return ia == ib
		}
		return fa == fb
	case []any:
		y, ok := b.([]any)
		return ok && seqEqual(x, y)
	case Tuple:
		y, ok := b.(Tuple)
		return ok && seqEqual(x, y)
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for _, e := range x.entries {
			v, ok := y.Get(e.key)
			if !ok || !equal(e.val, v) {
				return false
			}
		}
		return true
	case *Namespace:
		return a == b
	}
	return false
}

func seqEqual(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// compare is Python's ordering for numbers, strings and sequences.
func compare(a, b any) (int, error) {
	a, b = plain(a), plain(b)
	if fa, ok := number(a); ok {
		if fb, ok := number(b); ok {
			ia, aInt := integer(a)
			ib, bInt := integer(b)
			switch {
			case aInt && bInt:
				return cmpOrdered(ia, ib), nil
			case fa < fb:
				return -1, nil
			case fa > fb:
				return 1, nil
			}
			return 0, nil
		}
	}
	if sa, ok := a.(string); ok {
		if sb, ok := b.(string); ok {
			return strings.Compare(sa, sb), nil
		}
	}
	la, aSeq := seqOf(a)
	lb, bSeq := seqOf(b)
	if aSeq && bSeq && typeName(a) == typeName(b) {
		for i := 0; i < len(la) && i < len(lb); i++ {
			if equal(la[i], lb[i]) {
				continue
			}
			return compare(la[i], lb[i])
		}
		return cmpOrdered(len(la), len(lb)), nil
	}
	return 0, fmt.Errorf("'<' not supported between instances of '%s' and '%s'", typeName(a), typeName(b))
}

func cmpOrdered[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// seqOf returns a list or tuple's items.
func seqOf(v any) ([]any, bool) {
	switch t := v.(type) {
	case []any:
		return t, true
	case Tuple:
		return t, true
	case dictItems:
		return t, true
	}
	return nil, false
}

// iterate returns what "for x in v" visits: list and tuple items, dict
// keys, a string's characters; undefined is empty.
func iterate(v any) ([]any, error) {
	switch t := plain(v).(type) {
	case []any:
		return t, nil
	case Tuple:
		return t, nil
	case dictItems:
		return t, nil
	case generator:
		return t, nil
	case *Dict:
		return t.Keys(), nil
	case string:
		out := make([]any, 0, len(t))
		for _, r := range t {
			out = append(out, string(r))
		}
		return out, nil
	case Undefined:
		return nil, nil
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}

// length is Python's len(v).
func length(v any) (int, error) {
	v = plain(v)
	switch t := v.(type) {
	case string:
		return strings.Count(t, "") - 1, nil
	case *Dict:
		return t.Len(), nil
	case Undefined:
		return 0, nil
	}
	if s, ok := seqOf(v); ok {
		return len(s), nil
	}
	return 0, fmt.Errorf("object of type '%s' has no len()", typeName(v))
}

// contains is Python's "item in container".
func containsValue(container, item any) (bool, error) {
	container, item = plain(container), plain(item)
	switch t := container.(type) {
	case string:
		s, ok := item.(string)
		if !ok {
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(item))
		}
		return strings.Contains(t, s), nil
	case *Dict:
		_, ok := t.Get(item)
		return ok, nil
	case Undefined:
		return false, nil
	}
	if g, ok := container.(generator); ok {
		container = []any(g)
	}
	if s, ok := seqOf(container); ok {
		for _, e := range s {
			if equal(e, item) {
				return true, nil
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(container))
}

// sortValues sorts in place with Python's ordering, stably.
func sortValues(items []any, key func(any) any, reverse bool) error {
	var err error
	sort.SliceStable(items, func(i, j int) bool {
		a, b := key(items[i]), key(items[j])
		if reverse {
			a, b = b, a
		}
		c, e := compare(a, b)
		if e != nil && err == nil {
			err = e
		}
		return c < 0
	})
	return err
}
