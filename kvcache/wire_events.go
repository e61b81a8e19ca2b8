package kvcache

// The event source: kvevents' ZMQ pool, translated from kvcache.Config.

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

func newEventSource(cfg Config, idx kvblock.Index, o options) (eventSource, error) {
	ecfg := kvevents.Config{
		Mode: kvevents.Mode(cfg.Events.Mode), Endpoint: cfg.Events.Endpoint, TopicFilter: cfg.Events.TopicFilter,
		Workers: cfg.Events.Workers, QueueSize: cfg.Events.QueueSize, KeyScheme: kvevents.KeyScheme(cfg.KeyScheme),
		Hash:     kvblock.HashConfig{Algorithm: kvblock.Algorithm(cfg.Hash.Algorithm), Seed: cfg.Hash.Seed, BlockSize: cfg.Hash.BlockSize},
		Limits:   kvevents.Limits(cfg.Events.Limits),
		Security: kvevents.Security(cfg.Events.Security),
	}
	if cfg.Events.Mode == EventsBind {
		ecfg.ReplayPort = cfg.Events.ReplayPort
		// Rank r of each engine publishes to the bound port + r.
		ecfg.DataParallelSize = cfg.DataParallel.Size
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
