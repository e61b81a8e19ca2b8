// Command router is an OpenAI-compatible HTTP reverse proxy in front of a
// set of vLLM servers, for users without Kubernetes: each
// /v1/completions and /v1/chat/completions request goes to the pod with the
// best mix of cached prompt prefix (kvtrack, fed by the pods' KV events)
// and low load (requests in flight). Responses, streamed ones included,
// pass through unchanged; every other path goes to the least loaded pod.
// Prometheus metrics are served on /metrics.
//
//	go run ./examples/router -config router.yaml
//	go run ./examples/router -pods 10.0.0.7:8000,10.0.0.8:8000 \
//	    -hash-seed 42 -tokenizer /models/qwen3/tokenizer.json
//
// The configuration file (YAML or JSON) holds the flags' settings and, under
// "kvcache", kvtrack's whole configuration (kvcache.Config): see
// router.example.yaml. Flags override the file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/openai"
	"github.com/kvtrack/kvtrack/kvevents"
)

// fileConfig is the router's whole configuration.
type fileConfig struct {
	// Listen is the address to serve on. Default ":8080".
	Listen string `json:"listen,omitempty"`
	Config
	// Tokenizers, when set, replace kvcache.tokenizer: local tokenizer
	// files and vLLM server URLs tried in order, a failing one skipped for
	// a while (see tokenizers.go).
	Tokenizers []string `json:"tokenizers,omitempty"`
	// KVCache is kvtrack's configuration: hash settings matching the pods'
	// vLLM flags, the event subscription, the tokenizer.
	KVCache kvcache.Config `json:"kvcache"`
}

func main() {
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(1)
	}
	log.Info("serving", "listen", ln.Addr().String(), "pods", cfg.Pods)
	if err := serve(ctx, cfg, ln, log); err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(1)
	}
}

// parseArgs reads the configuration file, if any, then applies the flags.
func parseArgs(args []string, stderr io.Writer) (fileConfig, error) {
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML or JSON); see router.example.yaml")
	listen := fs.String("listen", "", `address to serve on (default ":8080")`)
	pods := fs.String("pods", "", "comma-separated vLLM servers, host:port of their OpenAI API")
	events := fs.String("events-bind", "", "bind this ZMQ endpoint for the pods' KV events (e.g. tcp://*:5557) instead of dialling each pod (sets -events-mode bind)")
	seed := fs.String("hash-seed", "", "kvcache.hash.seed: the pods' PYTHONHASHSEED")
	blockSize := fs.Int("block-size", 0, "kvcache.hash.blockSize: the pods' --block-size (default 16)")
	tok := fs.String("tokenizer", "", "tokenizer.json (or its directory), or the http(s) URL of a vLLM server whose /tokenize to use; several, comma-separated, fail over in order")
	// The rest of what a newcomer needs without a file; each overrides the
	// file's setting only when given.
	var overrides []func(*fileConfig) error
	str := func(name, usage string, set func(*fileConfig, string) error) {
		fs.Func(name, usage, func(v string) error {
			overrides = append(overrides, func(c *fileConfig) error { return set(c, v) })
			return nil
		})
	}
	num := func(name, usage string, set func(*fileConfig, float64)) {
		str(name, usage, func(c *fileConfig, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("-%s %q: not a number", name, v)
			}
			set(c, f)
			return nil
		})
	}
	str("key-scheme", "kvcache.keyScheme: vllm (the pods' own hashes; default) or tokens (engines whose hashes cannot be reproduced)",
		func(c *fileConfig, v string) error { c.KVCache.KeyScheme = kvcache.KeyScheme(v); return nil })
	str("hash-algo", "kvcache.hash.algorithm: the pods' --prefix-caching-hash-algo (default sha256)",
		func(c *fileConfig, v string) error { c.KVCache.Hash.Algorithm = v; return nil })
	str("events-mode", "kvcache.events.mode: connect (dial each pod's publisher; default) or bind",
		func(c *fileConfig, v string) error { c.KVCache.Events.Mode = kvcache.EventsMode(v); return nil })
	num("events-port", "kvcache.events.port: each pod's KV-event publisher port in connect mode (default 5557)",
		func(c *fileConfig, v float64) { c.KVCache.Events.Port = int(v) })
	num("replay-port", "kvcache.events.replayPort: each pod's replay port (default 0: none)",
		func(c *fileConfig, v float64) { c.KVCache.Events.ReplayPort = int(v) })
	str("topic-filter", `kvcache.events.topicFilter: ZMQ topic prefix (default "kv@" in bind mode, "" in connect mode)`,
		func(c *fileConfig, v string) error { c.KVCache.Events.TopicFilter = &v; return nil })
	str("tokenizer-model", "kvcache.tokenizer.model: the model name sent to a tokenizer URL (default: the request's)",
		func(c *fileConfig, v string) error { c.KVCache.Tokenizer.Model = v; return nil })
	str("speculative", "kvcache.speculative.enabled: record each routing decision until the pod's events confirm it (true or false)",
		func(c *fileConfig, v string) error {
			b, err := strconv.ParseBool(v)
			c.KVCache.Speculative.Enabled = b
			return err
		})
	num("prefix-weight", "weight of the prefix score (default 2)", func(c *fileConfig, v float64) { c.PrefixWeight = v })
	num("load-weight", "weight of the load score (default 1)", func(c *fileConfig, v float64) { c.LoadWeight = v })
	num("occupancy-weight", "weight of the placement score that spreads new prompts over the pods (default 1)",
		func(c *fileConfig, v float64) { c.OccupancyWeight = &v })
	str("health-interval", "interval of the pods' GET /health checks (default 5s; negative: off)",
		func(c *fileConfig, v string) error {
			d, err := time.ParseDuration(v)
			c.Health.Interval = d
			return err
		})
	if err := fs.Parse(args); err != nil {
		return fileConfig{}, err
	}
	if fs.NArg() > 0 {
		return fileConfig{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var cfg fileConfig
	if *path != "" {
		var err error
		if cfg, err = loadConfig(*path); err != nil {
			return fileConfig{}, err
		}
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *pods != "" {
		cfg.Pods = strings.Split(*pods, ",")
	}
	if *events != "" {
		cfg.KVCache.Events.Mode, cfg.KVCache.Events.Endpoint = kvcache.EventsBind, *events
	}
	for _, o := range overrides {
		if err := o(&cfg); err != nil {
			return fileConfig{}, err
		}
	}
	if *seed != "" {
		cfg.KVCache.Hash.Seed = *seed
	}
	if *blockSize != 0 {
		cfg.KVCache.Hash.BlockSize = *blockSize
	}
	switch {
	case strings.Contains(*tok, ","):
		cfg.Tokenizers = strings.Split(*tok, ",")
		cfg.KVCache.Tokenizer.URL, cfg.KVCache.Tokenizer.Path = "", ""
	case strings.HasPrefix(*tok, "http://"), strings.HasPrefix(*tok, "https://"):
		cfg.KVCache.Tokenizer.URL, cfg.KVCache.Tokenizer.Path = *tok, ""
	case *tok != "":
		cfg.KVCache.Tokenizer.Path, cfg.KVCache.Tokenizer.URL = *tok, ""
	}
	if cfg.Listen == "" {
		cfg.Listen = ":8080"
	}
	if len(cfg.Pods) == 0 {
		return fileConfig{}, errors.New("no pods: set -pods or pods in -config")
	}
	if len(cfg.Tokenizers) > 0 && (cfg.KVCache.Tokenizer.Path != "" || cfg.KVCache.Tokenizer.URL != "") {
		return fileConfig{}, errors.New("tokenizers and kvcache.tokenizer.path/url are exclusive: list every source under tokenizers")
	}
	if err := cfg.KVCache.Validate(); err != nil {
		return fileConfig{}, err
	}
	return cfg, nil
}

// loadConfig reads a YAML or JSON file strictly with kvcache's loader: an
// unknown field is an error naming its path.
func loadConfig(path string) (fileConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fileConfig{}, err
	}
	var cfg fileConfig
	if err := kvcache.DecodeStrict(raw, &cfg); err != nil {
		return fileConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// serve runs kvtrack and the proxy on ln until ctx is done.
func serve(ctx context.Context, cfg fileConfig, ln net.Listener, log logr.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kopts := []kvcache.Option{kvcache.WithEventSource(kvevents.Source), kvcache.WithLogger(log), kvcache.WithRegisterer(reg)}
	if len(cfg.Tokenizers) > 0 {
		ft, err := newFailoverTokenizer(ctx, cfg.Tokenizers, cfg.KVCache.Tokenizer.Model)
		if err != nil {
			return err
		}
		kopts = append(kopts, kvcache.WithTokenizer(ft))
	}
	ix, err := kvcache.New(cfg.KVCache, kopts...)
	if err != nil {
		return err
	}
	defer ix.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := ix.Start(ctx); err != nil {
		return err
	}
	for _, p := range cfg.Pods {
		if err := ix.AddPod(ctx, p); err != nil {
			return err
		}
	}
	r, err := New(cfg.Config, indexerScorer{ix: ix, maxTokens: cfg.Limits.withDefaults().MaxPromptTokens}, log, reg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", r)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	cfg.Limits.configureServer(srv) // limits.go

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go r.RunHealthChecks(ctx)
	select {
	case err = <-errc: // the listener failed
	case <-ix.Done(): // kvtrack's event subscription failed
		err = ix.Err()
	case <-ctx.Done():
	}
	cancel()
	shutdown, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	if serr := srv.Shutdown(shutdown); err == nil && !errors.Is(serr, http.ErrServerClosed) {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// indexerScorer is kvtrack as the router's PrefixScorer.
type indexerScorer struct {
	ix        *kvcache.Indexer
	maxTokens int // limits.maxPromptTokens, for text prompts once tokenized
}

func (s indexerScorer) ScorePods(ctx context.Context, req kvcache.Request, pods []string) ([]float64, func(context.Context, string), error) {
	req.Pods = pods
	res, err := s.ix.Score(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	// Full blocks are a lower bound of the prompt's tokens.
	if tokens := res.Blocks * s.ix.Config().Hash.BlockSize; s.maxTokens > 0 && tokens > s.maxTokens {
		return nil, nil, &openai.LimitError{Field: "prompt", What: "tokens", Got: tokens, Limit: s.maxTokens}
	}
	scores := make([]float64, len(res.Pods))
	for i, ps := range res.Pods {
		scores[i] = ps.Score
	}
	picked := func(ctx context.Context, pod string) { _ = s.ix.SpeculateResult(ctx, pod, res) }
	return scores, picked, nil
}
