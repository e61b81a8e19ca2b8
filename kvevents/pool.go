package kvevents

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Message is one decoded publisher message, as an observer sees it.
type Message struct {
	Pod      kvblock.Pod
	Seq      uint64
	Replayed bool   // it came from a replay, not the live stream
	Batch    *Batch // valid only during the observer call
}

// Option configures a Pool.
type Option func(*Pool)

// WithLogger sets the logger (default: discard). Gaps, restarts, replays,
// degraded pods and hash mismatches log at level 0; per-message problems
// (malformed payloads) at V(1).
func WithLogger(l logr.Logger) Option { return func(p *Pool) { p.log = l } }

// WithRegisterer registers the pool's kvtrack_events_* metrics (and
// kvtrack_events_hash_mismatches_total) on reg. Without it no metrics are
// registered; Stats still reports them.
func WithRegisterer(reg prometheus.Registerer) Option { return func(p *Pool) { p.reg = reg } }

// WithObserver calls fn with every message that decoded, in sequence order
// per (pod, rank), from the worker that then applies it. fn must not retain
// the Batch and should be quick: it delays that worker's other pods.
func WithObserver(fn func(Message)) Option { return func(p *Pool) { p.observe = fn } }

// Pool subscribes to KV-event streams and applies them to an index. See the
// package documentation for its concurrency contract.
type Pool struct {
	cfg     Config
	index   kvblock.Index
	log     logr.Logger
	reg     prometheus.Registerer
	observe func(Message)
	hasher  *kvblock.Hasher // vllm scheme hash check; nil when off
	c       counters
	seed    maphash.Seed

	allowed      allowlist // bind mode: IPs that may publish
	queued       atomic.Int64
	clock        atomic.Int64                    // unix nanoseconds, refreshed by the receiver at each poll: time.Now is too dear per message
	queuedPeak   atomic.Int64                    // written by the receiver only
	rejectLogged [numRejectReasons]atomic.Int64  // unix nanos of the last log line
	rejectQuiet  [numRejectReasons]atomic.Uint64 // rejections since, not logged

	workers []*worker
	zctx    *zmq.Context // the receiver's libzmq context, set by Run

	mu        sync.Mutex                 // guards the fields below
	streams   map[kvblock.Pod]*stream    // every known (pod, rank)
	replayEPs map[kvblock.Pod]string     // bind mode: replay endpoints named by AddPod
	bindPods  map[kvblock.Pod]netip.Addr // bind mode: pods added, and their IPs
	pending   []sockCmd                  // connect mode socket changes for the receiver
	running   bool
}

// NewPool validates cfg and returns a Pool that applies events to index.
// A nil index is allowed: the pool then only observes (see WithObserver).
func NewPool(cfg Config, index kvblock.Index, opts ...Option) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Pool{
		cfg:       cfg,
		index:     index,
		log:       logr.Discard(),
		seed:      maphash.MakeSeed(),
		streams:   make(map[kvblock.Pod]*stream),
		replayEPs: make(map[kvblock.Pod]string),
		bindPods:  make(map[kvblock.Pod]netip.Addr),
	}
	p.allowed.store(nil)
	p.clock.Store(time.Now().UnixNano())
	for _, o := range opts {
		o(p)
	}
	if cfg.hashCheck() {
		h, err := kvblock.NewHasher(cfg.Hash)
		if err != nil {
			return nil, fmt.Errorf("kvevents: hash: %w", err)
		}
		p.hasher = h
	}
	for i := range cfg.Workers {
		p.workers = append(p.workers, newWorker(p, i))
	}
	if p.reg != nil {
		if err := p.reg.Register(newCollector(p)); err != nil {
			return nil, fmt.Errorf("kvevents: registering metrics: %w", err)
		}
	}
	return p, nil
}

// Stats returns the pool's counters and gauges.
func (p *Pool) Stats() Stats {
	s := p.c.snapshot()
	s.QueuedBytes, s.QueuedBytesPeak = p.queued.Load(), p.queuedPeak.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	s.Pods = len(p.streams)
	for _, st := range p.streams {
		if st.replayEndpoint() == "" {
			s.PodsWithoutReplay++
		}
	}
	return s
}

type podRejection struct {
	pod    kvblock.Pod
	reason RejectReason
	n      uint64
}

// podRejections returns the non-zero per-stream rejection counts.
func (p *Pool) podRejections() []podRejection {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []podRejection
	for _, st := range p.streams {
		for r := range st.rejected {
			if n := st.rejected[r].Load(); n > 0 {
				out = append(out, podRejection{st.pod, RejectReason(r), n})
			}
		}
	}
	return out
}

// streamState is what the metrics export per (pod, rank) stream.
type streamState struct {
	pod         kvblock.Pod
	replay      bool  // a replay endpoint is configured
	lastMessage int64 // unix nanoseconds, 0 before the first message
}

func (p *Pool) streamStates() []streamState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]streamState, 0, len(p.streams))
	for _, st := range p.streams {
		out = append(out, streamState{pod: st.pod, replay: st.replayEndpoint() != "", lastMessage: st.lastMessage.Load()})
	}
	slices.SortFunc(out, func(a, b streamState) int {
		if c := strings.Compare(a.pod.Addr, b.pod.Addr); c != 0 {
			return c
		}
		return a.pod.Rank - b.pod.Rank
	})
	return out
}

// ErrRunning is returned by Run when the pool already ran.
var ErrRunning = errors.New("kvevents: pool already running")

// Run subscribes and applies events until ctx ends, then closes every
// socket and returns nil. It returns an error at once if a bind endpoint
// cannot be bound. A Pool runs once.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return ErrRunning
	}
	p.running = true
	p.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Go(func() { w.run(ctx) })
	}
	err := p.receive(ctx)
	cancel()
	wg.Wait()
	for _, w := range p.workers {
		w.replays.Wait()
	}
	return err
}

// AddPod starts following a pod's event stream.
//
// In connect mode endpoint is the engine's PUB endpoint for exactly this
// (pod, rank) (see RankEndpoint) and the pool opens a SUB socket to it. In
// bind mode endpoint must be empty: the pod's messages arrive on the bound
// socket; AddPod only records its replay endpoint ("" keeps the one derived
// from Config.ReplayPort).
//
// replayEndpoint is the engine's replay ROUTER for this rank, or "" if it
// has none, in which case the pod is reported degraded: a gap in its
// stream cannot be repaired. AddPod may be called before or during Run;
// adding a pod twice with the same endpoints is a no-op.
func (p *Pool) AddPod(ctx context.Context, pod kvblock.Pod, endpoint, replayEndpoint string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if pod.Addr == "" || pod.Rank < 0 {
		return fmt.Errorf("kvevents: AddPod: pod %+v needs an address and a rank >= 0", pod)
	}
	if replayEndpoint != "" {
		if _, _, err := splitEndpoint(replayEndpoint); err != nil {
			return fmt.Errorf("kvevents: AddPod %s: replay endpoint %q: %w", pod, replayEndpoint, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Mode == ModeBind {
		if endpoint != "" {
			return fmt.Errorf("kvevents: AddPod %s: endpoint %q given in bind mode, where pods connect to %s; pass \"\"", pod, endpoint, p.cfg.Endpoint)
		}
		if _, ok := p.bindPods[pod]; !ok {
			ip, ok := podIP(pod.Addr)
			if !ok && !p.cfg.Security.AllowAnySource {
				return fmt.Errorf("kvevents: AddPod %s: bind mode admits publishers by IP, and %q is not ip:port "+
					"(or set security.allowAnySource, for development only)", pod, pod.Addr)
			}
			p.bindPods[pod] = ip
			p.rebuildAllowlistLocked()
		}
		if replayEndpoint == "" {
			delete(p.replayEPs, pod) // back to Config.ReplayPort, if set
		} else {
			p.replayEPs[pod] = replayEndpoint
		}
		if s, ok := p.streams[pod]; ok {
			s.setReplayEndpoint(p.bindReplayLocked(pod))
		}
		return nil
	}
	if _, _, err := splitEndpoint(endpoint); err != nil {
		return fmt.Errorf("kvevents: AddPod %s: endpoint %q: %w", pod, endpoint, err)
	}
	if s, ok := p.streams[pod]; ok {
		if s.endpoint == endpoint && s.replayEndpoint() == replayEndpoint {
			return nil
		}
		return fmt.Errorf("kvevents: AddPod %s: already added with endpoint %q, replay %q; remove it first", pod, s.endpoint, s.replayEndpoint())
	}
	s := p.newStreamLocked(pod, endpoint, replayEndpoint)
	p.pending = append(p.pending, sockCmd{open: true, s: s})
	return nil
}

// RemovePod stops following a pod: its socket (connect mode) is closed,
// messages still queued for it are discarded, and its blocks are cleared
// from the index before RemovePod returns. Removing an unknown pod clears
// its blocks and is not an error. In bind mode a removed pod that keeps
// publishing is followed again from its next message.
func (p *Pool) RemovePod(ctx context.Context, pod kvblock.Pod) error {
	p.mu.Lock()
	s := p.streams[pod]
	delete(p.streams, pod)
	delete(p.replayEPs, pod)
	if _, ok := p.bindPods[pod]; ok {
		delete(p.bindPods, pod)
		p.rebuildAllowlistLocked()
	}
	if s != nil && s.endpoint != "" {
		p.pending = append(p.pending, sockCmd{s: s})
	}
	p.mu.Unlock()
	if s != nil {
		// Taking s.mu waits for an apply in flight; after it, the worker
		// sees removed and drops whatever is still queued.
		s.mu.Lock()
		s.removed.Store(true)
		p.releaseHeldLocked(s)
		s.mu.Unlock()
	}
	if p.index == nil {
		return nil
	}
	if err := p.index.ClearPod(ctx, pod); err != nil {
		p.c.indexErrors.Add(1)
		return fmt.Errorf("kvevents: RemovePod %s: clearing its blocks: %w", pod, err)
	}
	return nil
}

// streamFor returns the stream of a pod seen in bind mode, creating it.
func (p *Pool) streamFor(pod kvblock.Pod) *stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.streams[pod]; ok {
		return s
	}
	return p.newStreamLocked(pod, "", p.bindReplayLocked(pod))
}

// bindReplayLocked returns a bind-mode pod's replay endpoint: the one AddPod
// named, else the pod's host at Config.ReplayPort + rank, else none. p.mu
// must be held.
func (p *Pool) bindReplayLocked(pod kvblock.Pod) string {
	if ep, ok := p.replayEPs[pod]; ok {
		return ep
	}
	if p.cfg.ReplayPort > 0 {
		return replayEndpointFor(pod.Addr, p.cfg.ReplayPort+pod.Rank)
	}
	return ""
}

// newStreamLocked creates and registers a stream. p.mu must be held.
func (p *Pool) newStreamLocked(pod kvblock.Pod, endpoint, replay string) *stream {
	s := &stream{
		pod:      pod,
		label:    pod.String(),
		endpoint: endpoint,
		w:        p.workers[maphash.String(p.seed, pod.Addr)%uint64(len(p.workers))],
	}
	s.replay.Store(&replay)
	if p.cfg.KeyScheme == SchemeTokens {
		s.engine = newEngineKeys(p.cfg.MaxEngineKeys)
	}
	p.streams[pod] = s
	if replay == "" {
		p.log.Info("pod has no replay endpoint configured: a gap in its event stream is counted, not repaired", "pod", s.label)
	} else {
		p.log.V(1).Info("following pod", "pod", s.label, "endpoint", endpoint, "replay", replay)
	}
	return s
}

// stream is the state of one (pod, rank) event sequence.
type stream struct {
	pod      kvblock.Pod
	label    string // pod.String(), for logs and metrics
	endpoint string // connect mode SUB endpoint; "" in bind mode
	w        *worker
	replay   atomic.Pointer[string] // replay endpoint, "" for none
	removed  atomic.Bool            // set under mu by RemovePod
	// lastMessage is when the worker last took a message of the stream
	// (unix nanoseconds; 0 before the first), for "pod went silent" alerts.
	lastMessage atomic.Int64

	// mu serialises the worker's processing with RemovePod. The fields
	// below are the worker's, accessed under mu.
	mu      sync.Mutex
	started bool
	next    uint64 // the sequence number expected next
	// [dupFrom, dupTo) were applied from a replay; live copies of them
	// are duplicates, not a restart.
	dupFrom, dupTo uint64
	replaying      bool
	held           []msg // live messages held while replaying
	warnedGap      bool
	warnedHash     bool
	engine         *engineKeys // tokens scheme
	rate           bucket

	rejected [numRejectReasons]atomic.Uint64
}

func (s *stream) replayEndpoint() string      { return *s.replay.Load() }
func (s *stream) setReplayEndpoint(ep string) { s.replay.Store(&ep) }

// charge accounts n more payload bytes received and not yet applied,
// refusing them if that would pass Limits.MaxQueuedBytes. The receiver
// is the only caller.
func (p *Pool) charge(n int) bool {
	v := p.queued.Load() + int64(n)
	if v > p.cfg.Limits.MaxQueuedBytes {
		return false
	}
	p.queued.Add(int64(n))
	if v > p.queuedPeak.Load() {
		p.queuedPeak.Store(v)
	}
	return true
}

// release returns the bytes of a message the pool is done with.
func (p *Pool) release(m msg) { p.queued.Add(-int64(len(m.payload))) }

// releaseHeldLocked drops the messages s holds. s.mu must be held.
func (p *Pool) releaseHeldLocked(s *stream) {
	for _, m := range s.held {
		p.release(m)
	}
	s.held = nil
}
