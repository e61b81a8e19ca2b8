package hf

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's added_tokens with the ID the
// loader settled on.
type addedToken struct {
	content                    string
	id                         uint32
	singleWord, lstrip, rstrip bool
}

// matcher finds added tokens in text with the leftmost-longest rule of the
// Rust crate's Aho-Corasick automaton: at the leftmost position where any
// token matches, the longest token wins; scanning resumes after it.
//
// It is a byte trie. Most positions are rejected by the first-byte table, so
// the scan costs about one table load per input byte.
type matcher struct {
	tokens []addedToken
	first  [256]int32       // root child for a first byte, or -1
	edges  map[uint64]int32 // (node<<8 | byte) -> child node, below the root
	term   []int32          // node -> index into tokens, or -1
}

func newMatcher(tokens []addedToken) *matcher {
	m := &matcher{tokens: tokens, edges: make(map[uint64]int32), term: []int32{-1}}
	for i := range m.first {
		m.first[i] = -1
	}
	for ti, t := range tokens {
		if t.content == "" {
			continue
		}
		node := int32(0)
		for i := 0; i < len(t.content); i++ {
			b := t.content[i]
			var next int32
			var ok bool
			if node == 0 {
				next = m.first[b]
				ok = next >= 0
			} else {
				next, ok = m.edges[uint64(node)<<8|uint64(b)]
			}
			if !ok {
				next = int32(len(m.term))
				m.term = append(m.term, -1)
				if node == 0 {
					m.first[b] = next
				} else {
					m.edges[uint64(node)<<8|uint64(b)] = next
				}
			}
			node = next
		}
		// A later duplicate content replaces an earlier one, as in the crate's
		// vocabulary map.
		m.term[node] = int32(ti)
	}
	return m
}

func (m *matcher) empty() bool { return m == nil || len(m.term) == 1 }

// longestAt returns the token index and end of the longest token starting at
// s[i], or -1.
func (m *matcher) longestAt(s string, i int) (tok int, end int) {
	tok = -1
	node := m.first[s[i]]
	j := i + 1
	for node >= 0 {
		if t := m.term[node]; t >= 0 {
			tok, end = int(t), j
		}
		if j == len(s) {
			break
		}
		next, ok := m.edges[uint64(node)<<8|uint64(s[j])]
		if !ok {
			break
		}
		node = next
		j++
	}
	return tok, end
}

// split appends the pieces of s to dst: runs of text and added tokens, with
// lstrip, rstrip and single_word applied as the crate's find_matches does.
// start tells whether s begins at offset 0 of the original input.
func (m *matcher) split(dst []piece, s string, start bool) []piece {
	if m.empty() {
		return append(dst, piece{s: s, id: -1, start: start})
	}
	prev := 0 // end of the last emitted piece
	for i := 0; i < len(s); {
		if m.first[s[i]] < 0 {
			i++
			continue
		}
		ti, stop := m.longestAt(s, i)
		if ti < 0 {
			i++
			continue
		}
		from, next := i, stop
		i = stop // the automaton resumes after the raw match
		t := &m.tokens[ti]
		if t.singleWord {
			startSpace := from == 0 || !endsWithWord(s[:from])
			stopSpace := stop == len(s) || !startsWithWord(s[stop:])
			if !startSpace || !stopSpace {
				continue
			}
		}
		if t.lstrip {
			from = max(trailingSpaceStart(s[:from]), prev)
		}
		if t.rstrip {
			next += leadingSpaceLen(s[stop:])
		}
		if prev < from {
			dst = append(dst, piece{s: s[prev:from], id: -1, start: start && prev == 0})
		}
		dst = append(dst, piece{s: s[from:next], id: int64(t.id)})
		prev = next
	}
	if prev != len(s) {
		dst = append(dst, piece{s: s[prev:], id: -1, start: start && prev == 0})
	}
	return dst
}

// isWordChar is Rust regex's Unicode \w: Alphabetic, marks, decimal digits,
// connector punctuation and the join controls.
func isWordChar(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) ||
		r == 0x200C || r == 0x200D
}

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}

// trailingSpaceStart is the offset where the run of whitespace ending s
// begins (len(s) when s does not end in whitespace).
func trailingSpaceStart(s string) int {
	return len(strings.TrimRightFunc(s, unicode.IsSpace))
}

// leadingSpaceLen is the length of the run of whitespace starting s.
func leadingSpaceLen(s string) int {
	return len(s) - len(strings.TrimLeftFunc(s, unicode.IsSpace))
}
