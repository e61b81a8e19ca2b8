//go:build kvtrack_wiring

// The wiring of the memory index, tokenizer and event pool, built with
// -tags kvtrack_wiring until kvblock.NewMemIndex, tokenization and kvevents
// are on main; then the tag (and wire_pending.go) go.

package kvcache

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
	"github.com/kvtrack/kvtrack/tokenization"
)

func newTokenizer(cfg Config, o options) (Tokenizer, error) {
	var base tokenization.Tokenizer
	switch {
	case cfg.Tokenizer.Path != "":
		l, err := tokenization.Load(context.Background(), cfg.Tokenizer.Path, tokenization.LoadOptions{Offline: true})
		if err != nil {
			return nil, fmt.Errorf("kvcache: tokenizer.path: %w", err)
		}
		base = l
	case cfg.Tokenizer.URL != "":
		r, err := tokenization.NewRemote(cfg.Tokenizer.URL, cfg.Tokenizer.Model, nil)
		if err != nil {
			return nil, fmt.Errorf("kvcache: tokenizer.url: %w", err)
		}
		base = r
	default:
		return nil, nil
	}
	p, err := tokenization.NewPool(base, tokenization.PoolConfig{PromptCacheBytes: cfg.Tokenizer.CacheBytes})
	if err != nil {
		return nil, fmt.Errorf("kvcache: tokenizer: %w", err)
	}
	return poolTokenizer{p}, nil
}

type poolTokenizer struct{ p *tokenization.Pool }

func (t poolTokenizer) Encode(text string, add bool) ([]uint32, error) { return t.p.Encode(text, add) }

func (t poolTokenizer) EncodeChat(ctx context.Context, model string, c *ChatRequest) ([]uint32, error) {
	msgs := make([]map[string]string, len(c.Messages))
	for i, m := range c.Messages {
		msgs[i] = map[string]string{"role": m.Role, "content": m.Content}
	}
	req := &tokenization.ChatRequest{AddGenerationPrompt: c.AddGenerationPrompt, ContinueFinalMessage: c.ContinueFinalMessage, ChatTemplate: c.ChatTemplate}
	var err error
	if req.Messages, err = json.Marshal(msgs); err != nil {
		return nil, err
	}
	if c.Tools != nil {
		if req.Tools, err = json.Marshal(c.Tools); err != nil {
			return nil, err
		}
	}
	if c.Documents != nil {
		if req.Documents, err = json.Marshal(c.Documents); err != nil {
			return nil, err
		}
	}
	if c.TemplateKWArgs != nil {
		if req.ChatTemplateKwargs, err = json.Marshal(c.TemplateKWArgs); err != nil {
			return nil, err
		}
	}
	return t.p.EncodeChatContext(ctx, req)
}

func newEventSource(cfg Config, idx kvblock.Index, o options) (eventSource, error) {
	ecfg := kvevents.Config{
		Mode: kvevents.Mode(cfg.Events.Mode), Endpoint: cfg.Events.Endpoint, TopicFilter: cfg.Events.TopicFilter,
		Workers: cfg.Events.Workers, QueueSize: cfg.Events.QueueSize, KeyScheme: kvevents.KeyScheme(cfg.KeyScheme),
		Hash: kvblock.HashConfig{Algorithm: kvblock.Algorithm(cfg.Hash.Algorithm), Seed: cfg.Hash.Seed, BlockSize: cfg.Hash.BlockSize},
	}
	if cfg.Events.Mode == EventsBind {
		ecfg.ReplayPort = cfg.Events.ReplayPort
	}
	var opts []kvevents.Option
	opts = append(opts, kvevents.WithLogger(o.log))
	if o.reg != nil && *cfg.Metrics.Enabled {
		opts = append(opts, kvevents.WithRegisterer(o.reg))
	}
	p, err := kvevents.NewPool(ecfg, idx, opts...)
	if err != nil {
		return nil, fmt.Errorf("kvcache: events: %w", err)
	}
	return &eventPool{p: p, cfg: cfg.Events}, nil
}

type eventPool struct {
	p   *kvevents.Pool
	cfg EventsConfig
}

func (e *eventPool) Run(ctx context.Context) error { return e.p.Run(ctx) }

func (e *eventPool) AddPod(ctx context.Context, pod string) error {
	if e.cfg.Mode == EventsBind {
		return e.p.AddPod(ctx, kvblock.Pod{Addr: pod}, "", "")
	}
	host, _, err := net.SplitHostPort(pod)
	if err != nil {
		return fmt.Errorf("kvcache: pod %q is not address:port: %w", pod, err)
	}
	ep := "tcp://" + net.JoinHostPort(host, strconv.Itoa(e.cfg.Port))
	var replay string
	if e.cfg.ReplayPort > 0 {
		replay = "tcp://" + net.JoinHostPort(host, strconv.Itoa(e.cfg.ReplayPort))
	}
	return e.p.AddPod(ctx, kvblock.Pod{Addr: pod}, ep, replay)
}

func (e *eventPool) RemovePod(ctx context.Context, pod string) error {
	return e.p.RemovePod(ctx, kvblock.Pod{Addr: pod})
}
