package tokenization

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/tokenization/hf"
	"github.com/kvtrack/kvtrack/tokenization/internal/fixtures"
)

// benchPrompts cuts the committed corpus into prompt-sized pieces.
func benchPrompts(b *testing.B) []string {
	b.Helper()
	dir := filepath.Join(fixtures.TestdataDir(), "corpus")
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var prompts []string
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		var cur strings.Builder
		for _, line := range strings.SplitAfter(string(data), "\n") {
			cur.WriteString(line)
			if cur.Len() >= 4096 {
				prompts = append(prompts, cur.String())
				cur.Reset()
			}
		}
		if cur.Len() > 0 {
			prompts = append(prompts, cur.String())
		}
	}
	return prompts
}

// BenchmarkTokenize measures prompts through a Pool on one goroutine.
//
//   - cold: every prompt is new to the pool (a unique suffix defeats the
//     whole-prompt cache) and the tokenizer's word cache is disabled, so
//     every word goes through pre-tokenization and BPE merging;
//   - warm: the prompts are in the whole-prompt cache.
func BenchmarkTokenize(b *testing.B) {
	prompts := benchPrompts(b)
	for _, model := range []string{"qwen3", "llama3_1"} {
		for _, mode := range []string{"cold", "warm"} {
			b.Run(model+"/"+mode, func(b *testing.B) {
				opts := LoadOptions{}
				if mode == "cold" {
					opts.Encoder = hf.Options{WordCacheBytes: -1}
				}
				l, err := Load(context.Background(), fixtures.Dir(b, model), opts)
				if err != nil {
					b.Fatal(err)
				}
				p, err := NewPool(l, PoolConfig{})
				if err != nil {
					b.Fatal(err)
				}
				var bytes int
				for _, s := range prompts {
					bytes += len(s)
					p.Encode(s, true) // fills the cache for "warm"
				}
				b.SetBytes(int64(bytes / len(prompts)))
				b.ReportAllocs()
				b.ResetTimer()
				tokens := 0
				for i := range b.N {
					s := prompts[i%len(prompts)]
					if mode == "cold" {
						s += " #" + strconv.Itoa(i)
					}
					ids, err := p.Encode(s, true)
					if err != nil {
						b.Fatal(err)
					}
					tokens += len(ids)
				}
				b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
