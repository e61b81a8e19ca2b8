package jinja

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

type testFunc func(v any, args []any) (bool, error)

var tests map[string]testFunc

func init() {
	cmp := func(op string) testFunc {
		return func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, errors.New("comparison test takes one argument")
			}
			return compareOp(op, v, args[0])
		}
	}
	is := func(f func(any) bool) testFunc { return func(v any, _ []any) (bool, error) { return f(v), nil } }
	tests = map[string]testFunc{
		"defined":   is(func(v any) bool { return !isUndefined(v) }),
		"undefined": is(isUndefined),
		"none":      is(func(v any) bool { return v == nil }),
		"boolean":   is(func(v any) bool { _, ok := v.(bool); return ok }),
		"true":      is(func(v any) bool { b, ok := v.(bool); return ok && b }),
		"false":     is(func(v any) bool { b, ok := v.(bool); return ok && !b }),
		"integer":   is(func(v any) bool { _, ok := v.(int64); return ok }),
		"float":     is(func(v any) bool { _, ok := v.(float64); return ok }),
		"number":    is(func(v any) bool { _, ok := number(v); return ok }),
		"string": is(func(v any) bool {
			switch v.(type) {
			case string, Markup:
				return true
			}
			return false
		}),
		"mapping": is(func(v any) bool { _, ok := v.(*Dict); return ok }),
		"sequence": is(func(v any) bool {
			switch v.(type) {
			case string, []any, Tuple, *Dict, Undefined:
				return true
			}
			return false
		}),
		"iterable": is(func(v any) bool {
			switch v.(type) {
			case string, []any, Tuple, *Dict, dictItems, generator, Undefined:
				return true
			}
			return false
		}),
		"callable": is(func(v any) bool {
			switch v.(type) {
			case Callable, *macro:
				return true
			}
			return false
		}),
		"lower": is(func(v any) bool {
			s, ok := plain(v).(string)
			return ok && s == strings.ToLower(s) && strings.IndexFunc(s, isCased) >= 0
		}),
		"upper": is(func(v any) bool {
			s, ok := plain(v).(string)
			return ok && s == strings.ToUpper(s) && strings.IndexFunc(s, isCased) >= 0
		}),
		"odd": func(v any, _ []any) (bool, error) {
			n, ok := integer(v)
			if !ok {
				return false, fmt.Errorf("odd: %s is not an integer", typeName(v))
			}
			return n%2 != 0, nil
		},
		"even": func(v any, _ []any) (bool, error) {
			n, ok := integer(v)
			if !ok {
				return false, fmt.Errorf("even: %s is not an integer", typeName(v))
			}
			return n%2 == 0, nil
		},
		"divisibleby": func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, errors.New("divisibleby takes one argument")
			}
			m, err := arith("%", v, args[0])
			if err != nil {
				return false, err
			}
			return equal(m, int64(0)), nil
		},
		"in": func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, errors.New("in takes one argument")
			}
			return containsValue(args[0], v)
		},
		"sameas": func(v any, args []any) (bool, error) {
			if len(args) != 1 {
				return false, errors.New("sameas takes one argument")
			}
			switch v.(type) {
			case nil, bool:
				return v == args[0], nil
			}
			return false, &UnsupportedError{What: "sameas test on " + typeName(v)}
		},
		"eq": cmp("=="), "equalto": cmp("=="), "==": cmp("=="),
		"ne": cmp("!="), "!=": cmp("!="),
		"lt": cmp("<"), "lessthan": cmp("<"), "<": cmp("<"),
		"le": cmp("<="), "<=": cmp("<="),
		"gt": cmp(">"), "greaterthan": cmp(">"), ">": cmp(">"),
		"ge": cmp(">="), ">=": cmp(">="),
	}
	_ = unicode.IsUpper
}

// globals are the functions every template sees.
func globals() map[string]any { return globalVars }

var globalVars = map[string]any{
	"range":           Callable(builtinRange),
	"dict":            Callable(builtinDict),
	"namespace":       Callable(builtinNamespace),
	"raise_exception": Callable(builtinRaise),
	"cycler":          unsupportedGlobal("cycler"),
	"joiner":          unsupportedGlobal("joiner"),
	"lipsum":          unsupportedGlobal("lipsum"),
}

func unsupportedGlobal(name string) Callable {
	return func(*renderer, []any, *Dict) (any, error) {
		return nil, &UnsupportedError{What: name + "()"}
	}
}

// Func makes a template-callable function from Go.
func Func(f func(args []any, kw *Dict) (any, error)) Callable {
	return func(_ *renderer, args []any, kw *Dict) (any, error) { return f(args, kw) }
}

func builtinRange(_ *renderer, args []any, _ *Dict) (any, error) {
	var nums [3]int64
	for i, a := range args {
		if i >= 3 {
			return nil, errors.New("range expected at most 3 arguments")
		}
		n, ok := integer(a)
		if !ok {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(a))
		}
		nums[i] = n
	}
	start, stop, step := int64(0), int64(0), int64(1)
	switch len(args) {
	case 0:
		return nil, errors.New("range expected at least 1 argument")
	case 1:
		stop = nums[0]
	case 2:
		start, stop = nums[0], nums[1]
	default:
		start, stop, step = nums[0], nums[1], nums[2]
	}
	if step == 0 {
		return nil, errors.New("range() arg 3 must not be zero")
	}
	out := []any{}
	for i := start; step > 0 && i < stop || step < 0 && i > stop; i += step {
		if len(out) >= 100000 {
			return nil, errors.New("range too big")
		}
		out = append(out, i)
	}
	return out, nil
}

func builtinDict(_ *renderer, args []any, kw *Dict) (any, error) {
	d := NewDict(kw.Len())
	if len(args) > 0 {
		return nil, &UnsupportedError{What: "dict() with positional arguments"}
	}
	for _, e := range kw.all() {
		d.Set(e.key, e.val)
	}
	return d, nil
}

func builtinNamespace(_ *renderer, args []any, kw *Dict) (any, error) {
	ns := &Namespace{d: NewDict(kw.Len())}
	for _, a := range args {
		src, ok := a.(*Dict)
		if !ok {
			return nil, &UnsupportedError{What: "namespace() with a non-dict positional argument"}
		}
		for _, e := range src.entries {
			ns.d.Set(e.key, e.val)
		}
	}
	for _, e := range kw.all() {
		ns.d.Set(e.key, e.val)
	}
	return ns, nil
}

func builtinRaise(_ *renderer, args []any, _ *Dict) (any, error) {
	msg := ""
	if len(args) > 0 {
		msg = str(args[0])
	}
	return nil, &RaisedError{Msg: msg}
}
