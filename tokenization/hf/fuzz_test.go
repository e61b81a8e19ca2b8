package hf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kvtrack/kvtrack/tokenization/internal/fixtures"
)

// regexSplit returns the matches regexp2 finds for expr in s, as byte
// offsets.
func regexSplit(t testing.TB, expr, s string) [][2]int {
	t.Helper()
	p, err := compileRegex(expr, &Options{NoFastPaths: true})
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]int
	if err := p.each(s, func(from, to int) { out = append(out, [2]int{from, to}) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func fastSplit(expr, s string) [][2]int {
	f := fastMatcher(expr)
	var out [][2]int
	for i := 0; i < len(s); {
		j := f(s, i)
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

var fastExprs = []string{exprLlama3, exprQwen, exprGPT2}

func checkFastSplit(t *testing.T, s string) {
	t.Helper()
	for _, expr := range fastExprs {
		want := regexSplit(t, expr, s)
		got := fastSplit(expr, s)
		if len(got) != len(want) {
			t.Fatalf("%q with %.30s…: fast matcher %v, regexp2 %v", s, expr, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%q with %.30s…: fast matcher %v, regexp2 %v", s, expr, got, want)
			}
		}
	}
}

// TestFastSplitMatchesRegexp2 checks the hand-written matchers against the
// original expressions on every golden input.
func TestFastSplitMatchesRegexp2(t *testing.T) {
	cases := readJSONLines[goldenCase](t, filepath.Join(fixtures.TestdataDir(), "goldens", "cases.jsonl.gz"))
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range cases {
		checkFastSplit(t, c.Text)
	}
}

// FuzzFastSplit: the hand-written matchers agree with regexp2 on any input.
func FuzzFastSplit(f *testing.F) {
	for _, s := range []string{"", "a", "'s", "'LL", " 'Re", "  x", "\n\n  \n x", "x \t\ny", "123456", "٣٤٥x", " !!\n\n", "\u00a0\u00a0b", "a\u3000 b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			s = validUTF8(s)
		}
		checkFastSplit(t, s)
	})
}

// FuzzEncode: no input makes Encode fail, panic or run without bound, with
// the fast matchers and with every regex run by regexp2.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "Hello world", "<|im_start|>user\nhi<|im_end|>", "<think>", "\xff\xfe", "aaaaaaaaaaaaaaaaaaaa", "e\u0301\u0301\u0301"} {
		f.Add(s, true)
	}
	models := []*Tokenizer{
		loadModel(f, "qwen3", Options{}),
		loadModel(f, "qwen3", Options{NoFastPaths: true, RegexTimeout: 100 * time.Millisecond}),
	}
	for _, name := range []string{"addedflags", "metaspace", "splits", "gpt2"} {
		tok, err := LoadFile(filepath.Join(fixtures.TestdataDir(), "synthetic", name+".json"), Options{})
		if err != nil {
			f.Fatal(err)
		}
		models = append(models, tok)
	}
	f.Fuzz(func(t *testing.T, s string, special bool) {
		for _, tok := range models {
			if _, err := tok.Encode(s, special); err != nil {
				t.Fatalf("Encode(%q): %v", s, err)
			}
		}
		a, _ := models[0].Encode(s, special)
		b, _ := models[1].Encode(s, special)
		if len(a) != len(b) {
			t.Fatalf("Encode(%q): fast matchers %v, regexp2 %v", s, a, b)
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("Encode(%q): fast matchers %v, regexp2 %v", s, a, b)
			}
		}
	})
}

// FuzzLoad: malformed tokenizer.json documents give errors, never panics,
// and whatever loads can encode.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"addedflags", "metaspace", "splits", "gpt2"} {
		data, err := os.ReadFile(filepath.Join(fixtures.TestdataDir(), "synthetic", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(tinyJSON(nil)))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a\u0062": 0, "\\"": 1}, "merges": [["a", "b"]]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Load(bytes.NewReader(data), Options{RegexTimeout: 50 * time.Millisecond})
		if err != nil {
			return
		}
		if _, err := tok.Encode("Hello <s> world 123 ab aab", true); err != nil && !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Encode: %v", err)
		}
	})
}
