package kvblock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// MeteredIndex is an Index whose Score calls are timed into the
// kvtrack_index_lookup_duration_seconds histogram, and whose Stats are
// exported as the kvtrack_index_* metrics on each scrape. It works with
// any Index; the wrapped index does the work and the metering adds two
// clock reads and a histogram update per Score.
type MeteredIndex struct {
	Index
	scoreSeconds prometheus.Histogram
}

// NewMeteredIndex wraps idx and registers its metrics on reg. It fails if
// reg already holds metrics of the same names, for instance from another
// index: give each index its own registry, or wrap reg with
// prometheus.WrapRegistererWith and a distinguishing label.
func NewMeteredIndex(idx Index, reg prometheus.Registerer) (*MeteredIndex, error) {
	m := &MeteredIndex{
		Index: idx,
		scoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvtrack_index_lookup_duration_seconds",
			Help: "Time Index.Score took, from 1 microsecond.",
			// Scores take tens of microseconds in memory and about a
			// millisecond over the network.
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12),
		}),
	}
	c := &statsCollector{idx: idx, score: m.scoreSeconds}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("kvblock: register index metrics: %w", err)
	}
	return m, nil
}

// Score times the wrapped index's Score.
func (m *MeteredIndex) Score(ctx context.Context, keys []Key, candidates []Pod, dst []PodScore) ([]PodScore, error) {
	start := time.Now()
	dst, err := m.Index.Score(ctx, keys, candidates, dst)
	m.scoreSeconds.Observe(time.Since(start).Seconds())
	return dst, err
}

// statsCollector turns Index.Stats into metrics at scrape time, so the
// index's hot paths only bump their own counters.
type statsCollector struct {
	idx   Index
	score prometheus.Histogram
}

// statsTimeout bounds the Stats call of one scrape, for remote indexes.
const statsTimeout = 5 * time.Second

var statsMetrics = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(Stats) float64
}{
	{prometheus.NewDesc("kvtrack_index_keys", "Distinct block keys held by at least one pod.", nil, nil),
		prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Keys) }},
	{prometheus.NewDesc("kvtrack_index_entries", "(block, pod, tier) entries in the index.", nil, nil),
		prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Entries) }},
	{prometheus.NewDesc("kvtrack_index_pods", "Pods holding at least one block.", nil, nil),
		prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Pods) }},
	{prometheus.NewDesc("kvtrack_index_admissions_total", "Entries created.", nil, nil),
		prometheus.CounterValue, func(s Stats) float64 { return float64(s.Admissions) }},
	{prometheus.NewDesc("kvtrack_index_evictions_total", "Entries dropped by the capacity bound.", nil, nil),
		prometheus.CounterValue, func(s Stats) float64 { return float64(s.Evictions) }},
	{prometheus.NewDesc("kvtrack_index_removals_total", "Entries dropped by removals and clears.", nil, nil),
		prometheus.CounterValue, func(s Stats) float64 { return float64(s.Removals) }},
	{prometheus.NewDesc("kvtrack_index_lookups_total", "Block keys looked up by scoring.", nil, nil),
		prometheus.CounterValue, func(s Stats) float64 { return float64(s.Lookups) }},
	{prometheus.NewDesc("kvtrack_index_hits_total", "Looked-up block keys that extended a candidate's prefix.", nil, nil),
		prometheus.CounterValue, func(s Stats) float64 { return float64(s.Hits) }},
}

// The capacity gauges, for indexes with a bound (the memory index).
var (
	capacityDesc = prometheus.NewDesc("kvtrack_index_capacity_entries", "(block, pod, tier) entries the index holds before it evicts.", nil, nil)
	fillDesc     = prometheus.NewDesc("kvtrack_index_fill_ratio", "kvtrack_index_entries over kvtrack_index_capacity_entries: near 1 the index evicts to admit.", nil, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range statsMetrics {
		ch <- m.desc
	}
	if _, ok := c.idx.(capacitor); ok {
		ch <- capacityDesc
		ch <- fillDesc
	}
	c.score.Describe(ch)
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	st, err := c.idx.Stats(ctx)
	for _, m := range statsMetrics {
		if err != nil {
			ch <- prometheus.NewInvalidMetric(m.desc, fmt.Errorf("kvblock: index stats: %w", err))
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
	}
	if cp, ok := c.idx.(capacitor); ok && err == nil && cp.Capacity() > 0 {
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(cp.Capacity()))
		ch <- prometheus.MustNewConstMetric(fillDesc, prometheus.GaugeValue, float64(st.Entries)/float64(cp.Capacity()))
	}
	c.score.Collect(ch)
}

// ErrBadInterval is returned by RunMetricsBeat for a non-positive interval.
var ErrBadInterval = errors.New("kvblock: metrics beat interval must be positive")

// RunMetricsBeat logs one line about idx every interval until ctx ends,
// then returns nil. The line gives the index's size and, since the last
// beat, what it admitted, evicted and removed, and how many lookups hit:
//
//	"index" keys=1024 entries=2048 pods=8 admitted=+64 evicted=+0 removed=+12 lookups=+5120 hit_ratio=0.93
//
// Run it in its own goroutine. A Stats error is logged and the beat goes on.
func RunMetricsBeat(ctx context.Context, log logr.Logger, idx Index, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("%w, got %v", ErrBadInterval, interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last Stats
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err := idx.Stats(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error(err, "index stats")
			continue
		}
		lookups := st.Lookups - last.Lookups
		ratio := 0.0
		if lookups > 0 {
			ratio = float64(st.Hits-last.Hits) / float64(lookups)
		}
		log.Info("index",
			"keys", st.Keys, "entries", st.Entries, "pods", st.Pods,
			"admitted", delta(st.Admissions, last.Admissions),
			"evicted", delta(st.Evictions, last.Evictions),
			"removed", delta(st.Removals, last.Removals),
			"lookups", delta(st.Lookups, last.Lookups),
			"hit_ratio", ratio)
		last = st
	}
}

// delta formats a counter's growth as "+n".
func delta(now, before uint64) string {
	return "+" + strconv.FormatUint(now-before, 10)
}

// AddGroup passes through to the wrapped index; see the AddGroup function.
func (m *MeteredIndex) AddGroup(ctx context.Context, pod Pod, tier Tier, g Group, keys []Key) error {
	return AddGroup(ctx, m.Index, pod, tier, g, keys)
}

// RemoveGroup passes through to the wrapped index; see the RemoveGroup
// function.
func (m *MeteredIndex) RemoveGroup(ctx context.Context, pod Pod, tier Tier, group int, keys []Key) error {
	return RemoveGroup(ctx, m.Index, pod, tier, group, keys)
}
