package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/internal/pypub"
	"github.com/kvtrack/kvtrack/internal/testtokenizer"
	"github.com/kvtrack/kvtrack/internal/testwait"
)

// pyPod is a fake pod whose KV events come from the Python stand-in
// publisher: the blocks of seqs, hashed by Python as vLLM does (as the
// adapter lora's blocks when lora is set).
type pyPod struct {
	name, ip string
	lora     string
	seqs     [][]uint32
}

// startPyE2E runs the router in connect mode in front of pods, each on its
// own loopback address with its publisher on the shared events port, and
// waits until kvtrack has applied every pod's batch.
func startPyE2E(t *testing.T, pods ...pyPod) string {
	t.Helper()
	pypub.Require(t)
	tokDir := testtokenizer.Qwen3Dir(t)
	eventsPort := freePort(t)
	var addrs []string
	var waits []func()
	for _, p := range pods {
		hs := httptest.NewUnstartedServer(fakePod(t, p.name, nil).Config.Handler)
		ln, err := net.Listen("tcp", p.ip+":0")
		if err != nil {
			t.Skipf("cannot listen on %s: %v", p.ip, err)
		}
		hs.Listener.Close()
		hs.Listener = ln
		hs.Start()
		t.Cleanup(hs.Close)
		a := ln.Addr().String()
		addrs = append(addrs, a)
		waits = append(waits, pypub.Start(t, pypub.Pod{
			Endpoint: fmt.Sprintf("tcp://%s:%d", p.ip, eventsPort), Topic: "kv@" + a + "@qwen3",
			Seed: "42", BlockSize: 16, LoRA: p.lora, Sequences: p.seqs,
		}))
	}
	cfg, err := parseArgs([]string{"-pods", strings.Join(addrs, ","), "-hash-seed", "42", "-tokenizer", filepath.Join(tokDir, "tokenizer.json")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.KVCache.Events.Port = eventsPort
	cfg.KVCache.Speculative.Enabled = false // only the pods' own events route
	url := startRouter(t, cfg)
	for _, wait := range waits {
		wait()
	}
	env := &e2e{url: url}
	testwait.For(t, fmt.Sprintf("kvtrack to apply %d events", len(pods)), func() bool {
		return env.metric(t, "kvtrack_events_applied_total") >= float64(len(pods))
	})
	return env.url
}

// routedTo posts body and returns the pod that answered.
func routedTo(t *testing.T, url, path, body string) string {
	t.Helper()
	resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Pod string }
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	return out.Pod
}

func encode(t *testing.T, text string) []uint32 {
	t.Helper()
	ids, err := testtokenizer.Qwen3(t).Encode(text, true) // completions: add_special_tokens
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestLoRARequestRoutesToThePodHoldingTheAdaptersBlocks: pod "adapter"
// holds the prompt's blocks as LoRA adapter sql-lora's (hashed with the
// adapter's name, lora_name in the events, vLLM v0.14+), pod "base" holds
// the same tokens for the base model. No adapter is configured: kvtrack
// learns sql-lora from the events.
func TestLoRARequestRoutesToThePodHoldingTheAdaptersBlocks(t *testing.T) {
	prompt := longPrompt("a SQL assistant")
	ids := encode(t, prompt)
	url := startPyE2E(t,
		pyPod{name: "adapter", ip: "127.0.0.2", lora: "sql-lora", seqs: [][]uint32{ids}},
		pyPod{name: "base", ip: "127.0.0.3", seqs: [][]uint32{ids}},
	)
	for model, want := range map[string]string{"sql-lora": "adapter", "qwen3": "base"} {
		for range 3 { // a tie would be broken at random
			if got := routedTo(t, url, "/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":%q}`, model, prompt)); got != want {
				t.Errorf("model %s went to pod %s, want %s", model, got, want)
			}
		}
	}
}

// TestBatchScoresAsVLLMServesIt: a completions batch is one request per
// prompt on the chosen pod, so the pod holding more of the batch's blocks
// wins (sum of matched blocks over sum of blocks), as text and as token IDs.
func TestBatchScoresAsVLLMServesIt(t *testing.T) {
	short, long := longPrompt("a florist")[:200], longPrompt("a locksmith")
	shortIDs, longIDs := encode(t, short), encode(t, long)
	url := startPyE2E(t,
		pyPod{name: "short", ip: "127.0.0.2", seqs: [][]uint32{shortIDs}},
		pyPod{name: "long", ip: "127.0.0.3", seqs: [][]uint32{longIDs}},
	)
	ids := func(v []uint32) string { b, _ := json.Marshal(v); return string(b) }
	for name, body := range map[string]string{
		"text batch":      fmt.Sprintf(`{"model":"qwen3","prompt":[%q,%q]}`, short, long),
		"token-ID batch":  fmt.Sprintf(`{"model":"qwen3","prompt":[%s,%s]}`, ids(shortIDs), ids(longIDs)),
		"only the short":  fmt.Sprintf(`{"model":"qwen3","prompt":[%q]}`, short),
		"short, as a row": fmt.Sprintf(`{"model":"qwen3","prompt":[%s]}`, ids(shortIDs)),
	} {
		want := "long"
		if strings.HasPrefix(name, "only") || strings.HasPrefix(name, "short") {
			want = "short"
		}
		for range 3 {
			if got := routedTo(t, url, "/v1/completions", body); got != want {
				t.Errorf("%s went to pod %s, want %s", name, got, want)
			}
		}
	}
}
