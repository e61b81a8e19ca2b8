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

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
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
	parents ParentObserver // index, when it observes parents; nil otherwise
	log     logr.Logger
	reg     prometheus.Registerer
	coll    prometheus.Collector // registered on reg; unregistered by Close
	observe func(Message)
	hasher  *blockhash.Hasher // vllm scheme hash check; nil when off
	c       counters
	seed    maphash.Seed

	allowed    allowlist                  // bind mode: IPs that may publish
	routes     atomic.Pointer[routeTable] // bind mode: the pods messages may name
	queued     atomic.Int64
	clock      atomic.Int64 // unix nanoseconds, refreshed by the receiver at each poll: time.Now is too dear per message
	queuedPeak atomic.Int64 // written by the receiver only
	rejectLog  [numRejectReasons]rateLog
	rankLog    rateLog // batches naming a rank beyond DataParallelSize
	resyncLog  rateLog // index writes failing

	workers []*worker
	zctx    *zmq.Context  // the receiver's libzmq context, set by Start
	ready   chan struct{} // closed once the sockets are bound or connected
	done    chan struct{} // closed when every goroutine of the pool has ended

	mu      sync.Mutex              // guards the fields below
	streams map[kvblock.Pod]*stream // every followed (pod, rank)
	unadded int                     // of which created from topics (Security.AllowAnySource)
	pending []sockCmd               // connect mode socket changes for the receiver
	state   poolState
	cancel  context.CancelFunc // ends the goroutines Start began
	runErr  error              // why the receiver stopped, if not its context

	closeOnce sync.Once
}

type poolState uint8

const (
	stateNew poolState = iota
	stateRunning
	stateStopped // the receiver ended (its context, Close, or an error)
)

// maxUnaddedStreams bounds the streams Security.AllowAnySource lets topics
// create in bind mode; past it, messages naming new pods are rejected
// (reason "pods").
const maxUnaddedStreams = 1024

// NewPool validates cfg and returns a Pool that applies events to index.
// A nil index is allowed: the pool then only observes (see WithObserver).
func NewPool(cfg Config, index kvblock.Index, opts ...Option) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Pool{
		cfg:     cfg,
		index:   index,
		log:     logr.Discard(),
		seed:    maphash.MakeSeed(),
		streams: make(map[kvblock.Pod]*stream),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	p.parents, _ = index.(ParentObserver)
	p.allowed.store(nil)
	p.routes.Store(&routeTable{})
	p.clock.Store(time.Now().UnixNano())
	for _, o := range opts {
		o(p)
	}
	if cfg.hashCheck() {
		h, err := blockhash.NewHasher(cfg.Hash)
		if err != nil {
			return nil, fmt.Errorf("kvevents: hash: %w", err)
		}
		p.hasher = h
	}
	for i := range cfg.Workers {
		p.workers = append(p.workers, newWorker(p, i))
	}
	if p.reg != nil {
		coll := newCollector(p)
		if err := p.reg.Register(coll); err != nil {
			return nil, fmt.Errorf("kvevents: registering metrics: %w", err)
		}
		p.coll = coll
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

// podRejections returns the non-zero rejection counts of the streams of
// added pods: only they get a pod label, so the series stay bounded.
func (p *Pool) podRejections() []podRejection {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []podRejection
	for _, st := range p.streams {
		if !st.added {
			continue
		}
		for r := range st.rejected {
			if n := st.rejected[r].Load(); n > 0 {
				out = append(out, podRejection{st.pod, RejectReason(r), n})
			}
		}
	}
	return out
}

// streamState is what the metrics export per (pod, rank) stream of an
// added pod (only those get a pod label, so the series stay bounded).
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
		if st.added {
			out = append(out, streamState{pod: st.pod, replay: st.replayEndpoint() != "", lastMessage: st.lastMessage.Load()})
		}
	}
	slices.SortFunc(out, func(a, b streamState) int {
		if c := strings.Compare(a.pod.Addr, b.pod.Addr); c != 0 {
			return c
		}
		return a.pod.Rank - b.pod.Rank
	})
	return out
}

// ErrRunning is returned by Start and Run when the pool already started.
var ErrRunning = errors.New("kvevents: pool already running")

// ErrClosed is returned by Start, Run and AddPod once the pool has stopped:
// its context ended, Close was called, or it failed.
var ErrClosed = errors.New("kvevents: pool closed")

// Start binds (bind mode) or connects (connect mode, the pods added so far)
// the pool's sockets and starts applying events, until ctx ends or Close is
// called. It returns once the sockets are bound, with the error if one
// cannot be: a bind conflict is reported here, not logged later. A Pool
// starts once.
func (p *Pool) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	p.mu.Lock()
	switch p.state {
	case stateRunning:
		p.mu.Unlock()
		cancel()
		return ErrRunning
	case stateStopped:
		p.mu.Unlock()
		cancel()
		return ErrClosed
	}
	p.state, p.cancel = stateRunning, cancel
	p.mu.Unlock()

	started := make(chan error, 1)
	go p.run(ctx, cancel, started)
	if err := <-started; err != nil {
		<-p.done
		return err
	}
	return nil
}

// run is the pool's supervising goroutine: workers, then the receiver.
func (p *Pool) run(ctx context.Context, cancel context.CancelFunc, started chan<- error) {
	defer close(p.done)
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Go(func() { w.run(ctx) })
	}
	err := p.receive(ctx, started)
	cancel()
	wg.Wait()
	for _, w := range p.workers {
		w.replays.Wait()
	}
	p.mu.Lock()
	p.state, p.runErr = stateStopped, err
	p.mu.Unlock()
}

// Ready returns a channel closed once Start has bound the pool's sockets
// (bind mode) or opened the sockets of the pods added before it (connect
// mode), and subscribed them. libzmq completes connections in the
// background: a publisher's messages arrive once its connection is up.
func (p *Pool) Ready() <-chan struct{} { return p.ready }

// Done returns a channel closed when the pool has stopped: after Start,
// once its context ended, Close was called or it failed (see Err).
func (p *Pool) Done() <-chan struct{} { return p.done }

// Err returns the error that stopped the pool, nil while it runs or when
// it stopped because its context ended or Close was called.
func (p *Pool) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runErr
}

// Run is Start followed by waiting for the pool to stop: it returns nil
// when ctx ends (or Close is called), or the error that stopped it.
func (p *Pool) Run(ctx context.Context) error {
	if err := p.Start(ctx); err != nil {
		return err
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runErr
}

// Close stops the pool, waits for its goroutines, closes its sockets and
// unregisters its metrics. It may be called more than once, and before or
// without Start, but not from an observer, which runs on a goroutine Close
// waits for.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		cancel := p.cancel
		if p.state == stateNew {
			p.state = stateStopped
			close(p.done)
		}
		p.mu.Unlock()
		if cancel != nil {
			cancel()
			<-p.done
		}
		if p.coll != nil {
			p.reg.Unregister(p.coll)
		}
	})
	return nil
}

// ranks returns the ranks AddPod and RemovePod act on: a pod given with
// rank 0 stands for every rank below Config.DataParallelSize, one given
// with another rank for that rank alone.
func (p *Pool) ranks(pod kvblock.Pod) []kvblock.Pod {
	if pod.Rank != 0 {
		return []kvblock.Pod{pod}
	}
	out := make([]kvblock.Pod, p.cfg.DataParallelSize)
	for r := range out {
		out[r] = kvblock.Pod{Addr: pod.Addr, Rank: r}
	}
	return out
}

// rankEndpoint offsets endpoint for rank, unless the caller named the rank
// itself (given.Rank != 0), in which case endpoint is that rank's already.
func rankEndpoint(given kvblock.Pod, endpoint string, rank int) (string, error) {
	if endpoint == "" || given.Rank != 0 {
		return endpoint, nil
	}
	return RankEndpoint(endpoint, rank)
}

// AddPod starts following a pod's event stream. A pod given with rank 0
// stands for all its data-parallel ranks (Config.DataParallelSize): rank r
// is followed at the endpoints' ports + r, as vLLM offsets them. A pod
// given with another rank is that rank alone, at exactly the endpoints
// given.
//
// In connect mode endpoint is the engine's PUB endpoint and the pool opens
// a SUB socket to it. In bind mode endpoint must be empty: the pod's
// messages arrive on the bound sockets, and only the pods added here may
// publish there: a message whose topic names another pod is rejected
// before anything is kept for it. replayEndpoint "" keeps the one derived
// from Config.ReplayPort.
//
// replayEndpoint is the engine's replay ROUTER, or "" if it has none, in
// which case the pod is reported degraded: a gap in its stream cannot be
// repaired. AddPod may be called before or during Run, and returns
// ErrClosed after the pool stopped; adding a pod twice with the same
// endpoints is a no-op.
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
	if p.cfg.Mode == ModeBind {
		return p.addBindPod(pod, endpoint, replayEndpoint)
	}
	if _, _, err := splitEndpoint(endpoint); err != nil {
		return fmt.Errorf("kvevents: AddPod %s: endpoint %q: %w", pod, endpoint, err)
	}
	type rankEPs struct {
		pod              kvblock.Pod
		endpoint, replay string
	}
	var todo []rankEPs
	for _, rp := range p.ranks(pod) {
		ep, err := rankEndpoint(pod, endpoint, rp.Rank)
		if err != nil {
			return fmt.Errorf("kvevents: AddPod %s: %w", rp, err)
		}
		rep, err := rankEndpoint(pod, replayEndpoint, rp.Rank)
		if err != nil {
			return fmt.Errorf("kvevents: AddPod %s: replay: %w", rp, err)
		}
		todo = append(todo, rankEPs{rp, ep, rep})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == stateStopped {
		return ErrClosed
	}
	for _, r := range todo {
		if s, ok := p.streams[r.pod]; ok && (s.endpoint != r.endpoint || s.replayEndpoint() != r.replay) {
			return fmt.Errorf("kvevents: AddPod %s: already added with endpoint %q, replay %q; remove it first", r.pod, s.endpoint, s.replayEndpoint())
		}
	}
	for _, r := range todo {
		if _, ok := p.streams[r.pod]; ok {
			continue
		}
		s := p.newStreamLocked(r.pod, r.endpoint, r.replay, true)
		p.pending = append(p.pending, sockCmd{open: true, s: s})
	}
	return nil
}

func (p *Pool) addBindPod(pod kvblock.Pod, endpoint, replayEndpoint string) error {
	if endpoint != "" {
		return fmt.Errorf("kvevents: AddPod %s: endpoint %q given in bind mode, where pods connect to %s; pass \"\"", pod, endpoint, p.cfg.Endpoint)
	}
	if pod.Rank >= p.cfg.DataParallelSize {
		return fmt.Errorf("kvevents: AddPod %s: rank %d, but dataParallelSize %d binds ranks 0..%d only", pod, pod.Rank, p.cfg.DataParallelSize, p.cfg.DataParallelSize-1)
	}
	ip, ok := podIP(pod.Addr)
	if !ok && !p.cfg.Security.AllowAnySource {
		return fmt.Errorf("kvevents: AddPod %s: bind mode admits publishers by IP, and %q is not ip:port "+
			"(or set security.allowAnySource, for development only)", pod, pod.Addr)
	}
	replays := make(map[kvblock.Pod]string)
	for _, rp := range p.ranks(pod) {
		rep, err := rankEndpoint(pod, replayEndpoint, rp.Rank)
		if err != nil {
			return fmt.Errorf("kvevents: AddPod %s: replay: %w", rp, err)
		}
		if rep == "" {
			rep = p.configReplay(rp)
		}
		replays[rp] = rep
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == stateStopped {
		return ErrClosed
	}
	for rp, rep := range replays {
		s, ok := p.streams[rp]
		if !ok {
			s = p.newStreamLocked(rp, "", rep, true)
		} else {
			s.setReplayEndpoint(rep)
			if !s.added {
				s.added = true
				p.unadded--
			}
		}
		s.ip, s.ipStr = ip, ipString(ip)
	}
	p.rebuildRoutesLocked()
	return nil
}

// configReplay returns a bind-mode pod's replay endpoint derived from
// Config.ReplayPort (its host at ReplayPort + rank), or "" for none.
func (p *Pool) configReplay(pod kvblock.Pod) string {
	if p.cfg.ReplayPort > 0 {
		return replayEndpointFor(pod.Addr, p.cfg.ReplayPort+pod.Rank)
	}
	return ""
}

// RemovePod stops following a pod (every rank, for a pod given with rank
// 0): its sockets (connect mode) are closed, messages still queued for it
// are discarded, its state, log and metric series are dropped, and its
// blocks are cleared from the index before RemovePod returns; no event of
// the pod is applied after it returns, in either mode. Removing an unknown
// pod clears its blocks and is not an error. In bind mode a removed pod's
// messages are rejected until it is added again.
func (p *Pool) RemovePod(ctx context.Context, pod kvblock.Pod) error {
	var gone []*stream
	p.mu.Lock()
	for rp, s := range p.streams {
		// Rank 0 stands for every rank, including ranks added one by one.
		if rp == pod || (pod.Rank == 0 && rp.Addr == pod.Addr) {
			gone = append(gone, s)
			delete(p.streams, rp)
			if !s.added {
				p.unadded--
			}
			if s.endpoint != "" {
				p.pending = append(p.pending, sockCmd{s: s})
			}
		}
	}
	if p.cfg.Mode == ModeBind {
		p.rebuildRoutesLocked()
	}
	p.mu.Unlock()
	cleared := map[kvblock.Pod]bool{}
	for _, s := range gone {
		// Taking s.mu waits for an apply in flight; after it, the worker
		// sees removed and drops whatever is still queued.
		s.mu.Lock()
		s.removed.Store(true)
		p.releaseHeldLocked(s)
		s.mu.Unlock()
		cleared[s.pod] = false
	}
	if len(gone) == 0 {
		for _, rp := range p.ranks(pod) {
			cleared[rp] = false
		}
	}
	if p.index == nil {
		return nil
	}
	var errs []error
	for rp := range cleared {
		if err := p.index.ClearPod(ctx, rp); err != nil {
			p.c.indexErrors.Add(1)
			errs = append(errs, fmt.Errorf("kvevents: RemovePod %s: clearing its blocks: %w", rp, err))
		}
	}
	return errors.Join(errs...)
}

// unaddedStream returns the stream of a pod a topic names in bind mode
// with Security.AllowAnySource, creating it, or nil when
// maxUnaddedStreams are followed already. The receiver is the only caller.
func (p *Pool) unaddedStream(pod kvblock.Pod) *stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.streams[pod]; ok {
		return s
	}
	if p.unadded >= maxUnaddedStreams {
		return nil
	}
	p.unadded++
	s := p.newStreamLocked(pod, "", p.configReplay(pod), false)
	s.ip, _ = podIP(pod.Addr)
	s.ipStr = ipString(s.ip)
	p.rebuildRoutesLocked()
	return s
}

// newStreamLocked creates and registers a stream. p.mu must be held.
func (p *Pool) newStreamLocked(pod kvblock.Pod, endpoint, replay string, added bool) *stream {
	s := &stream{
		pod:      pod,
		label:    pod.String(),
		endpoint: endpoint,
		added:    added,
		w:        p.workers[maphash.String(p.seed, pod.Addr)%uint64(len(p.workers))],
	}
	s.replay.Store(&replay)
	if p.cfg.KeyScheme == SchemeTokens {
		s.engine = newEngineKeys(p.cfg.MaxEngineKeys)
	}
	p.streams[pod] = s
	if replay == "" {
		if added {
			p.log.Info("pod has no replay endpoint configured: a gap in its event stream is counted, not repaired", "pod", s.label)
		}
	} else {
		p.log.V(1).Info("following pod", "pod", s.label, "endpoint", endpoint, "replay", replay)
	}
	return s
}

// stream is the state of one (pod, rank) event sequence.
type stream struct {
	pod      kvblock.Pod
	label    string     // pod.String(), for logs and metrics
	endpoint string     // connect mode SUB endpoint; "" in bind mode
	ip       netip.Addr // bind mode: the pod's IP, if its address has one
	ipStr    string     // ip as libzmq prints a Peer-Address
	added    bool       // added with AddPod (not created from a topic); guarded by Pool.mu
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
	held           []msg  // live messages held while replaying or waiting for a resync
	first          uint64 // the first sequence number applied since the stream started (or went cold)
	resync         bool   // an index write failed: waiting for the backend (resync.go)
	resyncing      bool   // the replay in flight is a resync's
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

// ipString is ip as libzmq prints a Peer-Address, "" for none.
func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
