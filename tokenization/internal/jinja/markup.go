package jinja

import (
	"html"
	"strings"
)

// Markup is markupsafe's Markup: a string marked safe (by the safe or
// escape filters). Autoescaping is off in transformers' environment, so it
// prints like any string, but "+" with a plain string escapes the plain
// side, as Python does: templates that write "..."|safe + name get the
// name HTML-escaped.
type Markup string

// plain turns a Markup into its string; other values are returned as
// they are.
func plain(v any) any {
	if m, ok := v.(Markup); ok {
		return string(m)
	}
	return v
}

// escapeValue is markupsafe's escape: a Markup stays as it is, anything
// else is converted with str() and its &, <, >, ' and " escaped.
func escapeValue(v any) Markup {
	if m, ok := v.(Markup); ok {
		return m
	}
	return Markup(html.EscapeString(str(v)))
}

// markupArith is "+" and "*" when either side is a Markup.
func markupArith(op string, l, r any) (any, bool, error) {
	lm, lok := l.(Markup)
	rm, rok := r.(Markup)
	if !lok && !rok {
		return nil, false, nil
	}
	switch op {
	case "+":
		_, lstr := l.(string)
		_, rstr := r.(string)
		switch {
		case lok && (rok || rstr):
			return lm + escapeValue(r), true, nil
		case rok && lstr:
			return escapeValue(l) + rm, true, nil
		}
	case "*":
		if lok {
			if n, ok := integer(r); ok {
				return Markup(strings.Repeat(string(lm), int(max(n, 0)))), true, nil
			}
		}
		if rok {
			if n, ok := integer(l); ok {
				return Markup(strings.Repeat(string(rm), int(max(n, 0)))), true, nil
			}
		}
	case "%":
		return nil, true, &UnsupportedError{What: "% formatting of a Markup string"}
	}
	return nil, false, nil
}

// markupMethod is a str method called on a Markup, with markupsafe's
// result types: case changes and argument-less strips stay Markup, split
// gives Markup parts, join escapes its items and replace its
// replacement; methods
// returning numbers or booleans behave as on str.
func markupMethod(m Markup, name string) (any, bool, error) {
	s := string(m)
	switch name {
	case "upper", "lower", "title", "capitalize", "swapcase", "strip", "lstrip", "rstrip":
		f, _ := strMethod(s, name)
		return Callable(func(r *renderer, args []any, kw *Dict) (any, error) {
			if len(args) > 0 {
				return nil, &UnsupportedError{What: "Markup." + name + " with arguments"}
			}
			v, err := f(r, args, kw)
			if err != nil {
				return nil, err
			}
			return Markup(v.(string)), nil
		}), true, nil
	case "split", "rsplit", "splitlines":
		f, _ := strMethod(s, name)
		return Callable(func(r *renderer, args []any, kw *Dict) (any, error) {
			v, err := f(r, args, kw)
			if err != nil {
				return nil, err
			}
			parts := v.([]any)
			for i, p := range parts {
				parts[i] = Markup(p.(string))
			}
			return parts, nil
		}), true, nil
	case "join":
		return Callable(func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) != 1 {
				return nil, &UnsupportedError{What: "Markup.join arguments"}
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(items))
			for i, it := range items {
				parts[i] = string(escapeValue(it))
			}
			return Markup(strings.Join(parts, s)), nil
		}), true, nil
	case "replace":
		f, _ := strMethod(s, name)
		return Callable(func(r *renderer, args []any, kw *Dict) (any, error) {
			if len(args) >= 2 {
				args[1] = string(escapeValue(args[1])) // markupsafe escapes the replacement only
			}
			v, err := f(r, args, kw)
			if err != nil {
				return nil, err
			}
			return Markup(v.(string)), nil
		}), true, nil
	case "startswith", "endswith", "find", "rfind", "index", "rindex", "count", "isdigit", "isdecimal", "isnumeric",
		"isalpha", "isalnum", "isspace", "isupper", "islower":
		f, _ := strMethod(s, name)
		return f, true, nil
	}
	if contains(pyStrMethods, name) {
		return nil, true, unsupportedMethod("Markup", name)
	}
	return nil, false, nil
}

// markupFilters keep a Markup argument Markup (upper, lower, ...); the
// others in markupRefused would escape or keep Markup in ways not
// modelled here. Every other filter sees a Markup as its plain string.
var (
	markupFilters = map[string]bool{"upper": true, "lower": true, "capitalize": true, "string": true, "safe": true,
		"e": true, "escape": true, "trim": true}
	markupRefused = map[string]bool{"indent": true, "format": true, "center": true, "truncate": true, "wordwrap": true,
		"urlize": true, "striptags": true, "forceescape": true, "xmlattr": true}
)

// markupFilter applies a Markup-preserving filter to a Markup value.
func markupFilter(name string, m Markup, args []any, kw *Dict) (any, error) {
	s := string(m)
	switch name {
	case "upper", "lower", "capitalize":
		conv := map[string]func(string) (string, error){"upper": pyUpper, "lower": pyLower, "capitalize": pyCapitalize}[name]
		out, err := conv(s)
		return Markup(out), err
	case "string", "safe", "e", "escape":
		return m, nil
	case "trim":
		if len(args) > 0 || kw.Len() > 0 {
			return nil, &UnsupportedError{What: "trim(chars) of a Markup string"}
		}
		return Markup(pyStrip(s, "", false, true, true)), nil
	}
	return nil, &UnsupportedError{What: "filter '" + name + "' on a Markup string"}
}
