package jinja

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// generator is what Jinja2's lazy filters (map, select, items, ...)
// return: iterable once, always true, with no len() and no repr that
// could be reproduced.
type generator []any

type filterFunc func(r *renderer, v any, args []any, kw *Dict) (any, error)

var filters map[string]filterFunc

// jinjaFilters are Jinja2's built-in filters: the ones not implemented
// fail at parse time as unsupported rather than unknown.
var jinjaFilters = strings.Fields(`abs attr batch capitalize center count d default dictsort e escape
	filesizeformat first float forceescape format groupby indent int items join last length list lower map max
	min pprint random reject rejectattr replace reverse round safe select selectattr slice sort string striptags
	sum title tojson trim truncate unique upper urlencode urlize wordcount wordwrap xmlattr`)

func init() {
	filters = map[string]filterFunc{
		"abs":        filterAbs,
		"attr":       filterAttr,
		"batch":      filterBatch,
		"capitalize": strFilter(pyCapitalize),
		"count":      filterLength,
		"d":          filterDefault,
		"default":    filterDefault,
		"dictsort":   filterDictsort,
		"e":          filterEscape,
		"escape":     filterEscape,
		"first":      filterFirst,
		"float":      filterFloat,
		"format":     filterFormat,
		"indent":     filterIndent,
		"int":        filterInt,
		"items":      filterItems,
		"join":       filterJoin,
		"last":       filterLast,
		"length":     filterLength,
		"list":       filterList,
		"lower":      strFilter(pyLower),
		"map":        filterMap,
		"max":        minMax(1),
		"min":        minMax(-1),
		"reject":     selectFilter(false, false),
		"rejectattr": selectFilter(false, true),
		"replace":    filterReplace,
		"reverse":    filterReverse,
		"round":      filterRound,
		"safe":       func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return Markup(str(v)), nil },
		"select":     selectFilter(true, false),
		"selectattr": selectFilter(true, true),
		"sort":       filterSort,
		"string":     func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return str(v), nil },
		"sum":        filterSum,
		"title":      strFilter(jinjaTitle),
		"tojson":     filterToJSON,
		"trim":       filterTrim,
		"unique":     filterUnique,
		"upper":      strFilter(pyUpper),
		"wordcount": func(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
			return int64(len(strings.Fields(str(v)))), nil
		},
	}
	for _, name := range jinjaFilters {
		if _, ok := filters[name]; !ok {
			name := name
			filters[name] = func(*renderer, any, []any, *Dict) (any, error) {
				return nil, &UnsupportedError{What: "filter '" + name + "'"}
			}
		}
	}
}

func (r *renderer) applyFilter(f *filterExpr, v any, s *scope) (any, error) {
	args, kw, err := r.evalArgs(f.args, f.kwNames, f.kwVals, s)
	if err != nil {
		return nil, err
	}
	fn, known := filters[f.name]
	if !known {
		return nil, fmt.Errorf("no filter named '%s'", f.name)
	}
	if m, ok := v.(Markup); ok {
		switch {
		case markupFilters[f.name]:
			return markupFilter(f.name, m, args, kw)
		case markupRefused[f.name]:
			return nil, &UnsupportedError{What: "filter '" + f.name + "' on a Markup string"}
		case f.name == "join" && len(args) > 0, f.name == "d", f.name == "default":
		default:
			v = string(m)
		}
	}
	if f.name == "join" && len(args) > 0 {
		if _, ok := args[0].(Markup); ok {
			return nil, &UnsupportedError{What: "join with a Markup separator"}
		}
	}
	out, err := fn(r, v, args, kw)
	if err != nil {
		var ue *UnsupportedError
		var ee *Error
		if errors.As(err, &ue) || errors.As(err, &ee) {
			return nil, err
		}
		return nil, fmt.Errorf("filter '%s': %w", f.name, err)
	}
	return out, nil
}

// param returns argument i or keyword name, else def.
func param(args []any, kw *Dict, i int, name string, def any) any {
	if i < len(args) {
		return args[i]
	}
	if v, ok := kw.Get(name); ok {
		return v
	}
	return def
}

func strFilter(f func(string) (string, error)) filterFunc {
	return func(_ *renderer, v any, _ []any, _ *Dict) (any, error) { return f(str(v)) }
}

// items returns what a filter iterates: generators and sequences as they
// are, dicts' keys, strings' characters.
func items(v any) ([]any, error) {
	if g, ok := v.(generator); ok {
		return g, nil
	}
	return iterate(v)
}

func filterAbs(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	switch t := v.(type) {
	case int64:
		if t < 0 {
			return -t, nil
		}
		return t, nil
	case float64:
		return math.Abs(t), nil
	case bool:
		i, _ := integer(t)
		return i, nil
	}
	return nil, fmt.Errorf("bad operand type for abs(): '%s'", typeName(v))
}

func filterAttr(_ *renderer, v any, args []any, _ *Dict) (any, error) {
	if len(args) != 1 {
		return nil, errors.New("attr takes one argument")
	}
	name, ok := args[0].(string)
	if !ok {
		return Undefined{}, nil
	}
	return getAttr(v, name, nil)
}

func filterDefault(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	def := param(args, kw, 0, "default_value", "")
	boolean := truth(param(args, kw, 1, "boolean", false))
	if isUndefined(v) || boolean && !truth(v) {
		return def, nil
	}
	return v, nil
}

func filterEscape(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	return escapeValue(v), nil // &amp; &lt; &gt; &#34; &#39;
}

func filterFirst(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	if len(it) == 0 {
		return Undefined{Name: "first"}, nil
	}
	return it[0], nil
}

func filterLast(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	if _, ok := v.(generator); ok {
		return nil, errors.New("'generator' object is not reversible")
	}
	it, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(it) == 0 {
		return Undefined{Name: "last"}, nil
	}
	return it[len(it)-1], nil
}

func filterLength(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	if _, ok := v.(generator); ok {
		return nil, errors.New("object of type 'generator' has no len()")
	}
	n, err := length(v)
	return int64(n), err
}

func filterList(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	return append([]any{}, it...), nil
}

func filterItems(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	switch t := v.(type) {
	case Undefined:
		return generator{}, nil
	case *Dict:
		out := make(generator, t.Len())
		for i, e := range t.entries {
			out[i] = Tuple{e.key, e.val}
		}
		return out, nil
	}
	return nil, fmt.Errorf("can only get item pairs from a mapping, not %s", typeName(v))
}

func filterJoin(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	sep := str(param(args, kw, 0, "d", ""))
	attr := param(args, kw, 1, "attribute", nil)
	var b strings.Builder
	for i, e := range it {
		if i > 0 {
			b.WriteString(sep)
		}
		if attr != nil {
			if e, err = attrPath(e, attr); err != nil {
				return nil, err
			}
		}
		b.WriteString(str(e))
	}
	return b.String(), nil
}

// attrPath looks up a filter's attribute= argument: a name, dotted names
// or an integer index, items first as Jinja2's environment.getitem does.
func attrPath(v any, attr any) (any, error) {
	if n, ok := integer(attr); ok {
		return getItem(v, n, nil)
	}
	name, ok := attr.(string)
	if !ok {
		return nil, fmt.Errorf("attribute must be a string, not %s", typeName(attr))
	}
	var err error
	for _, part := range strings.Split(name, ".") {
		var key any = part
		if n, err := strconv.ParseInt(part, 10, 64); err == nil {
			key = n
		}
		if v, err = getItem(v, key, nil); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func filterMap(r *renderer, v any, args []any, kw *Dict) (any, error) {
	if !truth(v) {
		return generator{}, nil // Jinja2 maps nothing over a false value
	}
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	out := make(generator, 0, len(it))
	if attr, ok := kw.Get("attribute"); ok && len(args) == 0 {
		def, hasDef := kw.Get("default")
		for _, e := range it {
			x, err := attrPath(e, attr)
			if err != nil {
				return nil, err
			}
			if hasDef && isUndefined(x) {
				x = def
			}
			out = append(out, x)
		}
		return out, nil
	}
	if len(args) == 0 {
		return nil, errors.New("map requires a filter argument")
	}
	name, ok := args[0].(string)
	f, known := filters[name]
	if !ok || !known {
		return nil, fmt.Errorf("no filter named %v", args[0])
	}
	for _, e := range it {
		x, err := f(r, e, args[1:], kw)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

func selectFilter(keep, byAttr bool) filterFunc {
	return func(r *renderer, v any, args []any, kw *Dict) (any, error) {
		if !truth(v) {
			return generator{}, nil // Jinja2 selects nothing from a false value
		}
		it, err := items(v)
		if err != nil {
			return nil, err
		}
		var attr any
		if byAttr {
			if len(args) == 0 {
				return nil, errors.New("missing parameter for attribute name")
			}
			attr, args = args[0], args[1:]
		}
		var test testFunc
		if len(args) > 0 {
			name, ok := args[0].(string)
			if test = tests[name]; !ok || test == nil {
				return nil, fmt.Errorf("no test named %v", args[0])
			}
			args = args[1:]
		}
		out := generator{}
		for _, e := range it {
			x := e
			if attr != nil {
				if x, err = attrPath(e, attr); err != nil {
					return nil, err
				}
			}
			ok := truth(x)
			if test != nil {
				if ok, err = test(x, args); err != nil {
					return nil, err
				}
			}
			if ok == keep {
				out = append(out, e)
			}
		}
		return out, nil
	}
}

func filterReplace(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	if len(args) < 2 {
		return nil, errors.New("replace takes old and new")
	}
	n := int64(-1)
	if c := param(args, kw, 2, "count", nil); c != nil {
		n, _ = integer(c)
	}
	return strings.Replace(str(v), str(args[0]), str(args[1]), int(n)), nil
}

func filterReverse(_ *renderer, v any, _ []any, _ *Dict) (any, error) {
	if s, ok := v.(string); ok {
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return string(r), nil
	}
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	out := make(generator, len(it))
	for i, e := range it {
		out[len(it)-1-i] = e
	}
	if _, ok := v.(generator); ok {
		return []any(out), nil
	}
	return out, nil
}

func filterRound(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	prec, _ := integer(param(args, kw, 0, "precision", int64(0)))
	method := str(param(args, kw, 1, "method", "common"))
	f, ok := number(v)
	if !ok {
		return nil, fmt.Errorf("type %s doesn't define __round__", typeName(v))
	}
	mul := math.Pow(10, float64(prec))
	switch method {
	case "common":
		if _, isInt := v.(int64); isInt {
			return v, nil
		}
		out, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', int(prec), 64), 64)
		return out, nil
	case "floor":
		return math.Floor(f*mul) / mul, nil
	case "ceil":
		return math.Ceil(f*mul) / mul, nil
	}
	return nil, errors.New("method must be common, ceil or floor")
}

// sortKey lower-cases strings unless case_sensitive, as Jinja2's sorting
// filters do.
func sortKey(caseSensitive bool, attr any) func(any) any {
	return func(v any) any {
		if attr != nil {
			v, _ = attrPath(v, attr)
		}
		if s, ok := v.(string); ok && !caseSensitive {
			if l, err := pyLower(s); err == nil {
				return l
			}
			return strings.ToLower(s)
		}
		return v
	}
}

func filterSort(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	out := append([]any{}, it...)
	reverse := truth(param(args, kw, 0, "reverse", false))
	cs := truth(param(args, kw, 1, "case_sensitive", false))
	attr := param(args, kw, 2, "attribute", nil)
	return out, sortValues(out, sortKey(cs, attr), reverse)
}

func filterDictsort(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	d, ok := v.(*Dict)
	if !ok {
		return nil, errors.New("dictsort: value is not a dict")
	}
	cs := truth(param(args, kw, 0, "case_sensitive", false))
	by := str(param(args, kw, 1, "by", "key"))
	reverse := truth(param(args, kw, 2, "reverse", false))
	pos := 0
	switch by {
	case "key":
	case "value":
		pos = 1
	default:
		return nil, errors.New("you can only sort by either \"key\" or \"value\"")
	}
	out := make([]any, d.Len())
	for i, e := range d.entries {
		out[i] = Tuple{e.key, e.val}
	}
	key := sortKey(cs, nil)
	return out, sortValues(out, func(e any) any { return key(e.(Tuple)[pos]) }, reverse)
}

func filterUnique(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	cs := truth(param(args, kw, 0, "case_sensitive", false))
	key := sortKey(cs, param(args, kw, 1, "attribute", nil))
	var seen []any
	out := generator{}
	for _, e := range it {
		k := key(e)
		dup := false
		for _, s := range seen {
			if equal(s, k) {
				dup = true
				break
			}
		}
		if !dup {
			seen = append(seen, k)
			out = append(out, e)
		}
	}
	return out, nil
}

func minMax(sign int) filterFunc {
	return func(_ *renderer, v any, args []any, kw *Dict) (any, error) {
		it, err := items(v)
		if err != nil {
			return nil, err
		}
		if len(it) == 0 {
			return Undefined{Name: "min/max of an empty sequence"}, nil
		}
		key := sortKey(truth(param(args, kw, 0, "case_sensitive", false)), param(args, kw, 1, "attribute", nil))
		best := it[0]
		for _, e := range it[1:] {
			c, err := compare(key(e), key(best))
			if err != nil {
				return nil, err
			}
			if c*sign > 0 {
				best = e
			}
		}
		return best, nil
	}
}

func filterSum(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	attr := param(args, kw, 0, "attribute", nil)
	total := param(args, kw, 1, "start", int64(0))
	for _, e := range it {
		if attr != nil {
			if e, err = attrPath(e, attr); err != nil {
				return nil, err
			}
		}
		if total, err = arith("+", total, e); err != nil {
			return nil, err
		}
	}
	return total, nil
}

func filterTrim(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	chars := param(args, kw, 0, "chars", nil)
	if chars == nil {
		return pyStrip(str(v), "", false, true, true), nil
	}
	return pyStrip(str(v), str(chars), true, true, true), nil
}

func filterBatch(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	it, err := items(v)
	if err != nil {
		return nil, err
	}
	n, ok := integer(param(args, kw, 0, "linecount", nil))
	if !ok || n <= 0 {
		return nil, errors.New("batch needs a positive line count")
	}
	fill, hasFill := kw.Get("fill_with")
	if len(args) > 1 {
		fill, hasFill = args[1], true
	}
	out := generator{}
	for i := 0; i < len(it); i += int(n) {
		end := min(i+int(n), len(it))
		row := append([]any{}, it[i:end]...)
		for hasFill && fill != nil && len(row) < int(n) {
			row = append(row, fill)
		}
		out = append(out, row)
	}
	return out, nil
}

func filterIndent(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	width := param(args, kw, 0, "width", int64(4))
	first := truth(param(args, kw, 1, "first", false))
	blank := truth(param(args, kw, 2, "blank", false))
	ind, isStr := width.(string)
	if !isStr {
		n, ok := integer(width)
		if !ok {
			return nil, errors.New("indent width must be an int or a str")
		}
		ind = strings.Repeat(" ", int(max(n, 0)))
	}
	lines := pySplitLines(str(v) + "\n")
	var b strings.Builder
	if first {
		b.WriteString(ind)
	}
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
			if blank || l != "" {
				b.WriteString(ind)
			}
		}
		b.WriteString(l)
	}
	return b.String(), nil
}

func filterInt(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	def := param(args, kw, 0, "default", int64(0))
	base, _ := integer(param(args, kw, 1, "base", int64(10)))
	switch t := v.(type) {
	case int64:
		return t, nil
	case bool:
		i, _ := integer(t)
		return i, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return def, nil
		}
		return int64(t), nil
	case string:
		s := strings.ReplaceAll(strings.TrimFunc(t, isSpace), "_", "")
		if i, err := strconv.ParseInt(s, int(base), 64); err == nil {
			return i, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return int64(f), nil
		}
	}
	return def, nil
}

func filterFloat(_ *renderer, v any, args []any, kw *Dict) (any, error) {
	def := param(args, kw, 0, "default", 0.0)
	if f, ok := number(v); ok {
		return f, nil
	}
	if s, ok := v.(string); ok {
		if f, err := strconv.ParseFloat(strings.TrimFunc(s, isSpace), 64); err == nil {
			return f, nil
		}
	}
	return def, nil
}

// jinjaTitle is Jinja2's title filter: each word (split at whitespace and
// opening brackets or dashes) gets an upper-case first letter and a
// lower-case rest.
func jinjaTitle(s string) (string, error) {
	var b strings.Builder
	start := true
	for _, r := range s {
		if strings.ContainsRune("-({[<", r) || isSpace(r) {
			b.WriteRune(r)
			start = true
			continue
		}
		if start {
			u, err := pyUpper(string(r))
			if err != nil {
				return "", err
			}
			b.WriteString(u)
		} else {
			l, err := pyLower(string(r))
			if err != nil {
				return "", err
			}
			b.WriteString(l)
		}
		start = false
	}
	return b.String(), nil
}
