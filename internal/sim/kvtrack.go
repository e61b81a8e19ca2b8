package sim

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"
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
	peers  *peerGroup // nil unless the replicas share decisions
	own    uint64     // decisions this replica made (with peers)
}

// peerGroup is the replicas of one run connected by speculative.peers:
// their listen addresses, and the decisions they have made in all, which
// every replica must have recorded before the next request is routed
// (the peers' network takes microseconds; modelled requests are
// milliseconds apart).
type peerGroup struct {
	addrs     []string
	replicas  []*kvtrackRun
	decisions uint64
}

func newPeerGroup(n int) (*peerGroup, error) {
	g := &peerGroup{}
	for range n {
		port, err := testnet.Port()
		if err != nil {
			return nil, fmt.Errorf("kvtrack peers: %w", err)
		}
		g.addrs = append(g.addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	return g, nil
}

// waitConnected blocks until every replica is connected to every other
// one, so that no decision is routed before its peers can hear of it.
func (g *peerGroup) waitConnected(ctx context.Context) error {
	for _, k := range g.replicas {
		err := k.poll(ctx, func() (bool, error) { return k.ix.PeerStats().Sending == len(g.replicas)-1, nil }, func() string {
			return fmt.Sprintf("kvtrack replica is connected to %d of %d peers", k.ix.PeerStats().Sending, len(g.replicas)-1)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitRecorded blocks until every replica has recorded every decision of
// the others: kvcache counts a peer's decision received once its
// speculative entry is in place, confirmations included.
func (g *peerGroup) waitRecorded(ctx context.Context) error {
	for _, k := range g.replicas {
		want := g.decisions - k.own
		err := k.poll(ctx, func() (bool, error) {
			got := k.ix.PeerStats().Received
			if got > want {
				return false, fmt.Errorf("kvtrack replica recorded %d of its peers' routing decisions, more than the %d made", got, want)
			}
			return got == want, nil
		}, func() string {
			return fmt.Sprintf("kvtrack replica recorded %d of its peers' %d routing decisions: decisions lost", k.ix.PeerStats().Received, want)
		})
		if err != nil {
			return err
		}
	}
	return nil
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

// startKVTrack starts replica r of a run; peers, when not nil, connects it
// to the other replicas.
func startKVTrack(ctx context.Context, cfg Config, pods []string, peers *peerGroup, r int) (*kvtrackRun, error) {
	// TCP on loopback, as engines reach kvtrack in a cluster (vLLM binds
	// ipc endpoints itself, so an ipc endpoint cannot be kvtrack's).
	port, err := testnet.Port()
	if err != nil {
		return nil, fmt.Errorf("kvtrack: %w", err)
	}
	k := &kvtrackRun{ep: fmt.Sprintf("tcp://127.0.0.1:%d", port), clock: new(modelClock), peers: peers}
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
	if peers != nil {
		kcfg.Speculative.Peers = kvcache.PeersConfig{Listen: peers.addrs[r], Endpoints: peers.addrs}
		peers.replicas = append(peers.replicas, k)
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
	return k.poll(ctx, func() (bool, error) {
		got := k.idx.applied()
		if got.stored > want.stored || got.removed > want.removed || got.cleared > want.cleared {
			return false, fmt.Errorf("kvtrack applied more than was published: %+v of %+v", got, want)
		}
		return got == want, nil
	}, func() string { return fmt.Sprintf("kvtrack applied %+v of %+v: events lost", k.idx.applied(), want) })
}

// poll calls check until it reports done or fails; it fails too when
// kvtrack stops, ctx ends or barrierTimeout passes, saying lost(). It
// spins first: the usual wait is a few microseconds of ZMQ, TCP and a
// worker.
func (k *kvtrackRun) poll(ctx context.Context, check func() (bool, error), lost func() string) error {
	deadline := time.Now().Add(barrierTimeout)
	for spins := 0; ; spins++ {
		if done, err := check(); done || err != nil {
			return err
		}
		select {
		case err := <-k.done:
			return fmt.Errorf("kvtrack stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %v", lost(), barrierTimeout)
		}
		if spins >= 64 {
			time.Sleep(20 * time.Microsecond)
		}
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
	if err := k.ix.SpeculateResult(ctx, pod, k.res); err != nil {
		return err
	}
	if k.peers == nil || len(k.res.Keys) == 0 {
		return nil
	}
	k.peers.decisions++
	k.own++
	return k.peers.waitRecorded(ctx)
}

// indexed returns the GPU blocks the index holds for pod.
func (k *kvtrackRun) indexed(pod string) int { return k.idx.indexed(pod) }

func (k *kvtrackRun) close() {
	k.cancel()
	<-k.done
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
