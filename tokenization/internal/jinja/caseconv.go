package jinja

import (
	"strings"
	"unicode"
)

// Python's str.upper, lower, title and capitalize use Unicode's full case
// mappings: some characters become several ("ß".upper() is "SS"), and a
// capital sigma at the end of a word lowers to "ς". Go's unicode tables
// have the one-to-one mappings only, so the multi-character ones that
// Latin text meets are listed here, and the rest (Greek with
// ypogegrammeni, Armenian ligatures) are refused rather than guessed.
var (
	fullUpper = map[rune]string{
		'ß': "SS", 'ŉ': "ʼN", 'ǰ': "J̌", 'ﬀ': "FF", 'ﬁ': "FI", 'ﬂ': "FL", 'ﬃ': "FFI", 'ﬄ': "FFL", 'ﬅ': "ST", 'ﬆ': "ST",
		'ẖ': "H̱", 'ẗ': "T̈", 'ẘ': "W̊", 'ẙ': "Y̊", 'ẚ': "Aʾ",
	}
	fullTitle = map[rune]string{
		'ß': "Ss", 'ŉ': "ʼN", 'ǰ': "J̌", 'ﬀ': "Ff", 'ﬁ': "Fi", 'ﬂ': "Fl", 'ﬃ': "Ffi", 'ﬄ': "Ffl", 'ﬅ': "St", 'ﬆ': "St",
		'ẖ': "H̱", 'ẗ': "T̈", 'ẘ': "W̊", 'ẙ': "Y̊", 'ẚ': "Aʾ",
	}
	fullLower = map[rune]string{'İ': "i̇"}
)

// unmapped reports a character whose full case mapping is not modelled.
func unmapped(r rune) bool {
	return r >= 0x1f80 && r <= 0x1fff || r == 0x0587 || r >= 0xfb13 && r <= 0xfb17 || r == 0x0390 || r == 0x03b0
}

func caseErr() error {
	return &UnsupportedError{What: "case conversion of a character with a multi-character Unicode mapping"}
}

func pyUpper(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if m, ok := fullUpper[r]; ok {
			b.WriteString(m)
			continue
		}
		if unmapped(r) {
			return "", caseErr()
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String(), nil
}

func pyLower(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	runes := []rune(s)
	for i, r := range runes {
		if m, ok := fullLower[r]; ok {
			b.WriteString(m)
			continue
		}
		if unmapped(r) {
			return "", caseErr()
		}
		if r == 'Σ' && finalSigma(runes, i) {
			b.WriteRune('ς')
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String(), nil
}

// finalSigma is Unicode's Final_Sigma condition: a cased letter before
// (skipping case-ignorable characters) and none after.
func finalSigma(runes []rune, i int) bool {
	before := false
	for j := i - 1; j >= 0; j-- {
		if caseIgnorable(runes[j]) {
			continue
		}
		before = isCased(runes[j])
		break
	}
	if !before {
		return false
	}
	for j := i + 1; j < len(runes); j++ {
		if caseIgnorable(runes[j]) {
			continue
		}
		return !isCased(runes[j])
	}
	return true
}

func caseIgnorable(r rune) bool {
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk) || r == '\'' || r == '.' || r == ':' || r == '·' || r == '’'
}

// titleRune writes r title-cased.
func titleRune(b *strings.Builder, r rune) error {
	if m, ok := fullTitle[r]; ok {
		b.WriteString(m)
		return nil
	}
	if unmapped(r) {
		return caseErr()
	}
	b.WriteRune(unicode.ToTitle(r))
	return nil
}
