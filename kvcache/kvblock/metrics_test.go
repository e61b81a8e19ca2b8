package kvblock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/indextest"
)

var (
	podA = kvblock.Pod{Addr: "10.0.0.1:8000"}
	podB = kvblock.Pod{Addr: "10.0.0.2:8000"}
)

func keys(ks ...kvblock.Key) []kvblock.Key { return ks }

func TestMeteredIndexConformance(t *testing.T) {
	indextest.Run(t, func(t *testing.T) kvblock.Index {
		m, err := kvblock.NewMeteredIndex(newMemIndex(t, kvblock.MemIndexConfig{}), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}

func TestMeteredIndexExportsStatsAndScoreLatency(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	idx, err := kvblock.NewMeteredIndex(newMemIndex(t, kvblock.MemIndexConfig{Shards: 1, Capacity: 4}), reg)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(idx.Add(ctx, podA, kvblock.TierGPU, keys(1, 2, 3)))
	must(idx.Add(ctx, podB, kvblock.TierCPU, keys(1, 2))) // the 5th entry evicts a key
	must(idx.Remove(ctx, podA, kvblock.TierGPU, keys(3))) // gone already, or removed
	for range 3 {
		if _, err := idx.Score(ctx, keys(1, 2, 3), []kvblock.Pod{podA, podB}, nil); err != nil {
			t.Fatal(err)
		}
	}
	st, err := idx.Stats(ctx)
	must(err)
	if st.Evictions == 0 || st.Entries > 4 {
		t.Fatalf("Stats = %+v, want an eviction and at most 4 entries", st)
	}
	// The exported values are the Stats values.
	want := map[string]float64{
		"kvtrack_index_keys":             float64(st.Keys),
		"kvtrack_index_entries":          float64(st.Entries),
		"kvtrack_index_pods":             float64(st.Pods),
		"kvtrack_index_admissions_total": 5,
		"kvtrack_index_evictions_total":  float64(st.Evictions),
		"kvtrack_index_removals_total":   float64(st.Removals),
		"kvtrack_index_lookups_total":    float64(st.Lookups),
		"kvtrack_index_hits_total":       float64(st.Hits),
		"kvtrack_index_capacity_entries": 4,
		"kvtrack_index_fill_ratio":       float64(st.Entries) / 4,
	}
	families, err := reg.Gather()
	must(err)
	got := map[string]float64{}
	var scoreCount uint64
	for _, f := range families {
		m := f.GetMetric()[0]
		switch {
		case f.GetName() == "kvtrack_index_lookup_duration_seconds":
			scoreCount = m.GetHistogram().GetSampleCount()
		case m.GetGauge() != nil:
			got[f.GetName()] = m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			got[f.GetName()] = m.GetCounter().GetValue()
		}
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("exported %d stats metrics %v, want %d", len(got), got, len(want))
	}
	if scoreCount != 3 {
		t.Errorf("score histogram counted %d observations, want 3", scoreCount)
	}
	problems, err := testutil.GatherAndLint(reg)
	must(err)
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

func TestNewMeteredIndexRejectsASecondIndexOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := kvblock.NewMeteredIndex(newMemIndex(t, kvblock.MemIndexConfig{}), reg); err != nil {
		t.Fatal(err)
	}
	_, err := kvblock.NewMeteredIndex(newMemIndex(t, kvblock.MemIndexConfig{}), reg)
	var already prometheus.AlreadyRegisteredError
	if !errors.As(err, &already) {
		t.Fatalf("second NewMeteredIndex on one registry: err = %v, want an AlreadyRegisteredError", err)
	}
}

// failingStats is an index whose Stats fails, as a remote index's can.
type failingStats struct{ kvblock.Index }

var errStats = errors.New("stats backend down")

func (failingStats) Stats(context.Context) (kvblock.Stats, error) { return kvblock.Stats{}, errStats }

func TestScrapeReportsStatsFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := kvblock.NewMeteredIndex(failingStats{newMemIndex(t, kvblock.MemIndexConfig{})}, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), errStats.Error()) {
		t.Fatalf("Gather error = %v, want one mentioning %q", err, errStats)
	}
}

// lineLogger returns a logger that sends each formatted line to a channel,
// waiting for a reader until ctx ends.
func lineLogger(ctx context.Context) (logr.Logger, <-chan string) {
	lines := make(chan string)
	return funcr.New(func(prefix, args string) {
		select {
		case lines <- args:
		case <-ctx.Done():
		}
	}, funcr.Options{}), lines
}

func TestRunMetricsBeatLogsDeltasUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idx := newMemIndex(t, kvblock.MemIndexConfig{})
	if err := idx.Add(ctx, podA, kvblock.TierGPU, keys(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	log, lines := lineLogger(ctx)
	done := make(chan error, 1)
	go func() { done <- kvblock.RunMetricsBeat(ctx, log, idx, time.Millisecond) }()

	first := <-lines
	for _, want := range []string{`"msg"="index"`, `"keys"=3`, `"entries"=3`, `"pods"=1`, `"admitted"="+3"`, `"lookups"="+0"`} {
		if !strings.Contains(first, want) {
			t.Errorf("first beat %s lacks %s", first, want)
		}
	}
	// Later beats report growth since the previous one.
	if _, err := idx.Score(ctx, keys(1, 2, 3, 4), []kvblock.Pod{podA}, nil); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		if strings.Contains(line, `"lookups"="+4"`) {
			if !strings.Contains(line, `"admitted"="+0"`) || !strings.Contains(line, `"hit_ratio"=0.75`) {
				t.Errorf("beat after a score = %s, want admitted +0 and hit_ratio 0.75", line)
			}
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunMetricsBeat after cancel = %v, want nil", err)
	}
}

func TestRunMetricsBeatRejectsNonPositiveInterval(t *testing.T) {
	log, _ := lineLogger(context.Background())
	for _, d := range []time.Duration{0, -time.Second} {
		err := kvblock.RunMetricsBeat(context.Background(), log, newMemIndex(t, kvblock.MemIndexConfig{}), d)
		if !errors.Is(err, kvblock.ErrBadInterval) {
			t.Errorf("RunMetricsBeat(interval %v) = %v, want ErrBadInterval", d, err)
		}
	}
}
