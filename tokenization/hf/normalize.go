package hf

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites a piece of text before pre-tokenization.
type normalizer interface {
	normalize(s string) (string, error)
}

type unicodeNorm struct{ form norm.Form }

func (n unicodeNorm) normalize(s string) (string, error) { return n.form.String(s), nil }

// lowercase maps each character as Rust's char::to_lowercase does: the
// simple mapping, plus the one unconditional special case (U+0130).
type lowercase struct{}

func (lowercase) normalize(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == 0x130 {
			b.WriteString("i\u0307")
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String(), nil
}

type prepend struct{ prefix string }

func (p prepend) normalize(s string) (string, error) {
	if s == "" {
		return s, nil
	}
	return p.prefix + s, nil
}

type replace struct {
	pat     *pattern
	content string
}

func (r replace) normalize(s string) (string, error) {
	var b strings.Builder
	last := 0
	err := r.pat.each(s, func(from, to int) {
		b.WriteString(s[last:from])
		b.WriteString(r.content)
		last = to
	})
	if err != nil {
		return "", err
	}
	if last == 0 && b.Len() == 0 {
		return s, nil
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

type strip struct{ left, right bool }

func (st strip) normalize(s string) (string, error) {
	if st.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if st.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s, nil
}

type normalizerSeq []normalizer

func (seq normalizerSeq) normalize(s string) (string, error) {
	for _, n := range seq {
		var err error
		if s, err = n.normalize(s); err != nil {
			return "", err
		}
	}
	return s, nil
}

func parseNormalizer(raw json.RawMessage, o *Options) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw, "normalizer")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Lowercase":
		return lowercase{}, nil
	case "Prepend":
		var v struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Prepend: %w", err)
		}
		return prepend{v.Prepend}, nil
	case "Replace":
		var v struct {
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		p, err := compilePattern(v.Pattern, o)
		if err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		return replace{p, v.Content}, nil
	case "Strip":
		var v struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Strip: %w", err)
		}
		return strip{v.Left, v.Right}, nil
	case "Sequence":
		seq, err := parseSequence(raw, "normalizer", "normalizers", func(r json.RawMessage) (normalizer, error) { return parseNormalizer(r, o) })
		if err != nil || len(seq) == 0 {
			return nil, err
		}
		if len(seq) == 1 {
			return seq[0], nil
		}
		return normalizerSeq(seq), nil
	}
	return nil, &unsupportedError{"normalizer", typ}
}

// validUTF8 replaces each byte that is not part of valid UTF-8 with U+FFFD,
// as Go's JSON decoder does: the Rust crate only ever sees valid strings.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
