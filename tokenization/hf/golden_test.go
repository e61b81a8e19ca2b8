package hf

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/kvtrack/kvtrack/tokenization/internal/fixtures"
)

type goldenCase struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

func readJSONLines[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s line %d: %v", path, len(out)+1, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	loadedMu sync.Mutex
	loaded   = map[string]*Tokenizer{}
)

// loadModel loads a fixture tokenizer once per test binary and options:
// loading is the slow part of these tests under -race.
func loadModel(t testing.TB, model string, opts Options) *Tokenizer {
	t.Helper()
	key := fmt.Sprintf("%s %+v", model, opts)
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if tok := loaded[key]; tok != nil {
		return tok
	}
	tok, err := LoadFile(fixtures.File(t, model), opts)
	if err != nil {
		t.Fatalf("load %s: %v", model, err)
	}
	loaded[key] = tok
	return tok
}

// TestGoldens compares every case with the IDs the Rust crate produced
// (hack/gen-tokenizer-goldens.sh), with and without special tokens, for the
// real models' tokenizer.json files.
func TestGoldens(t *testing.T) {
	dir := filepath.Join(fixtures.TestdataDir(), "goldens")
	cases := readJSONLines[goldenCase](t, filepath.Join(dir, "cases.jsonl.gz"))
	for _, model := range fixtures.Models {
		t.Run(model, func(t *testing.T) {
			checkGoldens(t, model, loadModel(t, model, Options{}), cases, filepath.Join(dir, model+".jsonl.gz"))
		})
	}
}

// TestSyntheticGoldens does the same for small synthetic tokenizer.json
// files that exercise the components the real models leave out.
func TestSyntheticGoldens(t *testing.T) {
	dir := filepath.Join(fixtures.TestdataDir(), "goldens")
	cases := readJSONLines[goldenCase](t, filepath.Join(dir, "synthetic-cases.jsonl.gz"))
	for _, name := range []string{"addedflags", "metaspace", "splits", "gpt2"} {
		t.Run(name, func(t *testing.T) {
			tok, err := LoadFile(filepath.Join(fixtures.TestdataDir(), "synthetic", name+".json"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkGoldens(t, name, tok, cases, filepath.Join(dir, "synthetic-"+name+".jsonl.gz"))
		})
	}
}

func checkGoldens(t *testing.T, model string, tok *Tokenizer, cases []goldenCase, goldens string) {
	t.Helper()
	want := readJSONLines[[2][]uint32](t, goldens)
	if len(want) != len(cases) {
		t.Fatalf("%d golden lines for %d cases", len(want), len(cases))
	}
	matched, failed := 0, 0
	for i, c := range cases {
		for k, special := range []bool{false, true} {
			got, err := tok.Encode(c.Text, special)
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if slices.Equal(got, want[i][k]) {
				matched++
				continue
			}
			failed++
			if failed <= 10 {
				t.Errorf("%s (special=%v) %q:\n got %v\nwant %v", c.Name, special, c.Text, got, want[i][k])
			}
		}
	}
	t.Logf("%s: %d/%d encodings match the Rust tokenizer", model, matched, matched+failed)
	if failed > 0 {
		t.Errorf("%s: %d of %d encodings differ", model, failed, matched+failed)
	}
}
