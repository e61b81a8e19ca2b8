package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/tokenization"
)

// qwen3Dir materialises the committed Qwen3 tokenizer files.
func qwen3Dir(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "..", "tokenization", "testdata", "qwen3")
	dir := t.TempDir()
	f, err := os.Open(filepath.Join(src, "tokenizer.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(src, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tinyDir writes the small synthetic Metaspace tokenizer (BOS and EOS template) of the
// tokenization goldens with a chat template: most CLI cases exercise the
// command, not the vocabulary, and a small file keeps them fast under -race.
func tinyDir(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "tokenization", "testdata", "synthetic", "metaspace.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := `{"chat_template": "{% for m in messages %}<|x|>{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"}`
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// idsLine formats what the library returns, as the command prints it.
func idsLine(t *testing.T, dir string, encode func(*tokenization.Local) ([]uint32, error)) string {
	t.Helper()
	l, err := tokenization.Load(context.Background(), dir, tokenization.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := encode(l)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ids)
	return string(b) + "\n"
}

// TestTokenizeQwen3 checks the command end to end on a real tokenizer,
// against IDs from the Rust tokenizer (the Qwen3 goldens).
func TestTokenizeQwen3(t *testing.T) {
	dir := qwen3Dir(t)
	var stdout, stderr bytes.Buffer
	stdin = strings.NewReader("\"Hello world\"\n\"<|im_start|>user\"\n")
	defer func() { stdin = os.Stdin }()
	if code := run(context.Background(), []string{"tokenize", "--tokenizer", dir, "--jsonl"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	if want := "[9707,1879]\n[151644,872]\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
}

func TestTokenize(t *testing.T) {
	dir := tinyDir(t)
	hi := json.RawMessage(`[{"role":"user","content":"hi"}]`)
	hello := idsLine(t, dir, func(l *tokenization.Local) ([]uint32, error) { return l.Encode("Hello world", true) })
	helloRaw := idsLine(t, dir, func(l *tokenization.Local) ([]uint32, error) { return l.Encode("Hello world", false) })
	special := idsLine(t, dir, func(l *tokenization.Local) ([]uint32, error) { return l.Encode("<|x|> x", true) })
	chat := idsLine(t, dir, func(l *tokenization.Local) ([]uint32, error) {
		return l.EncodeChat(&tokenization.ChatRequest{Messages: hi, AddGenerationPrompt: true})
	})
	chatNoGen := idsLine(t, dir, func(l *tokenization.Local) ([]uint32, error) {
		return l.EncodeChat(&tokenization.ChatRequest{Messages: hi})
	})
	for _, tc := range []struct {
		name  string
		args  []string
		input string
		code  int
		out   string
		err   string
	}{
		{name: "text", args: []string{"--text", "Hello world"}, out: hello},
		{name: "text without special tokens", args: []string{"--text", "Hello world", "--add-special-tokens=false"}, out: helloRaw},
		{name: "special tokens matched", args: []string{"--text", "<|x|> x"}, out: special},
		{name: "jsonl", args: []string{"--jsonl"}, input: "\"Hello world\"\n\"\"\n", out: hello + "[1,2]\n"},
		{name: "jsonl bad line", args: []string{"--jsonl"}, input: "\"Hello world\"\nnot json\n", code: 1,
			out: hello + "null\n", err: "line 2"},
		{name: "chat", args: []string{"--chat", "--text", string(hi)}, out: chat},
		{name: "chat jsonl without generation prompt", args: []string{"--chat", "--jsonl", "--add-generation-prompt=false"},
			input: string(hi) + "\n", out: chatNoGen},
		{name: "chat bad messages", args: []string{"--chat", "--text", `[{"content":"hi"}]`}, code: 1, err: "role"},
		{name: "neither text nor jsonl", args: nil, code: 2, err: "exactly one of --text and --jsonl"},
		{name: "both", args: []string{"--jsonl", "--text", "x"}, code: 2, err: "exactly one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdin = strings.NewReader(tc.input)
			defer func() { stdin = os.Stdin }()
			var stdout, stderr bytes.Buffer
			args := append([]string{"tokenize", "--tokenizer", dir}, tc.args...)
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr: %s)", code, tc.code, stderr.String())
			}
			if stdout.String() != tc.out {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.out)
			}
			if !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.err)
			}
		})
	}
}

func TestTokenizeRequiresTokenizer(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"tokenize", "--text", "x"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if code := run(context.Background(), []string{"tokenize", "--tokenizer", "/no/such/file", "--text", "x"}, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d for a missing tokenizer, want 1", code)
	}
}

func TestTokenizeSpecialTokenDefaults(t *testing.T) {
	dir := tinyDir(t)
	var with, without bytes.Buffer
	run(context.Background(), []string{"tokenize", "--tokenizer", dir, "--text", "the"}, &with, io.Discard)
	run(context.Background(), []string{"tokenize", "--tokenizer", dir, "--text", "the", "--add-special-tokens=false"}, &without, io.Discard)
	if with.String() == without.String() {
		t.Fatalf("--add-special-tokens made no difference (%s): the test tokenizer must add BOS/EOS", with.String())
	}
	if !strings.HasPrefix(with.String(), "[1,") || !strings.HasSuffix(with.String(), ",2]\n") {
		t.Errorf("completion default %q: want BOS 1 and EOS 2 (vLLM adds special tokens to prompts)", with.String())
	}
	var chat bytes.Buffer
	run(context.Background(), []string{"tokenize", "--tokenizer", dir, "--chat", "--text", `[{"role":"user","content":"the"}]`}, &chat, io.Discard)
	if strings.HasPrefix(chat.String(), "[1,") {
		t.Errorf("chat default %q: want no BOS (vLLM adds no special tokens to chat prompts)", chat.String())
	}
}
