package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/kvtrack/kvtrack/tokenization"
)

func init() {
	register(command{
		name:    "tokenize",
		summary: "print the token IDs vLLM computes for prompts or chat messages",
		run:     runTokenize,
	})
}

// stdin is the input of --jsonl; tests replace it.
var stdin io.Reader = os.Stdin

// optionalBool is a boolean flag that remembers whether it was given, so
// that its default can depend on other flags.
type optionalBool struct {
	set, val bool
}

func (b *optionalBool) String() string   { return strconv.FormatBool(b.val) }
func (b *optionalBool) IsBoolFlag() bool { return true }
func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.val = true, v
	return nil
}

func runTokenize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tokenize", tokenizeSynopsis, stdout, stderr)
	tokPath := fs.String("tokenizer", "", "tokenizer.json file, directory, or HuggingFace model ID (Org/Name: the HF cache, then the hub with HF_TOKEN)")
	var addSpecial optionalBool
	fs.Var(&addSpecial, "add-special-tokens", "add the model's special tokens (default: true for prompts, false for --chat, as vLLM)")
	chat := fs.Bool("chat", false, "inputs are JSON arrays of chat messages, rendered with the model's chat template")
	genPrompt := fs.Bool("add-generation-prompt", true, "with --chat, end with the assistant turn header (vLLM's default)")
	text := fs.String("text", "", "one input: a prompt, or with --chat a JSON array of messages")
	jsonl := fs.Bool("jsonl", false, "read inputs from stdin, one JSON string (with --chat, one JSON array of messages) per line; write one JSON array of token IDs per line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	textSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "text" {
			textSet = true
		}
	})
	switch {
	case *tokPath == "":
		return fs.usageError("--tokenizer is required")
	case textSet == *jsonl:
		return fs.usageError("give exactly one of --text and --jsonl")
	}
	tok, err := tokenization.Load(ctx, *tokPath, tokenization.LoadOptions{})
	if err != nil {
		return err
	}
	add := addSpecial.val
	if !addSpecial.set {
		add = !*chat
	}
	encode := func(input []byte, raw bool) ([]uint32, error) {
		if *chat {
			if !json.Valid(input) {
				return nil, errors.New("messages are not valid JSON")
			}
			return tok.EncodeChat(&tokenization.ChatRequest{Messages: input, AddGenerationPrompt: *genPrompt, AddSpecialTokens: add})
		}
		s := string(input)
		if !raw {
			if err := json.Unmarshal(input, &s); err != nil {
				return nil, fmt.Errorf("want a JSON string: %w", err)
			}
		}
		return tok.Encode(s, add)
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	if !*jsonl {
		ids, err := encode([]byte(*text), true)
		if err != nil {
			return err
		}
		return writeIDs(out, ids)
	}
	in := bufio.NewScanner(stdin)
	in.Buffer(nil, 64<<20)
	bad := 0
	for line := 1; in.Scan(); line++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		ids, err := encode(in.Bytes(), false)
		if err != nil {
			// Keep the output aligned with the input: null marks the line.
			bad++
			fmt.Fprintf(stderr, "kvtrack tokenize: line %d: %v\n", line, err)
			if _, err := out.WriteString("null\n"); err != nil {
				return err
			}
			continue
		}
		if err := writeIDs(out, ids); err != nil {
			return err
		}
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if bad > 0 {
		return fmt.Errorf("%d input lines could not be tokenized (written as null)", bad)
	}
	return nil
}

func writeIDs(w *bufio.Writer, ids []uint32) error {
	buf := make([]byte, 0, 8*len(ids)+2)
	buf = append(buf, '[')
	for i, id := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendUint(buf, uint64(id), 10)
	}
	buf = append(buf, ']', '\n')
	_, err := w.Write(buf)
	return err
}

const tokenizeSynopsis = `tokenize --tokenizer PATH [--add-special-tokens] [--chat] (--text STR | --jsonl)

Prints the token IDs vLLM computes for a prompt (as /v1/completions does) or
for chat messages rendered with the model's chat template (as
/v1/chat/completions does), as one JSON array per input. The arrays feed
'kvtrack hash --tokens -':

  kvtrack tokenize --tokenizer ./tokenizer.json --text "Hello, world"
  kvtrack tokenize --tokenizer ./model-dir --chat --text '[{"role":"user","content":"Hi"}]'`
