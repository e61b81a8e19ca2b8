package hf

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// pattern is a Split or Replace pattern: a literal string or a regex. The
// regexes of the common byte-level models run through hand-written matchers
// (fastsplit.go) that are checked against regexp2 by tests and fuzzing.
type pattern struct {
	lit  string
	re   *regexp2.Regexp
	fast func(s string, i int) int // end of the match at s[i]; every position matches
}

func compilePattern(p patternJSON, o *Options) (*pattern, error) {
	switch {
	case p.String != nil && p.Regex == nil:
		return &pattern{lit: *p.String}, nil
	case p.Regex != nil && p.String == nil:
		return compileRegex(*p.Regex, o)
	}
	return nil, fmt.Errorf("pattern needs exactly one of String and Regex")
}

func compileRegex(expr string, o *Options) (*pattern, error) {
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("%w: regex %q: %v", ErrUnsupported, expr, err)
	}
	re.MatchTimeout = o.regexTimeout()
	p := &pattern{re: re}
	if !o.NoFastPaths {
		p.fast = fastMatcher(expr)
	}
	return p, nil
}

func (o *Options) regexTimeout() time.Duration {
	if o == nil || o.RegexTimeout <= 0 {
		return DefaultRegexTimeout
	}
	return o.RegexTimeout
}

// each calls fn with the byte offsets of every match of p in s, left to
// right, non-overlapping, as the Rust crate's find_iter yields them (empty
// matches included).
func (p *pattern) each(s string, fn func(from, to int)) error {
	switch {
	case p.fast != nil:
		for i := 0; i < len(s); {
			j := p.fast(s, i)
			fn(i, j)
			i = j
		}
		return nil
	case p.re == nil:
		if p.lit == "" {
			return nil
		}
		for i := 0; ; {
			k := strings.Index(s[i:], p.lit)
			if k < 0 {
				return nil
			}
			fn(i+k, i+k+len(p.lit))
			i += k + len(p.lit)
		}
	}
	return p.regexEach(s, fn)
}

func (p *pattern) regexEach(s string, fn func(from, to int)) error {
	if s == "" {
		return nil
	}
	runes := []rune(s)
	// offs maps a rune index to a byte offset; nil when s is ASCII.
	var offs []int
	if len(runes) != len(s) {
		offs = make([]int, len(runes)+1)
		b := 0
		for i, r := range runes {
			offs[i] = b
			b += utf8.RuneLen(r)
		}
		offs[len(runes)] = b
	}
	m, err := p.re.FindRunesMatch(runes)
	for ; err == nil && m != nil; m, err = p.re.FindNextMatch(m) {
		from, to := m.Index, m.Index+m.Length
		if offs != nil {
			from, to = offs[from], offs[to]
		}
		fn(from, to)
	}
	if err != nil {
		return fmt.Errorf("tokenizer regex %q: %w", p.re.String(), err)
	}
	return nil
}
