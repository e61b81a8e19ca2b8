package jinja

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// pyPercent is Python's "format % args" for the conversions templates
// use: s r d i f F x X o c and %%, with flags, width, precision and
// %(key)s lookups in a dict. Others are refused as unsupported.
func pyPercent(format string, args any) (string, error) {
	var list []any
	var mapping *Dict
	switch a := args.(type) {
	case Tuple:
		list = a
	case *Dict:
		mapping, list = a, []any{a}
	default:
		list = []any{a}
	}
	var b strings.Builder
	next := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(format) {
			return "", errors.New("incomplete format")
		}
		var arg any
		haveArg := false
		if format[i] == '(' {
			end := strings.IndexByte(format[i:], ')')
			if end < 0 || mapping == nil {
				return "", errors.New("format requires a mapping")
			}
			v, ok := mapping.Get(format[i+1 : i+end])
			if !ok {
				return "", fmt.Errorf("KeyError: %q", format[i+1:i+end])
			}
			arg, haveArg = v, true
			i += end + 1
		}
		start := i
		for i < len(format) && strings.IndexByte("-+ 0#", format[i]) >= 0 {
			i++
		}
		flags := format[start:i]
		start = i
		for i < len(format) && format[i] >= '0' && format[i] <= '9' {
			i++
		}
		width := format[start:i]
		prec := ""
		if i < len(format) && format[i] == '.' {
			start = i
			i++
			for i < len(format) && format[i] >= '0' && format[i] <= '9' {
				i++
			}
			prec = format[start:i]
		}
		if i >= len(format) {
			return "", errors.New("incomplete format")
		}
		verb := format[i]
		if verb == '%' {
			b.WriteByte('%')
			continue
		}
		if !haveArg {
			if next >= len(list) {
				return "", errors.New("not enough arguments for format string")
			}
			arg = list[next]
			next++
		}
		spec := "%" + flags + width + prec
		switch verb {
		case 's', 'r':
			s := str(arg)
			if verb == 'r' {
				s = repr(arg)
			}
			if strings.ContainsAny(flags, "+ 0#") {
				return "", &UnsupportedError{What: "%-format flags " + flags + " on a string"}
			}
			b.WriteString(fmt.Sprintf(spec+"s", s))
		case 'd', 'i', 'x', 'X', 'o':
			n, ok := integer(arg)
			if !ok {
				f, isFloat := arg.(float64)
				if !isFloat || verb != 'd' && verb != 'i' {
					return "", fmt.Errorf("%%%c format: a real number is required, not %s", verb, typeName(arg))
				}
				n = int64(f)
			}
			v := map[byte]string{'d': "d", 'i': "d", 'x': "x", 'X': "X", 'o': "o"}[verb]
			if strings.Contains(flags, "#") {
				return "", &UnsupportedError{What: "%-format flag #"}
			}
			b.WriteString(fmt.Sprintf(spec+v, n))
		case 'f', 'F':
			f, ok := number(arg)
			if !ok {
				return "", fmt.Errorf("must be real number, not %s", typeName(arg))
			}
			if prec == "" {
				spec += ".6"
			}
			b.WriteString(fmt.Sprintf(spec+"f", f))
		case 'c':
			switch a := arg.(type) {
			case string:
				if len([]rune(a)) != 1 {
					return "", errors.New("%c requires an int or a unicode character")
				}
				b.WriteString(a)
			default:
				n, ok := integer(a)
				if !ok {
					return "", errors.New("%c requires an int or a unicode character")
				}
				b.WriteString(string(rune(n)))
			}
		default:
			return "", &UnsupportedError{What: "%-format conversion %" + strconv.QuoteRune(rune(verb))}
		}
	}
	if mapping == nil && next < len(list) {
		return "", errors.New("not all arguments converted during string formatting")
	}
	return b.String(), nil
}

// filterFormat is Jinja2's format filter: value % args (or % kwargs).
func filterFormat(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	if len(args) > 0 && kw.Len() > 0 {
		return nil, errors.New("can't handle positional and keyword arguments at the same time")
	}
	if kw.Len() > 0 {
		return pyPercent(str(v), kw)
	}
	return pyPercent(str(v), Tuple(args))
}
