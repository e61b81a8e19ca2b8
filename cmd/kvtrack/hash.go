package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func init() {
	register(command{
		name:    "hash",
		summary: "compute the block keys vLLM publishes for a token sequence",
		run:     runHash,
	})
}

const hashSynopsis = `hash --hash-seed SEED --tokens 1,2,3,... [flags]

Prints one decimal uint64 per full block, one per line: the block hashes a
vLLM engine with the same --prefix-caching-hash-algo, PYTHONHASHSEED and
--block-size publishes in its BlockStored events (or, with --key-scheme tokens,
kvtrack's token-derived keys). The tokens are comma-separated IDs or a JSON
array as 'kvtrack tokenize' prints it; --tokens - reads them from stdin:

  kvtrack tokenize --tokenizer DIR --text "..." | kvtrack hash --hash-seed 42 --tokens -

Fewer tokens than one block is an error: vLLM hashes only full blocks.`

func runHash(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hash", hashSynopsis, stdout, stderr)
	algo := fs.String("hash-algo", string(blockhash.SHA256), "vLLM's --prefix-caching-hash-algo: "+algoList())
	seed := fs.String("hash-seed", "", "the engine's PYTHONHASHSEED string (required for --key-scheme vllm)")
	blockSize := fs.Int("block-size", 16, "vLLM's --block-size, in tokens")
	tokens := fs.String("tokens", "", "token IDs: 1,2,3 or [1,2,3] (what 'kvtrack tokenize' prints); - reads them from stdin")
	fs.deprecated("algo", "hash-algo")
	fs.deprecated("seed", "hash-seed")
	extraJSON := fs.String("extra-keys", "", `per-block extra keys as in BlockStored's extra_keys: a JSON array with one entry per block, each null or an array of items (string, integer, or [string, integer])`)
	loraName := fs.String("lora-name", "", "LoRA adapter name (vLLM v0.11.1+)")
	loraID := fs.Int64("lora-id", 0, "LoRA adapter int id (vLLM v0.9.0-v0.11.0)")
	salt := fs.String("cache-salt", "", "the request's cache_salt")
	scheme := fs.String("key-scheme", "vllm", "keyScheme: vllm (the engine's own hashes) or tokens (token-derived keys)")
	fs.deprecated("scheme", "key-scheme")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := fs.set()

	if !set["tokens"] {
		return fs.usageError("--tokens is required")
	}
	tokText := *tokens
	if tokText == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("reading tokens from stdin: %w", err)
		}
		tokText = string(b)
	}
	toks, err := parseTokens(tokText)
	if err != nil {
		return fmt.Errorf("%w: --tokens: %v", errUsage, err)
	}

	if set["lora-name"] && set["lora-id"] {
		return fmt.Errorf("%w: --lora-name and --lora-id are exclusive: vLLM hashes the name since v0.11.1 and the id before", errUsage)
	}
	if set["extra-keys"] && (set["lora-name"] || set["lora-id"] || set["cache-salt"]) {
		return fmt.Errorf("%w: --extra-keys gives every block's extra keys; it cannot be combined with --lora-name, --lora-id or --cache-salt", errUsage)
	}
	var extra [][]blockhash.ExtraKey
	if set["extra-keys"] {
		if extra, err = blockhash.ParseExtraKeys([]byte(*extraJSON)); err != nil {
			return fmt.Errorf("%w: --extra-keys: %v", errUsage, err)
		}
	} else {
		rx := blockhash.RequestExtras{LoRAName: *loraName, LoRAID: *loraID, CacheSalt: *salt}
		if *blockSize > 0 {
			extra = rx.PerBlock(len(toks) / *blockSize)
		}
	}

	var keys []kvblock.Key
	switch *scheme {
	case "vllm":
		if !set["hash-seed"] {
			return fmt.Errorf("%w: --hash-seed is required: give the engine's PYTHONHASHSEED (vLLM seeds its hash chain with it; an engine without it hashes randomly and needs --key-scheme tokens)", errUsage)
		}
		a, err := blockhash.ParseAlgorithm(*algo)
		if err != nil {
			return fmt.Errorf("%w: --hash-algo: %v", errUsage, err)
		}
		h, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: a, Seed: *seed, BlockSize: *blockSize})
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		keys, err = h.BlockKeys(nil, toks, extra)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	case "tokens":
		h, err := blockhash.NewTokenHasher(*blockSize)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		keys, err = h.BlockKeys(nil, 0, toks, extra)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	default:
		return fmt.Errorf("%w: --key-scheme %q: valid: vllm, tokens", errUsage, *scheme)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: --tokens: %d tokens make no full block of %d (vLLM hashes only full blocks)", errUsage, len(toks), *blockSize)
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.FormatUint(uint64(k), 10))
		b.WriteByte('\n')
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

func algoList() string {
	var names []string
	for _, a := range blockhash.Algorithms() {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}

// parseTokens parses token IDs separated by commas, optionally in brackets
// as a JSON array (what tokenize prints); spaces and newlines are allowed.
func parseTokens(s string) ([]uint32, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		if !strings.HasSuffix(s, "]") {
			return nil, fmt.Errorf("an array that starts with [ must end with ]")
		}
		s = strings.TrimSpace(s[1 : len(s)-1])
		if strings.Contains(s, "[") {
			return nil, fmt.Errorf("one array of token IDs, not several (hash one prompt at a time)")
		}
	}
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]uint32, 0, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseUint(strings.TrimSpace(p), 10, 32)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return nil, fmt.Errorf("token %d (%q) is out of range [0, 4294967295]", i, p)
			}
			return nil, fmt.Errorf("token %d (%q) is not a non-negative integer", i, p)
		}
		out = append(out, uint32(v))
	}
	return out, nil
}
