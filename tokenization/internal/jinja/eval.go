package jinja

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Error is a failure while rendering; Line is the template line.
type Error struct {
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// RaisedError is the error of raise_exception() in a template.
type RaisedError struct{ Msg string }

func (e *RaisedError) Error() string { return e.Msg }

// UnsupportedError is a construct the renderer recognises but does not
// implement: rendering stops rather than guess.
type UnsupportedError struct{ What string }

func (e *UnsupportedError) Error() string { return "unsupported construct: " + e.What }

var (
	errBreak    = errors.New("break outside a loop")
	errContinue = errors.New("continue outside a loop")
)

// scope is one frame of variables; lookups walk to the parents. Frames
// hold few names (a loop's targets, a macro's parameters), so a slice
// beats a map; the frames of the caller's variables and the globals use
// their maps as given.
type scope struct {
	vars   []binding
	m      map[string]any
	parent *scope
}

type binding struct {
	name string
	val  any
}

func newScope(parent *scope) *scope { return &scope{parent: parent} }

func (s *scope) lookup(name string) (any, bool) {
	for f := s; f != nil; f = f.parent {
		for i := range f.vars {
			if f.vars[i].name == name {
				return f.vars[i].val, true
			}
		}
		if f.m != nil {
			if v, ok := f.m[name]; ok {
				return v, true
			}
		}
	}
	return nil, false
}

func (s *scope) set(name string, v any) {
	for i := range s.vars {
		if s.vars[i].name == name {
			s.vars[i].val = v
			return
		}
	}
	s.vars = append(s.vars, binding{name, v})
}

// renderer holds the state of one rendering.
type renderer struct {
	out   *strings.Builder
	depth int // macro call depth, bounded against runaway recursion
	steps int // statements run, bounded against runaway loops
}

const (
	maxCallDepth = 200
	// maxSteps bounds the statements one rendering runs; a chat template
	// over thousands of messages runs tens of thousands.
	maxSteps = 5_000_000
	// maxString bounds strings built by repetition.
	maxString = 64 << 20
)

// Render renders the template with vars (and the globals).
func (t *Template) Render(vars map[string]any) (string, error) {
	var b strings.Builder
	b.Grow(int(t.sizeHint.Load()))
	r := &renderer{out: &b}
	root := &scope{m: globals()}
	top := &scope{m: vars, parent: root}
	if err := r.renderBody(t.body, newScope(top)); err != nil {
		if err == errBreak || err == errContinue {
			return "", &Error{Err: err}
		}
		return "", err
	}
	t.sizeHint.Store(int64(b.Len()) + int64(b.Len())/8)
	return b.String(), nil
}

func wrap(n interface{ line() int }, err error) error {
	if err == nil || err == errBreak || err == errContinue {
		return err
	}
	var je *Error
	if errors.As(err, &je) {
		return err
	}
	return &Error{Line: n.line(), Err: err}
}

func (r *renderer) renderBody(body []node, s *scope) error {
	for _, n := range body {
		if err := r.renderNode(n, s); err != nil {
			return err
		}
	}
	return nil
}

func (r *renderer) renderNode(n node, s *scope) error {
	r.steps++
	if r.steps > maxSteps {
		return &Error{Line: n.line(), Err: errors.New("rendering takes too many steps")}
	}
	switch t := n.(type) {
	case *dataNode:
		r.out.WriteString(t.text)
	case *outputNode:
		if b, ok := t.expr.(*binExpr); ok && (b.op == "~" || b.op == "+") {
			return wrap(t, r.writeConcat(b, s))
		}
		v, err := r.eval(t.expr, s)
		if err != nil {
			return wrap(t, err)
		}
		if sv, ok := v.(string); ok {
			r.out.WriteString(sv)
		} else if err := printable(v); err != nil {
			return wrap(t, err)
		} else {
			writeStr(r.out, v)
		}
	case *ifNode:
		for i, c := range t.conds {
			v, err := r.eval(c, s)
			if err != nil {
				return wrap(t, err)
			}
			if truth(v) {
				return r.renderBody(t.bodies[i], s)
			}
		}
		if len(t.bodies) > len(t.conds) {
			return r.renderBody(t.bodies[len(t.conds)], s)
		}
	case *forNode:
		return wrap(t, r.renderFor(t, s))
	case *setNode:
		return wrap(t, r.renderSet(t, s))
	case *macroNode:
		s.set(t.name, &macro{node: t, def: s})
	case *callBlockNode:
		return wrap(t, r.renderCallBlock(t, s))
	case *filterBlockNode:
		text, err := r.capture(t.body, s)
		if err != nil {
			return err
		}
		var v any = text
		for _, f := range t.filters {
			if v, err = r.applyFilter(f, v, s); err != nil {
				return wrap(t, err)
			}
		}
		writeStr(r.out, v)
	case *loopControlNode:
		if t.brk {
			return errBreak
		}
		return errContinue
	case *generationNode:
		return r.renderBody(t.body, s)
	default:
		return fmt.Errorf("internal error: node %T", n)
	}
	return nil
}

// printable refuses values whose Python str() names a memory address.
func printable(v any) error {
	switch t := v.(type) {
	case generator, Callable, *macro, *loop:
		return &UnsupportedError{What: "printing a " + typeName(v)}
	case []any:
		for _, e := range t {
			if err := printable(e); err != nil {
				return err
			}
		}
	case *Dict:
		for _, e := range t.entries {
			if err := printable(e.val); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeStr(b *strings.Builder, v any) {
	switch t := v.(type) {
	case string:
		b.WriteString(t)
	case Markup:
		b.WriteString(string(t))
	case Undefined:
	default:
		writeRepr(b, v)
	}
}

// capture renders body into a string.
func (r *renderer) capture(body []node, s *scope) (string, error) {
	saved := r.out
	var b strings.Builder
	r.out = &b
	err := r.renderBody(body, s)
	r.out = saved
	return b.String(), err
}

// loop is the "loop" variable of a for loop.
type loop struct {
	items []any
	index int
}

func (l *loop) attr(name string) (any, bool) {
	n := len(l.items)
	switch name {
	case "index":
		return int64(l.index + 1), true
	case "index0":
		return int64(l.index), true
	case "revindex":
		return int64(n - l.index), true
	case "revindex0":
		return int64(n - l.index - 1), true
	case "first":
		return l.index == 0, true
	case "last":
		return l.index == n-1, true
	case "length":
		return int64(n), true
	case "depth":
		return int64(1), true
	case "depth0":
		return int64(0), true
	case "previtem":
		if l.index == 0 {
			return Undefined{Name: "loop.previtem"}, true
		}
		return l.items[l.index-1], true
	case "nextitem":
		if l.index == n-1 {
			return Undefined{Name: "loop.nextitem"}, true
		}
		return l.items[l.index+1], true
	case "cycle":
		return Callable(func(_ *renderer, args []any, _ *Dict) (any, error) {
			if len(args) == 0 {
				return nil, errors.New("no items for cycling given")
			}
			return args[l.index%len(args)], nil
		}), true
	case "changed":
		return nil, false
	}
	return nil, false
}

func (r *renderer) renderFor(t *forNode, s *scope) error {
	v, err := r.eval(t.iter, s)
	if err != nil {
		return err
	}
	items, err := iterate(v)
	if err != nil {
		return err
	}
	if t.filter != nil {
		var kept []any
		for _, it := range items {
			fs := newScope(s)
			if err := assign(fs, t.targets, it); err != nil {
				return err
			}
			ok, err := r.eval(t.filter, fs)
			if err != nil {
				return err
			}
			if truth(ok) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if len(items) == 0 {
		return r.renderBody(t.els, s)
	}
	l := &loop{items: items}
	for i, it := range items {
		l.index = i
		fs := &scope{vars: make([]binding, 0, 4), parent: s}
		fs.set("loop", l)
		if err := assign(fs, t.targets, it); err != nil {
			return err
		}
		err := r.renderBody(t.body, fs)
		if err == errBreak {
			break
		}
		if err != nil && err != errContinue {
			return err
		}
	}
	return nil
}

// assign binds one value to names, unpacking it across several.
func assign(s *scope, names []string, v any) error {
	if len(names) == 1 {
		s.set(names[0], v)
		return nil
	}
	items, ok := seqOf(v)
	if !ok {
		if str, isStr := v.(string); isStr {
			items, _ = iterate(str)
		} else {
			return fmt.Errorf("cannot unpack non-iterable %s object", typeName(v))
		}
	}
	if len(items) != len(names) {
		return fmt.Errorf("not enough values to unpack (expected %d, got %d)", len(names), len(items))
	}
	for i, n := range names {
		s.set(n, items[i])
	}
	return nil
}

func (r *renderer) renderSet(t *setNode, s *scope) error {
	var v any
	var err error
	if t.value != nil {
		v, err = r.eval(t.value, s)
	} else {
		var text string
		text, err = r.capture(t.body, s)
		v = text
		for _, f := range t.filters {
			if err != nil {
				break
			}
			v, err = r.applyFilter(f, v, s)
		}
	}
	if err != nil {
		return err
	}
	if t.attrOf != "" {
		obj, ok := s.lookup(t.attrOf)
		ns, isNS := obj.(*Namespace)
		if !ok || !isNS {
			return fmt.Errorf("cannot assign attribute on non-namespace object '%s'", t.attrOf)
		}
		ns.d.Set(t.attr, v)
		return nil
	}
	return assign(s, t.targets, v)
}

// macro is a {% macro %} bound to the scope it was defined in.
type macro struct {
	node *macroNode
	def  *scope
}

func (r *renderer) callMacro(m *macro, args []any, kw *Dict, caller any) (any, error) {
	if r.depth >= maxCallDepth {
		return nil, errors.New("macro recursion too deep")
	}
	n := m.node
	s := &scope{vars: make([]binding, 0, len(n.params)+2), parent: m.def}
	if len(args) > len(n.params) {
		return nil, &UnsupportedError{What: fmt.Sprintf("macro '%s' called with more positional arguments than parameters (varargs)", n.name)}
	}
	firstDef := len(n.params) - len(n.defs)
	for i, p := range n.params {
		switch {
		case i < len(args):
			s.set(p, args[i])
		default:
			if v, ok := kw.Get(p); ok {
				s.set(p, v)
				continue
			}
			if i >= firstDef {
				v, err := r.eval(n.defs[i-firstDef], s)
				if err != nil {
					return nil, err
				}
				s.set(p, v)
			} else {
				s.set(p, Undefined{Name: p})
			}
		}
	}
	for _, k := range kw.Keys() {
		if !contains(n.params, k.(string)) {
			return nil, &UnsupportedError{What: fmt.Sprintf("macro '%s' called with unknown keyword argument '%v' (kwargs)", n.name, k)}
		}
	}
	if caller != nil {
		s.set("caller", caller)
	}
	r.depth++
	text, err := r.capture(n.body, s)
	r.depth--
	return text, err
}

func (r *renderer) renderCallBlock(t *callBlockNode, s *scope) error {
	caller := &macro{node: &macroNode{pos: t.pos, name: "caller", params: t.params, defs: t.defs, body: t.body}, def: s}
	fn, err := r.eval(t.call.fn, s)
	if err != nil {
		return err
	}
	m, ok := fn.(*macro)
	if !ok {
		return fmt.Errorf("call block: %s is not a macro", describe(t.call.fn))
	}
	args, kw, err := r.evalArgs(t.call.args, t.call.kwNames, t.call.kwVals, s)
	if err != nil {
		return err
	}
	v, err := r.callMacro(m, args, kw, caller)
	if err != nil {
		return err
	}
	writeStr(r.out, v)
	return nil
}

func (r *renderer) evalArgs(args []expr, kwNames []string, kwVals []expr, s *scope) ([]any, *Dict, error) {
	var vals []any
	if len(args) > 0 {
		vals = make([]any, len(args))
		for i, a := range args {
			v, err := r.eval(a, s)
			if err != nil {
				return nil, nil, err
			}
			vals[i] = v
		}
	}
	var kw *Dict
	if len(kwNames) > 0 {
		kw = NewDict(len(kwNames))
		for i, k := range kwNames {
			v, err := r.eval(kwVals[i], s)
			if err != nil {
				return nil, nil, err
			}
			kw.Set(k, v)
		}
	}
	return vals, kw, nil
}

func (r *renderer) eval(e expr, s *scope) (any, error) {
	switch t := e.(type) {
	case *constExpr:
		return t.val, nil
	case *nameExpr:
		if v, ok := s.lookup(t.name); ok {
			return v, nil
		}
		return Undefined{Name: t.name}, nil
	case *attrExpr:
		obj, err := r.eval(t.obj, s)
		if err != nil {
			return nil, err
		}
		return getAttr(obj, t.name, t)
	case *itemExpr:
		obj, err := r.eval(t.obj, s)
		if err != nil {
			return nil, err
		}
		key, err := r.eval(t.key, s)
		if err != nil {
			return nil, err
		}
		return getItem(obj, key, t)
	case *sliceExpr:
		return r.evalSlice(t, s)
	case *listExpr:
		items := make([]any, len(t.items))
		for i, it := range t.items {
			v, err := r.eval(it, s)
			if err != nil {
				return nil, err
			}
			items[i] = v
		}
		if t.tuple {
			return Tuple(items), nil
		}
		return items, nil
	case *dictExpr:
		d := NewDict(len(t.keys))
		for i := range t.keys {
			k, err := r.eval(t.keys[i], s)
			if err != nil {
				return nil, err
			}
			v, err := r.eval(t.vals[i], s)
			if err != nil {
				return nil, err
			}
			d.Set(k, v)
		}
		return d, nil
	case *callExpr:
		return r.evalCall(t, s)
	case *filterExpr:
		v, err := r.eval(t.arg, s)
		if err != nil {
			return nil, err
		}
		return r.applyFilter(t, v, s)
	case *testExpr:
		v, err := r.eval(t.arg, s)
		if err != nil {
			return nil, err
		}
		args, _, err := r.evalArgs(t.args, nil, nil, s)
		if err != nil {
			return nil, err
		}
		test, known := tests[t.name]
		if !known {
			return nil, fmt.Errorf("no test named '%s'", t.name)
		}
		ok, err := test(v, args)
		if err != nil {
			return nil, fmt.Errorf("test '%s': %w", t.name, err)
		}
		return ok != t.neg, nil
	case *unaryExpr:
		v, err := r.eval(t.x, s)
		if err != nil {
			return nil, err
		}
		switch t.op {
		case "not":
			return !truth(v), nil
		case "-":
			switch n := v.(type) {
			case int64:
				return -n, nil
			case float64:
				return -n, nil
			case bool:
				i, _ := integer(n)
				return -i, nil
			}
			return nil, fmt.Errorf("bad operand type for unary -: '%s'", typeName(v))
		default:
			if _, ok := number(v); !ok {
				return nil, fmt.Errorf("bad operand type for unary +: '%s'", typeName(v))
			}
			if b, ok := v.(bool); ok {
				i, _ := integer(b)
				return i, nil
			}
			return v, nil
		}
	case *binExpr:
		return r.evalBinary(t, s)
	case *compareExpr:
		l, err := r.eval(t.first, s)
		if err != nil {
			return nil, err
		}
		for i, op := range t.ops {
			rv, err := r.eval(t.rest[i], s)
			if err != nil {
				return nil, err
			}
			ok, err := compareOp(op, l, rv)
			if err != nil {
				return nil, err
			}
			if !ok {
				return false, nil
			}
			l = rv
		}
		return true, nil
	case *condExpr:
		c, err := r.eval(t.cond, s)
		if err != nil {
			return nil, err
		}
		if truth(c) {
			return r.eval(t.yes, s)
		}
		if t.no == nil {
			return Undefined{Name: "inline if"}, nil
		}
		return r.eval(t.no, s)
	}
	return nil, fmt.Errorf("internal error: expression %T", e)
}

func compareOp(op string, l, r any) (bool, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "in":
		return containsValue(r, l)
	case "notin":
		ok, err := containsValue(r, l)
		return !ok, err
	}
	c, err := compare(l, r)
	if err != nil {
		return false, fmt.Errorf("'%s' not supported between instances of '%s' and '%s'", op, typeName(l), typeName(r))
	}
	switch op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	}
	return c >= 0, nil
}

// concatOperands evaluates the operands of a left-nested chain of one
// operator ("a + b + c" or "a ~ b ~ c") in order, into buf.
func (r *renderer) concatOperands(b *binExpr, s *scope, buf []any) ([]any, error) {
	var ops [16]expr
	operands := ops[:0]
	var e expr = b
	for {
		x, ok := e.(*binExpr)
		if !ok || x.op != b.op || len(operands) == cap(ops)-1 {
			break
		}
		operands = append(operands, x.r)
		e = x.l
	}
	operands = append(operands, e)
	values := buf[:0]
	for i := range operands {
		v, err := r.eval(operands[len(operands)-1-i], s)
		if err != nil {
			return nil, err
		}
		if b.op == "~" {
			if err := printable(v); err != nil {
				return nil, err
			}
		}
		values = append(values, v)
	}
	return values, nil
}

// plainStrings reports whether every value is a plain string, so that a
// "+" chain is one concatenation.
func plainStrings(values []any) bool {
	for _, v := range values {
		if _, ok := v.(string); !ok {
			return false
		}
	}
	return true
}

// foldPlus applies "+" left to right.
func foldPlus(values []any) (any, error) {
	acc := values[0]
	for _, v := range values[1:] {
		var err error
		if acc, err = arith("+", acc, v); err != nil {
			return nil, err
		}
	}
	return acc, nil
}

// writeConcat prints a chain of "~" or "+" operations without building
// the concatenated string: chat templates glue each message's content
// between its role markers, and copying the content twice per message
// showed in the profile. The result is the same as evaluating the chain.
func (r *renderer) writeConcat(b *binExpr, s *scope) error {
	var buf [16]any
	values, err := r.concatOperands(b, s, buf[:])
	if err != nil {
		return err
	}
	if b.op == "~" || plainStrings(values) {
		for _, v := range values {
			writeStr(r.out, v)
		}
		return nil
	}
	acc, err := foldPlus(values)
	if err != nil {
		return err
	}
	if err := printable(acc); err != nil {
		return err
	}
	writeStr(r.out, acc)
	return nil
}

// evalConcat evaluates a "~" or "+" chain with one allocation when the
// result is a plain string.
func (r *renderer) evalConcat(b *binExpr, s *scope) (any, error) {
	var buf [16]any
	values, err := r.concatOperands(b, s, buf[:])
	if err != nil {
		return nil, err
	}
	if b.op == "+" && !plainStrings(values) {
		return foldPlus(values)
	}
	n := 0
	for _, v := range values {
		if sv, ok := v.(string); ok {
			n += len(sv)
		}
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, v := range values {
		writeStr(&sb, v)
	}
	return sb.String(), nil
}

func (r *renderer) evalBinary(t *binExpr, s *scope) (any, error) {
	if t.op == "~" || t.op == "+" {
		return r.evalConcat(t, s)
	}
	l, err := r.eval(t.l, s)
	if err != nil {
		return nil, err
	}
	switch t.op {
	case "and":
		if !truth(l) {
			return l, nil
		}
		return r.eval(t.r, s)
	case "or":
		if truth(l) {
			return l, nil
		}
		return r.eval(t.r, s)
	}
	rv, err := r.eval(t.r, s)
	if err != nil {
		return nil, err
	}
	return arith(t.op, l, rv)
}

func arith(op string, l, r any) (any, error) {
	if isUndefined(l) || isUndefined(r) {
		u := l
		if !isUndefined(u) {
			u = r
		}
		return nil, undefinedErr(u.(Undefined))
	}
	if v, ok, err := markupArith(op, l, r); ok || err != nil {
		return v, err
	}
	bad := func() (any, error) {
		return nil, fmt.Errorf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(l), typeName(r))
	}
	switch op {
	case "+":
		switch a := l.(type) {
		case string:
			if b, ok := r.(string); ok {
				return a + b, nil
			}
			return bad()
		case []any:
			if b, ok := r.([]any); ok {
				out := make([]any, 0, len(a)+len(b))
				return append(append(out, a...), b...), nil
			}
			return bad()
		case Tuple:
			if b, ok := r.(Tuple); ok {
				out := make(Tuple, 0, len(a)+len(b))
				return append(append(out, a...), b...), nil
			}
			return bad()
		}
	case "*":
		if n, ok := integer(r); ok {
			switch a := l.(type) {
			case string:
				if n > 0 && int64(len(a))*n > maxString {
					return nil, errors.New("string repetition too large")
				}
				return strings.Repeat(a, int(max(n, 0))), nil
			case []any:
				if n > 0 && int64(len(a))*n > maxString/16 {
					return nil, errors.New("list repetition too large")
				}
				var out []any
				for range max(n, 0) {
					out = append(out, a...)
				}
				if out == nil {
					out = []any{}
				}
				return out, nil
			}
		}
		if n, ok := integer(l); ok {
			if _, isStr := r.(string); isStr {
				return arith(op, r, n)
			}
			if _, isList := r.([]any); isList {
				return arith(op, r, n)
			}
		}
	case "%":
		if s, ok := l.(string); ok {
			return pyPercent(s, r)
		}
	}
	ia, aInt := integer(l)
	ib, bInt := integer(r)
	fa, aNum := number(l)
	fb, bNum := number(r)
	if !aNum || !bNum {
		return bad()
	}
	if aInt && bInt {
		switch op {
		case "+":
			if s := ia + ib; (s > ia) == (ib > 0) {
				return s, nil
			}
			return nil, errBigInt
		case "-":
			if d := ia - ib; (d < ia) == (ib > 0) {
				return d, nil
			}
			return nil, errBigInt
		case "*":
			if ia == 0 || ib == 0 {
				return int64(0), nil
			}
			if p := ia * ib; p/ib == ia && !(ia == -1 && ib == math.MinInt64) && !(ib == -1 && ia == math.MinInt64) {
				return p, nil
			}
			return nil, errBigInt
		case "/":
			if ib == 0 {
				return nil, errors.New("division by zero")
			}
			return float64(ia) / float64(ib), nil
		case "//":
			if ib == 0 {
				return nil, errors.New("integer division or modulo by zero")
			}
			q := ia / ib
			if (ia%ib != 0) && ((ia < 0) != (ib < 0)) {
				q--
			}
			return q, nil
		case "%":
			if ib == 0 {
				return nil, errors.New("integer division or modulo by zero")
			}
			m := ia % ib
			if m != 0 && (m < 0) != (ib < 0) {
				m += ib
			}
			return m, nil
		case "**":
			if ib < 0 {
				return math.Pow(float64(ia), float64(ib)), nil
			}
			return intPow(ia, ib)
		}
	}
	switch op {
	case "+":
		return fa + fb, nil
	case "-":
		return fa - fb, nil
	case "*":
		return fa * fb, nil
	case "/":
		if fb == 0 {
			return nil, errors.New("float division by zero")
		}
		return fa / fb, nil
	case "//":
		if fb == 0 {
			return nil, errors.New("float floor division by zero")
		}
		return math.Floor(fa / fb), nil
	case "%":
		if fb == 0 {
			return nil, errors.New("float modulo")
		}
		m := math.Mod(fa, fb)
		if m != 0 && (m < 0) != (fb < 0) {
			m += fb
		}
		return m, nil
	case "**":
		return math.Pow(fa, fb), nil
	}
	return bad()
}

// errBigInt refuses integer results beyond int64, which Python would
// carry on as big integers.
var errBigInt = &UnsupportedError{What: "integer arithmetic beyond 64 bits"}

// intPow is a**b for b >= 0 by squaring, refusing overflow.
func intPow(a, b int64) (any, error) {
	out := int64(1)
	for b > 0 {
		if b&1 == 1 {
			v, err := arith("*", out, a)
			if err != nil {
				return nil, err
			}
			out = v.(int64)
		}
		b >>= 1
		if b > 0 {
			v, err := arith("*", a, a)
			if err != nil {
				return nil, err
			}
			a = v.(int64)
		}
	}
	return out, nil
}

func undefinedErr(u Undefined) error {
	if u.at != nil {
		return fmt.Errorf("'%s' is undefined", describe(u.at))
	}
	if u.Name == "" {
		return errors.New("undefined value")
	}
	return fmt.Errorf("'%s' is undefined", u.Name)
}

func (r *renderer) evalSlice(t *sliceExpr, s *scope) (any, error) {
	obj, err := r.eval(t.obj, s)
	if err != nil {
		return nil, err
	}
	var bounds [3]*int64
	for i, e := range []expr{t.start, t.stop, t.step} {
		if e == nil {
			continue
		}
		v, err := r.eval(e, s)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		n, ok := integer(v)
		if !ok {
			return nil, errors.New("slice indices must be integers or None")
		}
		bounds[i] = &n
	}
	return slice(obj, bounds[0], bounds[1], bounds[2])
}

// slice is Python's obj[start:stop:step] for lists, tuples and strings.
func slice(obj any, start, stop, step *int64) (any, error) {
	if m, ok := obj.(Markup); ok {
		v, err := slice(string(m), start, stop, step)
		if s, isStr := v.(string); isStr {
			return Markup(s), err
		}
		return v, err
	}
	var items []any
	var runes []rune
	n := 0
	switch t := obj.(type) {
	case string:
		runes = []rune(t)
		n = len(runes)
	case Undefined:
		return nil, undefinedErr(t)
	default:
		s, ok := seqOf(obj)
		if !ok {
			return nil, fmt.Errorf("'%s' object is not subscriptable", typeName(obj))
		}
		items, n = s, len(s)
	}
	st := int64(1)
	if step != nil {
		st = *step
	}
	if st == 0 {
		return nil, errors.New("slice step cannot be zero")
	}
	norm := func(p *int64, def int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += int64(n)
			if v < 0 {
				if st < 0 {
					return -1
				}
				return 0
			}
		}
		if v >= int64(n) {
			if st < 0 {
				return int64(n) - 1
			}
			return int64(n)
		}
		return v
	}
	var lo, hi int64
	if st > 0 {
		lo, hi = norm(start, 0), norm(stop, int64(n))
	} else {
		lo, hi = norm(start, int64(n)-1), norm(stop, -1)
	}
	var idx []int64
	for i := lo; (st > 0 && i < hi) || (st < 0 && i > hi); i += st {
		idx = append(idx, i)
	}
	if runes != nil || obj == "" {
		out := make([]rune, len(idx))
		for k, i := range idx {
			out[k] = runes[i]
		}
		return string(out), nil
	}
	out := make([]any, len(idx))
	for k, i := range idx {
		out[k] = items[i]
	}
	if _, ok := obj.(Tuple); ok {
		return Tuple(out), nil
	}
	return out, nil
}

func (r *renderer) evalCall(t *callExpr, s *scope) (any, error) {
	fn, err := r.eval(t.fn, s)
	if err != nil {
		return nil, err
	}
	args, kw, err := r.evalArgs(t.args, t.kwNames, t.kwVals, s)
	if err != nil {
		return nil, err
	}
	switch f := fn.(type) {
	case Callable:
		return f(r, args, kw)
	case *macro:
		return r.callMacro(f, args, kw, nil)
	case Undefined:
		return nil, undefinedErr(f)
	}
	return nil, fmt.Errorf("'%s' object is not callable", typeName(fn))
}
