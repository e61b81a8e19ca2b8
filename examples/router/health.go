package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Health checking. A pod is excluded from routing once it fails: actively,
// when its GET /health (vLLM's liveness endpoint) fails, or passively, when
// a request to it cannot be sent. It is routed to again as soon as /health
// answers 200. When every pod is down the router tries them all rather than
// refuse: one may be back before the next check.

// HealthConfig configures the checks.
type HealthConfig struct {
	// Interval between active checks of each pod. Default 5s. Negative
	// disables active checks; a pod a failed request marked down then
	// stays down, so keep it positive in production.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout of one check. Default 2s.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Path checked. Default "/health".
	Path string `json:"path,omitempty"`
}

func (h HealthConfig) withDefaults() HealthConfig {
	if h.Interval == 0 {
		h.Interval = 5 * time.Second
	}
	if h.Timeout == 0 {
		h.Timeout = 2 * time.Second
	}
	if h.Path == "" {
		h.Path = "/health"
	}
	return h
}

// markDown excludes b from routing until a check succeeds.
func (r *Router) markDown(b *backend, why string, err error) {
	if b.down.CompareAndSwap(false, true) {
		r.log.Error(err, "pod excluded from routing until its health check passes", "pod", b.addr, "why", why)
	}
}

func (r *Router) markUp(b *backend) {
	if b.down.CompareAndSwap(true, false) {
		r.log.Info("pod healthy again, routing to it", "pod", b.addr)
	}
}

// RunHealthChecks checks every pod every HealthConfig.Interval until ctx
// ends.
func (r *Router) RunHealthChecks(ctx context.Context) {
	h := r.cfg.Health
	if h.Interval < 0 {
		return
	}
	client := &http.Client{Timeout: h.Timeout}
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, b := range r.pods {
			wg.Go(func() { r.check(ctx, client, b) })
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Router) check(ctx context.Context, client *http.Client, b *backend) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+r.cfg.Health.Path, nil)
	if err != nil {
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.markDown(b, "health check failed", err)
		}
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.markDown(b, "health check answered "+resp.Status, nil)
		return
	}
	r.markUp(b)
}

// rateLimitedLog logs at error level at most once per period, counting the
// calls it suppressed in between, so a failing dependency is loud but does
// not flood the log.
type rateLimitedLog struct {
	log    logr.Logger
	period time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *rateLimitedLog) Error(err error, msg string, kv ...any) {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.period {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	l.log.Error(err, msg, append(kv, "suppressedSinceLast", n)...)
}

// statusRecorder remembers the status and size of a response for the
// access log; Unwrap lets the proxy flush streamed responses through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// proxyErr carries a proxy failure from the ErrorHandler to ServeHTTP,
// which retries on another pod when nothing was written yet.
type proxyErr struct{ err error }

type proxyErrKey struct{}
