package hf

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written matchers for the pre-tokenizer regexes of the common
// byte-level BPE models. Each returns the end of the match that the regex,
// searched leftmost-first, finds at s[i]; for these regexes a match starts
// at every position, so the matches tile the input. FuzzFastSplit checks
// them against regexp2 running the original expression.

const (
	// Llama-3.x, GPT-4 (cl100k) style.
	exprLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// Qwen2/2.5/3: single digits.
	exprQwen = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// GPT-2, used by the ByteLevel pre-tokenizer when use_regex is set.
	exprGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

func fastMatcher(expr string) func(string, int) int {
	switch expr {
	case exprLlama3:
		return func(s string, i int) int { return matchLlama3(s, i, 3) }
	case exprQwen:
		return func(s string, i int) int { return matchLlama3(s, i, 1) }
	case exprGPT2:
		return matchGPT2
	}
	return nil
}

// Character classes of the regexes: \p{L}, \p{N}, \s and everything else.
const (
	clsOther uint8 = iota
	clsLetter
	clsNumber
	clsSpace
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
			t[r] = clsLetter
		case '0' <= r && r <= '9':
			t[r] = clsNumber
		case unicode.IsSpace(r):
			t[r] = clsSpace
		}
	}
	return t
}()

// classAt returns the class and width of the character at s[i].
func classAt(s string, i int) (uint8, rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], rune(c), 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	switch {
	case unicode.IsLetter(r):
		return clsLetter, r, n
	case unicode.IsNumber(r):
		return clsNumber, r, n
	case unicode.IsSpace(r):
		return clsSpace, r, n
	}
	return clsOther, r, n
}

// runOf returns the end of the run of characters of class c starting at i.
func runOf(s string, i int, c uint8) int {
	for i < len(s) {
		k, _, n := classAt(s, i)
		if k != c {
			break
		}
		i += n
	}
	return i
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at s[i] (s[i] == '\”) and
// returns its end, or i. fold makes it case-insensitive (ASCII folding is
// the only one these letters have besides U+017F, which the oracle shows
// Oniguruma does not fold here).
func contraction(s string, i int, fold bool) int {
	if i+1 >= len(s) {
		return i
	}
	lower := func(c byte) byte {
		if fold && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v':
		if i+2 < len(s) && lower(s[i+2]) == 'e' {
			return i + 3
		}
	case 'l':
		if i+2 < len(s) && lower(s[i+2]) == 'l' {
			return i + 3
		}
	}
	return i
}

// matchSpace handles the whitespace alternatives shared by both families:
// [\s*[\r\n]+ |] \s+(?!\S) | \s+, for a run of whitespace starting at i.
func matchSpace(s string, i int, newlines bool) int {
	end := i
	lastNL := -1
	n := 0
	for end < len(s) {
		k, r, w := classAt(s, end)
		if k != clsSpace {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end
		}
		end += w
		n++
	}
	// \s*[\r\n]+ : the greedy \s* gives back up to the last newline.
	if newlines && lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S) : at the end of input the whole run; otherwise the run
	// minus its last character, if that leaves one.
	if end == len(s) {
		return end
	}
	if n > 1 {
		_, w := utf8.DecodeLastRuneInString(s[:end])
		return end - w
	}
	return end // \s+
}

func matchLlama3(s string, i, maxDigits int) int {
	k, r, w := classAt(s, i)
	if r == '\'' {
		if j := contraction(s, i, true); j > i {
			return j
		}
	}
	switch k {
	case clsLetter:
		return runOf(s, i+w, clsLetter)
	case clsNumber:
		j := i + w
		for d := 1; d < maxDigits && j < len(s); d++ {
			k2, _, w2 := classAt(s, j)
			if k2 != clsNumber {
				break
			}
			j += w2
		}
		return j
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+ with one leading non-letter (not CR/LF).
	if r != '\r' && r != '\n' && i+w < len(s) {
		if k2, _, _ := classAt(s, i+w); k2 == clsLetter {
			return runOf(s, i+w, clsLetter)
		}
	}
	if k == clsOther {
		return runNewlines(s, runOf(s, i+w, clsOther))
	}
	// k == clsSpace. " ?[^\s\p{L}\p{N}]+[\r\n]*" with the optional space.
	if r == ' ' && i+1 < len(s) {
		if k2, _, _ := classAt(s, i+1); k2 == clsOther {
			return runNewlines(s, runOf(s, i+1, clsOther))
		}
	}
	return matchSpace(s, i, true)
}

// runNewlines extends a match over following CR and LF characters.
func runNewlines(s string, j int) int {
	for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
		j++
	}
	return j
}

func matchGPT2(s string, i int) int {
	k, r, w := classAt(s, i)
	if r == '\'' {
		if j := contraction(s, i, false); j > i {
			return j
		}
	}
	if k == clsSpace {
		if r == ' ' && i+1 < len(s) {
			if k2, _, _ := classAt(s, i+1); k2 != clsSpace {
				return runOf(s, i+1, k2)
			}
		}
		return matchSpace(s, i, false)
	}
	return runOf(s, i+w, k)
}
