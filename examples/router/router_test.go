package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kvtrack/kvtrack/kvcache"
)

// fakePod answers OpenAI requests with its own name, streaming when asked.
func fakePod(t *testing.T, name string, hold chan struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if hold != nil {
			<-hold
		}
		if strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: {\"pod\":%q,\"chunk\":%d}\n\n", name, i)
				w.(http.Flusher).Flush()
			}
			fmt.Fprint(w, "data: [DONE]\n\n")
			return
		}
		fmt.Fprintf(w, `{"pod":%q}`, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func addr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// fixedScorer gives each pod a fixed prefix score, or fails.
type fixedScorer struct {
	scores []float64
	err    error
	got    []kvcache.Request
}

func (f *fixedScorer) ScorePods(_ context.Context, p kvcache.Request, pods []string) ([]float64, func(context.Context, string), error) {
	f.got = append(f.got, p)
	return f.scores, nil, f.err
}

func post(t *testing.T, h http.Handler, path, body string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("POST %s: status %d: %s", path, rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

func TestRoutesToThePodWithThePrefix(t *testing.T) {
	a, b := fakePod(t, "a", nil), fakePod(t, "b", nil)
	sc := &fixedScorer{scores: []float64{0, 0.9}}
	r, err := New(Config{Pods: []string{addr(a), addr(b)}}, sc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := post(t, r, "/v1/completions", `{"model":"m","prompt":"hello"}`); got != `{"pod":"b"}` {
		t.Errorf("got %s, want pod b", got)
	}
	if len(sc.got) != 1 || sc.got[0].Prompt != "hello" || sc.got[0].Model != "m" {
		t.Errorf("scorer saw %+v, want the completion prompt", sc.got)
	}
}

func TestPassesChatMessagesAndTokenIDsToTheScorer(t *testing.T) {
	a := fakePod(t, "a", nil)
	sc := &fixedScorer{scores: []float64{1}}
	r, _ := New(Config{Pods: []string{addr(a)}}, sc, logr.Discard(), nil)
	post(t, r, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	post(t, r, "/v1/completions", `{"model":"m","prompt":[1,2,3]}`)
	if len(sc.got) != 2 || sc.got[0].Chat == nil || string(sc.got[0].Chat.RawMessages) != `[{"role":"user","content":"hi"}]` ||
		!sc.got[0].Chat.AddGenerationPrompt || len(sc.got[1].TokenIDs) != 3 {
		t.Errorf("scorer saw %+v", sc.got)
	}
}

func TestStreamsResponsesThrough(t *testing.T) {
	a := fakePod(t, "a", nil)
	r, _ := New(Config{Pods: []string{addr(a)}}, nil, logr.Discard(), nil)
	front := httptest.NewServer(r)
	defer front.Close()
	resp, err := http.Post(front.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"m","prompt":"x","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "text/event-stream" || strings.Count(string(body), "data: ") != 4 {
		t.Errorf("content type %q, body %q: want 3 chunks and [DONE] as server-sent events", resp.Header.Get("Content-Type"), body)
	}
}

func TestLoadTermSendsAwayFromABusyPod(t *testing.T) {
	hold := make(chan struct{})
	a, b := fakePod(t, "a", hold), fakePod(t, "b", hold)
	// Equal prefix scores: load decides.
	r, _ := New(Config{Pods: []string{addr(a), addr(b)}}, &fixedScorer{scores: []float64{0.5, 0.5}}, logr.Discard(), nil)
	done := make(chan string)
	go func() { done <- post(t, r, "/v1/completions", `{"model":"m","prompt":"x"}`) }()
	for r.pods[0].inflight.Load()+r.pods[1].inflight.Load() == 0 {
		runtime.Gosched() // wait until the first request is in flight
	}
	busy := 0
	if r.pods[1].inflight.Load() == 1 {
		busy = 1
	}
	go func() { done <- post(t, r, "/v1/completions", `{"model":"m","prompt":"x"}`) }()
	for r.pods[1-busy].inflight.Load() == 0 && r.pods[busy].inflight.Load() < 2 {
		runtime.Gosched()
	}
	close(hold)
	<-done
	<-done
	if r.pods[busy].inflight.Load() != 0 || testutil.ToFloat64(r.requests.WithLabelValues(r.pods[1-busy].addr)) != 1 {
		t.Errorf("second request did not go to the idle pod")
	}
}

func TestScoreErrorFallsBackToLoadAndIsCounted(t *testing.T) {
	a := fakePod(t, "a", nil)
	reg := prometheus.NewPedanticRegistry()
	r, err := New(Config{Pods: []string{addr(a)}}, &fixedScorer{err: errors.New("index down")}, logr.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	post(t, r, "/v1/completions", `{"model":"m","prompt":"x"}`)
	if got := testutil.ToFloat64(r.scoreErrors); got != 1 {
		t.Errorf("score errors = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "kvtrack_router_requests_total", "kvtrack_router_inflight_requests"); err != nil || n != 2 {
		t.Errorf("gathered %d series (%v), want requests_total and inflight for one pod", n, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // what the error must name
	}{
		{Config{}, "pods"},
		{Config{Pods: []string{"a:1"}, PrefixWeight: -1}, "prefixWeight"},
		{Config{Pods: []string{"a:1"}, MaxIdleConnsPerPod: -1}, "maxIdleConnsPerPod"},
	} {
		if _, err := New(tc.cfg, nil, logr.Discard(), nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

// TestProxyKeepsConnectionsToPodsAlive sends two bursts of requests that
// are all in flight at once: the second reuses the first's connections to
// the pod instead of opening one per request (Go's default keeps 2).
func TestProxyKeepsConnectionsToPodsAlive(t *testing.T) {
	const burst = 40
	var (
		mu      sync.Mutex
		opened  int
		inside  int
		release = make(chan struct{})
	)
	pod := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		inside++
		if inside == burst { // every request of the burst holds a connection
			close(release)
		}
		ch := release
		mu.Unlock()
		<-ch
		fmt.Fprint(w, `{}`)
	}))
	pod.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			opened++
			mu.Unlock()
		}
	}
	pod.Start()
	t.Cleanup(pod.Close)
	r, err := New(Config{Pods: []string{addr(pod)}}, nil, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(r)
	t.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: burst}}
	defer client.CloseIdleConnections()
	send := func() {
		var wg sync.WaitGroup
		for range burst {
			wg.Go(func() {
				if code, _, raw := postWith(t, client, front.URL, "/v1/completions", strings.NewReader(`{"prompt":"hi"}`)); code != http.StatusOK {
					t.Errorf("status %d: %s", code, raw)
				}
			})
		}
		wg.Wait()
	}
	send()
	mu.Lock()
	first := opened
	inside, release = 0, make(chan struct{})
	mu.Unlock()
	send()
	mu.Lock()
	defer mu.Unlock()
	if first != burst || opened != first {
		t.Errorf("connections to the pod: %d for the first burst of %d, %d more for the second; want %d, then none", first, burst, opened-first, burst)
	}
}
