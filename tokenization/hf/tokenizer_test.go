package hf

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// tiny is a minimal char-level BPE tokenizer.json with one merge, for the
// unit tests below; tests patch its components.
const tiny = `{
 "added_tokens": [{"id": 5, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
 "normalizer": %NORM%,
 "pre_tokenizer": %PRE%,
 "post_processor": %POST%,
 "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "aa": 2, "ab": 3, "<unk>": 4, "<s>": 5},
  "merges": %MERGES%, "unk_token": "<unk>", "fuse_unk": false, "byte_fallback": false}
}`

func tinyJSON(repl map[string]string) string {
	s := tiny
	defaults := map[string]string{"%NORM%": "null", "%PRE%": "null", "%POST%": "null", "%MERGES%": `["a a", "a b"]`}
	for k, v := range defaults {
		if r, ok := repl[k]; ok {
			v = r
		}
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

func loadTiny(t *testing.T, repl map[string]string) *Tokenizer {
	t.Helper()
	tok, err := Load(strings.NewReader(tinyJSON(repl)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestEncodeMergeOrderIsRankThenPosition(t *testing.T) {
	tok := loadTiny(t, nil)
	for _, tc := range []struct {
		in   string
		want []uint32
	}{
		{"aaa", []uint32{2, 0}},       // the leftmost "a a" merges first
		{"aaaaa", []uint32{2, 2, 0}},  // and so on along the run
		{"aab", []uint32{2, 1}},       // "a a" (rank 0) before "a b" (rank 1)
		{"ab<s>c", []uint32{3, 5, 4}}, // added token, unknown character
	} {
		got, err := tok.Encode(tc.in, false)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadBothMergesFormats(t *testing.T) {
	a := loadTiny(t, map[string]string{"%MERGES%": `["a a", "a b"]`})
	b := loadTiny(t, map[string]string{"%MERGES%": `[["a", "a"], ["a", "b"]]`})
	for _, s := range []string{"aaab", "abab", "baaa"} {
		x, _ := a.Encode(s, false)
		y, _ := b.Encode(s, false)
		if !slices.Equal(x, y) {
			t.Errorf("%q: string merges %v, pair merges %v", s, x, y)
		}
	}
}

func TestLoadRejectsUnsupportedComponents(t *testing.T) {
	for name, repl := range map[string]map[string]string{
		"BertNormalizer":  {"%NORM%": `{"type": "BertNormalizer"}`},
		"Precompiled":     {"%NORM%": `{"type": "Precompiled", "precompiled_charsmap": ""}`},
		"Whitespace":      {"%PRE%": `{"type": "Whitespace"}`},
		"possessive":      {"%PRE%": `{"type": "Split", "pattern": {"Regex": "a++"}, "behavior": "Isolated", "invert": false}`},
		"nested unknown":  {"%PRE%": `{"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}]}`},
		"post BertCustom": {"%POST%": `{"type": "Custom"}`},
	} {
		_, err := Load(strings.NewReader(tinyJSON(repl)), Options{})
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
	for _, model := range []string{"WordPiece", "Unigram", "WordLevel"} {
		doc := strings.Replace(tinyJSON(nil), `"type": "BPE"`, `"type": "`+model+`"`, 1)
		if _, err := Load(strings.NewReader(doc), Options{}); !errors.Is(err, ErrUnsupported) {
			t.Errorf("model %s: err = %v, want ErrUnsupported", model, err)
		}
	}
}

func TestLoadRejectsInconsistentFiles(t *testing.T) {
	for name, doc := range map[string]string{
		"merge of unknown token": tinyJSON(map[string]string{"%MERGES%": `["a c"]`}),
		"merge result missing":   tinyJSON(map[string]string{"%MERGES%": `["b b"]`}),
		"merge not a pair":       tinyJSON(map[string]string{"%MERGES%": `["aab"]`}),
		"unk not in vocab":       strings.Replace(tinyJSON(nil), `"unk_token": "<unk>"`, `"unk_token": "<nope>"`, 1),
		"not JSON":               `{"model": `,
		"no model":               `{"added_tokens": []}`,
		"bad split behaviour":    tinyJSON(map[string]string{"%PRE%": `{"type": "Split", "pattern": {"String": "a"}, "behavior": "Sideways", "invert": false}`}),
	} {
		if _, err := Load(strings.NewReader(doc), Options{}); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
}

func TestEncodeInvalidUTF8ReadsAsReplacementCharacter(t *testing.T) {
	tok := loadModel(t, "qwen3", Options{})
	got, err := tok.Encode("a\xffb", false)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tok.Encode("a\uFFFDb", false)
	if !slices.Equal(got, want) {
		t.Errorf("Encode(invalid) = %v, want %v (as U+FFFD)", got, want)
	}
}

func TestTokenID(t *testing.T) {
	tok := loadModel(t, "qwen3", Options{})
	for content, want := range map[string]uint32{"<|im_start|>": 151644, "<think>": 151667, "Hello": 9707} {
		if id, ok := tok.TokenID(content); !ok || id != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", content, id, ok, want)
		}
	}
	if _, ok := tok.TokenID("no such token, surely"); ok {
		t.Error("TokenID of an unknown token reported ok")
	}
}

// TestWordCacheEvictionKeepsResults encodes the corpus through a cache
// small enough to be emptied many times and compares with no cache.
func TestWordCacheEvictionKeepsResults(t *testing.T) {
	text := corpusText(t)
	plain := loadModel(t, "qwen3", Options{})
	small := loadModel(t, "qwen3", Options{WordCacheBytes: 16 << 10})
	want, _ := plain.Encode(text, false)
	for range 3 {
		got, _ := small.Encode(text, false)
		if !slices.Equal(got, want) {
			t.Fatal("encoding through a small word cache differs from encoding without it")
		}
	}
}

// TestEncodeConcurrent runs encodes from many goroutines (run with -race).
func TestEncodeConcurrent(t *testing.T) {
	tok := loadModel(t, "qwen3", Options{WordCacheBytes: 16 << 10})
	text := corpusText(t)
	lines := strings.SplitAfter(text, "\n")
	want := make([][]uint32, len(lines))
	for i, l := range lines {
		want[i], _ = tok.Encode(l, true)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(lines); i += 3 {
				got, err := tok.Encode(lines[i], true)
				if err != nil || !slices.Equal(got, want[i]) {
					t.Errorf("line %d: concurrent encode differs", i)
					return
				}
			}
		})
	}
	wg.Wait()
}
