package sim

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

// kvtrackRun is kvtrack running for one simulation: a kvcache.Indexer bound
// to one ZMQ endpoint that every simulated pod's publisher connects to, as
// llm-d deploys it, with its speculative entries on the modelled clock.
type kvtrackRun struct {
	ix     *kvcache.Indexer
	idx    *countingIndex
	ep     string
	cancel context.CancelFunc
	done   chan error
	clock  *modelClock
	res    kvcache.Result
}

// modelClock is the simulation's modelled time as a wall clock, for
// kvtrack's speculative TTL: entries expire after TTL of modelled time.
type modelClock struct{ ns atomic.Int64 }

var epoch = time.Unix(1_700_000_000, 0)

func (c *modelClock) set(seconds float64) { c.ns.Store(int64(seconds * 1e9)) }
func (c *modelClock) now() time.Time      { return epoch.Add(time.Duration(c.ns.Load())) }

// barrierTimeout bounds the wait for kvtrack to apply what was published;
// exceeding it means events were lost, which must not pass silently.
const barrierTimeout = 30 * time.Second

func startKVTrack(ctx context.Context, cfg Config, pods []string) (*kvtrackRun, error) {
	// TCP on loopback, as engines reach kvtrack in a cluster (vLLM binds
	// ipc endpoints itself, so an ipc endpoint cannot be kvtrack's).
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("kvtrack: %w", err)
	}
	k := &kvtrackRun{ep: fmt.Sprintf("tcp://127.0.0.1:%d", port), clock: new(modelClock)}
	inner, err := kvblock.NewMemIndex(kvblock.MemIndexConfig{TierWeights: kvblock.TierWeights{"GPU": 1, "CPU": 0.8, "STORAGE": 0.5, "SPECULATIVE": 1}})
	if err != nil {
		return nil, fmt.Errorf("kvtrack: %w", err)
	}
	k.idx = &countingIndex{Index: inner, perPod: make(map[string]int)}
	kcfg := kvcache.Config{
		Hash: kvcache.HashConfig{Algorithm: cfg.HashAlgo, Seed: cfg.HashSeed, BlockSize: cfg.BlockSize},
		Events: kvcache.EventsConfig{
			Mode: kvcache.EventsBind, Endpoint: k.ep, Workers: 2,
			// Every simulated pod publishes from loopback under a made-up
			// pod address, so the per-IP allowlist would refuse them all;
			// and modelled time runs faster than the wall clock, so a
			// per-second rate limit would drop a real workload's events.
			Security: kvcache.EventsSecurity{AllowAnySource: true},
			Limits:   kvcache.EventsLimits{EventsPerSecond: -1},
		},
		Speculative: kvcache.SpeculativeConfig{
			Enabled: cfg.Speculative,
			TTL:     kvcache.Duration(cfg.SpeculativeTTL),
		},
	}
	k.ix, err = kvcache.New(kcfg, kvcache.WithIndex(k.idx), kvcache.WithClock(k.clock.now), kvcache.WithEventSource(kvevents.Source))
	if err != nil {
		return nil, fmt.Errorf("kvtrack: %w", err)
	}
	for _, p := range pods {
		if err := k.ix.AddPod(ctx, p); err != nil {
			return nil, fmt.Errorf("kvtrack: %w", err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	k.cancel, k.done = cancel, make(chan error, 1)
	go func() { k.done <- k.ix.Run(rctx) }()
	return k, nil
}

// multiKVTrack is the replicas of kvtrack in one run, each subscribed to
// every pod; together they are the run's event barrier.
type multiKVTrack []*kvtrackRun

func (m multiKVTrack) endpoints() []string {
	eps := make([]string, len(m))
	for i, k := range m {
		eps[i] = k.ep
	}
	return eps
}

func (m multiKVTrack) setTime(seconds float64) {
	for _, k := range m {
		k.clock.set(seconds)
	}
}

func (m multiKVTrack) waitApplied(ctx context.Context, want applied) error {
	for _, k := range m {
		if err := k.waitApplied(ctx, want); err != nil {
			return err
		}
	}
	return nil
}

func (m multiKVTrack) close() {
	for _, k := range m {
		k.close()
	}
}

// waitApplied polls the index until the event path has applied want's block
// stores, block removals (GPU tier) and pod clears.
func (k *kvtrackRun) waitApplied(ctx context.Context, want applied) error {
	deadline := time.Now().Add(barrierTimeout)
	for spins := 0; ; spins++ {
		got := k.idx.applied()
		if got == want {
			return nil
		}
		if got.stored > want.stored || got.removed > want.removed || got.cleared > want.cleared {
			return fmt.Errorf("kvtrack applied more than was published: %+v of %+v", got, want)
		}
		select {
		case err := <-k.done:
			return fmt.Errorf("kvtrack stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kvtrack applied %+v of %+v after %v: events lost", got, want, barrierTimeout)
		}
		if spins < 64 {
			continue // the usual wait is a few microseconds of ZMQ and a worker
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// score asks kvtrack for each pod's cached prefix of tokens.
func (k *kvtrackRun) score(ctx context.Context, tokens []uint32, salt string, pods []string, matched []int) (int, error) {
	res, err := k.ix.Score(ctx, kvcache.Request{TokenIDs: tokens, CacheSalt: salt, Pods: pods})
	if err != nil {
		return 0, err
	}
	for i, p := range res.Pods {
		matched[i] = p.Matched
	}
	k.res = res
	return res.Blocks, nil
}

// routed tells kvtrack where the last scored request went, as the EPP
// plugin's PreRequest does: with speculative entries enabled, its blocks are
// recorded on the pod until the TTL passes.
func (k *kvtrackRun) routed(ctx context.Context, pod string) error {
	return k.ix.SpeculateResult(ctx, pod, k.res)
}

// indexed returns the GPU blocks the index holds for pod.
func (k *kvtrackRun) indexed(pod string) int { return k.idx.indexed(pod) }

func (k *kvtrackRun) close() {
	k.cancel()
	<-k.done
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// applied counts what the pods published, or an index applied: GPU-tier
// block stores and removals, and pod clears (AllBlocksCleared).
type applied struct{ stored, removed, cleared uint64 }

// countingIndex counts what the event path applies, for the simulation's
// barrier, and the GPU blocks it holds per pod, for placement. The pods
// publish each block once and remove only what they stored, so the
// per-pod count is the number of blocks the index holds for the pod.
type countingIndex struct {
	kvblock.Index

	mu     sync.Mutex
	n      applied
	perPod map[string]int
}

func (c *countingIndex) applied() applied {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *countingIndex) indexed(pod string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perPod[pod]
}

func (c *countingIndex) Add(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	err := c.Index.Add(ctx, pod, tier, keys)
	if tier == kvblock.TierGPU {
		c.mu.Lock()
		c.n.stored += uint64(len(keys))
		c.perPod[pod.Addr] += len(keys)
		c.mu.Unlock()
	}
	return err
}

func (c *countingIndex) Remove(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	err := c.Index.Remove(ctx, pod, tier, keys)
	if tier == kvblock.TierGPU {
		c.mu.Lock()
		c.n.removed += uint64(len(keys))
		c.perPod[pod.Addr] -= len(keys)
		c.mu.Unlock()
	}
	return err
}

func (c *countingIndex) ClearPod(ctx context.Context, pod kvblock.Pod) error {
	err := c.Index.ClearPod(ctx, pod)
	c.mu.Lock()
	c.n.cleared++
	delete(c.perPod, pod.Addr)
	c.mu.Unlock()
	return err
}
