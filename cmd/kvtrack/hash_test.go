package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// Expected keys come from vLLM's reference vectors
// (kvcache/blockhash/testdata/vllm-hash-vectors.json).
func TestHashPrintsVLLMKeys(t *testing.T) {
	tokens := "100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130,131,132"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"sha256_cbor", []string{"--hash-algo", "sha256_cbor", "--hash-seed", "42", "--tokens", tokens}, "6658331277240515430\n8353329011930047756\n"},
		{"sha256 default algo", []string{"--hash-seed", "42", "--tokens", tokens}, "1381363090197472084\n17395668330357163136\n"},
		{"xxhash", []string{"--hash-algo", "xxhash", "--hash-seed", "42", "--tokens", tokens}, "6245295133533959738\n17588801635649920385\n"},
		{"legacy 64-bit", []string{"--hash-algo", "sha256_cbor_64bit", "--hash-seed", "42", "--tokens", tokens}, "4462785134722420693\n6181466901194762576\n"},
		{"a JSON array as tokenize prints it", []string{"--hash-algo", "sha256_cbor", "--hash-seed", "42", "--tokens", "[" + tokens + "]"}, "6658331277240515430\n8353329011930047756\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"hash"}, tt.args...)...)
			if code != 0 || out != tt.want {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 0, stdout %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestHashExtraKeysFormsAgree(t *testing.T) {
	tokens := "13,7932,15851,23770,31689,39608,47527,55446,63365,71284,79203,87122,95041,102960,110879,118798,126717,134636,142555,150474,6393,14312,22231,30150,38069,45988,53907,61826,69745,77664,85583,93502,101421,109340,117259,125178,133097,141016,148935,4854,12773,20692,28611,36530,44449,52368,60287,68206"
	want := "15433536038775461141\n3371061351672412459\n1336309129351966448\n" // vLLM vector lora_name
	for _, args := range [][]string{
		{"--lora-name", "sql-lora"},
		{"--extra-keys", `[["sql-lora"],["sql-lora"],["sql-lora"]]`},
	} {
		out, errOut, code := runCLI(t, append([]string{"hash", "--hash-algo", "sha256_cbor", "--hash-seed", "42", "--tokens", tokens}, args...)...)
		if code != 0 || out != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", args, code, out, errOut, want)
		}
	}
}

func TestHashUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no seed", []string{"--tokens", "1"}, "--hash-seed is required"},
		{"block size zero", []string{"--hash-seed", "1", "--block-size", "0", "--tokens", "1"}, "block size 0"},
		{"unknown algo", []string{"--hash-seed", "1", "--hash-algo", "md5", "--tokens", "1"}, "valid: sha256, sha256_cbor"},
		{"bad token", []string{"--hash-seed", "1", "--tokens", "1,x"}, `token 1 ("x")`},
		{"token too large", []string{"--hash-seed", "1", "--tokens", "4294967296"}, "out of range"},
		{"bad extra keys", []string{"--hash-seed", "1", "--tokens", "1", "--extra-keys", `[[{"a":1}]]`}, "block 0, item 0"},
		{"lora name and id", []string{"--hash-seed", "1", "--tokens", "1", "--lora-name", "a", "--lora-id", "2"}, "exclusive"},
		{"unknown scheme", []string{"--hash-seed", "1", "--tokens", "1", "--key-scheme", "x"}, "valid: vllm, tokens"},
		{"shorter than a block", []string{"--hash-seed", "42", "--tokens", "1,2,3"}, "3 tokens make no full block of 16"},
		{"empty prompt", []string{"--hash-seed", "42", "--tokens", ""}, "0 tokens make no full block"},
		{"no tokens", []string{"--hash-seed", "42"}, "--tokens is required"},
		{"unclosed array", []string{"--hash-seed", "42", "--tokens", "[1,2"}, "must end with ]"},
		{"several arrays", []string{"--hash-seed", "42", "--tokens", "[1,2]\n[3,4]"}, "one array"},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"hash"}, tt.args...)...)
			if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and stderr containing %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestHashTokensScheme(t *testing.T) {
	out, _, code := runCLI(t, "hash", "--key-scheme", "tokens", "--block-size", "2", "--tokens", "1,2,3,4,5")
	if code != 0 || len(strings.Fields(out)) != 2 {
		t.Errorf("exit %d, stdout %q; want 2 keys", code, out)
	}
}

func TestUnknownCommand(t *testing.T) {
	_, errOut, code := runCLI(t, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// The demo's printed reproduction command must print the demo's sha256 row.
func TestDemoRowReproducesWithHash(t *testing.T) {
	out, _, code := runCLI(t, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d", code)
	}
	var row []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "sha256" {
			row = f[1:]
		}
	}
	keys, _, code := runCLI(t, "hash", "--hash-algo", "sha256", "--hash-seed", "42", "--tokens", joinTokens(demoTokens))
	if code != 0 || strings.Join(strings.Fields(keys), " ") != strings.Join(row, " ") || len(row) != 3 {
		t.Errorf("demo sha256 row %v, hash printed %q", row, keys)
	}
}
