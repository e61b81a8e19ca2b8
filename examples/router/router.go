package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/openai"
)

// PrefixScorer scores each pod in [0, 1] by the share of the prompt's
// prefix it holds in its KV cache; indexerScorer adapts kvtrack's
// kvcache.Indexer. picked, when not nil, is called with the pod the request
// goes to (kvtrack records speculative entries there). Implementations must
// be safe for concurrent use. An error makes the router fall back to load
// alone.
type PrefixScorer interface {
	ScorePods(ctx context.Context, req kvcache.Request, pods []string) (scores []float64, picked func(ctx context.Context, pod string), err error)
}

// Config configures a Router.
type Config struct {
	// Pods are the vLLM servers, each "host:port" of its OpenAI API.
	Pods []string `json:"pods"`
	// PrefixWeight and LoadWeight weigh the prefix score and the load score
	// (1 for the pod with the fewest requests in flight, 0 for the most).
	// Defaults 2 and 1, as the EPP example weighs its scorers.
	PrefixWeight float64 `json:"prefixWeight,omitempty"`
	LoadWeight   float64 `json:"loadWeight,omitempty"`
	// MaxBodyBytes bounds a request body. Default 16 MiB.
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
	// Limits bound what one request may cost (limits.go).
	Limits Limits `json:"limits,omitzero"`
}

// Router is the proxy. Create it with New.
type Router struct {
	cfg    Config
	scorer PrefixScorer
	log    logr.Logger
	pods   []*backend

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	requests     *prometheus.CounterVec
	scoreErrors  prometheus.Counter
	badRequests  prometheus.Counter
	inflightDesc *prometheus.Desc

	admit    admission              // limits.go
	rejected *prometheus.CounterVec // by reason
}

type backend struct {
	addr     string
	proxy    *httputil.ReverseProxy
	inflight atomic.Int64
}

// New validates cfg and returns a Router. Its metrics are registered on reg
// when reg is not nil.
func New(cfg Config, scorer PrefixScorer, log logr.Logger, reg prometheus.Registerer) (*Router, error) {
	if len(cfg.Pods) == 0 {
		return nil, errors.New("router: pods: at least one pod (host:port) is required")
	}
	if cfg.PrefixWeight == 0 && cfg.LoadWeight == 0 {
		cfg.PrefixWeight, cfg.LoadWeight = 2, 1
	}
	if cfg.PrefixWeight < 0 || cfg.LoadWeight < 0 {
		return nil, fmt.Errorf("router: prefixWeight %g, loadWeight %g: weights must be >= 0", cfg.PrefixWeight, cfg.LoadWeight)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if err := cfg.Limits.validate(); err != nil {
		return nil, err
	}
	r := &Router{
		cfg: cfg, scorer: scorer, log: log, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvtrack_router_requests_total", Help: "Requests proxied, by pod.",
		}, []string{"pod"}),
		scoreErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvtrack_router_score_errors_total", Help: "Requests routed on load alone because prefix scoring failed.",
		}),
		badRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvtrack_router_bad_requests_total", Help: "Requests rejected before routing (unreadable body).",
		}),
		inflightDesc: prometheus.NewDesc("kvtrack_router_inflight_requests", "Requests in flight, by pod.", []string{"pod"}, nil),
		admit:        newAdmission(cfg.Limits),
		rejected:     newRejectedCounter(),
	}
	for _, addr := range cfg.Pods {
		u, err := url.Parse("http://" + addr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("router: pods: %q is not host:port", addr)
		}
		p := httputil.NewSingleHostReverseProxy(u)
		p.FlushInterval = -1 // stream server-sent events as they come
		r.pods = append(r.pods, &backend{addr: addr, proxy: p})
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.requests, r.scoreErrors, r.badRequests, r.rejected, inflightCollector{r}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("router: registering metrics: %w", err)
			}
		}
	}
	return r, nil
}

type inflightCollector struct{ r *Router }

func (c inflightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.r.inflightDesc }
func (c inflightCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.r.pods {
		ch <- prometheus.MustNewConstMetric(c.r.inflightDesc, prometheus.GaugeValue, float64(b.inflight.Load()), b.addr)
	}
}

// ServeHTTP routes POST /v1/completions and /v1/chat/completions by prompt
// and proxies every other request to the least loaded pod. A scored
// request's body is read and bounded first (limits.go): invalid JSON gets
// 400, an oversize body or prompt 413, a slow body 408.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var prompt *kvcache.Request
	if api, ok := openai.APIFor(req.URL.Path); ok && req.Method == http.MethodPost {
		body, parsed, release, ok := r.readScored(w, req, api)
		if !ok {
			return
		}
		defer release()
		req.Body = &releasingBody{r: bytes.NewReader(body), release: release}
		req.ContentLength = int64(len(body))
		prompt = parsed
	}
	b, picked, err := r.pick(req.Context(), prompt)
	if r.rejectParse(w, err) {
		return
	}
	if picked != nil {
		picked(req.Context(), b.addr)
	}
	r.requests.WithLabelValues(b.addr).Inc()
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	b.proxy.ServeHTTP(w, req)
}

// pick returns the pod with the highest PrefixWeight*prefix +
// LoadWeight*load score, ties at random, and the scorer's callback.
// A *openai.LimitError from the scorer (a text prompt over
// limits.maxPromptTokens) is returned for the caller to answer.
func (r *Router) pick(ctx context.Context, p *kvcache.Request) (*backend, func(context.Context, string), error) {
	n := len(r.pods)
	var prefix []float64
	var picked func(context.Context, string)
	if p != nil && r.scorer != nil && r.cfg.PrefixWeight > 0 {
		var err error
		prefix, picked, err = r.scorer.ScorePods(ctx, *p, r.cfg.Pods)
		if le := (*openai.LimitError)(nil); errors.As(err, &le) {
			return nil, nil, err
		}
		if err != nil || len(prefix) != n {
			picked = nil
			r.scoreErrors.Inc()
			if r.log.V(1).Enabled() {
				r.log.V(1).Info("prefix scoring failed; routing on load", "err", err)
			}
			prefix = nil
		}
	}
	minL, maxL := r.pods[0].inflight.Load(), r.pods[0].inflight.Load()
	loads := make([]int64, n)
	for i, b := range r.pods {
		loads[i] = b.inflight.Load()
		minL, maxL = min(minL, loads[i]), max(maxL, loads[i])
	}
	best, bestScore, ties := 0, -1.0, 0
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range n {
		load := 1.0
		if maxL > minL {
			load = float64(maxL-loads[i]) / float64(maxL-minL)
		}
		s := r.cfg.LoadWeight * load
		if prefix != nil {
			s += r.cfg.PrefixWeight * prefix[i]
		}
		switch {
		case s > bestScore:
			best, bestScore, ties = i, s, 1
		case s == bestScore:
			ties++
			if r.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return r.pods[best], picked, nil
}
