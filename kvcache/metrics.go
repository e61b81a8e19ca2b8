package kvcache

import (
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
	ch <- buildInfoDesc
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
	ch <- buildInfoMetric()
}

// load reads an optional counter; nil reads 0.
func load(f func() uint64) uint64 {
	if f == nil {
		return 0
	}
	return f()
}
