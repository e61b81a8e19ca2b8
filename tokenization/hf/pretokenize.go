package hf

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// piece is a slice of the input on its way through the pipeline: text still
// to be split and tokenized, or an added token already resolved to its ID.
type piece struct {
	s     string
	id    int64 // the added token's ID, or -1 for text
	start bool  // text that begins at offset 0 of the original input
}

// preTokenizer splits the text pieces of src and appends the results to dst;
// added-token pieces pass through unchanged.
type preTokenizer interface {
	preTokenize(dst, src []piece, st *scratch) ([]piece, error)
}

// Split delimiter behaviours.
const (
	splitRemoved = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

var splitBehaviors = map[string]int{
	"Removed": splitRemoved, "Isolated": splitIsolated, "MergedWithPrevious": splitMergedWithPrevious,
	"MergedWithNext": splitMergedWithNext, "Contiguous": splitContiguous,
}

// span is a run of a piece: a match of the split pattern or the text between.
type span struct {
	from, to int
	match    bool
}

// splitByPattern is NormalizedString::split: it cuts s at the matches of
// each (which reports them through emit) and keeps or merges the matches
// according to behavior.
func splitByPattern(dst []piece, p piece, behavior int, invert bool, st *scratch,
	each func(s string, emit func(from, to int)) error) ([]piece, error) {
	s := p.s
	spans := st.spans[:0]
	prev := 0
	err := each(s, func(from, to int) {
		if prev != from {
			spans = append(spans, span{prev, from, false})
		}
		spans = append(spans, span{from, to, true})
		prev = to
	})
	if err != nil {
		return dst, err
	}
	if prev != len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	if invert {
		for i := range spans {
			spans[i].match = !spans[i].match
		}
	}
	out := spans[:0] // rewritten in place: each output span ends at or before the input read
	switch behavior {
	case splitIsolated:
		out = spans
	case splitRemoved:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, sp)
			}
		}
	case splitContiguous:
		prevMatch := false
		for i, sp := range spans {
			if i > 0 && sp.match == prevMatch {
				out[len(out)-1].to = sp.to
			} else {
				out = append(out, span{sp.from, sp.to, false})
			}
			prevMatch = sp.match
		}
	case splitMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].to = sp.to
			} else {
				out = append(out, span{sp.from, sp.to, false})
			}
			prevMatch = sp.match
		}
	case splitMergedWithNext:
		// Walk backwards, merging each match into the span after it.
		rev := st.spans2[:0]
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(rev) > 0 {
				rev[len(rev)-1].from = sp.from
			} else {
				rev = append(rev, span{sp.from, sp.to, false})
			}
			prevMatch = sp.match
		}
		for i := len(rev) - 1; i >= 0; i-- {
			out = append(out, rev[i])
		}
		st.spans2 = rev
	}
	for _, sp := range out {
		if sp.to > sp.from {
			dst = append(dst, piece{s: s[sp.from:sp.to], id: -1, start: p.start && sp.from == 0})
		}
	}
	st.spans = spans
	return dst, nil
}

type splitPT struct {
	pat      *pattern
	behavior int
	invert   bool
}

func (sp *splitPT) preTokenize(dst, src []piece, st *scratch) ([]piece, error) {
	fastIsolated := sp.pat.fast != nil && sp.behavior == splitIsolated && !sp.invert
	for _, p := range src {
		if p.id >= 0 {
			dst = append(dst, p)
			continue
		}
		if fastIsolated {
			// The matches tile the piece: emit them directly.
			for i := 0; i < len(p.s); {
				j := sp.pat.fast(p.s, i)
				dst = append(dst, piece{s: p.s[i:j], id: -1, start: p.start && i == 0})
				i = j
			}
			continue
		}
		var err error
		dst, err = splitByPattern(dst, p, sp.behavior, sp.invert, st, sp.pat.each)
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// byteLevelPT is the ByteLevel pre-tokenizer. With mapBytes unset the model
// works on raw bytes and applies the byte map itself (bpe.byteMode).
type byteLevelPT struct {
	addPrefixSpace bool
	split          *splitPT // GPT-2 regex when use_regex is set
	mapBytes       bool
}

func (bl *byteLevelPT) preTokenize(dst, src []piece, st *scratch) ([]piece, error) {
	n := len(dst)
	for _, p := range src {
		if p.id < 0 && bl.addPrefixSpace && !strings.HasPrefix(p.s, " ") {
			p.s = " " + p.s
		}
		if p.id >= 0 || bl.split == nil {
			dst = append(dst, p)
			continue
		}
		var err error
		if dst, err = bl.split.preTokenize(dst, []piece{p}, st); err != nil {
			return dst, err
		}
	}
	if bl.mapBytes {
		for i := n; i < len(dst); i++ {
			if dst[i].id < 0 {
				dst[i].s = mapBytes(dst[i].s)
			}
		}
	}
	return dst, nil
}

func mapBytes(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteChar[s[i]])
	}
	return b.String()
}

// Metaspace prepend schemes.
const (
	prependAlways = iota
	prependFirst
	prependNever
)

type metaspacePT struct {
	repl    string
	scheme  int
	split   bool
	replPat *pattern
}

func (m *metaspacePT) preTokenize(dst, src []piece, st *scratch) ([]piece, error) {
	for _, p := range src {
		if p.id >= 0 {
			dst = append(dst, p)
			continue
		}
		p.s = strings.ReplaceAll(p.s, " ", m.repl)
		if !strings.HasPrefix(p.s, m.repl) &&
			(m.scheme == prependAlways || m.scheme == prependFirst && p.start) {
			p.s = m.repl + p.s
		}
		if !m.split {
			dst = append(dst, p)
			continue
		}
		var err error
		if dst, err = splitByPattern(dst, p, splitMergedWithNext, false, st, m.replPat.each); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// digitsPT isolates numeric characters (Rust char::is_numeric), one by one
// or in runs.
type digitsPT struct{ individual bool }

func (d digitsPT) preTokenize(dst, src []piece, st *scratch) ([]piece, error) {
	behavior := splitContiguous
	if d.individual {
		behavior = splitIsolated
	}
	each := func(s string, emit func(from, to int)) error {
		for i, r := range s {
			if unicode.IsNumber(r) {
				emit(i, i+utf8.RuneLen(r))
			}
		}
		return nil
	}
	for _, p := range src {
		if p.id >= 0 {
			dst = append(dst, p)
			continue
		}
		var err error
		if dst, err = splitByPattern(dst, p, behavior, false, st, each); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

type preTokenizerSeq []preTokenizer

func (seq preTokenizerSeq) preTokenize(dst, src []piece, st *scratch) ([]piece, error) {
	cur := src
	for i, pt := range seq {
		var out []piece
		if i == len(seq)-1 {
			out = dst
		} else {
			out = st.takePieces()
		}
		var err error
		if out, err = pt.preTokenize(out, cur, st); err != nil {
			return dst, err
		}
		if i > 0 {
			st.givePieces(cur)
		}
		cur = out
	}
	return cur, nil
}

func parsePreTokenizer(raw json.RawMessage, o *Options) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw, "pre_tokenizer")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Split":
		var v struct {
			Pattern  patternJSON `json:"pattern"`
			Behavior string      `json:"behavior"`
			Invert   bool        `json:"invert"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		b, ok := splitBehaviors[v.Behavior]
		if !ok {
			return nil, fmt.Errorf("pre_tokenizer Split: unknown behavior %q", v.Behavior)
		}
		p, err := compilePattern(v.Pattern, o)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		return &splitPT{pat: p, behavior: b, invert: v.Invert}, nil
	case "ByteLevel":
		var v struct {
			AddPrefixSpace bool  `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer ByteLevel: %w", err)
		}
		bl := &byteLevelPT{addPrefixSpace: v.AddPrefixSpace, mapBytes: true}
		if v.UseRegex == nil || *v.UseRegex { // use_regex defaults to true
			p, err := compileRegex(exprGPT2, o)
			if err != nil {
				return nil, err
			}
			bl.split = &splitPT{pat: p, behavior: splitIsolated}
		}
		return bl, nil
	case "Metaspace":
		var v struct {
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
			Split          *bool   `json:"split"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Metaspace: %w", err)
		}
		if utf8.RuneCountInString(v.Replacement) != 1 {
			return nil, fmt.Errorf("pre_tokenizer Metaspace: replacement %q is not one character", v.Replacement)
		}
		m := &metaspacePT{repl: v.Replacement, scheme: prependAlways, split: v.Split == nil || *v.Split}
		switch {
		case v.PrependScheme != nil:
			switch *v.PrependScheme {
			case "always":
			case "first":
				m.scheme = prependFirst
			case "never":
				m.scheme = prependNever
			default:
				return nil, fmt.Errorf("pre_tokenizer Metaspace: prepend_scheme %q (want always, first or never)", *v.PrependScheme)
			}
		case v.AddPrefixSpace != nil && !*v.AddPrefixSpace:
			m.scheme = prependNever
		}
		m.replPat = &pattern{lit: v.Replacement}
		return m, nil
	case "Digits":
		var v struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Digits: %w", err)
		}
		return digitsPT{v.Individual}, nil
	case "Sequence":
		seq, err := parseSequence(raw, "pre_tokenizer", "pretokenizers", func(r json.RawMessage) (preTokenizer, error) { return parsePreTokenizer(r, o) })
		if err != nil || len(seq) == 0 {
			return nil, err
		}
		if len(seq) == 1 {
			return seq[0], nil
		}
		return preTokenizerSeq(seq), nil
	}
	return nil, &unsupportedError{"pre_tokenizer", typ}
}

// finalByteLevel returns the ByteLevel step whose output the model reads
// directly (the last step), if it is the only ByteLevel step.
func finalByteLevel(pt preTokenizer) *byteLevelPT {
	var all []*byteLevelPT
	var last preTokenizer
	switch v := pt.(type) {
	case *byteLevelPT:
		all, last = append(all, v), v
	case preTokenizerSeq:
		for _, p := range v {
			if bl, ok := p.(*byteLevelPT); ok {
				all = append(all, bl)
			}
		}
		last = v[len(v)-1]
	}
	if bl, ok := last.(*byteLevelPT); ok && len(all) == 1 {
		return bl
	}
	return nil
}
