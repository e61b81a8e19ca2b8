package jinja

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pyStrMethods are all of Python's str methods: the ones not implemented
// below fail loudly instead of rendering as undefined.
var pyStrMethods = strings.Fields(`capitalize casefold center count encode endswith expandtabs find format
	format_map index isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric isprintable
	isspace istitle isupper join ljust lower lstrip maketrans partition removeprefix removesuffix replace
	rfind rindex rjust rpartition rsplit rstrip split splitlines startswith strip swapcase title translate
	upper zfill`)

var pyListMethods = strings.Fields(`append clear copy count extend index insert pop remove reverse sort`)
var pyDictMethods = strings.Fields(`clear copy fromkeys get items keys pop popitem setdefault update values`)

func unsupportedMethod(typ, name string) error {
	return &UnsupportedError{What: fmt.Sprintf("%s method '%s'", typ, name)}
}

func unsafeMethod(typ, name string) error {
	return fmt.Errorf("access to attribute '%s' of '%s' object is unsafe (immutable sandbox)", name, typ)
}

// getAttr is Jinja2's obj.name: an attribute (method) first, then an
// item.
func getAttr(obj any, name string, at expr) (any, error) {
	switch t := obj.(type) {
	case Undefined:
		return nil, undefinedErr(t)
	case *loop:
		if v, ok := t.attr(name); ok {
			return v, nil
		}
		if name == "changed" {
			return nil, &UnsupportedError{What: "loop.changed"}
		}
		return undefinedAt(at, name), nil
	case *Namespace:
		if v, ok := t.d.Get(name); ok {
			return v, nil
		}
		return undefinedAt(at, name), nil
	case *Dict:
		if m, ok := dictMethod(t, name); ok {
			return m, nil
		}
		if contains(pyDictMethods, name) {
			return nil, unsafeMethod("dict", name)
		}
		if v, ok := t.Get(name); ok {
			return v, nil
		}
	case Markup:
		if m, ok, err := markupMethod(t, name); ok || err != nil {
			return m, err
		}
	case string:
		if m, ok := strMethod(t, name); ok {
			return m, nil
		}
		if contains(pyStrMethods, name) {
			return nil, unsupportedMethod("str", name)
		}
	case []any, Tuple:
		if name == "index" || name == "count" {
			items, _ := seqOf(t)
			return Callable(func(_ *renderer, args []any, _ *Dict) (any, error) {
				if len(args) != 1 {
					return nil, fmt.Errorf("%s() takes exactly one argument", name)
				}
				n := int64(0)
				for i, e := range items {
					if equal(e, args[0]) {
						if name == "index" {
							return int64(i), nil
						}
						n++
					}
				}
				if name == "index" {
					return nil, fmt.Errorf("%s is not in list", repr(args[0]))
				}
				return n, nil
			}), nil
		}
		if _, isList := t.([]any); isList && contains(pyListMethods, name) {
			if name == "copy" {
				return nil, unsupportedMethod("list", name)
			}
			return nil, unsafeMethod("list", name)
		}
	}
	return undefinedAt(at, name), nil
}

// getItem is Jinja2's obj[key]: an item first, then an attribute.
func getItem(obj any, key any, at expr) (any, error) {
	if m, ok := obj.(Markup); ok {
		if _, isInt := integer(key); isInt {
			v, err := getItem(string(m), key, at)
			if s, isStr := v.(string); isStr {
				return Markup(s), err // markupsafe's indexing keeps Markup
			}
			return v, err
		}
	}
	key = plain(key)
	switch t := obj.(type) {
	case Undefined:
		return nil, undefinedErr(t)
	case *Dict:
		if v, ok := t.Get(key); ok {
			return v, nil
		}
	case string:
		if i, ok := integer(key); ok {
			runes := []rune(t)
			if i < 0 {
				i += int64(len(runes))
			}
			if i >= 0 && i < int64(len(runes)) {
				return string(runes[i]), nil
			}
			return undefinedAt(at, keyName(key)), nil
		}
	case *Namespace, *loop:
		if s, ok := key.(string); ok {
			return getAttr(obj, s, at)
		}
	default:
		if items, ok := seqOf(obj); ok {
			if i, ok := integer(key); ok {
				if i < 0 {
					i += int64(len(items))
				}
				if i >= 0 && i < int64(len(items)) {
					return items[i], nil
				}
				return undefinedAt(at, keyName(key)), nil
			}
		}
	}
	if s, ok := key.(string); ok {
		return getAttr(obj, s, at)
	}
	return undefinedAt(at, keyName(key)), nil
}

func argN(name string, args []any, min, max int) error {
	if len(args) < min || len(args) > max {
		return fmt.Errorf("%s() takes %d to %d arguments (%d given)", name, min, max, len(args))
	}
	return nil
}

func dictMethod(d *Dict, name string) (Callable, bool) {
	switch name {
	case "items":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			out := make(dictItems, len(d.entries))
			for i, e := range d.entries {
				out[i] = Tuple{e.key, e.val}
			}
			return out, nil
		}, true
	case "keys":
		return func(_ *renderer, args []any, _ *Dict) (any, error) { return d.Keys(), nil }, true
	case "values":
		return func(_ *renderer, args []any, _ *Dict) (any, error) { return d.Values(), nil }, true
	case "get":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			if err := argN("get", args, 1, 2); err != nil {
				return nil, err
			}
			if v, ok := d.Get(args[0]); ok {
				return v, nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return nil, nil
		}, true
	}
	return nil, false
}

func optChars(name string, args []any) (string, bool, error) {
	if err := argN(name, args, 0, 1); err != nil {
		return "", false, err
	}
	if len(args) == 0 || args[0] == nil {
		return "", false, nil
	}
	s, ok := args[0].(string)
	if !ok {
		return "", false, fmt.Errorf("%s arg must be None or str", name)
	}
	return s, true, nil
}

func pyStrip(s, chars string, hasChars, left, right bool) string {
	f := isSpace
	if hasChars {
		f = func(r rune) bool { return strings.ContainsRune(chars, r) }
	}
	if left {
		s = strings.TrimLeftFunc(s, f)
	}
	if right {
		s = strings.TrimRightFunc(s, f)
	}
	return s
}

// strMethod returns the bound Python str method name of s; Markup
// arguments count as the strings they are.
func strMethod(s, name string) (Callable, bool) {
	f, ok := strMethodPlain(s, name)
	if !ok {
		return nil, false
	}
	return func(r *renderer, args []any, kw *Dict) (any, error) {
		for i, a := range args {
			args[i] = plain(a)
		}
		return f(r, args, kw)
	}, true
}

func strMethodPlain(s, name string) (Callable, bool) {
	simple := func(f func() any) Callable {
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) > 0 {
				return nil, fmt.Errorf("%s() takes no arguments", name)
			}
			return f(), nil
		}
	}
	switch name {
	case "strip", "lstrip", "rstrip":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			chars, has, err := optChars(name, args)
			return pyStrip(s, chars, has, name != "rstrip", name != "lstrip"), err
		}, true
	case "upper", "lower", "title", "capitalize":
		conv := map[string]func(string) (string, error){"upper": pyUpper, "lower": pyLower, "title": pyTitle, "capitalize": pyCapitalize}[name]
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) > 0 {
				return nil, fmt.Errorf("%s() takes no arguments", name)
			}
			return conv(s)
		}, true
	case "swapcase":
		return simple(func() any {
			return strings.Map(func(r rune) rune {
				if unicode.IsUpper(r) {
					return unicode.ToLower(r)
				}
				return unicode.ToUpper(r)
			}, s)
		}), true
	case "isdigit", "isdecimal", "isnumeric":
		return simple(func() any {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) }) < 0
		}), true
	case "isalpha":
		return simple(func() any {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) }) < 0
		}), true
	case "isalnum":
		return simple(func() any {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) < 0
		}), true
	case "isspace":
		return simple(func() any { return s != "" && strings.IndexFunc(s, func(r rune) bool { return !isSpace(r) }) < 0 }), true
	case "isupper", "islower":
		return simple(func() any {
			cased := false
			for _, r := range s {
				if unicode.IsUpper(r) || unicode.IsTitle(r) {
					if name == "islower" {
						return false
					}
					cased = true
				} else if unicode.IsLower(r) {
					if name == "isupper" {
						return false
					}
					cased = true
				}
			}
			return cased
		}), true
	case "splitlines":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) > 0 {
				return nil, unsupportedMethod("str", "splitlines(keepends)")
			}
			lines := pySplitLines(s)
			out := make([]any, len(lines))
			for i, l := range lines {
				out[i] = l
			}
			return out, nil
		}, true
	case "startswith", "endswith":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) != 1 {
				return nil, unsupportedMethod("str", name+" with start/end")
			}
			var cands []any
			switch a := args[0].(type) {
			case string:
				cands = []any{a}
			case Tuple:
				cands = a
			default:
				return nil, fmt.Errorf("%s first arg must be str or a tuple of str, not %s", name, typeName(a))
			}
			for _, c := range cands {
				cs, ok := c.(string)
				if !ok {
					return nil, fmt.Errorf("tuple for %s must only contain str", name)
				}
				if name == "startswith" && strings.HasPrefix(s, cs) || name == "endswith" && strings.HasSuffix(s, cs) {
					return true, nil
				}
			}
			return false, nil
		}, true
	case "removeprefix", "removesuffix":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			a, ok := oneString(args)
			if !ok {
				return nil, fmt.Errorf("%s() takes one str argument", name)
			}
			if name == "removeprefix" {
				return strings.TrimPrefix(s, a), nil
			}
			return strings.TrimSuffix(s, a), nil
		}, true
	case "find", "rfind", "index", "rindex", "count":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			a, ok := oneString(args)
			if !ok {
				return nil, unsupportedMethod("str", name+" with start/end")
			}
			var i int
			switch name {
			case "count":
				return int64(strings.Count(s, a)), nil
			case "find", "index":
				i = strings.Index(s, a)
			default:
				i = strings.LastIndex(s, a)
			}
			if i < 0 {
				if name == "index" || name == "rindex" {
					return nil, errors.New("substring not found")
				}
				return int64(-1), nil
			}
			return int64(utf8.RuneCountInString(s[:i])), nil
		}, true
	case "replace":
		return func(_ *renderer, args []any, kw *Dict) (any, error) {
			if err := argN("replace", args, 2, 3); err != nil {
				return nil, err
			}
			old, ok1 := args[0].(string)
			repl, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return nil, errors.New("replace() arguments must be str")
			}
			n := int64(-1)
			if len(args) == 3 {
				var ok bool
				if n, ok = integer(args[2]); !ok {
					return nil, errors.New("replace() count must be an integer")
				}
			}
			return strings.Replace(s, old, repl, int(n)), nil
		}, true
	case "split", "rsplit":
		return func(_ *renderer, args []any, kw *Dict) (any, error) {
			if err := argN(name, args, 0, 2); err != nil {
				return nil, err
			}
			var sep any
			if len(args) > 0 {
				sep = args[0]
			}
			if v, ok := kw.Get("sep"); ok {
				sep = v
			}
			maxsplit := int64(-1)
			if len(args) > 1 {
				maxsplit, _ = integer(args[1])
			}
			if v, ok := kw.Get("maxsplit"); ok {
				maxsplit, _ = integer(v)
			}
			return pySplit(s, sep, int(maxsplit), name == "rsplit")
		}, true
	case "join":
		return func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) != 1 {
				return nil, errors.New("join() takes exactly one argument")
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(items))
			for i, it := range items {
				p, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("sequence item %d: expected str instance, %s found", i, typeName(it))
				}
				parts[i] = p
			}
			return strings.Join(parts, s), nil
		}, true
	}
	return nil, false
}

func oneString(args []any) (string, bool) {
	if len(args) != 1 {
		return "", false
	}
	s, ok := args[0].(string)
	return s, ok
}

// pySplit is Python's str.split and str.rsplit.
func pySplit(s string, sep any, maxsplit int, right bool) (any, error) {
	var parts []string
	switch sp := sep.(type) {
	case nil:
		fields := strings.FieldsFunc(s, isSpace)
		if maxsplit >= 0 && len(fields) > maxsplit+1 {
			// Keep the remainder unsplit, with its inner whitespace.
			if right {
				rest := s
				var tail []string
				for i := 0; i < maxsplit; i++ {
					rest = strings.TrimRightFunc(rest, isSpace)
					j := strings.LastIndexFunc(rest, isSpace)
					tail = append([]string{rest[j+1:]}, tail...)
					rest = rest[:j+1]
				}
				parts = append([]string{strings.TrimRightFunc(strings.TrimLeftFunc(rest, isSpace), isSpace)}, tail...)
			} else {
				rest := s
				for i := 0; i < maxsplit; i++ {
					rest = strings.TrimLeftFunc(rest, isSpace)
					j := strings.IndexFunc(rest, isSpace)
					parts = append(parts, rest[:j])
					rest = rest[j:]
				}
				parts = append(parts, strings.TrimLeftFunc(rest, isSpace))
			}
		} else {
			parts = fields
		}
	case string:
		if sp == "" {
			return nil, errors.New("empty separator")
		}
		switch {
		case maxsplit < 0:
			parts = strings.Split(s, sp)
		case right:
			all := strings.Split(s, sp)
			if len(all) > maxsplit+1 {
				k := len(all) - maxsplit
				parts = append([]string{strings.Join(all[:k], sp)}, all[k:]...)
			} else {
				parts = all
			}
		default:
			parts = strings.SplitN(s, sp, maxsplit+1)
		}
	default:
		return nil, fmt.Errorf("must be str or None, not %s", typeName(sep))
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

func isCased(r rune) bool { return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) }

// pyTitle is Python's str.title: a cased character after an uncased one
// is title-cased, the others lower-cased.
func pyTitle(s string) (string, error) {
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		if prevCased {
			l, err := pyLower(string(r))
			if err != nil {
				return "", err
			}
			b.WriteString(l)
		} else if err := titleRune(&b, r); err != nil {
			return "", err
		}
		prevCased = isCased(r)
	}
	return b.String(), nil
}

// pyCapitalize is Python's str.capitalize.
func pyCapitalize(s string) (string, error) {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s, nil
	}
	var b strings.Builder
	if err := titleRune(&b, r); err != nil {
		return "", err
	}
	rest, err := pyLower(s[n:])
	return b.String() + rest, err
}

// pySplitLines is Python's str.splitlines() without keepends.
func pySplitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch r {
		case '\n', '\r', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			out = append(out, s[start:i])
			if r == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				n++
			}
			start = i + n
		}
		i += n
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// keyName names a missing key for errors without allocating.
func keyName(key any) string {
	if s, ok := key.(string); ok {
		return s
	}
	return ""
}
