package kvcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zeebo/xxh3"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Tokenizer turns text into the token IDs the engine computes for it.
// Implementations must be safe for concurrent use.
type Tokenizer interface {
	Encode(text string, addSpecialTokens bool) ([]uint32, error)
}

// ChatTokenizer is a Tokenizer that also renders chat requests with the
// model's chat template and tokenizes the result.
type ChatTokenizer interface {
	Tokenizer
	EncodeChat(ctx context.Context, model string, chat *ChatRequest) ([]uint32, error)
}

// EventSource feeds the index from the engines' KV events. Package kvevents
// provides the one that follows vLLM over ZMQ (kvevents.Source); it needs
// cgo and libzmq, which is why kvcache does not import it.
type EventSource interface {
	// Start opens the subscription (in bind mode: binds the endpoint) and
	// returns the error that prevents it. Events then flow until ctx ends
	// or Close is called.
	Start(ctx context.Context) error
	// Ready is closed once the subscription is live.
	Ready() <-chan struct{}
	// Done is closed when the source stops after Start; Err then says why
	// (nil after ctx ended or Close).
	Done() <-chan struct{}
	Err() error
	// AddPod starts following pod ("address:port"); RemovePod stops it
	// and clears its blocks, and no event of the pod is applied after it
	// returns.
	AddPod(ctx context.Context, pod string) error
	RemovePod(ctx context.Context, pod string) error
	// Close stops the source and releases its sockets; it is idempotent.
	Close() error
}

// SourceEnv is what an EventSource is built with besides the
// configuration.
type SourceEnv struct {
	// Sink is the index the source applies events to.
	Sink kvblock.Index
	// Log and Registerer are the Indexer's; Registerer is nil when metrics
	// are off.
	Log        logr.Logger
	Registerer prometheus.Registerer
	// LoRAName, when set, is called with the lora_name of every BlockStored
	// event that has one (vLLM v0.14+), so adapters are learned from the
	// engines. It must be cheap and safe for concurrent use.
	LoRAName func(name string)
}

// NewEventSource builds an EventSource for cfg (defaults applied, valid).
type NewEventSource func(cfg Config, env SourceEnv) (EventSource, error)

// WithEventSource builds the Indexer's event source with newSource, e.g.
// kvevents.Source. Without it, events.enabled must be false.
func WithEventSource(newSource NewEventSource) Option {
	return func(o *options) { o.newSource = newSource }
}

// Option configures New.
type Option func(*options)

type options struct {
	log       logr.Logger
	reg       prometheus.Registerer
	index     kvblock.Index
	tokenizer Tokenizer
	clock     func() time.Time
	newSource NewEventSource
}

// WithLogger sets the logger. The default discards.
func WithLogger(l logr.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the Indexer's metrics (and those of its parts)
// on reg. Without it nothing is registered.
func WithRegisterer(reg prometheus.Registerer) Option { return func(o *options) { o.reg = reg } }

// WithIndex uses idx instead of building the index Config.Index describes;
// for a backend kvtrack does not ship.
func WithIndex(idx kvblock.Index) Option { return func(o *options) { o.index = idx } }

// WithClock sets the clock that speculative entries' TTL is measured by
// (default time.Now). Entries expire on Run's ticker and also, when due,
// at every Score and Speculate, so a simulation that advances a modelled
// clock sees exactly the entries younger than the TTL of modelled time.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.clock = now
		}
	}
}

// WithTokenizer uses t instead of the tokenizer Config.Tokenizer describes.
// If t is also a ChatTokenizer, chat requests are accepted.
func WithTokenizer(t Tokenizer) Option { return func(o *options) { o.tokenizer = t } }

// Indexer ties kvtrack together: it keeps the index fed from the engines'
// KV events and scores requests against it. Its methods are safe for
// concurrent use.
//
// Its life: New builds and validates (nothing runs, Score works at once);
// Start opens the event subscription and returns what prevents it; Ready
// reports it live; Close stops everything and releases sockets, the index's
// client and the metrics registered. Run is Start, then a wait.
type Indexer struct {
	cfg    Config
	log    logr.Logger
	index  kvblock.Index
	keys   keyer
	tok    Tokenizer
	events EventSource // nil when events are disabled
	spec   *speculator // nil unless speculative recording is enabled
	peers  *peerLink   // nil unless speculative.peers.listen is set
	// following holds the endpoints AddPod added (string -> struct{}):
	// the pods a peer's decision may name.
	following sync.Map
	kcache    *keyCache  // nil when hash.keyCacheBytes is -1
	lora      *loraNames // adapters, configured and learned from events (lora.go)
	metrics   *metrics
	reg       *trackingRegisterer // nil without a Registerer
	owned     io.Closer           // the index's client, when New built it

	pool sync.Pool // *scratch

	// gpuWeight is the GPU tier's weight: a prefix held entirely on GPU
	// scores 1.
	gpuWeight float64
	// rankOf caches the (pod, rank) of endpoints in perRank data
	// parallelism (string -> kvblock.Pod).
	rankOf sync.Map

	mu      sync.Mutex // guards started, closed, cancel
	started bool
	closed  bool
	cancel  context.CancelFunc
	bg      sync.WaitGroup // Start's goroutines
	ready   chan struct{}  // closed once events flow (or at Start without events)
}

type scratch struct {
	pods   []kvblock.Pod
	scores []kvblock.PodScore
	hasher *xxh3.Hasher128
}

// ErrClosed is returned by Start, Run and AddPod after Close.
var ErrClosed = errors.New("kvcache: Indexer closed")

// New builds an Indexer from cfg, which it validates (after applying the
// defaults to its zero fields). Nothing runs until Start, but Score works at
// once. If New fails it releases whatever it had built.
func New(cfg Config, opts ...Option) (_ *Indexer, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: logr.Discard(), clock: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if *cfg.Events.Enabled && o.newSource == nil {
		return nil, errors.New("kvcache: events.enabled is true but no event source was given: " +
			"pass kvcache.WithEventSource(kvevents.Source) (package github.com/kvtrack/kvtrack/kvevents, " +
			"which follows vLLM over ZMQ), or set events.enabled: false")
	}
	ix := &Indexer{cfg: cfg, log: o.log, index: o.index, tok: o.tokenizer, ready: make(chan struct{}), gpuWeight: scoreScale(cfg)}
	if o.reg != nil && *cfg.Metrics.Enabled {
		ix.reg = &trackingRegisterer{reg: o.reg}
		o.reg = ix.reg
	} else {
		o.reg = nil
	}
	defer func() {
		if err != nil {
			_ = ix.release()
		}
	}()
	ix.pool.New = func() any { return &scratch{hasher: xxh3.New128()} }
	ix.lora = newLoRANames(cfg.LoRA)
	if cfg.Hash.KeyCacheBytes > 0 {
		ix.kcache = newKeyCache(cfg.Hash.KeyCacheBytes)
	}

	if ix.keys, err = newKeyer(cfg); err != nil {
		return nil, err
	}
	if ix.index == nil {
		if ix.index, err = newIndex(cfg, o); err != nil {
			return nil, err
		}
		ix.owned, _ = ix.index.(io.Closer)
	}
	if ix.tok == nil {
		if ix.tok, err = newTokenizer(cfg, o); err != nil {
			return nil, err
		}
	}
	sink := ix.index
	if cfg.Speculative.Enabled {
		ix.spec = newSpeculator(ix.index, time.Duration(cfg.Speculative.TTL), o.clock)
		sink = confirmingIndex{ix.index, ix.spec}
	}
	if *cfg.Events.Enabled {
		env := SourceEnv{Sink: sink, Log: o.log, Registerer: o.reg}
		if ix.lora != nil {
			env.LoRAName = ix.lora.observe
		}
		if ix.events, err = o.newSource(cfg, env); err != nil {
			return nil, fmt.Errorf("kvcache: events: %w", err)
		}
	}
	if cfg.Speculative.Peers.Listen != "" {
		if ix.peers, err = newPeerLink(cfg.Speculative.Peers, time.Duration(cfg.Speculative.TTL), o.log, ix.applyPeer); err != nil {
			return nil, fmt.Errorf("kvcache: %w", err)
		}
	}
	ix.metrics = newMetrics()
	if ix.spec != nil {
		ix.metrics.specDrop = ix.spec.dropped.Load
		ix.metrics.specRemoveErrors = ix.spec.removeErrors.Load
	}
	if ix.kcache != nil {
		ix.metrics.keyHits, ix.metrics.keyMisses = ix.kcache.hits.Load, ix.kcache.misses.Load
	}
	if vk, ok := ix.keys.(vllmKeyer); ok && vk.chain != nil {
		ix.metrics.chainHits, ix.metrics.chainMisses = vk.chain.hits.Load, vk.chain.misses.Load
	}
	if o.reg != nil {
		if err := o.reg.Register(ix.metrics); err != nil {
			return nil, fmt.Errorf("kvcache: registering metrics: %w", err)
		}
		if ix.peers != nil {
			if err := o.reg.Register(&ix.peers.stats); err != nil {
				return nil, fmt.Errorf("kvcache: registering metrics: %w", err)
			}
		}
	}
	return ix, nil
}

// Config returns the configuration in effect, defaults applied.
func (ix *Indexer) Config() Config { return ix.cfg }

// Index returns the index the Indexer reads and its events write.
func (ix *Indexer) Index() kvblock.Index { return ix.index }

// Start starts the Indexer's background work: it opens the event
// subscription, returning the error that prevents it (a bind conflict, a bad
// endpoint), then applies events, expires speculative entries and logs the
// metrics beat (metrics.beatInterval) until ctx is done or Close is called.
// Start may be called once; after Close it returns ErrClosed.
func (ix *Indexer) Start(ctx context.Context) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	switch {
	case ix.closed:
		return ErrClosed
	case ix.started:
		return errors.New("kvcache: Indexer started twice")
	}
	ix.started = true
	ctx, ix.cancel = context.WithCancel(ctx)
	if ix.events != nil {
		if err := ix.events.Start(ctx); err != nil {
			ix.cancel()
			return fmt.Errorf("kvcache: events: %w", err)
		}
		ix.bg.Go(func() {
			select {
			case <-ix.events.Ready():
				close(ix.ready)
			case <-ctx.Done():
			case <-ix.events.Done():
			}
		})
	} else {
		close(ix.ready)
	}
	if ix.peers != nil {
		if err := ix.peers.start(ctx, &ix.bg); err != nil {
			ix.cancel()
			return fmt.Errorf("kvcache: %w", err)
		}
	}
	if ix.spec != nil {
		ix.bg.Go(func() { ix.spec.run(ctx) })
	}
	if beat := time.Duration(ix.cfg.Metrics.BeatInterval); beat > 0 {
		ix.bg.Go(func() { _ = kvblock.RunMetricsBeat(ctx, ix.log, ix.index, beat) })
	}
	return nil
}

// Done returns a channel closed when the event subscription stops after
// Start (its context ended, Close, or a failure Err reports). It is never
// closed with events disabled.
func (ix *Indexer) Done() <-chan struct{} {
	if ix.events == nil {
		return nil
	}
	return ix.events.Done()
}

// Err reports why the event subscription stopped, once Done is closed: nil
// after its context ended or Close.
func (ix *Indexer) Err() error {
	if ix.events == nil {
		return nil
	}
	return ix.events.Err()
}

// Ready returns a channel that is closed once the Indexer follows events:
// after Start, as soon as the event subscription is live (at once with
// events disabled).
func (ix *Indexer) Ready() <-chan struct{} { return ix.ready }

// Run is Start followed by a wait: it returns nil when ctx is done, or the
// event subscription's error, and releases everything (Close) before it
// returns.
func (ix *Indexer) Run(ctx context.Context) error {
	if err := ix.Start(ctx); err != nil {
		return err
	}
	var err error
	if ix.events != nil {
		select {
		case <-ctx.Done():
		case <-ix.events.Done():
			if err = ix.events.Err(); err != nil && ctx.Err() == nil {
				err = fmt.Errorf("kvcache: events: %w", err)
			} else {
				err = nil
			}
		}
	} else {
		<-ctx.Done()
	}
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops what Start started, closes the event sockets and the index's
// client (when New built the index), and unregisters every metric New
// registered. It is idempotent; Score keeps working on a memory index.
func (ix *Indexer) Close() error {
	ix.mu.Lock()
	if ix.closed {
		ix.mu.Unlock()
		return nil
	}
	ix.closed = true
	if ix.cancel != nil {
		ix.cancel()
	}
	ix.mu.Unlock()
	err := ix.release()
	ix.bg.Wait()
	return err
}

// release closes the parts New built and unregisters the metrics.
func (ix *Indexer) release() error {
	var errs []error
	if ix.events != nil {
		if err := ix.events.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kvcache: closing events: %w", err))
		}
	}
	if ix.owned != nil {
		if err := ix.owned.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kvcache: closing index: %w", err))
		}
	}
	if ix.reg != nil {
		ix.reg.unregisterAll()
	}
	return errors.Join(errs...)
}

// AddPod starts following pod ("address:port", what requests are routed
// to). In connect mode it dials the pod's event publisher at
// <address>:<events.port> (and port+r for every DP rank r); in bind mode the
// pod's events arrive by topic and AddPod admits them. Adding a pod twice
// is harmless. With events disabled it does nothing; after Close it returns
// ErrClosed.
func (ix *Indexer) AddPod(ctx context.Context, pod string) error {
	if ix.isClosed() {
		return ErrClosed
	}
	if _, ok := ix.following.Load(pod); !ok { // Score adds every candidate, every time
		ix.following.Store(pod, struct{}{})
	}
	if ix.events == nil {
		return nil
	}
	// With dataParallel.endpoints perRank, rank r's endpoint is followed
	// through its engine's events: those of rank 0's address, every rank.
	engine, _ := ix.cfg.DataParallel.enginePod(pod)
	return ix.events.AddPod(ctx, engine)
}

// RemovePod stops following pod and clears every block it held from the
// index; no event of the pod is applied after it returns. With
// dataParallel.endpoints perRank, the endpoint of rank 0 stands for its
// engine: removing it stops every rank, removing another rank's does not. With events
// disabled it does nothing: the index's entries belong to whoever applies
// the events (another replica sharing a redis index, or the caller).
func (ix *Indexer) RemovePod(ctx context.Context, pod string) error {
	ix.following.Delete(pod)
	if ix.events == nil || ix.isClosed() {
		return nil
	}
	// A perRank endpoint of rank r > 0 leaving does not stop its engine's
	// events: they are followed for as long as rank 0's endpoint is.
	engine, rank := ix.cfg.DataParallel.enginePod(pod)
	if rank > 0 {
		return nil
	}
	return ix.events.RemovePod(ctx, engine)
}

func (ix *Indexer) isClosed() bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.closed
}

// Score computes the request's block keys and scores every candidate pod by
// the length of the prompt prefix it holds. An error means the prompt could
// not be turned into keys or the index failed; the caller should then treat
// every pod as scoring 0.
func (ix *Indexer) Score(ctx context.Context, req Request) (Result, error) {
	start := time.Now()
	res, err := ix.score(ctx, &req)
	ix.metrics.observeScore(start, len(res.Keys), err)
	return res, err
}

func (ix *Indexer) score(ctx context.Context, req *Request) (Result, error) {
	if ix.spec != nil {
		ix.spec.expireDue(ctx)
	}
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	// Request mapping (kvcache/openai): LoRA adapters and batches; see
	// lora.go and batch.go.
	if req.LoRA == "" {
		req.LoRA = ix.lora.adapterFor(req.Model)
	}
	if req.Prompts != nil {
		return ix.scoreBatch(ctx, req)
	}
	s := ix.pool.Get().(*scratch)
	defer ix.pool.Put(s)

	keys, cacheable, err := ix.blockKeys(ctx, s, req)
	if err != nil {
		return Result{}, err
	}
	res := Result{Pods: make([]PodScore, len(req.Pods)), Blocks: cacheable, Keys: keys}
	for i, p := range req.Pods {
		res.Pods[i].Pod = p
	}
	if cacheable == 0 || len(req.Pods) == 0 {
		return res, nil
	}

	dp := ix.cfg.DataParallel
	s.pods = s.pods[:0]
	for _, p := range req.Pods {
		s.pods = ix.appendEngines(s.pods, p)
	}
	// vLLM looks up at most the blocks before the prompt's last token.
	s.scores, err = ix.index.Score(ctx, keys[:cacheable], s.pods, s.scores[:0])
	if err != nil {
		return Result{}, fmt.Errorf("kvcache: index: %w", err)
	}
	ranks := dp.ranksPerEndpoint()
	bs := ix.cfg.Hash.BlockSize
	for i := range res.Pods {
		var matched int
		var weighted float64
		for _, ps := range s.scores[i*ranks : (i+1)*ranks] {
			matched += ps.Matched
			weighted += ps.Weighted
		}
		// One rank: exact. Several behind one endpoint: the mean, what a
		// request can expect from vLLM's cache-blind rank choice.
		ps := &res.Pods[i]
		ps.Weighted = weighted / float64(ranks)
		ps.Matched = matched / ranks
		ps.CachedTokens = matched * bs / ranks
		ps.Score = min(1, ps.Weighted/(float64(cacheable)*ix.gpuWeight))
	}
	return res, nil
}

// appendEngines appends the (pod, rank) engines whose blocks decide
// endpoint's score, remembering the data-parallel mapping of endpoints
// seen before so that a warm Score allocates nothing for it.
func (ix *Indexer) appendEngines(dst []kvblock.Pod, endpoint string) []kvblock.Pod {
	dp := ix.cfg.DataParallel
	if dp.Endpoints != DPPerRank || dp.size <= 1 {
		return dp.appendEngines(dst, endpoint)
	}
	if p, ok := ix.rankOf.Load(endpoint); ok {
		return append(dst, p.(kvblock.Pod))
	}
	dst = dp.appendEngines(dst, endpoint)
	ix.rankOf.Store(endpoint, dst[len(dst)-1])
	return dst
}

// blockKeys returns req's block keys, one per full block, and how many of
// them vLLM's prefix-cache lookup can find: it looks up at most n-1 of the
// prompt's n tokens (the last token's logits must be computed), so at most
// floor((n-1)/blockSize) blocks. The keys come from the key cache when the
// same request was keyed recently, else are tokenized and hashed (and
// cached).
func (ix *Indexer) blockKeys(ctx context.Context, s *scratch, req *Request) (keys []kvblock.Key, lookup int, err error) {
	var id requestID
	cacheable := ix.kcache != nil
	if cacheable {
		id, cacheable = ix.kcache.id(s.hasher, req)
		if cacheable {
			if keys, ok := ix.kcache.get(id); ok {
				// The cache keeps the lookup count as the length and
				// every key within the capacity.
				return keys[:cap(keys)], len(keys), nil
			}
		}
	}
	tokens, err := ix.tokens(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	keys = make([]kvblock.Key, 0, len(tokens)/ix.cfg.Hash.BlockSize)
	keys, err = ix.keys.keys(keys, tokens, req.LoRA, req.CacheSalt)
	if err != nil {
		return nil, 0, fmt.Errorf("kvcache: block keys: %w", err)
	}
	lookup = lookupBlocks(len(tokens), ix.cfg.Hash.BlockSize, len(keys))
	if cacheable && len(keys) > 0 {
		ix.kcache.put(id, keys[:lookup:len(keys)])
	}
	return keys, lookup, nil
}

// lookupBlocks is how many of a prompt's full blocks vLLM's prefix-cache
// lookup can find for a prompt of n tokens: floor((n-1)/blockSize), at most
// the keys there are.
func lookupBlocks(n, blockSize, keys int) int {
	if n <= 1 {
		return 0
	}
	return min(keys, (n-1)/blockSize)
}

// Tokens returns the token IDs Score derives from req's prompt (Prompt,
// Chat or TokenIDs): the IDs the engine must compute for the same request
// for its block hashes to equal the keys Score looks up.
func (ix *Indexer) Tokens(ctx context.Context, req Request) ([]uint32, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	if req.Prompts != nil {
		return nil, errors.New("kvcache: Tokens takes one prompt; call it for each of a batch's Prompts")
	}
	return ix.tokens(ctx, &req)
}

func (ix *Indexer) tokens(ctx context.Context, req *Request) ([]uint32, error) {
	switch {
	case req.TokenIDs != nil:
		return req.TokenIDs, nil
	case req.Chat != nil:
		ct, ok := ix.tok.(ChatTokenizer)
		if !ok {
			if ix.tok == nil {
				return nil, ErrNoTokenizer
			}
			return nil, errors.New("kvcache: the configured tokenizer cannot render chat requests")
		}
		toks, err := ct.EncodeChat(ctx, req.Model, req.Chat)
		if err != nil {
			return nil, fmt.Errorf("kvcache: chat: %w", err)
		}
		return toks, nil
	case req.Prompt == "":
		return nil, nil
	default:
		if ix.tok == nil {
			return nil, ErrNoTokenizer
		}
		toks, err := encodeText(ctx, ix.tok, req.Model, req.Prompt, !req.NoSpecialTokens)
		if err != nil {
			return nil, fmt.Errorf("kvcache: tokenize: %w", err)
		}
		return toks, nil
	}
}

// Speculate records that pod is about to hold keys (the Keys of a Result
// just routed to it), for the configured TTL, so that requests sharing the
// prefix follow before the engine's events arrive. It is a no-op unless
// speculative recording is enabled. The entry ends early when the engine
// stores the last of keys on pod. SpeculateResult, given the whole Result,
// also ends it when the prompt continues past its last full block and the
// engine stores the block after it (see speculator).
//
// With data parallelism, the entries go to the engine pod's score reads:
// its rank with one endpoint per rank, and every rank with one endpoint in
// front of them (the request is on one of them; until its events say
// which, the endpoint is credited as if on each).
func (ix *Indexer) Speculate(ctx context.Context, pod string, keys []kvblock.Key) error {
	return ix.speculate(ctx, pod, keys, false)
}

// speculate is Speculate; partialTail says that the prompt has tokens past
// its last full block. With speculative.peers the decision goes to the
// other replicas too.
func (ix *Indexer) speculate(ctx context.Context, pod string, keys []kvblock.Key, partialTail bool) error {
	if err := ix.recordSpeculation(ctx, pod, keys, partialTail); err != nil {
		return err
	}
	if ix.peers != nil && len(keys) > 0 {
		ix.peers.broadcast(pod, keys, partialTail)
	}
	return nil
}

// recordSpeculation records a decision, this replica's or a peer's, in
// this replica's index.
func (ix *Indexer) recordSpeculation(ctx context.Context, pod string, keys []kvblock.Key, partialTail bool) error {
	if ix.spec == nil || len(keys) == 0 {
		return nil
	}
	var engines [1]kvblock.Pod
	for _, e := range ix.appendEngines(engines[:0], pod) {
		if err := ix.spec.record(ctx, e, keys, partialTail); err != nil {
			return err
		}
	}
	return nil
}

// applyPeer records a peer's decision; false when it names a pod this
// replica does not follow, which it drops rather than keep state for.
func (ix *Indexer) applyPeer(ctx context.Context, d *peerDecision) bool {
	if _, ok := ix.following.Load(d.pod); !ok {
		return false
	}
	if err := ix.recordSpeculation(ctx, d.pod, d.keys, d.partialTail); err != nil {
		ix.log.Info("speculative peers: recording a peer's decision", "pod", d.pod, "err", err)
	}
	return true
}

// PeerStats is what speculative.peers has done since Start; the same
// figures are exported as kvtrack_speculative_peer* metrics.
type PeerStats struct {
	// Connected is the number of peers connected to this replica (a
	// replica that lists itself among the endpoints counts for a moment);
	// Sending the number of peers this replica is connected to, itself
	// never included.
	Connected, Sending int
	// Sent counts decisions written to peers (one per peer), Received the
	// peers' decisions recorded, Dropped those not sent (a full queue, an
	// unreachable peer).
	Sent, Received, Dropped uint64
	// Refused counts connections from addresses the endpoints do not
	// resolve to; OverLimit those past the few one address may hold;
	// Malformed the connections ended by a malformed frame; UnknownPod the
	// decisions dropped for naming a pod not followed.
	Refused, OverLimit, Malformed, UnknownPod uint64
}

// PeerStats reports speculative.peers' counters; zero without peers.
func (ix *Indexer) PeerStats() PeerStats {
	if ix.peers == nil {
		return PeerStats{}
	}
	s := &ix.peers.stats
	return PeerStats{
		Connected: int(s.connected.Load()), Sending: int(s.sending.Load()),
		Sent: s.sent.Load(), Received: s.received.Load(), Dropped: s.dropped.Load(),
		Refused: s.refused.Load(), OverLimit: s.overLimit.Load(), Malformed: s.malformed.Load(), UnknownPod: s.unknownPod.Load(),
	}
}
