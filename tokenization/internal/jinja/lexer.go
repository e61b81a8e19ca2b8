package jinja

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokKind is the kind of a lexical token inside a tag.
type tokKind uint8

const (
	tkEOF        tokKind = iota
	tkData               // template text between tags
	tkVarBegin           // {{
	tkVarEnd             // }}
	tkBlockBegin         // {%
	tkBlockEnd           // %}
	tkName
	tkString
	tkInt
	tkFloat
	tkOp
)

type token struct {
	kind tokKind
	val  string // text, name, decoded string literal, number text or operator
	line int
}

func (t token) String() string {
	switch t.kind {
	case tkEOF:
		return "end of template"
	case tkData:
		return "template data"
	case tkVarBegin:
		return "'{{'"
	case tkVarEnd:
		return "'}}'"
	case tkBlockBegin:
		return "'{%'"
	case tkBlockEnd:
		return "'%}'"
	case tkString:
		return fmt.Sprintf("string %q", t.val)
	}
	return fmt.Sprintf("'%s'", t.val)
}

// SyntaxError is a template that does not lex or parse; Line is 1-based.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// lexer splits a template into tokens the way Jinja2's lexer does with
// trim_blocks and lstrip_blocks on: "-" strips all whitespace on that side
// of a tag, "+" keeps it, a block or comment tag eats the newline after
// it, and a block or comment tag alone on its line takes the line's
// leading blanks with it.
type lexer struct {
	src          string
	pos          int
	line         int
	toks         []token
	lineStarting bool // the last thing consumed ended with a newline
}

// normalizeSource applies Jinja2's newline handling: \r\n and \r become
// \n, and one trailing newline is dropped (keep_trailing_newline=False).
func normalizeSource(src string) string {
	if strings.IndexByte(src, '\r') >= 0 {
		src = strings.ReplaceAll(src, "\r\n", "\n")
		src = strings.ReplaceAll(src, "\r", "\n")
	}
	return strings.TrimSuffix(src, "\n")
}

func lex(src string) ([]token, error) {
	lx := &lexer{src: normalizeSource(src), line: 1, lineStarting: true}
	if err := lx.run(); err != nil {
		return nil, err
	}
	return lx.toks, nil
}

func (lx *lexer) errf(format string, args ...any) error {
	return &SyntaxError{Line: lx.line, Msg: fmt.Sprintf(format, args...)}
}

func isSpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

// nextTag finds the next "{{", "{%" or "{#" at or after pos.
func (lx *lexer) nextTag() int {
	s := lx.src
	for i := lx.pos; ; {
		j := strings.IndexByte(s[i:], '{')
		if j < 0 || i+j+1 >= len(s) {
			return -1
		}
		i += j
		if c := s[i+1]; c == '{' || c == '%' || c == '#' {
			return i
		}
		i++
	}
}

// emitData adds text before a tag opener, applying the opener's
// whitespace control. sign is '-', '+' or 0; block tells a {% or {# tag.
func (lx *lexer) emitData(text string, sign byte, block bool) {
	switch {
	case sign == '-':
		text = strings.TrimRightFunc(text, isSpace)
	case sign != '+' && block:
		lpos := strings.LastIndexByte(text, '\n') + 1
		if (lpos > 0 || lx.lineStarting) && lpos < len(text) && strings.TrimFunc(text[lpos:], isSpace) == "" {
			text = text[:lpos]
		}
	}
	if text != "" {
		lx.toks = append(lx.toks, token{kind: tkData, val: text, line: lx.line})
	}
}

// advance moves pos to end, counting lines.
func (lx *lexer) advance(end int) {
	lx.line += strings.Count(lx.src[lx.pos:end], "\n")
	if end > lx.pos {
		lx.lineStarting = lx.src[end-1] == '\n'
	}
	lx.pos = end
}

// closeTag consumes a tag closer at pos (after an optional sign) and the
// whitespace it eats: all of it after "-", one newline after a block or
// comment closer when trim_blocks applies.
func (lx *lexer) closeTag(closer string, block bool) bool {
	s := lx.src
	p := lx.pos
	sign := byte(0)
	if p < len(s) && (s[p] == '-' || s[p] == '+') && strings.HasPrefix(s[p+1:], closer) {
		sign = s[p]
		p++
	}
	if !strings.HasPrefix(s[p:], closer) {
		return false
	}
	p += len(closer)
	switch {
	case sign == '-':
		for p < len(s) {
			r, n := utf8.DecodeRuneInString(s[p:])
			if !isSpace(r) {
				break
			}
			p += n
		}
	case sign == 0 && block && p < len(s) && s[p] == '\n':
		p++
	}
	lx.advance(p)
	return true
}

func (lx *lexer) run() error {
	s := lx.src
	for lx.pos < len(s) {
		at := lx.nextTag()
		if at < 0 {
			lx.toks = append(lx.toks, token{kind: tkData, val: s[lx.pos:], line: lx.line})
			lx.advance(len(s))
			break
		}
		kind := s[at+1]
		sign := byte(0)
		if at+2 < len(s) && (s[at+2] == '-' || s[at+2] == '+') {
			sign = s[at+2]
		}
		text := s[lx.pos:at]
		if kind == '%' && lx.isRaw(at) {
			lx.emitData(text, sign, true)
			if err := lx.raw(at); err != nil {
				return err
			}
			continue
		}
		lx.emitData(text, sign, kind != '{')
		lx.advance(at)
		lx.lineStarting = false
		lx.pos = at + 2
		if sign != 0 {
			lx.pos++
		}
		switch kind {
		case '#':
			if err := lx.comment(); err != nil {
				return err
			}
		case '{':
			lx.toks = append(lx.toks, token{kind: tkVarBegin, line: lx.line})
			if err := lx.inside("}}", tkVarEnd, false); err != nil {
				return err
			}
		case '%':
			lx.toks = append(lx.toks, token{kind: tkBlockBegin, line: lx.line})
			if err := lx.inside("%}", tkBlockEnd, true); err != nil {
				return err
			}
		}
	}
	lx.toks = append(lx.toks, token{kind: tkEOF, line: lx.line})
	return nil
}

func (lx *lexer) comment() error {
	s := lx.src
	for p := lx.pos; p < len(s); p++ {
		if s[p] == '#' && strings.HasPrefix(s[p:], "#}") || (s[p] == '-' || s[p] == '+') && strings.HasPrefix(s[p+1:], "#}") {
			lx.advance(p)
			lx.closeTag("#}", true)
			return nil
		}
	}
	return lx.errf("missing end of comment tag")
}

// rawOpen matches "{% raw %}" (with optional signs) at at and returns the
// index after it, or -1.
func (lx *lexer) rawTagEnd(at int, word string) (end int, closeSign byte) {
	s := lx.src
	p := at + 2
	if p < len(s) && (s[p] == '-' || s[p] == '+') {
		p++
	}
	for p < len(s) && isSpace(rune(s[p])) {
		p++
	}
	if !strings.HasPrefix(s[p:], word) {
		return -1, 0
	}
	p += len(word)
	for p < len(s) && isSpace(rune(s[p])) {
		p++
	}
	if p < len(s) && (s[p] == '-' || s[p] == '+') && strings.HasPrefix(s[p+1:], "%}") {
		return p, s[p]
	}
	if strings.HasPrefix(s[p:], "%}") {
		return p, 0
	}
	return -1, 0
}

func (lx *lexer) isRaw(at int) bool {
	end, _ := lx.rawTagEnd(at, "raw")
	return end >= 0
}

// raw handles {% raw %}...{% endraw %}: the content is data, untouched
// but for the whitespace control of the two tags.
func (lx *lexer) raw(at int) error {
	end, _ := lx.rawTagEnd(at, "raw")
	lx.advance(at)
	lx.pos = end
	// The raw opener eats whitespace like a block closer; trim_blocks
	// does not apply to it in Jinja2 (its rule has no newline suffix).
	s := lx.src
	if s[end] == '-' {
		lx.closeTag("%}", true)
	} else {
		if s[end] == '+' {
			lx.pos++
		}
		lx.advance(lx.pos + 2)
	}
	for p := lx.pos; p < len(s); p++ {
		if s[p] != '{' || !strings.HasPrefix(s[p:], "{%") {
			continue
		}
		cend, _ := lx.rawTagEnd(p, "endraw")
		if cend < 0 {
			continue
		}
		sign := byte(0)
		if p+2 < len(s) && (s[p+2] == '-' || s[p+2] == '+') {
			sign = s[p+2]
		}
		lx.emitData(s[lx.pos:p], sign, true)
		lx.advance(cend)
		lx.closeTag("%}", true)
		return nil
	}
	return lx.errf("missing end of raw directive")
}

var operators3 = []string{"**", "//", "==", "!=", ">=", "<="}

// inside lexes the expression tokens of a {{ }} or {% %} tag up to its
// closer. Closers count only outside brackets, as in Jinja2.
func (lx *lexer) inside(closer string, endKind tokKind, block bool) error {
	s := lx.src
	var depth []byte
	for {
		if lx.pos >= len(s) {
			return lx.errf("unexpected end of template, expected %q", closer)
		}
		if len(depth) == 0 {
			line := lx.line
			if lx.closeTag(closer, block) {
				lx.toks = append(lx.toks, token{kind: endKind, line: line})
				return nil
			}
		}
		c := s[lx.pos]
		r, n := utf8.DecodeRuneInString(s[lx.pos:])
		switch {
		case isSpace(r):
			p := lx.pos + n
			lx.advance(p)
		case c >= '0' && c <= '9':
			lx.number()
		case c == '_' || unicode.IsLetter(r):
			p := lx.pos
			for p < len(s) {
				r, n := utf8.DecodeRuneInString(s[p:])
				if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
					break
				}
				p += n
			}
			lx.toks = append(lx.toks, token{kind: tkName, val: s[lx.pos:p], line: lx.line})
			lx.pos = p
		case c == '\'' || c == '"':
			if err := lx.str(c); err != nil {
				return err
			}
		default:
			op := ""
			for _, o := range operators3 {
				if strings.HasPrefix(s[lx.pos:], o) {
					op = o
					break
				}
			}
			if op == "" {
				if !strings.ContainsRune("+-/*%~[](){}=.:|,;<>", rune(c)) {
					return lx.errf("unexpected character %q", r)
				}
				op = s[lx.pos : lx.pos+1]
			}
			switch op {
			case "(", "[", "{":
				depth = append(depth, op[0])
			case ")", "]", "}":
				want := map[string]byte{")": '(', "]": '[', "}": '{'}[op]
				if len(depth) == 0 || depth[len(depth)-1] != want {
					return lx.errf("unexpected '%s'", op)
				}
				depth = depth[:len(depth)-1]
			}
			lx.toks = append(lx.toks, token{kind: tkOp, val: op, line: lx.line})
			lx.pos += len(op)
		}
	}
}

// number lexes an integer or a float (digits, optional fraction,
// optional exponent; underscores between digits), as Jinja2 does. A
// number right after a dot ("x.0") is an integer attribute.
func (lx *lexer) number() {
	s := lx.src
	digits := func(p int) int {
		for p < len(s) && (s[p] >= '0' && s[p] <= '9' || s[p] == '_' && p+1 < len(s) && s[p+1] >= '0' && s[p+1] <= '9') {
			p++
		}
		return p
	}
	p := digits(lx.pos)
	isFloat := false
	afterDot := len(lx.toks) > 0 && lx.toks[len(lx.toks)-1].kind == tkOp && lx.toks[len(lx.toks)-1].val == "."
	if !afterDot {
		if p+1 < len(s) && s[p] == '.' && s[p+1] >= '0' && s[p+1] <= '9' {
			p = digits(p + 1)
			isFloat = true
		}
		if p < len(s) && (s[p] == 'e' || s[p] == 'E') {
			q := p + 1
			if q < len(s) && (s[q] == '+' || s[q] == '-') {
				q++
			}
			if q < len(s) && s[q] >= '0' && s[q] <= '9' {
				p = digits(q)
				isFloat = true
			}
		}
	}
	kind := tkInt
	if isFloat {
		kind = tkFloat
	}
	lx.toks = append(lx.toks, token{kind: kind, val: strings.ReplaceAll(s[lx.pos:p], "_", ""), line: lx.line})
	lx.pos = p
}

// str lexes a string literal and decodes Python's escapes.
func (lx *lexer) str(q byte) error {
	s := lx.src
	var b strings.Builder
	p := lx.pos + 1
	line := lx.line
	for p < len(s) {
		c := s[p]
		switch {
		case c == q:
			lx.toks = append(lx.toks, token{kind: tkString, val: b.String(), line: line})
			lx.advance(p + 1)
			return nil
		case c == '\\' && p+1 < len(s):
			p = decodeEscape(s, p, &b)
		default:
			b.WriteByte(c)
			p++
		}
	}
	return lx.errf("unterminated string")
}

// decodeEscape writes the escape at s[p] ('\\') as Python's
// unicode-escape codec does and returns the index after it.
func decodeEscape(s string, p int, b *strings.Builder) int {
	c := s[p+1]
	simple := map[byte]string{'n': "\n", 't': "\t", 'r': "\r", '\\': "\\", '\'': "'", '"': "\"", 'a': "\a", 'b': "\b", 'f': "\f", 'v': "\v", '\n': ""}
	if v, ok := simple[c]; ok {
		b.WriteString(v)
		return p + 2
	}
	hex := map[byte]int{'x': 2, 'u': 4, 'U': 8}
	if n, ok := hex[c]; ok && p+2+n <= len(s) {
		var r rune
		valid := true
		for _, h := range s[p+2 : p+2+n] {
			d := strings.IndexRune("0123456789abcdef", unicode.ToLower(h))
			if d < 0 {
				valid = false
				break
			}
			r = r*16 + rune(d)
		}
		if valid {
			b.WriteRune(r)
			return p + 2 + n
		}
	}
	if c >= '0' && c <= '7' {
		q, r := p+1, rune(0)
		for q < len(s) && q < p+4 && s[q] >= '0' && s[q] <= '7' {
			r = r*8 + rune(s[q]-'0')
			q++
		}
		b.WriteRune(r)
		return q
	}
	b.WriteByte('\\')
	return p + 1
}
