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
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvevents"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// fileConfig is the router's whole configuration.
type fileConfig struct {
	// Listen is the address to serve on. Default ":8080".
	Listen string `json:"listen,omitempty"`
	Config
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
	events := fs.String("events-bind", "", "bind this ZMQ endpoint for the pods' KV events (e.g. tcp://*:5557) instead of dialling each pod")
	seed := fs.String("hash-seed", "", "the pods' PYTHONHASHSEED")
	blockSize := fs.Int("block-size", 0, "the pods' --block-size (default 16)")
	tok := fs.String("tokenizer", "", "tokenizer.json (or its directory), or the http(s) URL of a vLLM server whose /tokenize to use")
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
	if *seed != "" {
		cfg.KVCache.Hash.Seed = *seed
	}
	if *blockSize != 0 {
		cfg.KVCache.Hash.BlockSize = *blockSize
	}
	switch {
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
	ix, err := kvcache.New(cfg.KVCache, kvcache.WithEventSource(kvevents.Source), kvcache.WithLogger(log), kvcache.WithRegisterer(reg))
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
	r, err := New(cfg.Config, indexerScorer{ix}, log, reg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", r)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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
type indexerScorer struct{ ix *kvcache.Indexer }

func (s indexerScorer) ScorePods(ctx context.Context, p Prompt, pods []string) ([]float64, func(context.Context, string), error) {
	req := kvcache.Request{Model: p.Model, Prompt: p.Text, TokenIDs: p.TokenIDs, Pods: pods}
	if len(p.Chat) > 0 {
		chat := &kvcache.ChatRequest{AddGenerationPrompt: true} // vLLM's default for chat completions
		for _, m := range p.Chat {
			chat.Messages = append(chat.Messages, kvcache.ChatMessage{Role: m.Role, Content: m.Content})
		}
		req.Chat = chat
	}
	res, err := s.ix.Score(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	scores := make([]float64, len(res.Pods))
	for i, ps := range res.Pods {
		scores[i] = ps.Score
	}
	picked := func(ctx context.Context, pod string) { _ = s.ix.Speculate(ctx, pod, res.Keys) }
	return scores, picked, nil
}
