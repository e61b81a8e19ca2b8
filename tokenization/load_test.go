package tokenization

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kvtrack/kvtrack/tokenization/hf"
	"github.com/kvtrack/kvtrack/tokenization/internal/fixtures"
)

// tinyTemplate is the chat template of the tiny test tokenizer.
const tinyTemplate = "{% for m in messages %}<|endoftext|>{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"

// writeTiny writes a small real tokenizer (the synthetic GPT-2-style one of
// the hf goldens) with a chat template into dir: the loading tests need
// files, not a big vocabulary.
func writeTiny(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures.TestdataDir(), "synthetic", "gpt2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"chat_template": tinyTemplate, "eos_token": "<|endoftext|>"})
	for name, d := range map[string][]byte{"tokenizer.json": data, "tokenizer_config.json": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tinyHello is what the tiny tokenizer makes of "Hello world".
func tinyHello(t *testing.T) []uint32 {
	t.Helper()
	enc, err := hf.LoadFile(filepath.Join(fixtures.TestdataDir(), "synthetic", "gpt2.json"), hf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := enc.Encode("Hello world", false)
	if err != nil || len(ids) == 0 {
		t.Fatalf("tiny tokenizer: %v, %v", ids, err)
	}
	return ids
}

func encodeHello(t *testing.T, l *Local) []uint32 {
	t.Helper()
	ids, err := l.Encode("Hello world", false)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

var qwenHello = []uint32{9707, 1879}

func TestLoadFileAndDirectory(t *testing.T) {
	dir := t.TempDir()
	writeTiny(t, dir)
	want := tinyHello(t)
	for _, name := range []string{dir, filepath.Join(dir, "tokenizer.json")} {
		l, err := Load(context.Background(), name, LoadOptions{Offline: true})
		if err != nil {
			t.Fatalf("Load(%s): %v", name, err)
		}
		if got := encodeHello(t, l); !slices.Equal(got, want) {
			t.Errorf("Load(%s): Encode = %v, want %v", name, got, want)
		}
		got, err := l.RenderChat(&ChatRequest{Messages: []byte(`[{"role":"user","content":"hi"}]`), AddGenerationPrompt: true})
		if want := "<|endoftext|>user: hi\nassistant:"; err != nil || got != want {
			t.Errorf("Load(%s): RenderChat = %q, %v; want %q from tokenizer_config.json", name, got, err, want)
		}
	}
}

func TestLoadFromHFCacheLayout(t *testing.T) {
	cache := t.TempDir()
	repo := filepath.Join(cache, "models--Qwen--Qwen3-0.6B")
	writeTiny(t, filepath.Join(repo, "snapshots", "abc123"))
	want := tinyHello(t)
	if err := os.MkdirAll(filepath.Join(repo, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "refs", "main"), []byte("abc123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, env := range []struct{ key, val string }{{"HF_HUB_CACHE", cache}, {"HF_HOME", filepath.Dir(cache)}} {
		t.Run(env.key, func(t *testing.T) {
			t.Setenv("HF_HUB_CACHE", "")
			t.Setenv("HF_HOME", "")
			if env.key == "HF_HOME" {
				// $HF_HOME/hub is the cache.
				home := t.TempDir()
				if err := os.Symlink(cache, filepath.Join(home, "hub")); err != nil {
					t.Fatal(err)
				}
				t.Setenv("HF_HOME", home)
			} else {
				t.Setenv(env.key, env.val)
			}
			l, err := Load(context.Background(), "Qwen/Qwen3-0.6B", LoadOptions{Offline: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := encodeHello(t, l); !slices.Equal(got, want) {
				t.Errorf("Encode = %v, want %v", got, want)
			}
		})
	}
}

func TestLoadOfflineMissReportsNotFound(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	_, err := Load(context.Background(), "Org/Missing", LoadOptions{Offline: true})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	_, err = Load(context.Background(), "not a path or id", LoadOptions{})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// TestLoadDownloadsFromHub serves a fixture as the hub would, checks the
// bearer token, and checks that the second load is served from the cache.
func TestLoadDownloadsFromHub(t *testing.T) {
	src := t.TempDir()
	writeTiny(t, src)
	want := tinyHello(t)
	var requests atomic.Int32
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("Authorization") != "Bearer secret-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		const prefix = "/Qwen/Qwen3-0.6B/resolve/main/"
		if !strings.HasPrefix(r.URL.Path, prefix) {
			http.NotFound(w, r)
			return
		}
		data, err := os.ReadFile(filepath.Join(src, strings.TrimPrefix(r.URL.Path, prefix)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Repo-Commit", "0123abcd")
		w.Write(data)
	}))
	defer hub.Close()
	cache := t.TempDir()
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_ENDPOINT", hub.URL)
	t.Setenv("HF_TOKEN", "secret-token")
	t.Setenv("HF_HUB_OFFLINE", "")

	l, err := Load(context.Background(), "Qwen/Qwen3-0.6B", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeHello(t, l); !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	snap := filepath.Join(cache, "models--Qwen--Qwen3-0.6B", "snapshots", "0123abcd", "tokenizer.json")
	if _, err := os.Stat(snap); err != nil {
		t.Errorf("download not stored in the cache layout: %v", err)
	}
	before := requests.Load()
	if _, err := Load(context.Background(), "Qwen/Qwen3-0.6B", LoadOptions{Offline: true}); err != nil {
		t.Fatalf("second load from cache: %v", err)
	}
	if requests.Load() != before {
		t.Error("second load went to the hub")
	}

	t.Setenv("HF_TOKEN", "wrong")
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	if _, err := Load(context.Background(), "Qwen/Qwen3-0.6B", LoadOptions{}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("load with a bad token: err = %v, want a 401", err)
	}
}

// TestLoadAppliesTransformersSpecialTokens: DeepSeek-V3 declares
// LlamaTokenizerFast with add_bos_token, so transformers (and vLLM) add BOS
// to completions although tokenizer.json's post-processor does not.
func TestLoadAppliesTransformersSpecialTokens(t *testing.T) {
	dir := fixtures.Dir(t, "deepseek_v3")
	compat, err := Load(context.Background(), dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Load(context.Background(), dir, LoadOptions{RawPostProcessor: true})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := raw.Encode("Hello world", false)
	got, _ := compat.Encode("Hello world", true)
	if want := append([]uint32{0}, body...); !slices.Equal(got, want) {
		t.Errorf("transformers-compatible Encode = %v, want BOS 0 + %v", got, body)
	}
	if got, _ := raw.Encode("Hello world", true); !slices.Equal(got, body) {
		t.Errorf("raw post-processor Encode = %v, want %v (tokenizer.json adds nothing)", got, body)
	}
	if got, _ := compat.Encode("Hello world", false); !slices.Equal(got, body) {
		t.Errorf("Encode without special tokens = %v, want %v", got, body)
	}
}

func TestLoadChatTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	writeTiny(t, dir)
	l, err := Load(context.Background(), dir, LoadOptions{ChatTemplate: "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.RenderChat(&ChatRequest{Messages: []byte(`[{"role":"user","content":"hi"}]`)})
	if err != nil || got != "[user]hi" {
		t.Errorf("RenderChat = %q, %v; want %q", got, err, "[user]hi")
	}
	got, err = l.RenderChat(&ChatRequest{Messages: []byte(`[{"role":"user","content":"hi"}]`), ChatTemplate: "{{ messages[0].content | upper }}"})
	if err != nil || got != "HI" {
		t.Errorf("RenderChat with a request template = %q, %v; want %q", got, err, "HI")
	}
}
