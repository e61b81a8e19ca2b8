package kvevents

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Source builds the event source of a kvcache.Indexer from its
// configuration: the ZMQ pool that follows vLLM's KV events. Pass it to
// kvcache.New with kvcache.WithEventSource(kvevents.Source).
func Source(cfg kvcache.Config, env kvcache.SourceEnv) (kvcache.EventSource, error) {
	pcfg := PoolConfig(cfg)
	opts := []Option{WithLogger(env.Log)}
	if learn := env.LoRAName; learn != nil {
		opts = append(opts, WithObserver(func(m Message) {
			for i := range m.Batch.Events {
				if ev := &m.Batch.Events[i]; ev.Kind == BlockStored && ev.LoraName != "" {
					learn(ev.LoraName)
				}
			}
		}))
	}
	if env.Registerer != nil {
		opts = append(opts, WithRegisterer(env.Registerer))
	}
	p, err := NewPool(pcfg, env.Sink, opts...)
	if err != nil {
		return nil, err
	}
	return &source{p: p, cfg: cfg.Events}, nil
}

// PoolConfig translates the events section of a kvcache configuration
// (defaults applied) into the pool's.
func PoolConfig(cfg kvcache.Config) Config {
	cfg = cfg.WithDefaults()
	e := cfg.Events
	pc := Config{
		Mode:             Mode(e.Mode),
		TopicFilter:      e.TopicFilter,
		DataParallelSize: e.DataParallelSize,
		Workers:          e.Workers,
		QueueSize:        e.QueueSize,
		MaxHeld:          e.MaxHeld,
		ReplayTimeout:    time.Duration(e.ReplayTimeout),
		ReceiveHWM:       e.ReceiveHWM,
		KeyScheme:        KeyScheme(cfg.KeyScheme),
		Hash:             blockhash.HashConfig{Algorithm: blockhash.Algorithm(cfg.Hash.Algorithm), Seed: cfg.Hash.Seed, BlockSize: cfg.Hash.BlockSize},
		MaxEngineKeys:    e.MaxEngineKeys,
		Media:            cfg.Index.TierWeights.Media(), // the table kvcache builds its index with
		ResyncInterval:   time.Duration(e.ResyncInterval),
		Limits:           Limits(e.Limits),
		Security:         Security(e.Security),
	}
	if e.Mode == kvcache.EventsBind {
		pc.Endpoint = e.Endpoint
		pc.ReplayPort = e.ReplayPort
	}
	return pc
}

// source adapts a Pool to kvcache.EventSource: pods are named by the
// address requests are routed to, and every data-parallel rank of a pod is
// followed.
type source struct {
	p   *Pool
	cfg kvcache.EventsConfig
}

func (s *source) Start(ctx context.Context) error { return s.p.Start(ctx) }
func (s *source) Ready() <-chan struct{}          { return s.p.Ready() }
func (s *source) Done() <-chan struct{}           { return s.p.Done() }
func (s *source) Err() error                      { return s.p.Err() }
func (s *source) Close() error                    { return s.p.Close() }

// AddPod follows every data-parallel rank of pod: the pool expands rank 0
// to the ranks below events.dataParallelSize, offsetting the endpoints'
// ports by the rank as vLLM does.
func (s *source) AddPod(ctx context.Context, pod string) error {
	ep, replay, err := s.endpoints(pod)
	if err != nil {
		return err
	}
	return s.p.AddPod(ctx, kvblock.Pod{Addr: pod}, ep, replay)
}

func (s *source) RemovePod(ctx context.Context, pod string) error {
	return s.p.RemovePod(ctx, kvblock.Pod{Addr: pod})
}

// endpoints returns rank 0's publisher and replay endpoints in connect
// mode; in bind mode the pod connects to us.
func (s *source) endpoints(pod string) (ep, replay string, err error) {
	if s.cfg.Mode == kvcache.EventsBind {
		return "", "", nil
	}
	host, _, err := net.SplitHostPort(pod)
	if err != nil {
		return "", "", fmt.Errorf("kvevents: pod %q is not address:port: %w", pod, err)
	}
	ep = "tcp://" + net.JoinHostPort(host, strconv.Itoa(s.cfg.Port))
	if s.cfg.ReplayPort > 0 {
		replay = "tcp://" + net.JoinHostPort(host, strconv.Itoa(s.cfg.ReplayPort))
	}
	return ep, replay, nil
}
