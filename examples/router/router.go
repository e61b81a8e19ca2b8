package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
	// OccupancyWeight weighs where new prompts have gone: 1 for the pod
	// this router placed the least uncached prompt on (each request adds
	// the share of its prompt the chosen pod did not hold), 0 for the most.
	// It spreads new prefixes over the pods by cache occupancy instead of
	// a random tie-break, so no pod's cache overflows while others idle.
	// Default 1; 0 turns it off only when set explicitly.
	OccupancyWeight *float64 `json:"occupancyWeight,omitempty"`
	// Health configures the active and passive health checks.
	Health HealthConfig `json:"health,omitzero"`
	// Limits bound what one request may cost (limits.go).
	Limits Limits `json:"limits,omitzero"`
	// MaxIdleConnsPerPod is how many idle keep-alive connections to each
	// pod the router keeps for reuse. Go's default of 2 makes a burst of
	// concurrent requests open (and leave in TIME_WAIT) a connection per
	// request. Default 256.
	MaxIdleConnsPerPod int `json:"maxIdleConnsPerPod,omitempty"`
}

// Router is the proxy. Create it with New.
type Router struct {
	cfg    Config
	scorer PrefixScorer
	log    logr.Logger
	pods   []*backend

	mu  sync.Mutex // guards rng and the backends' placed
	rng *rand.Rand

	scoreLog *rateLimitedLog

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
	down     atomic.Bool // excluded from routing until a health check passes
	placed   float64     // uncached prompt share routed here; under Router.mu
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
	if cfg.OccupancyWeight == nil {
		one := 1.0
		cfg.OccupancyWeight = &one
	}
	if *cfg.OccupancyWeight < 0 {
		return nil, fmt.Errorf("router: occupancyWeight %g: must be >= 0", *cfg.OccupancyWeight)
	}
	if cfg.MaxIdleConnsPerPod == 0 {
		cfg.MaxIdleConnsPerPod = 256
	}
	if cfg.MaxIdleConnsPerPod < 0 {
		return nil, fmt.Errorf("router: maxIdleConnsPerPod %d: must be > 0, or unset for the default of 256", cfg.MaxIdleConnsPerPod)
	}
	cfg.Health = cfg.Health.withDefaults()
	cfg.Limits = cfg.Limits.withDefaults()
	if err := cfg.Limits.validate(); err != nil {
		return nil, err
	}
	r := &Router{
		cfg: cfg, scorer: scorer, log: log, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		scoreLog: &rateLimitedLog{log: log, period: 10 * time.Second},
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
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 0 // no total bound; per pod below
	transport.MaxIdleConnsPerHost = cfg.MaxIdleConnsPerPod
	for _, addr := range cfg.Pods {
		u, err := url.Parse("http://" + addr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("router: pods: %q is not host:port", addr)
		}
		p := httputil.NewSingleHostReverseProxy(u)
		p.Transport = transport
		p.FlushInterval = -1 // stream server-sent events as they come
		p.ErrorHandler = proxyError
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

// Response headers naming the routing decision.
const (
	PodHeader   = "x-kvtrack-pod"   // the pod (host:port) that served the request
	ScoreHeader = "x-kvtrack-score" // its prefix score: the share of the prompt it held, 0..1
)

// ServeHTTP routes POST /v1/completions and /v1/chat/completions by prompt
// and proxies every other request to the least loaded pod. A scored
// request's body is read and bounded first (limits.go): invalid JSON gets
// 400, an oversize body or prompt 413, a slow body 408. A pod that cannot
// be reached is marked down and the request goes to the next best one. Each
// request is logged once, with the pod and score that served it.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	var prompt *kvcache.Request
	var body []byte
	if api, ok := openai.APIFor(req.URL.Path); ok && req.Method == http.MethodPost {
		b, parsed, release, ok := r.readScored(w, req, api)
		if !ok {
			return
		}
		// The admission slot is held until the request is answered: the
		// body may be sent again to another pod if the first is down.
		defer release()
		body, prompt = b, parsed
		req.ContentLength = int64(len(body))
	}
	rec := &statusRecorder{ResponseWriter: w}
	tried := map[*backend]bool{}
	var served *backend
	score := -1.0
	for served == nil {
		d, err := r.pick(req.Context(), prompt, tried)
		if r.rejectParse(w, err) {
			return
		}
		if d.b == nil {
			break
		}
		tried[d.b] = true
		if d.picked != nil {
			d.picked(req.Context(), d.b.addr)
		}
		if err := r.forward(rec, req, body, d); err != nil {
			if rec.status != 0 || req.Context().Err() != nil {
				break // answered already (a stream broke), or the client left
			}
			r.markDown(d.b, "request could not be sent", err)
			continue
		}
		served, score = d.b, d.prefix
		r.mu.Lock()
		d.b.placed += 1 - max(d.prefix, 0)
		r.mu.Unlock()
	}
	if served == nil && rec.status == 0 {
		rec.Header().Del(PodHeader)
		rec.Header().Del(ScoreHeader)
		http.Error(rec, fmt.Sprintf("no pod could take the request (%d tried)", len(tried)), http.StatusBadGateway)
	}
	kv := []any{"method", req.Method, "path", req.URL.Path, "status", rec.status, "bytes", rec.bytes,
		"duration", time.Since(start).Round(time.Microsecond).String(), "attempts", len(tried)}
	if served != nil {
		kv = append(kv, "pod", served.addr)
	}
	if score >= 0 {
		kv = append(kv, "score", score)
	}
	r.log.Info("request", kv...)
}

// forward proxies one attempt to d.b and returns the proxy's error, if any.
func (r *Router) forward(rec *statusRecorder, req *http.Request, body []byte, d decision) error {
	rec.Header().Set(PodHeader, d.b.addr)
	if d.prefix >= 0 {
		rec.Header().Set(ScoreHeader, strconv.FormatFloat(d.prefix, 'f', 3, 64))
	} else {
		rec.Header().Del(ScoreHeader)
	}
	pe := &proxyErr{}
	out := req.WithContext(context.WithValue(req.Context(), proxyErrKey{}, pe))
	if body != nil {
		br := newLentReader(body)
		defer br.Close()
		out.Body = br
	}
	r.requests.WithLabelValues(d.b.addr).Inc()
	d.b.inflight.Add(1)
	defer d.b.inflight.Add(-1)
	d.b.proxy.ServeHTTP(rec, out)
	return pe.err
}

// proxyError is the proxies' ErrorHandler: it hands the error to the
// attempt, which decides between retrying and answering 502.
func proxyError(w http.ResponseWriter, req *http.Request, err error) {
	if pe, ok := req.Context().Value(proxyErrKey{}).(*proxyErr); ok {
		pe.err = err
		return
	}
	http.Error(w, err.Error(), http.StatusBadGateway)
}

// decision is the pod chosen for one attempt.
type decision struct {
	b      *backend // nil: no pod left to try
	prefix float64  // its prefix score, -1 when there is none
	picked func(context.Context, string)
}

// pick returns the pod with the highest PrefixWeight*prefix +
// LoadWeight*load + OccupancyWeight*occupancy score among the healthy pods
// not yet tried (all untried pods when none is healthy), ties at random.
// A *openai.LimitError from the scorer (a text prompt over
// limits.maxPromptTokens) is returned for the caller to answer.
func (r *Router) pick(ctx context.Context, p *kvcache.Request, tried map[*backend]bool) (decision, error) {
	n := len(r.pods)
	var prefix []float64
	var picked func(context.Context, string)
	if p != nil && r.scorer != nil && r.cfg.PrefixWeight > 0 {
		var err error
		prefix, picked, err = r.scorer.ScorePods(ctx, *p, r.cfg.Pods)
		if le := (*openai.LimitError)(nil); errors.As(err, &le) {
			return decision{prefix: -1}, err
		}
		if err != nil || len(prefix) != n {
			if err == nil {
				err = fmt.Errorf("the scorer returned %d scores for %d pods", len(prefix), n)
			}
			picked = nil
			r.scoreErrors.Inc()
			r.scoreLog.Error(err, "prefix scoring failed; routing on load alone")
			prefix = nil
		}
	}
	candidates := make([]int, 0, n)
	for i, b := range r.pods {
		if !tried[b] && !b.down.Load() {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 { // every pod is down: try them anyway
		for i, b := range r.pods {
			if !tried[b] {
				candidates = append(candidates, i)
			}
		}
	}
	if len(candidates) == 0 {
		return decision{prefix: -1}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	loads := make([]float64, n)
	placed := make([]float64, n)
	for _, i := range candidates {
		loads[i] = float64(r.pods[i].inflight.Load())
		placed[i] = r.pods[i].placed
	}
	loadTerm := inverseSpread(loads, candidates)
	occTerm := inverseSpread(placed, candidates)
	best, bestScore, ties := -1, -1.0, 0
	for _, i := range candidates {
		s := r.cfg.LoadWeight*loadTerm[i] + *r.cfg.OccupancyWeight*occTerm[i]
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
	d := decision{b: r.pods[best], prefix: -1, picked: picked}
	if prefix != nil {
		d.prefix = prefix[best]
	}
	return d, nil
}

// inverseSpread maps the candidates' values to 1 for the smallest and 0
// for the largest, linearly; all 1 when they are equal.
func inverseSpread(v []float64, candidates []int) []float64 {
	lo, hi := v[candidates[0]], v[candidates[0]]
	for _, i := range candidates {
		lo, hi = min(lo, v[i]), max(hi, v[i])
	}
	out := make([]float64, len(v))
	for _, i := range candidates {
		out[i] = 1
		if hi > lo {
			out[i] = (hi - v[i]) / (hi - lo)
		}
	}
	return out
}
