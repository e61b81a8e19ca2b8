package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/kvtrack/kvtrack/internal/testtokenizer"
	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache"
)

// syncBuffer is a log sink the handler and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func jsonLogger() (logr.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return logr.FromSlogHandler(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

func noHealth() HealthConfig { return HealthConfig{Interval: -1} }

// Every response names the pod and its prefix score, and every request
// gets one structured access-log line saying the same.
func TestResponseHeadersAndAccessLog(t *testing.T) {
	a, b := fakePod(t, "a", nil), fakePod(t, "b", nil)
	log, buf := jsonLogger()
	r, err := New(Config{Pods: []string{addr(a), addr(b)}, Health: noHealth()}, &fixedScorer{scores: []float64{0.25, 0.75}}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/completions", strings.NewReader(`{"model":"m","prompt":"x"}`)))
	if got := rec.Header().Get(PodHeader); got != addr(b) {
		t.Errorf("%s = %q, want %q", PodHeader, got, addr(b))
	}
	if got := rec.Header().Get(ScoreHeader); got != "0.750" {
		t.Errorf("%s = %q, want 0.750", ScoreHeader, got)
	}
	var access []map[string]any
	for _, l := range buf.lines() {
		if l["msg"] == "request" {
			access = append(access, l)
		}
	}
	if len(access) != 1 {
		t.Fatalf("%d access-log lines, want 1: %v", len(access), buf.lines())
	}
	l := access[0]
	if l["pod"] != addr(b) || l["score"] != 0.75 || l["status"] != float64(200) || l["path"] != "/v1/completions" || l["method"] != "POST" {
		t.Errorf("access log %v", l)
	}
}

// A failing scorer is an error, logged at most once per period with a
// count of the failures it stood for.
func TestScoreFailuresLogAtErrorLevelRateLimited(t *testing.T) {
	a := fakePod(t, "a", nil)
	log, buf := jsonLogger()
	r, err := New(Config{Pods: []string{addr(a)}, Health: noHealth()}, &fixedScorer{err: errors.New("tokenizer down")}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		post(t, r, "/v1/completions", `{"model":"m","prompt":"x"}`)
	}
	var errs []map[string]any
	for _, l := range buf.lines() {
		if l["level"] == "ERROR" {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0]["err"].(string), "tokenizer down") {
		t.Errorf("error lines %v, want exactly one naming the cause", errs)
	}
	r.scoreLog.mu.Lock()
	suppressed := r.scoreLog.suppressed
	r.scoreLog.mu.Unlock()
	if suppressed != 4 {
		t.Errorf("suppressed %d, want 4 (counted for the next line)", suppressed)
	}
}

// A pod whose /health fails is excluded until it passes again.
func TestActiveHealthChecksExcludeAndRestore(t *testing.T) {
	var healthy atomic.Bool
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"pod":"sick"}`)
	}))
	t.Cleanup(sick.Close)
	well := fakePod(t, "well", nil)
	r, err := New(Config{Pods: []string{addr(sick), addr(well)}, Health: HealthConfig{Interval: 20 * time.Millisecond}},
		&fixedScorer{scores: []float64{1, 0}}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.RunHealthChecks(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the sick pod to be excluded", func() bool { return r.pods[0].down.Load() })
	if got := post(t, r, "/v1/completions", `{"model":"m","prompt":"x"}`); !strings.Contains(got, "well") {
		t.Errorf("with the prefix holder down, got %s, want the healthy pod", got)
	}
	healthy.Store(true)
	waitFor(t, "the pod to be restored", func() bool { return !r.pods[0].down.Load() })
	if got := post(t, r, "/v1/completions", `{"model":"m","prompt":"x"}`); !strings.Contains(got, "sick") {
		t.Errorf("after recovery got %s, want the pod holding the prefix", got)
	}
}

// A pod that refuses connections fails over to the next and is marked down.
func TestPassiveHealthRetriesOnAnotherPod(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := addr(dead)
	dead.Close()
	well := fakePod(t, "well", nil)
	r, err := New(Config{Pods: []string{deadAddr, addr(well)}, Health: noHealth()}, &fixedScorer{scores: []float64{1, 0}}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := post(t, r, "/v1/completions", `{"model":"m","prompt":"x"}`); !strings.Contains(got, "well") {
		t.Errorf("got %s, want the live pod", got)
	}
	if !r.pods[0].down.Load() {
		t.Error("the dead pod was not marked down")
	}
}

func TestAllPodsDeadIs502(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := addr(dead)
	dead.Close()
	r, err := New(Config{Pods: []string{deadAddr}, Health: noHealth()}, nil, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/completions", strings.NewReader(`{"model":"m","prompt":"x"}`)))
	if rec.Code != http.StatusBadGateway || rec.Header().Get(PodHeader) != "" {
		t.Errorf("status %d, %s %q; want 502 and no pod", rec.Code, PodHeader, rec.Header().Get(PodHeader))
	}
}

// New prompts (no pod holds any of them) go round the pods by occupancy.
func TestOccupancySpreadsNewPrompts(t *testing.T) {
	var pods []string
	for _, n := range []string{"a", "b", "c", "d"} {
		pods = append(pods, addr(fakePod(t, n, nil)))
	}
	r, err := New(Config{Pods: pods, Health: noHealth()}, &fixedScorer{scores: []float64{0, 0, 0, 0}}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for range 20 {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/completions", strings.NewReader(`{"model":"m","prompt":"x"}`)))
		count[rec.Header().Get(PodHeader)]++
	}
	for _, p := range pods {
		if count[p] != 5 {
			t.Errorf("counts %v, want 5 on each pod", count)
			break
		}
	}
}

// Every setting a newcomer needs has a flag.
func TestFlagsSetTheConfig(t *testing.T) {
	cfg, err := parseArgs([]string{"-pods", "10.0.0.7:8000", "-key-scheme", "tokens", "-hash-algo", "xxhash", "-hash-seed", "7",
		"-block-size", "32", "-events-mode", "connect", "-events-port", "6000", "-replay-port", "6001", "-topic-filter", "kv@",
		"-tokenizer", "http://10.0.0.7:8000", "-tokenizer-model", "qwen3", "-speculative", "true",
		"-prefix-weight", "3", "-load-weight", "0.5", "-occupancy-weight", "2", "-health-interval", "1s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.KVCache
	if k.KeyScheme != kvcache.KeySchemeTokens || k.Hash.Algorithm != "xxhash" || k.Hash.Seed != "7" || k.Hash.BlockSize != 32 ||
		k.Events.Mode != kvcache.EventsConnect || k.Events.Port != 6000 || k.Events.ReplayPort != 6001 || *k.Events.TopicFilter != "kv@" ||
		k.Tokenizer.URL != "http://10.0.0.7:8000" || k.Tokenizer.Model != "qwen3" || !k.Speculative.Enabled {
		t.Errorf("kvcache config %+v", k)
	}
	if cfg.PrefixWeight != 3 || cfg.LoadWeight != 0.5 || *cfg.OccupancyWeight != 2 || cfg.Health.Interval != time.Second {
		t.Errorf("router config %+v", cfg.Config)
	}
	if _, err := parseArgs([]string{"-pods", "a:1", "-hash-seed", "1", "-load-weight", "x"}, io.Discard); err == nil || !strings.Contains(err.Error(), "not a number") {
		t.Errorf("err = %v, want a bad-number error", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// A failing tokenizer source is skipped for a cooldown; the next one
// answers, with the same tokens.
func TestTokenizerFailover(t *testing.T) {
	var hits atomic.Int64
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "tokenizer crashed", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	dir := testtokenizer.Qwen3Dir(t)
	f, err := newFailoverTokenizer(context.Background(), []string{broken.URL, filepath.Join(dir, "tokenizer.json")}, "qwen3")
	if err != nil {
		t.Fatal(err)
	}
	want, err := testtokenizer.Qwen3(t).Encode("hello world", true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got, err := f.Encode("hello world", true)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("call %d: %v, %v; want %v", i, got, err, want)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the broken source was asked %d times, want once (then skipped)", n)
	}
	chat, err := f.EncodeChat(context.Background(), "qwen3", &kvcache.ChatRequest{Messages: []kvcache.ChatMessage{{Role: "user", Content: "hi"}}, AddGenerationPrompt: true})
	if err != nil || len(chat) == 0 {
		t.Errorf("chat: %v, %v", chat, err)
	}
	if _, err := newFailoverTokenizer(context.Background(), []string{"/no/such/tokenizer.json"}, ""); err == nil {
		t.Error("a missing tokenizer file was accepted")
	}
}

func TestTokenizerFlagTakesSeveralSources(t *testing.T) {
	cfg, err := parseArgs([]string{"-pods", "a:1", "-hash-seed", "1", "-tokenizer", "http://10.0.0.7:8000,/models/t.json"}, io.Discard)
	if err != nil || !slices.Equal(cfg.Tokenizers, []string{"http://10.0.0.7:8000", "/models/t.json"}) || cfg.KVCache.Tokenizer.URL != "" {
		t.Errorf("tokenizers %q, kvcache tokenizer %+v, err %v", cfg.Tokenizers, cfg.KVCache.Tokenizer, err)
	}
}
