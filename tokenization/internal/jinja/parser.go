package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

type parser struct {
	toks  []token
	i     int
	depth int // nesting of expressions and blocks, bounded
}

// maxNesting bounds how deep expressions and blocks nest, so that a
// hostile template cannot exhaust the stack.
const maxNesting = 250

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxNesting {
		return p.errAt(p.cur().line, "template nests too deeply")
	}
	return nil
}

// Template is a parsed template; it is immutable and safe for concurrent
// rendering.
type Template struct {
	body []node
	// sizeHint is the last rendering's size plus a margin, to size the
	// output buffer once.
	sizeHint atomic.Int64
}

// Parse parses a template. Constructs outside the supported subset are
// errors naming the construct and its line.
func Parse(src string) (*Template, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, p.errAt(p.cur().line, "unexpected '%s'", end)
	}
	if err := checkNames(body, false); err != nil {
		return nil, err
	}
	return &Template{body: body}, nil
}

func (p *parser) cur() token  { return p.toks[p.i] }
func (p *parser) peek() token { return p.toks[min(p.i+1, len(p.toks)-1)] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}

func (p *parser) errAt(line int, format string, args ...any) error {
	return &SyntaxError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) isOp(v string) bool   { t := p.cur(); return t.kind == tkOp && t.val == v }
func (p *parser) isName(v string) bool { t := p.cur(); return t.kind == tkName && t.val == v }

func (p *parser) expectOp(v string) error {
	if !p.isOp(v) {
		return p.errAt(p.cur().line, "expected '%s', got %s", v, p.cur())
	}
	p.next()
	return nil
}

func (p *parser) expectName() (string, error) {
	t := p.cur()
	if t.kind != tkName {
		return "", p.errAt(t.line, "expected a name, got %s", t)
	}
	p.next()
	return t.val, nil
}

func (p *parser) expectBlockEnd() error {
	if p.cur().kind != tkBlockEnd {
		return p.errAt(p.cur().line, "expected '%%}', got %s", p.cur())
	}
	p.next()
	return nil
}

// endTags are the tags that close a body; parseBody returns at them,
// leaving the tag name consumed and the rest of the tag to the caller.
var endTags = map[string]bool{
	"endif": true, "elif": true, "else": true, "endfor": true, "endmacro": true, "endcall": true,
	"endset": true, "endfilter": true, "endgeneration": true,
}

// unsupportedTags are Jinja tags that chat templates cannot use here;
// naming them beats a generic error.
var unsupportedTags = map[string]string{
	"include": "include", "import": "import", "from": "from-import", "extends": "extends",
	"block": "block", "with": "with", "do": "do (extension)", "autoescape": "autoescape",
	"trans": "trans (extension)",
}

// parseBody parses nodes up to the end of the template or an end tag,
// whose name it returns.
func (p *parser) parseBody() ([]node, string, error) {
	if err := p.enter(); err != nil {
		return nil, "", err
	}
	defer func() { p.depth-- }()
	var body []node
	for {
		t := p.cur()
		switch t.kind {
		case tkEOF:
			return body, "", nil
		case tkData:
			p.next()
			body = append(body, &dataNode{pos{t.line}, t.val})
		case tkVarBegin:
			p.next()
			e, err := p.parseExpr()
			if err != nil {
				return nil, "", err
			}
			if p.cur().kind != tkVarEnd {
				return nil, "", p.errAt(p.cur().line, "expected '}}', got %s", p.cur())
			}
			p.next()
			body = append(body, &outputNode{pos{t.line}, e})
		case tkBlockBegin:
			p.next()
			nt := p.cur()
			if nt.kind != tkName {
				return nil, "", p.errAt(nt.line, "expected a tag name, got %s", nt)
			}
			if endTags[nt.val] {
				p.next()
				return body, nt.val, nil
			}
			n, err := p.parseTag()
			if err != nil {
				return nil, "", err
			}
			body = append(body, n)
		default:
			return nil, "", p.errAt(t.line, "unexpected %s", t)
		}
	}
}

func (p *parser) parseTag() (node, error) {
	t := p.next()
	ps := pos{t.line}
	switch t.val {
	case "if":
		return p.parseIf(ps)
	case "for":
		return p.parseFor(ps)
	case "set":
		return p.parseSet(ps)
	case "macro":
		return p.parseMacro(ps)
	case "call":
		return p.parseCall(ps)
	case "filter":
		fs, err := p.parseFilterChain()
		if err != nil {
			return nil, err
		}
		body, err := p.parseUntil(t.line, "endfilter")
		return &filterBlockNode{ps, fs, body}, err
	case "generation":
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, err := p.parseUntil(t.line, "endgeneration")
		return &generationNode{ps, body}, err
	case "break", "continue":
		return &loopControlNode{ps, t.val == "break"}, p.expectBlockEnd()
	}
	if what, ok := unsupportedTags[t.val]; ok {
		return nil, p.errAt(t.line, "unsupported construct: {%% %s %%}", what)
	}
	return nil, p.errAt(t.line, "unknown tag '%s'", t.val)
}

// parseUntil parses a body that must end with the tag want.
func (p *parser) parseUntil(line int, want string) ([]node, error) {
	if p.cur().kind == tkBlockEnd {
		p.next()
	}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if end != want {
		if end == "" {
			return nil, p.errAt(line, "unexpected end of template, expected '%s'", want)
		}
		return nil, p.errAt(p.cur().line, "unexpected '%s', expected '%s'", end, want)
	}
	return body, p.expectBlockEnd()
}

func (p *parser) parseIf(ps pos) (node, error) {
	n := &ifNode{pos: ps}
	for {
		cond, err := p.parseTuple(false)
		if err != nil {
			return nil, err
		}
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, end, err := p.parseBody()
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch end {
		case "elif":
			continue
		case "else":
			if err := p.expectBlockEnd(); err != nil {
				return nil, err
			}
			body, err := p.parseUntil(ps.ln, "endif")
			if err != nil {
				return nil, err
			}
			n.bodies = append(n.bodies, body)
			return n, nil
		case "endif":
			return n, p.expectBlockEnd()
		case "":
			return nil, p.errAt(ps.ln, "unexpected end of template, expected 'endif'")
		default:
			return nil, p.errAt(p.cur().line, "unexpected '%s', expected 'endif'", end)
		}
	}
}

func (p *parser) parseTargets() ([]string, error) {
	var names []string
	paren := p.isOp("(")
	if paren {
		p.next()
	}
	for {
		name, err := p.expectName()
		if err != nil {
			return nil, err
		}
		names = append(names, name)
		if !p.isOp(",") {
			break
		}
		p.next()
		if p.cur().kind != tkName {
			break
		}
	}
	if paren {
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func (p *parser) parseFor(ps pos) (node, error) {
	targets, err := p.parseTargets()
	if err != nil {
		return nil, err
	}
	if !p.isName("in") {
		return nil, p.errAt(p.cur().line, "expected 'in', got %s", p.cur())
	}
	p.next()
	iter, err := p.parseTupleNoCond()
	if err != nil {
		return nil, err
	}
	n := &forNode{pos: ps, targets: targets, iter: iter}
	if p.isName("if") {
		p.next()
		if n.filter, err = p.parseExpr(); err != nil {
			return nil, err
		}
	}
	if p.isName("recursive") {
		return nil, p.errAt(p.cur().line, "unsupported construct: recursive for loop")
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	n.body = body
	switch end {
	case "else":
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		if n.els, err = p.parseUntil(ps.ln, "endfor"); err != nil {
			return nil, err
		}
		return n, nil
	case "endfor":
		return n, p.expectBlockEnd()
	case "":
		return nil, p.errAt(ps.ln, "unexpected end of template, expected 'endfor'")
	}
	return nil, p.errAt(p.cur().line, "unexpected '%s', expected 'endfor'", end)
}

func (p *parser) parseSet(ps pos) (node, error) {
	n := &setNode{pos: ps}
	if p.cur().kind == tkName && p.peek().kind == tkOp && p.peek().val == "." {
		n.attrOf = p.next().val
		p.next()
		name, err := p.expectName()
		if err != nil {
			return nil, err
		}
		n.attr = name
	} else {
		targets, err := p.parseTargets()
		if err != nil {
			return nil, err
		}
		n.targets = targets
	}
	if p.isOp("=") {
		p.next()
		v, err := p.parseTuple(false)
		if err != nil {
			return nil, err
		}
		n.value = v
		return n, p.expectBlockEnd()
	}
	if n.attrOf != "" || len(n.targets) != 1 {
		return nil, p.errAt(p.cur().line, "expected '=', got %s", p.cur())
	}
	if p.isOp("|") {
		fs, err := p.parseFilterChain()
		if err != nil {
			return nil, err
		}
		n.filters = fs
	}
	body, err := p.parseUntil(ps.ln, "endset")
	n.body = body
	return n, err
}

// parseParams parses a macro's or call block's "(a, b=1)".
func (p *parser) parseParams() ([]string, []expr, error) {
	if err := p.expectOp("("); err != nil {
		return nil, nil, err
	}
	var names []string
	var defs []expr
	for !p.isOp(")") {
		if len(names) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, nil, err
			}
			if p.isOp(")") {
				break
			}
		}
		name, err := p.expectName()
		if err != nil {
			return nil, nil, err
		}
		names = append(names, name)
		if p.isOp("=") {
			p.next()
			d, err := p.parseExpr()
			if err != nil {
				return nil, nil, err
			}
			defs = append(defs, d)
		} else if len(defs) > 0 {
			return nil, nil, p.errAt(p.cur().line, "non-default argument follows default argument")
		}
	}
	p.next()
	return names, defs, nil
}

func (p *parser) parseMacro(ps pos) (node, error) {
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	params, defs, err := p.parseParams()
	if err != nil {
		return nil, err
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	body, err := p.parseUntil(ps.ln, "endmacro")
	if err != nil {
		return nil, err
	}
	return &macroNode{ps, name, params, defs, body}, nil
}

func (p *parser) parseCall(ps pos) (node, error) {
	n := &callBlockNode{pos: ps}
	if p.isOp("(") {
		var err error
		if n.params, n.defs, err = p.parseParams(); err != nil {
			return nil, err
		}
	}
	e, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	call, ok := e.(*callExpr)
	if !ok {
		return nil, p.errAt(ps.ln, "expected a call after 'call'")
	}
	n.call = call
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	n.body, err = p.parseUntil(ps.ln, "endcall")
	return n, err
}

// parseFilterChain parses "name(args) | name ..." of a filter block or
// block set; the leading "|" is optional.
func (p *parser) parseFilterChain() ([]*filterExpr, error) {
	var fs []*filterExpr
	for {
		if p.isOp("|") {
			p.next()
		}
		f, err := p.parseFilter(nil)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
		if !p.isOp("|") {
			return fs, nil
		}
	}
}

// Expressions, from the loosest binding to the tightest, as in Jinja2.

func (p *parser) parseExpr() (expr, error) { return p.parseCond(true) }

// parseTuple parses an expression or a bare tuple "a, b".
func (p *parser) parseTuple(noCond bool) (expr, error) {
	line := p.cur().line
	parse := p.parseExpr
	if noCond {
		parse = func() (expr, error) { return p.parseCond(false) }
	}
	first, err := parse()
	if err != nil {
		return nil, err
	}
	if !p.isOp(",") {
		return first, nil
	}
	items := []expr{first}
	for p.isOp(",") {
		p.next()
		if p.cur().kind == tkBlockEnd || p.cur().kind == tkVarEnd || p.isOp(")") {
			break
		}
		e, err := parse()
		if err != nil {
			return nil, err
		}
		items = append(items, e)
	}
	return &listExpr{pos{line}, items, true}, nil
}

func (p *parser) parseTupleNoCond() (expr, error) { return p.parseTuple(true) }

func (p *parser) parseCond(withCond bool) (expr, error) {
	e, err := p.parseOr()
	if err != nil || !withCond {
		return e, err
	}
	for p.isName("if") {
		line := p.next().line
		cond, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		c := &condExpr{pos: pos{line}, cond: cond, yes: e}
		if p.isName("else") {
			p.next()
			if c.no, err = p.parseCond(true); err != nil {
				return nil, err
			}
		}
		e = c
	}
	return e, nil
}

func (p *parser) parseOr() (expr, error) {
	l, err := p.parseAnd()
	for err == nil && p.isName("or") {
		line := p.next().line
		var r expr
		r, err = p.parseAnd()
		l = &binExpr{pos{line}, "or", l, r}
	}
	return l, err
}

func (p *parser) parseAnd() (expr, error) {
	l, err := p.parseNot()
	for err == nil && p.isName("and") {
		line := p.next().line
		var r expr
		r, err = p.parseNot()
		l = &binExpr{pos{line}, "and", l, r}
	}
	return l, err
}

func (p *parser) parseNot() (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if p.isName("not") {
		line := p.next().line
		x, err := p.parseNot()
		return &unaryExpr{pos{line}, "not", x}, err
	}
	return p.parseCompare()
}

func (p *parser) parseCompare() (expr, error) {
	line := p.cur().line
	first, err := p.parseMath1()
	if err != nil {
		return nil, err
	}
	var ops []string
	var rest []expr
	for {
		t := p.cur()
		var op string
		switch {
		case t.kind == tkOp && (t.val == "==" || t.val == "!=" || t.val == "<" || t.val == "<=" || t.val == ">" || t.val == ">="):
			op = t.val
			p.next()
		case p.isName("in"):
			op = "in"
			p.next()
		case p.isName("not") && p.peek().kind == tkName && p.peek().val == "in":
			op = "notin"
			p.next()
			p.next()
		}
		if op == "" {
			break
		}
		r, err := p.parseMath1()
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
		rest = append(rest, r)
	}
	if len(ops) == 0 {
		return first, nil
	}
	return &compareExpr{pos{line}, first, ops, rest}, nil
}

func (p *parser) parseBinary(ops []string, sub func() (expr, error)) (expr, error) {
	l, err := sub()
	for err == nil {
		t := p.cur()
		if t.kind != tkOp || !contains(ops, t.val) {
			break
		}
		p.next()
		var r expr
		r, err = sub()
		l = &binExpr{pos{t.line}, t.val, l, r}
	}
	return l, err
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (p *parser) parseMath1() (expr, error) {
	return p.parseBinary([]string{"+", "-"}, p.parseConcat)
}

func (p *parser) parseConcat() (expr, error) {
	return p.parseBinary([]string{"~"}, p.parseMath2)
}

func (p *parser) parseMath2() (expr, error) {
	return p.parseBinary([]string{"*", "/", "//", "%"}, p.parsePow)
}

func (p *parser) parsePow() (expr, error) {
	return p.parseBinary([]string{"**"}, func() (expr, error) { return p.parseUnary(true) })
}

func (p *parser) parseUnary(withFilter bool) (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	t := p.cur()
	var e expr
	var err error
	if t.kind == tkOp && (t.val == "-" || t.val == "+") {
		p.next()
		var x expr
		if x, err = p.parseUnary(false); err != nil {
			return nil, err
		}
		e = &unaryExpr{pos{t.line}, t.val, x}
	} else {
		if e, err = p.parsePrimary(); err != nil {
			return nil, err
		}
		if e, err = p.parsePostfix(e); err != nil {
			return nil, err
		}
	}
	if withFilter {
		return p.parseFilterExpr(e)
	}
	return e, nil
}

func (p *parser) parsePrimary() (expr, error) {
	t := p.cur()
	ps := pos{t.line}
	switch t.kind {
	case tkName:
		p.next()
		switch t.val {
		case "true", "True":
			return &constExpr{ps, true}, nil
		case "false", "False":
			return &constExpr{ps, false}, nil
		case "none", "None":
			return &constExpr{ps, nil}, nil
		}
		return &nameExpr{ps, t.val}, nil
	case tkString:
		p.next()
		s := t.val
		for p.cur().kind == tkString { // adjacent literals concatenate
			s += p.next().val
		}
		return &constExpr{ps, s}, nil
	case tkInt:
		p.next()
		v, err := strconv.ParseInt(t.val, 10, 64)
		if err != nil {
			return nil, p.errAt(t.line, "integer %s out of range", t.val)
		}
		return &constExpr{ps, v}, nil
	case tkFloat:
		p.next()
		v, err := strconv.ParseFloat(t.val, 64)
		if err != nil {
			return nil, p.errAt(t.line, "bad float %s", t.val)
		}
		return &constExpr{ps, v}, nil
	case tkOp:
		switch t.val {
		case "(":
			p.next()
			if p.isOp(")") {
				p.next()
				return &listExpr{ps, nil, true}, nil
			}
			e, err := p.parseTuple(false)
			if err != nil {
				return nil, err
			}
			if le, ok := e.(*listExpr); ok && le.tuple && p.toks[p.i-1].val == "," {
				le.items = append([]expr(nil), le.items...)
			}
			return e, p.expectOp(")")
		case "[":
			p.next()
			l := &listExpr{pos: ps}
			for !p.isOp("]") {
				if len(l.items) > 0 {
					if err := p.expectOp(","); err != nil {
						return nil, err
					}
					if p.isOp("]") {
						break
					}
				}
				e, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				l.items = append(l.items, e)
			}
			p.next()
			return l, nil
		case "{":
			p.next()
			d := &dictExpr{pos: ps}
			for !p.isOp("}") {
				if len(d.keys) > 0 {
					if err := p.expectOp(","); err != nil {
						return nil, err
					}
					if p.isOp("}") {
						break
					}
				}
				k, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
			}
			p.next()
			return d, nil
		}
	}
	return nil, p.errAt(t.line, "unexpected %s", t)
}

func (p *parser) parsePostfix(e expr) (expr, error) {
	for {
		t := p.cur()
		if t.kind != tkOp {
			return e, nil
		}
		switch t.val {
		case ".":
			p.next()
			a := p.next()
			switch a.kind {
			case tkName:
				e = &attrExpr{pos{t.line}, e, a.val}
			case tkInt:
				n, _ := strconv.ParseInt(a.val, 10, 64)
				e = &itemExpr{pos{t.line}, e, &constExpr{pos{t.line}, n}}
			default:
				return nil, p.errAt(a.line, "expected an attribute name, got %s", a)
			}
		case "[":
			p.next()
			var err error
			if e, err = p.parseSubscript(e, t.line); err != nil {
				return nil, err
			}
		case "(":
			c, err := p.parseCallArgs(e, t.line)
			if err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}

func (p *parser) parseSubscript(obj expr, line int) (expr, error) {
	var parts [3]expr
	n := 0
	colons := 0
	for {
		if p.isOp("]") {
			p.next()
			break
		}
		if p.isOp(":") {
			p.next()
			colons++
			if colons > 2 {
				return nil, p.errAt(line, "too many ':' in subscript")
			}
			n = colons
			continue
		}
		if parts[n] != nil {
			return nil, p.errAt(p.cur().line, "expected ']' or ':', got %s", p.cur())
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if colons == 0 && p.isOp(",") {
			return nil, p.errAt(line, "unsupported construct: tuple subscript")
		}
		parts[n] = e
	}
	if colons == 0 {
		if parts[0] == nil {
			return nil, p.errAt(line, "empty subscript")
		}
		return &itemExpr{pos{line}, obj, parts[0]}, nil
	}
	return &sliceExpr{pos{line}, obj, parts[0], parts[1], parts[2]}, nil
}

// parseArgs parses "(a, b, k=v)" into positional and keyword arguments.
func (p *parser) parseArgs() (args []expr, kwNames []string, kwVals []expr, err error) {
	if err := p.expectOp("("); err != nil {
		return nil, nil, nil, err
	}
	for !p.isOp(")") {
		if len(args)+len(kwNames) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, nil, nil, err
			}
			if p.isOp(")") {
				break
			}
		}
		if p.isOp("*") || p.isOp("**") {
			return nil, nil, nil, p.errAt(p.cur().line, "unsupported construct: *args or **kwargs in a call")
		}
		if p.cur().kind == tkName && p.peek().kind == tkOp && p.peek().val == "=" {
			name := p.next().val
			p.next()
			v, err := p.parseExpr()
			if err != nil {
				return nil, nil, nil, err
			}
			kwNames = append(kwNames, name)
			kwVals = append(kwVals, v)
			continue
		}
		if len(kwNames) > 0 {
			return nil, nil, nil, p.errAt(p.cur().line, "positional argument follows keyword argument")
		}
		v, err := p.parseExpr()
		if err != nil {
			return nil, nil, nil, err
		}
		args = append(args, v)
	}
	p.next()
	return args, kwNames, kwVals, nil
}

func (p *parser) parseCallArgs(fn expr, line int) (*callExpr, error) {
	args, kn, kv, err := p.parseArgs()
	if err != nil {
		return nil, err
	}
	return &callExpr{pos{line}, fn, args, kn, kv}, nil
}

func (p *parser) parseFilter(arg expr) (*filterExpr, error) {
	line := p.cur().line
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	for p.isOp(".") { // dotted filter names
		p.next()
		part, err := p.expectName()
		if err != nil {
			return nil, err
		}
		name += "." + part
	}
	f := &filterExpr{pos: pos{line}, arg: arg, name: name}
	if p.isOp("(") {
		if f.args, f.kwNames, f.kwVals, err = p.parseArgs(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// parseFilterExpr parses the "| filter" and "is test" chain after a
// primary expression.
func (p *parser) parseFilterExpr(e expr) (expr, error) {
	for {
		switch {
		case p.isOp("|"):
			p.next()
			f, err := p.parseFilter(e)
			if err != nil {
				return nil, err
			}
			e = f
		case p.isName("is"):
			line := p.next().line
			t := &testExpr{pos: pos{line}, arg: e}
			if p.isName("not") {
				p.next()
				t.neg = true
			}
			name, err := p.expectName()
			if err != nil {
				return nil, err
			}
			for p.isOp(".") {
				p.next()
				part, err := p.expectName()
				if err != nil {
					return nil, err
				}
				name += "." + part
			}
			t.name = name
			c := p.cur()
			switch {
			case p.isOp("("):
				args, kn, _, err := p.parseArgs()
				if err != nil {
					return nil, err
				}
				if len(kn) > 0 {
					return nil, p.errAt(line, "unsupported construct: keyword arguments to a test")
				}
				t.args = args
			case c.kind == tkString || c.kind == tkInt || c.kind == tkFloat || c.kind == tkOp && (c.val == "[" || c.val == "{") ||
				c.kind == tkName && !contains([]string{"else", "or", "and"}, c.val):
				if c.kind == tkName && c.val == "in" {
					break
				}
				a, err := p.parsePrimary()
				if err != nil {
					return nil, err
				}
				if a, err = p.parsePostfix(a); err != nil {
					return nil, err
				}
				t.args = []expr{a}
			}
			e = t
		case p.isOp("("):
			c, err := p.parseCallArgs(e, p.cur().line)
			if err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}

// describe names an expression for error messages.
func describe(e expr) string {
	switch t := e.(type) {
	case *nameExpr:
		return t.name
	case *attrExpr:
		return describe(t.obj) + "." + t.name
	case *itemExpr:
		if c, ok := t.key.(*constExpr); ok {
			return fmt.Sprintf("%s[%s]", describe(t.obj), repr(c.val))
		}
		return describe(t.obj) + "[...]"
	case *callExpr:
		return describe(t.fn) + "()"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", e), "*jinja.")
}
