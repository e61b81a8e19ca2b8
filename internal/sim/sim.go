package sim

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Result is one router's outcome. Times are modelled, not measured.
type Result struct {
	Name string `json:"name"`
	// HitRate is the fraction of prompt tokens served from the prefix cache.
	HitRate  float64 `json:"hit_rate"`
	TTFTP50  float64 `json:"ttft_p50_ms"`
	TTFTP90  float64 `json:"ttft_p90_ms"`
	TTFTMean float64 `json:"ttft_mean_ms"`
	// Throughput is completed requests per modelled second, from the first
	// arrival to the last completion; OutputTPS the same in output tokens.
	Throughput float64 `json:"throughput_rps"`
	OutputTPS  float64 `json:"output_tokens_s"`
	// LoadSpread is the busiest pod's share of requests over the mean share:
	// 1 is perfectly even.
	LoadSpread float64 `json:"load_spread"`
	Requests   int     `json:"requests"`
	// Routed is the number of requests the router placed, those that
	// HitRate and the TTFTs are taken over (Requests less the external
	// ones).
	Routed int `json:"routed"`
	// EvictedBlocks counts cache blocks the pods evicted.
	EvictedBlocks int `json:"evicted_blocks"`
	// EventBatches is the number of KV-event messages the pods published
	// (0 for routers that do not read events).
	EventBatches int `json:"event_batches"`
}

// Report is a whole simulation's outcome.
type Report struct {
	Config  Config   `json:"config"`
	Routers []Result `json:"routers"`
}

// Progress is told how far each router's run has got.
type Progress func(router string, done, total int)

// Run simulates cfg's workload once per router and reports each. progress
// may be nil.
func Run(ctx context.Context, cfg Config, progress Progress) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hasher, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: blockhash.Algorithm(cfg.HashAlgo), Seed: cfg.HashSeed, BlockSize: cfg.BlockSize})
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	reqs, err := generate(cfg, hasher)
	if err != nil {
		return nil, err
	}
	rep := &Report{Config: cfg}
	for _, name := range cfg.routers() {
		res, err := runRouter(ctx, cfg, name, routerStream(name), reqs, progress)
		if err != nil {
			return nil, fmt.Errorf("simulate: router %s: %w", name, err)
		}
		rep.Routers = append(rep.Routers, res)
	}
	return rep, nil
}

// routerStream is the random stream of a router's choices, fixed per router
// so that a router's result does not depend on which others run with it.
// The precise variants share precise's, so that with one replica and no
// placement they choose alike.
func routerStream(name string) uint64 {
	switch name {
	case RouterPrecisePlacement, RouterPreciseShared, RouterPreciseIsolated:
		name = "precise"
	}
	for i, n := range RouterNames {
		if n == name {
			return uint64(i)
		}
	}
	return uint64(len(RouterNames))
}

func runRouter(ctx context.Context, cfg Config, name string, stream uint64, reqs []*request, progress Progress) (Result, error) {
	s := &sim{cfg: cfg, name: name, reqs: reqs, progress: progress}
	s.pods = make([]*pod, cfg.Pods)
	addrs := make([]string, cfg.Pods)
	for i := range s.pods {
		addrs[i] = fmt.Sprintf("10.0.0.%d:8000", i+1)
		s.pods[i] = &pod{addr: addrs[i], pool: vllmfake.NewBlockPool(cfg.CacheBlocks), coming: make(map[kvblock.Key]int32)}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x726f75746572+stream))
	aff := affinity{wPrefix: cfg.PrefixWeight, wKV: cfg.KVUsageWeight, wQueue: cfg.QueueWeight, rng: rng}
	// Stateful routers run as cfg.Replicas independent instances, each
	// request reaching one of them at random, as behind a Service.
	var replicas []router
	switch name {
	case "precise", RouterPrecisePlacement, RouterPreciseShared, RouterPreciseIsolated:
		kts := make(multiKVTrack, 0, cfg.Replicas)
		defer func() { kts.close() }()
		shared := cfg.SharedIndex || name == RouterPreciseShared
		// Replicas with an index each share their routing decisions
		// (speculative.peers), as kvtrack recommends; precise_isolated
		// shows what that is worth.
		var peers *peerGroup
		if !shared && cfg.Replicas > 1 && cfg.Speculative && name != RouterPreciseIsolated {
			var err error
			if peers, err = newPeerGroup(cfg.Replicas); err != nil {
				return Result{}, err
			}
		}
		for r := range cfg.Replicas {
			if r == 0 || !shared {
				kt, err := startKVTrack(ctx, cfg, addrs, peers, r)
				if err != nil {
					return Result{}, err
				}
				kts = append(kts, kt)
			}
			kt := kts[len(kts)-1]
			p := &precise{affinity: aff, idx: kt, addrs: addrs, matched: make([]int, cfg.Pods), prefix: make([]float64, cfg.Pods), audit: cfg.audit}
			if name == RouterPrecisePlacement {
				p.placement, p.capacity = cfg.PlacementWeight, cfg.CacheBlocks
			}
			replicas = append(replicas, p)
		}
		if err := s.connect(ctx, kts); err != nil {
			return Result{}, err
		}
		if peers != nil {
			if err := peers.waitConnected(ctx); err != nil {
				return Result{}, err
			}
		}
	case "approximate":
		for range cfg.Replicas {
			ap, err := newApproximate(aff, cfg.Pods, cfg.approxLRU())
			if err != nil {
				return Result{}, err
			}
			replicas = append(replicas, ap)
		}
	case "round_robin":
		for r := range cfg.Replicas {
			replicas = append(replicas, &roundRobin{next: r})
		}
	case "random":
		s.router = &randomRouter{rng: rng}
	case "least_loaded":
		s.router = &leastLoaded{rng: rng}
	case "oracle":
		s.router = &oracle{affinity: aff}
	default:
		return Result{}, fmt.Errorf("unknown router %q", name)
	}
	if replicas != nil {
		s.router = &replicated{replicas: replicas, rng: rng}
	}
	defer s.closePublishers()
	if err := s.run(ctx); err != nil {
		return Result{}, err
	}
	return s.result(), nil
}

// eventBarrier is the precise run's coupling between modelled time and
// kvtrack's asynchronous ingestion.
type eventBarrier interface {
	// endpoints lists the endpoints every pod publishes to.
	endpoints() []string
	// waitApplied blocks until the index has applied what the pods have
	// published since it started.
	waitApplied(ctx context.Context, want applied) error
	// setTime sets kvtrack's clock to the modelled time in seconds.
	setTime(seconds float64)
}

type pod struct {
	addr       string
	pool       *vllmfake.BlockPool
	queue      []*job
	prefilling *job
	running    int
	served     int
	pub        *vllmfake.Publisher
	// coming counts, per block key, the queued and prefilling requests whose
	// prompt holds it: blocks the pod is about to compute, which only the
	// oracle reads.
	coming map[kvblock.Key]int32
}

func (p *pod) load() int {
	n := len(p.queue)
	if p.prefilling != nil {
		n++
	}
	return n
}

type job struct {
	r     *request
	pod   int
	alloc *vllmfake.Allocation
}

const (
	evPrefillDone = iota
	evDecodeDone
)

type simEvent struct {
	t    float64
	seq  uint64 // ties in time keep scheduling order
	kind int
	job  *job
}

type eventHeap []simEvent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	return h[i].t < h[j].t || (h[i].t == h[j].t && h[i].seq < h[j].seq)
}
func (h eventHeap) Swap(i, j int)    { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)      { *h = append(*h, x.(simEvent)) }
func (h *eventHeap) push(e simEvent) { heap.Push(h, e) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// pending is a KV-event batch waiting for its modelled publication time.
type pending struct {
	at      float64
	pod     int
	payload []byte
	n       applied
}

type sim struct {
	cfg      Config
	name     string
	reqs     []*request
	pods     []*pod
	router   router
	progress Progress

	events eventHeap
	seq    uint64
	now    float64
	// arrivals holds the requests that may arrive (no chat turn before them
	// unanswered), by arrival time; arrived is each request's arrival.
	arrivals eventHeap
	arrived  []float64
	answered []float64 // when each request's decode ended

	// Event publication (precise run only).
	barrier   eventBarrier
	outbox    []pending
	published applied
	synced    applied
	batches   int
	tokbuf    []uint32

	ttfts        []float64
	hitTokens    int
	promptTokens int
	outputTokens int
	evicted      int
	restarts     int
	lastDone     float64
}

// connect points every pod's publisher at kvtrack's endpoint and waits until
// each subscription is live.
func (s *sim) connect(ctx context.Context, b eventBarrier) error {
	s.barrier = b
	layout := vllmfake.LayoutArray
	if s.cfg.MapLayout {
		layout = vllmfake.LayoutMap
	}
	eps := b.endpoints()
	for _, p := range s.pods {
		pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{
			Endpoint: eps[0],
			Also:     eps[1:],
			Topic:    "kv@" + p.addr + "@" + simModel,
			Layout:   layout,
		})
		if err != nil {
			return err
		}
		p.pub = pub
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, p := range s.pods {
		if err := p.pub.WaitSubscribers(wctx, len(eps)); err != nil {
			return err
		}
	}
	return nil
}

func (s *sim) closePublishers() {
	for _, p := range s.pods {
		if p.pub != nil {
			p.pub.Close()
		}
	}
}

func (s *sim) schedule(t float64, kind int, j *job) {
	s.seq++
	heap.Push(&s.events, simEvent{t: t, seq: s.seq, kind: kind, job: j})
}

func (s *sim) run(ctx context.Context) error {
	s.arrived = make([]float64, len(s.reqs))
	s.answered = make([]float64, len(s.reqs))
	for _, r := range s.reqs {
		if r.after < 0 {
			s.arrivals = append(s.arrivals, simEvent{t: r.arrival, seq: uint64(r.id), job: &job{r: r}})
		}
	}
	heap.Init(&s.arrivals)
	routed := 0
	for len(s.arrivals) > 0 || len(s.events) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(s.events) > 0 && (len(s.arrivals) == 0 || s.events[0].t <= s.arrivals[0].t) {
			ev := heap.Pop(&s.events).(simEvent)
			s.now = ev.t
			var err error
			if ev.kind == evPrefillDone {
				err = s.prefillDone(ev.job)
			} else {
				err = s.decodeDone(ev.job)
			}
			if err != nil {
				return err
			}
			continue
		}
		a := heap.Pop(&s.arrivals).(simEvent)
		r := a.job.r
		s.now = a.t
		s.arrived[r.id] = a.t
		if err := s.restartDue(routed); err != nil {
			return err
		}
		if err := s.sync(ctx); err != nil {
			return err
		}
		i := r.extPod
		if !r.external {
			var err error
			if i, err = s.router.route(ctx, r, s); err != nil {
				return err
			}
		}
		p := s.pods[i]
		p.served++
		p.queue = append(p.queue, &job{r: r, pod: i})
		for _, k := range r.keys[:r.promptBlocks] {
			p.coming[k]++
		}
		if err := s.tryStart(i); err != nil {
			return err
		}
		routed++
		if s.progress != nil {
			s.progress(s.name, routed, len(s.reqs))
		}
	}
	return s.flush(ctx, true)
}

// sync publishes the batches whose modelled time has come and waits until
// kvtrack has applied everything published.
func (s *sim) sync(ctx context.Context) error {
	if s.barrier == nil {
		return nil
	}
	s.barrier.setTime(s.now)
	if err := s.flush(ctx, false); err != nil {
		return err
	}
	if s.published == s.synced {
		return nil
	}
	if err := s.barrier.waitApplied(ctx, s.published); err != nil {
		return err
	}
	s.synced = s.published
	return nil
}

func (s *sim) flush(_ context.Context, all bool) error {
	lag := s.cfg.EventLag.Seconds()
	n := 0
	for _, b := range s.outbox {
		if !all && b.at+lag > s.now {
			break
		}
		if _, err := s.pods[b.pod].pub.SendPayload(b.payload); err != nil {
			return err
		}
		s.published.stored += b.n.stored
		s.published.removed += b.n.removed
		s.published.cleared += b.n.cleared
		s.batches++
		n++
	}
	s.outbox = slices.Delete(s.outbox, 0, n)
	return nil
}

// emit turns pod i's new cache events into one batch, as vLLM publishes one
// per scheduler step.
func (s *sim) emit(i int) {
	p := s.pods[i]
	evs := p.pool.TakeEvents()
	var n applied
	for _, e := range evs {
		switch e.Kind {
		case vllmfake.BlockStored:
			n.stored += uint64(len(e.Hashes))
		case vllmfake.BlockRemoved:
			n.removed += uint64(len(e.Hashes))
			s.evicted += len(e.Hashes)
		case vllmfake.AllBlocksCleared:
			n.cleared++
		}
	}
	if p.pub == nil || len(evs) == 0 {
		return
	}
	payload := p.pub.Encode(nil, 1.7e9+s.now, evs)
	s.outbox = append(s.outbox, pending{at: s.now, pod: i, payload: payload, n: n})
}

// tryStart begins the next prefill on pod i if it is idle and the head
// request's blocks fit.
func (s *sim) tryStart(i int) error {
	p := s.pods[i]
	if p.prefilling != nil || len(p.queue) == 0 {
		return nil
	}
	j := p.queue[0]
	r := j.r
	bs := s.cfg.BlockSize
	total := (len(r.prompt) + len(r.output) + bs - 1) / bs
	a, err := p.pool.Allocate(r.keys[:r.promptBlocks], (len(r.prompt)-1)/bs, total)
	if errors.Is(err, vllmfake.ErrNoSpace) {
		if p.running == 0 {
			return fmt.Errorf("request %d needs %d blocks, more than pod %s's %d", r.id, total, p.addr, p.pool.Capacity())
		}
		return nil // wait for a running request to free its blocks
	}
	if err != nil {
		return err
	}
	p.queue = p.queue[1:]
	j.alloc = a
	p.prefilling = j
	if !r.external {
		s.hitTokens += a.Hit * bs
		s.promptTokens += len(r.prompt)
	}
	// vLLM caches a request's full prompt blocks, and publishes their
	// BlockStored, when it schedules them (KVCacheManager.allocate_slots),
	// not when their prefill finishes.
	s.cache(p, j, a.Hit, r.promptBlocks)
	compute := float64(len(r.prompt)-a.Hit*bs) / s.cfg.PrefillRate
	s.schedule(s.now+s.cfg.StepOverhead.Seconds()+compute, evPrefillDone, j)
	s.emit(i)
	return nil
}

func (s *sim) prefillDone(j *job) error {
	p := s.pods[j.pod]
	r := j.r
	for _, k := range r.keys[:r.promptBlocks] {
		if p.coming[k]--; p.coming[k] == 0 {
			delete(p.coming, k)
		}
	}
	if !r.external {
		s.ttfts = append(s.ttfts, s.now-s.arrived[r.id])
	}
	p.prefilling = nil
	p.running++
	s.schedule(s.now+float64(len(r.output))*s.cfg.DecodePerToken.Seconds(), evDecodeDone, j)
	s.emit(j.pod)
	return s.tryStart(j.pod)
}

func (s *sim) decodeDone(j *job) error {
	p := s.pods[j.pod]
	s.cache(p, j, j.r.promptBlocks, len(j.r.keys))
	p.pool.Release(j.alloc)
	p.running--
	s.outputTokens += len(j.r.output)
	s.lastDone = max(s.lastDone, s.now)
	s.answered[j.r.id] = s.now
	s.emit(j.pod)
	if n := j.r.next; n >= 0 {
		// The answer is out: the conversation's next turn may come.
		s.arrivals.push(simEvent{t: max(s.reqs[n].arrival, s.now), seq: uint64(n), job: &job{r: s.reqs[n]}})
	}
	return s.tryStart(j.pod)
}

// restartDue restarts the next pod in turn when the run has routed the
// requests that come before its turn (Config.Restarts, spread evenly).
func (s *sim) restartDue(routed int) error {
	n := s.cfg.Restarts
	if n == 0 {
		return nil
	}
	step := len(s.reqs) / (n + 1)
	if step == 0 || routed == 0 || routed%step != 0 || routed/step > n {
		return nil
	}
	i := (routed/step - 1) % len(s.pods)
	s.pods[i].pool.Reset()
	s.restarts++
	s.emit(i)
	return nil
}

// cache registers the request's computed blocks [from, to) in the pod's
// pool.
func (s *sim) cache(p *pod, j *job, from, to int) {
	if from >= to {
		return
	}
	bs := s.cfg.BlockSize
	r := j.r
	var parent kvblock.Key
	if from > 0 {
		parent = r.keys[from-1]
	}
	s.tokbuf = r.seq(s.tokbuf[:0], from*bs, to*bs)
	p.pool.Cache(j.alloc, r.keys[from:to], parent, from > 0, s.tokbuf, bs)
}

func (s *sim) result() Result {
	res := Result{Name: s.name, Requests: len(s.reqs), Routed: len(s.ttfts), EvictedBlocks: s.evicted, EventBatches: s.batches}
	if s.promptTokens > 0 {
		res.HitRate = float64(s.hitTokens) / float64(s.promptTokens)
	}
	slices.Sort(s.ttfts)
	sum := 0.0
	for _, t := range s.ttfts {
		sum += t
	}
	if len(s.ttfts) > 0 {
		res.TTFTMean = 1000 * sum / float64(len(s.ttfts))
	}
	res.TTFTP50 = 1000 * percentile(s.ttfts, 50)
	res.TTFTP90 = 1000 * percentile(s.ttfts, 90)
	if s.lastDone > 0 {
		res.Throughput = float64(len(s.reqs)) / s.lastDone
		res.OutputTPS = float64(s.outputTokens) / s.lastDone
	}
	maxServed := 0
	for _, p := range s.pods {
		maxServed = max(maxServed, p.served)
	}
	res.LoadSpread = float64(maxServed) / (float64(len(s.reqs)) / float64(len(s.pods)))
	return res
}

// The cluster view routers get.
func (s *sim) numPods() int      { return len(s.pods) }
func (s *sim) load(i int) int    { return s.pods[i].load() }
func (s *sim) running(i int) int { return s.pods[i].running }
func (s *sim) kvUsage(i int) float64 {
	p := s.pods[i].pool
	return float64(p.Held()) / float64(p.Capacity())
}
func (s *sim) truePrefix(i int, keys []kvblock.Key) int {
	p := s.pods[i]
	for n, k := range keys {
		if !p.pool.Contains(k) && p.coming[k] == 0 {
			return n
		}
	}
	return len(keys)
}
