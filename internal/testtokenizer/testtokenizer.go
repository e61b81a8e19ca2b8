// Package testtokenizer gives tests outside package tokenization the real
// Qwen3 tokenizer committed (gzipped, Apache-2.0) under
// tokenization/testdata/qwen3, so prompts in kvcache, scorer and example
// tests go through the same tokenizer.json path a deployment uses.
package testtokenizer

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/kvtrack/kvtrack/tokenization"
)

// Qwen3Dir writes Qwen3's tokenizer.json and tokenizer_config.json (with
// its chat template) into a fresh temporary directory of tb and returns the
// directory: what kvcache's tokenizer.path accepts.
func Qwen3Dir(tb testing.TB) string {
	tb.Helper()
	src := filepath.Join(repoRoot(), "tokenization", "testdata", "qwen3")
	dir := tb.TempDir()
	if err := gunzip(filepath.Join(src, "tokenizer.json.gz"), filepath.Join(dir, "tokenizer.json")); err != nil {
		tb.Fatalf("testtokenizer: %v", err)
	}
	cfg, err := os.ReadFile(filepath.Join(src, "tokenizer_config.json"))
	if err != nil {
		tb.Fatalf("testtokenizer: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644); err != nil {
		tb.Fatalf("testtokenizer: %v", err)
	}
	return dir
}

var (
	qwen3Once sync.Once
	qwen3     *tokenization.Local
	qwen3Err  error
)

// Qwen3 returns the Qwen3 tokenizer, loaded once per test binary (loading
// takes a fraction of a second; tests share the immutable result).
func Qwen3(tb testing.TB) *tokenization.Local {
	tb.Helper()
	qwen3Once.Do(func() {
		qwen3, qwen3Err = tokenization.Load(context.Background(), Qwen3Dir(tb), tokenization.LoadOptions{Offline: true})
	})
	if qwen3Err != nil {
		tb.Fatalf("testtokenizer: loading Qwen3: %v", qwen3Err)
	}
	return qwen3
}

func gunzip(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// repoRoot is the module root, found from this file's location so tests in
// any package can use the helper.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
