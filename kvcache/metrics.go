package kvcache

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Indexer's own counters: atomics bumped on the score path
// and read at scrape time.
type metrics struct {
	scores   atomic.Uint64
	errors   atomic.Uint64
	blocks   atomic.Uint64
	latency  prometheus.Histogram
	specDrop func() uint64
	// key cache counters; nil when the cache is disabled
	keyHits, keyMisses func() uint64
	// chain cache counters, in blocks; nil when the cache is disabled
	chainHits, chainMisses func() uint64

	scoresDesc, errorsDesc, blocksDesc, specDropDesc, keyHitsDesc, keyMissesDesc *prometheus.Desc
	chainHitsDesc, chainMissesDesc                                               *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvtrack_indexer_score_duration_seconds",
			Help: "Time to score one request: tokenization, block keys and index lookup.",
			// 10us .. ~80ms: a warm request is tens of microseconds, a cold
			// 32k-character prompt tokenizes in milliseconds.
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 14),
		}),
		scoresDesc:      prometheus.NewDesc("kvtrack_indexer_scores_total", "Requests scored.", nil, nil),
		errorsDesc:      prometheus.NewDesc("kvtrack_indexer_score_errors_total", "Requests that could not be scored (tokenization, key or index errors).", nil, nil),
		blocksDesc:      prometheus.NewDesc("kvtrack_indexer_score_blocks_total", "Prompt blocks looked up by scored requests.", nil, nil),
		specDropDesc:    prometheus.NewDesc("kvtrack_indexer_speculative_dropped_total", "Speculative records dropped because too many were pending.", nil, nil),
		keyHitsDesc:     prometheus.NewDesc("kvtrack_indexer_key_cache_hits_total", "Scored requests whose block keys came from the key cache.", nil, nil),
		keyMissesDesc:   prometheus.NewDesc("kvtrack_indexer_key_cache_misses_total", "Scored requests that were tokenized and hashed.", nil, nil),
		chainHitsDesc:   prometheus.NewDesc("kvtrack_indexer_chain_cache_hits_total", "Prompt blocks whose vLLM key came from the prefix-chain cache.", nil, nil),
		chainMissesDesc: prometheus.NewDesc("kvtrack_indexer_chain_cache_misses_total", "Prompt blocks hashed with vLLM's algorithm because the prefix-chain cache did not hold them.", nil, nil),
	}
}

func (m *metrics) observeScore(start time.Time, blocks int, err error) {
	m.scores.Add(1)
	if err != nil {
		m.errors.Add(1)
		return
	}
	m.blocks.Add(uint64(blocks))
	m.latency.Observe(time.Since(start).Seconds())
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.latency.Describe(ch)
	ch <- m.scoresDesc
	ch <- m.errorsDesc
	ch <- m.blocksDesc
	ch <- m.specDropDesc
	ch <- m.keyHitsDesc
	ch <- m.keyMissesDesc
	ch <- m.chainHitsDesc
	ch <- m.chainMissesDesc
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.latency.Collect(ch)
	ch <- prometheus.MustNewConstMetric(m.scoresDesc, prometheus.CounterValue, float64(m.scores.Load()))
	ch <- prometheus.MustNewConstMetric(m.errorsDesc, prometheus.CounterValue, float64(m.errors.Load()))
	ch <- prometheus.MustNewConstMetric(m.blocksDesc, prometheus.CounterValue, float64(m.blocks.Load()))
	ch <- prometheus.MustNewConstMetric(m.specDropDesc, prometheus.CounterValue, float64(load(m.specDrop)))
	ch <- prometheus.MustNewConstMetric(m.keyHitsDesc, prometheus.CounterValue, float64(load(m.keyHits)))
	ch <- prometheus.MustNewConstMetric(m.keyMissesDesc, prometheus.CounterValue, float64(load(m.keyMisses)))
	ch <- prometheus.MustNewConstMetric(m.chainHitsDesc, prometheus.CounterValue, float64(load(m.chainHits)))
	ch <- prometheus.MustNewConstMetric(m.chainMissesDesc, prometheus.CounterValue, float64(load(m.chainMisses)))
}

// load reads an optional counter; nil reads 0.
func load(f func() uint64) uint64 {
	if f == nil {
		return 0
	}
	return f()
}

// trackingRegisterer registers on reg and remembers what it registered, so
// that Close (or a New that fails halfway) can unregister all of it and a
// new Indexer can register the same metrics on the same registry.
type trackingRegisterer struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	cs  []prometheus.Collector
}

func (t *trackingRegisterer) Register(c prometheus.Collector) error {
	if err := t.reg.Register(c); err != nil {
		return err
	}
	t.mu.Lock()
	t.cs = append(t.cs, c)
	t.mu.Unlock()
	return nil
}

func (t *trackingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err) // prometheus.Registerer's contract for MustRegister
		}
	}
}

func (t *trackingRegisterer) Unregister(c prometheus.Collector) bool {
	t.mu.Lock()
	t.cs = slices.DeleteFunc(t.cs, func(x prometheus.Collector) bool { return x == c })
	t.mu.Unlock()
	return t.reg.Unregister(c)
}

func (t *trackingRegisterer) unregisterAll() {
	t.mu.Lock()
	cs := t.cs
	t.cs = nil
	t.mu.Unlock()
	for _, c := range cs {
		t.reg.Unregister(c)
	}
}
