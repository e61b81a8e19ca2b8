package hf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/tokenization/internal/fixtures"
)

// corpusText returns the committed corpus as one string.
func corpusText(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(fixtures.TestdataDir(), "corpus")
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// BenchmarkEncode measures the encoder alone: "nocache" with the word cache
// disabled, "wordcache" with it warm.
func BenchmarkEncode(b *testing.B) {
	text := corpusText(b)
	for _, model := range []string{"qwen3", "llama3_1"} {
		for _, mode := range []string{"nocache", "wordcache"} {
			b.Run(model+"/"+mode, func(b *testing.B) {
				opts := Options{}
				if mode == "nocache" {
					opts.WordCacheBytes = -1
				}
				tok, err := LoadFile(fixtures.File(b, model), opts)
				if err != nil {
					b.Fatal(err)
				}
				ids, _ := tok.Encode(text, false)
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				b.ResetTimer()
				var buf []uint32
				for range b.N {
					buf, _ = tok.AppendEncode(buf[:0], text, false)
				}
				b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
