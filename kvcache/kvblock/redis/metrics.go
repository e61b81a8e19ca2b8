package redis

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// op names one kind of call to the server; it is the "op" label.
type op int

const (
	opAdd op = iota
	opRemove
	opClearPod
	opClear
	opScore
	opStats
	opPing
	numOps
)

var opNames = [numOps]string{"add", "remove", "clear_pod", "clear", "score", "stats", "ping"}

// metrics are the kvtrack_redis_* series. The per-op children are resolved
// once so the hot path only does atomic adds.
type metrics struct {
	roundTrips  [numOps]prometheus.Counter
	errors      [numOps]prometheus.Counter
	duration    [numOps]prometheus.Observer
	scriptLoads prometheus.Counter
	// bytesPerEntry is set by Index.Memory.
	bytesPerEntry prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	roundTrips := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvtrack_redis_round_trips_total",
		Help: "Round trips to the Redis index servers, by operation: a pipeline to one server counts once; in a cluster an operation counts one per node it involves (sent in parallel).",
	}, []string{"op"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvtrack_redis_errors_total",
		Help: "Redis index operations that failed, by operation. A failed score is answered with no data.",
	}, []string{"op"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kvtrack_redis_request_duration_seconds",
		Help:    "Time of one Redis index operation, including every round trip it needed.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"op"})
	scriptLoads := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kvtrack_redis_script_loads_total",
		Help: "Scripts the server did not know (after a restart or SCRIPT FLUSH) and that were sent again in full.",
	})
	bytesPerEntry := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kvtrack_redis_bytes_per_entry",
		Help: "Memory the Redis servers use (INFO used_memory) per (block, pod, tier) entry, as of the last Index.Memory call.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{roundTrips, errs, duration, scriptLoads, bytesPerEntry} {
			if err := reg.Register(c); err != nil {
				// Two Index values on one registry collide: each needs its own.
				return nil, fmt.Errorf("redis index metrics: %w", err)
			}
		}
	}
	m := &metrics{scriptLoads: scriptLoads, bytesPerEntry: bytesPerEntry}
	for o := range numOps {
		m.roundTrips[o] = roundTrips.WithLabelValues(opNames[o])
		m.errors[o] = errs.WithLabelValues(opNames[o])
		m.duration[o] = duration.WithLabelValues(opNames[o])
	}
	return m, nil
}
