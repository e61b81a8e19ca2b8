package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"

	"github.com/go-logr/logr"

	"github.com/kvtrack/kvtrack/internal/testtokenizer"
	"github.com/kvtrack/kvtrack/internal/vllmfake"

	"github.com/kvtrack/kvtrack/internal/testwait"
)

type e2e struct {
	url     string                      // the router's
	names   map[string]string           // pod address -> fake pod name
	servers map[string]*httptest.Server // pod address -> its server
	pods    []string
}

// startE2E runs the router (as main runs it, bound for KV events) in front
// of n fake vLLM pods that publish real KV events over ZMQ to it.
func startE2E(t *testing.T, n int) *e2e {
	t.Helper()
	tokDir := testtokenizer.Qwen3Dir(t)
	tok := testtokenizer.Qwen3(t)
	port := freePort(t)
	eventsEP := fmt.Sprintf("tcp://127.0.0.1:%d", port)

	env := &e2e{names: map[string]string{}, servers: map[string]*httptest.Server{}}
	var pods []string
	var pubs []*vllmfake.Publisher
	for i := range n {
		name := fmt.Sprintf("pod-%d", i)
		hs := httptest.NewUnstartedServer(nil)
		addr := hs.Listener.Addr().String()
		pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: eventsEP, Topic: "kv@" + addr + "@qwen3"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		srv, err := vllmfake.NewServer(vllmfake.ServerConfig{
			Name: name, Model: "qwen3", Hash: blockhash.HashConfig{Algorithm: blockhash.SHA256, Seed: "42", BlockSize: 16},
			Tokenizer: tok, Publisher: pub, OutputTokens: 8,
		})
		if err != nil {
			t.Fatal(err)
		}
		hs.Config.Handler = srv
		hs.Start()
		t.Cleanup(hs.Close)
		pods, pubs = append(pods, addr), append(pubs, pub)
		env.names[addr], env.servers[addr] = name, hs
	}

	cfg, err := parseArgs([]string{
		"-pods", strings.Join(pods, ","), "-events-bind", eventsEP,
		"-hash-seed", "42", "-tokenizer", filepath.Join(tokDir, "tokenizer.json"),
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// No speculative entries: what routes the repeated prefix here must be
	// the pods' own events.
	cfg.KVCache.Speculative.Enabled = false
	env.url = startRouter(t, cfg)
	env.pods = pods

	for _, pub := range pubs {
		if err := pub.WaitSubscribed(testwait.Context(t)); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

type completion struct {
	pod    string // the fake pod's name, from its own header
	routed string // the router's x-kvtrack-pod header
	score  string // the router's x-kvtrack-score header
	cached int
	body   string
}

func (e *e2e) post(t *testing.T, path, body string) completion {
	t.Helper()
	resp, err := http.Post(e.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	var out struct {
		Usage struct {
			Details struct {
				Cached int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	json.Unmarshal(raw, &out)
	c := completion{pod: resp.Header.Get(vllmfake.PodHeader), routed: resp.Header.Get(PodHeader), score: resp.Header.Get(ScoreHeader),
		cached: out.Usage.Details.Cached, body: string(raw)}
	if e.names[c.routed] != c.pod {
		t.Fatalf("the router's %s header says %q (%s), but %s answered", PodHeader, c.routed, e.names[c.routed], c.pod)
	}
	return c
}

// metric returns the value of an unlabelled series on /metrics.
func (e *e2e) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// waitApplied waits until kvtrack has applied at least n KV events.
func (e *e2e) waitApplied(t *testing.T, n float64) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("kvtrack to apply %v KV events", n), func() bool {
		return e.metric(t, "kvtrack_events_applied_total") >= n
	})
}

// longPrompt is a few hundred tokens of text, many full blocks.
func longPrompt(topic string) string {
	return strings.Repeat("You are a support agent for "+topic+". Answer politely, cite the manual, and never invent part numbers. ", 12)
}

func TestEndToEndRepeatedPrefixGoesToThePodHoldingIt(t *testing.T) {
	env := startE2E(t, 3)
	prefix := longPrompt("the Acme 3000 espresso machine")
	first := env.post(t, "/v1/completions", fmt.Sprintf(`{"model":"qwen3","prompt":%q,"max_tokens":8}`, prefix+"Question: how do I descale it?"))
	if first.cached != 0 {
		t.Fatalf("first request found %d tokens cached on a fresh pod", first.cached)
	}
	env.waitApplied(t, 1)
	for i, q := range []string{"Where is the drip tray?", "What does the red light mean?", "How hot is the steam wand?", "Can I use oat milk?", "How do I replace the gasket?"} {
		got := env.post(t, "/v1/completions", fmt.Sprintf(`{"model":"qwen3","prompt":%q,"max_tokens":8}`, prefix+"Question: "+q))
		if got.routed != first.routed {
			t.Errorf("request %d with the same prefix went to %s, want %s, which holds it", i, got.routed, first.routed)
		}
		if got.score != "1.000" && !strings.HasPrefix(got.score, "0.") {
			t.Errorf("request %d: %s %q, want the prefix score", i, ScoreHeader, got.score)
		}
		if got.cached < 16*10 {
			t.Errorf("request %d: %d prompt tokens cached, want the shared prefix (>= 160)", i, got.cached)
		}
	}
	if errs := env.metric(t, "kvtrack_router_score_errors_total"); errs != 0 {
		t.Errorf("%v score errors, want 0", errs)
	}
}

func TestEndToEndChatFollowsItsPrefixAndStreams(t *testing.T) {
	env := startE2E(t, 3)
	system := longPrompt("a bank's mortgage desk")
	chat := func(q string, stream bool) string {
		msgs, _ := json.Marshal([]map[string]string{{"role": "system", "content": system}, {"role": "user", "content": q}})
		return fmt.Sprintf(`{"model":"qwen3","messages":%s,"stream":%t}`, msgs, stream)
	}
	first := env.post(t, "/v1/chat/completions", chat("What is a fixed rate?", false))
	env.waitApplied(t, 1)

	resp, err := http.Post(env.url+"/v1/chat/completions", "application/json", strings.NewReader(chat("And a variable one?", true)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if pod := resp.Header.Get(vllmfake.PodHeader); pod != first.pod {
		t.Errorf("streamed chat went to %s, want %s, which holds the system prompt", pod, first.pod)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
		}
	}
	if len(events) != 8+2 || events[len(events)-1] != "[DONE]" {
		t.Errorf("%d server-sent events ending %q, want 8 tokens, the usage and [DONE]", len(events), events[len(events)-1:])
	}
	if !strings.Contains(events[len(events)-2], `"cached_tokens":`) || strings.Contains(events[len(events)-2], `"cached_tokens":0`) {
		t.Errorf("usage event %s: want the system prompt's tokens cached", events[len(events)-2])
	}
}

// A pod that dies is skipped: the request it would have taken goes to the
// next best pod, and later requests avoid it.
func TestEndToEndSurvivesADeadPod(t *testing.T) {
	env := startE2E(t, 3)
	prefix := longPrompt("the Zephyr kettle")
	first := env.post(t, "/v1/completions", fmt.Sprintf(`{"model":"qwen3","prompt":%q,"max_tokens":8}`, prefix+"Question: why does it click?"))
	env.waitApplied(t, 1)
	env.servers[first.routed].Close() // the pod holding the prefix dies
	for i, q := range []string{"Is it dishwasher safe?", "What voltage?", "Where is the filter?"} {
		got := env.post(t, "/v1/completions", fmt.Sprintf(`{"model":"qwen3","prompt":%q,"max_tokens":8}`, prefix+"Question: "+q))
		if got.routed == first.routed {
			t.Errorf("request %d went to the dead pod %s", i, first.routed)
		}
	}
}

// New prefixes are spread by where earlier new prompts went, not by a
// random tie-break: 20 unrelated prompts on 4 idle pods put at most 8 on
// any one (a random tie-break puts more than 8 on one pod in about 1 run
// in 30).
func TestEndToEndSpreadsNewPrefixes(t *testing.T) {
	env := startE2E(t, 4)
	count := map[string]int{}
	for i := range 20 {
		prompt := fmt.Sprintf("Ticket %d. ", 1000+i*7919) + longPrompt(fmt.Sprintf("customer %d", i))
		got := env.post(t, "/v1/completions", fmt.Sprintf(`{"model":"qwen3","prompt":%q,"max_tokens":4}`, prompt))
		count[got.routed]++
	}
	for pod, n := range count {
		if n > 8 {
			t.Errorf("%s (%s) got %d of 20 new prefixes, want at most 8: %v", pod, env.names[pod], n, count)
		}
	}
	if len(count) != 4 {
		t.Errorf("new prefixes went to %d pods, want all 4: %v", len(count), count)
	}
}

// startRouter serves cfg on a loopback port until the test ends and
// returns its base URL.
func startRouter(t *testing.T, cfg fileConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln, logr.Discard()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
