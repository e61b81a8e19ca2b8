package kvcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// eventSource feeds the index from the engines' KV events.
type eventSource interface {
	Run(ctx context.Context) error
	AddPod(ctx context.Context, pod string) error
	RemovePod(ctx context.Context, pod string) error
}

// Option configures New.
type Option func(*options)

type options struct {
	log       logr.Logger
	reg       prometheus.Registerer
	index     kvblock.Index
	tokenizer Tokenizer
	clock     func() time.Time
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
type Indexer struct {
	cfg     Config
	log     logr.Logger
	index   kvblock.Index
	keys    keyer
	tok     Tokenizer
	events  eventSource // nil when events are disabled
	spec    *speculator // nil unless speculative recording is enabled
	kcache  *keyCache   // nil when hash.keyCacheBytes is -1
	metrics *metrics

	pool sync.Pool // *scratch

	// gpuWeight is the GPU tier's weight: a prefix held entirely on GPU
	// scores 1.
	gpuWeight float64
	// rankOf caches the (pod, rank) of endpoints in perRank data
	// parallelism (string -> kvblock.Pod).
	rankOf sync.Map

	running atomic.Bool
}

type scratch struct {
	pods   []kvblock.Pod
	scores []kvblock.PodScore
	hasher *xxh3.Hasher128
}

// New builds an Indexer from cfg, which it validates (after applying the
// defaults to its zero fields). Nothing runs until Run is called, but Score
// works at once.
func New(cfg Config, opts ...Option) (*Indexer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: logr.Discard(), clock: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	ix := &Indexer{cfg: cfg, log: o.log, index: o.index, tok: o.tokenizer, gpuWeight: scoreScale(cfg)}
	ix.pool.New = func() any { return &scratch{hasher: xxh3.New128()} }
	if cfg.Hash.KeyCacheBytes > 0 {
		ix.kcache = newKeyCache(cfg.Hash.KeyCacheBytes)
	}

	var err error
	if ix.keys, err = newKeyer(cfg); err != nil {
		return nil, err
	}
	if ix.index == nil {
		if ix.index, err = newIndex(cfg, o); err != nil {
			return nil, err
		}
	}
	if ix.tok == nil {
		if ix.tok, err = newTokenizer(cfg, o); err != nil {
			return nil, err
		}
	}
	events := ix.index
	if cfg.Speculative.Enabled {
		ix.spec = newSpeculator(ix.index, time.Duration(cfg.Speculative.TTL), o.clock)
		events = confirmingIndex{ix.index, ix.spec}
	}
	if *cfg.Events.Enabled {
		if ix.events, err = newEventSource(cfg, events, o); err != nil {
			return nil, err
		}
	}
	ix.metrics = newMetrics()
	if ix.spec != nil {
		ix.metrics.specDrop = ix.spec.dropped.Load
	}
	if ix.kcache != nil {
		ix.metrics.keyHits, ix.metrics.keyMisses = ix.kcache.hits.Load, ix.kcache.misses.Load
	}
	if vk, ok := ix.keys.(vllmKeyer); ok && vk.chain != nil {
		ix.metrics.chainHits, ix.metrics.chainMisses = vk.chain.hits.Load, vk.chain.misses.Load
	}
	if o.reg != nil && *cfg.Metrics.Enabled {
		if err := o.reg.Register(ix.metrics); err != nil {
			return nil, fmt.Errorf("kvcache: registering metrics: %w", err)
		}
	}
	return ix, nil
}

// Config returns the configuration in effect, defaults applied.
func (ix *Indexer) Config() Config { return ix.cfg }

// Index returns the index the Indexer reads and its events write.
func (ix *Indexer) Index() kvblock.Index { return ix.index }

// Run consumes KV events, expires speculative entries and logs the metrics
// beat (when metrics.beatInterval is set) until ctx is done. It returns nil
// when ctx is cancelled, or the event subscription's error. Run may be
// called once.
func (ix *Indexer) Run(ctx context.Context) error {
	if !ix.running.CompareAndSwap(false, true) {
		return errors.New("kvcache: Indexer.Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if ix.spec != nil {
		wg.Go(func() { ix.spec.run(ctx) })
	}
	if ix.events != nil {
		wg.Go(func() {
			if err := ix.events.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("kvcache: events: %w", err)
				cancel()
			}
		})
	}
	if beat := time.Duration(ix.cfg.Metrics.BeatInterval); beat > 0 {
		wg.Go(func() { _ = kvblock.RunMetricsBeat(ctx, ix.log, ix.index, beat) })
	}
	<-ctx.Done()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// AddPod starts following pod ("address:port", what requests are routed
// to). In connect mode it dials the pod's event publisher at
// <address>:<events.port>; in bind mode the pod's events arrive by topic and
// AddPod only notes it. Adding a pod twice is harmless. With events
// disabled it does nothing.
func (ix *Indexer) AddPod(ctx context.Context, pod string) error {
	if ix.events == nil {
		return nil
	}
	return ix.events.AddPod(ctx, pod)
}

// RemovePod stops following pod and clears every block it held from the
// index; no event of the pod is applied after it returns. With events
// disabled it does nothing: the index's entries belong to whoever applies
// the events (another replica sharing a redis index, or the caller).
func (ix *Indexer) RemovePod(ctx context.Context, pod string) error {
	if ix.events == nil {
		return nil
	}
	return ix.events.RemovePod(ctx, pod)
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
	if dp.Endpoints != DPPerRank || dp.Size <= 1 {
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
		toks, err := ix.tok.Encode(req.Prompt, true)
		if err != nil {
			return nil, fmt.Errorf("kvcache: tokenize: %w", err)
		}
		return toks, nil
	}
}

// Speculate records that pod is about to hold keys (the Keys of a Result
// just routed to it), for the configured TTL, so that requests sharing the
// prefix follow before the engine's events arrive. It is a no-op unless
// speculative recording is enabled.
//
// With data parallelism, the entries go to the engine pod's score reads:
// its rank with one endpoint per rank, and every rank with one endpoint in
// front of them (the request is on one of them; until its events say
// which, the endpoint is credited as if on each).
func (ix *Indexer) Speculate(ctx context.Context, pod string, keys []kvblock.Key) error {
	if ix.spec == nil || len(keys) == 0 {
		return nil
	}
	var engines [1]kvblock.Pod
	for _, e := range ix.appendEngines(engines[:0], pod) {
		if err := ix.spec.record(ctx, e, keys); err != nil {
			return err
		}
	}
	return nil
}
