package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

const (
	// writeChunk bounds the keys one add or remove script call carries, so a
	// huge batch does not hold the single-threaded server for long; a prompt
	// of up to writeChunk blocks (64k tokens in 16-token blocks) is one round
	// trip.
	writeChunk = 4096
	// clearBatch bounds the entries one ClearPod script call drops.
	clearBatch = 10000
	// expireBatch bounds the stale entries one add drops per pod it expires.
	expireBatch = 1000
	// maxPodName is the longest pod name a score request can carry (its
	// length travels in two bytes).
	maxPodName = math.MaxUint16
)

// Index is a kvblock.Index kept in Redis, shared by every Index value (in
// any process) configured with the same server, database and key prefix.
//
// Each Add, Remove and Score of a prompt is one server-side script call,
// whatever the number of keys (up to writeChunk keys per call for writes).
// Writes are not retried: the scripts count references, and a retry after a
// lost reply could apply a store twice. A failed call returns an error and
// is counted in kvtrack_redis_errors_total; a failed Score still appends a
// zero score per candidate ("no data"), so a caller that degrades on error
// can use the result as is.
//
// When several replicas share one server, each pod's events must be applied
// by exactly one of them, or references are counted once per replica.
//
// Index is safe for concurrent use.
type Index struct {
	client     *goredis.Client
	prefix     string
	ttlMillis  int64
	weightArgs []any // number of weights, then (tier name, weight) pairs
	m          *metrics

	// Score's counters are this value's own; the other Stats are shared.
	lookups atomic.Uint64
	hits    atomic.Uint64

	bufs sync.Pool // *[]byte request buffers
}

var _ kvblock.Index = (*Index)(nil)

// Option configures New.
type Option func(*options)

type options struct {
	reg     prometheus.Registerer
	weights kvblock.TierWeights
}

// WithRegisterer registers the index's kvtrack_redis_* metrics on reg.
// Without it the metrics are kept but not exported.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// WithTierWeights sets the weights Score uses for PodScore.Weighted; the
// default is kvblock.DefaultTierWeights.
func WithTierWeights(w kvblock.TierWeights) Option {
	return func(o *options) { o.weights = w }
}

// New validates cfg and returns an Index on the server it names. It does not
// connect: the first operation does, so a replica can start while Redis is
// down. Call Ping to check the server, and Close when done.
func New(cfg Config, opts ...Option) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.weights == nil {
		o.weights = kvblock.DefaultTierWeights()
	}
	names := make([]string, 0, len(o.weights))
	for name, w := range o.weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("redis index: tier weight %q is %v; want a finite number", name, w)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	weightArgs := make([]any, 0, 1+2*len(names))
	weightArgs = append(weightArgs, len(names))
	for _, name := range names {
		// 'g' with -1 precision round-trips: Lua's tonumber reads back the
		// same float64, so weighted sums match the in-memory index's bits.
		weightArgs = append(weightArgs, name, strconv.FormatFloat(o.weights[name], 'g', -1, 64))
	}

	copts, err := cfg.clientOptions()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.reg)
	if err != nil {
		return nil, err
	}
	return &Index{
		client:     goredis.NewClient(copts),
		prefix:     cfg.KeyPrefix,
		ttlMillis:  time.Duration(cfg.TTL).Milliseconds(),
		weightArgs: weightArgs,
		m:          m,
	}, nil
}

// Close closes the connections.
func (ix *Index) Close() error { return ix.client.Close() }

// Ping checks that the server answers.
func (ix *Index) Ping(ctx context.Context) error {
	start := time.Now()
	ix.m.roundTrips[opPing].Inc()
	err := ix.client.Ping(ctx).Err()
	ix.done(opPing, start, err)
	if err != nil {
		return fmt.Errorf("redis index: ping: %w", err)
	}
	return nil
}

// Add records that pod holds keys on tier, one reference per key.
func (ix *Index) Add(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	return ix.write(ctx, opAdd, addScript, pod, tier, keys)
}

// Remove drops one reference to each (key, pod, tier).
func (ix *Index) Remove(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	return ix.write(ctx, opRemove, removeScript, pod, tier, keys)
}

func (ix *Index) write(ctx context.Context, o op, s *script, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	if len(keys) == 0 {
		return nil
	}
	start := time.Now()
	name, tierName := podName(pod), tier.String()
	buf := ix.buffer()
	defer ix.bufs.Put(buf)
	var err error
	for lo := 0; lo < len(keys) && err == nil; lo += writeChunk {
		*buf = appendKeys((*buf)[:0], keys[lo:min(lo+writeChunk, len(keys))])
		if o == opAdd {
			_, err = ix.run(ctx, o, s, ix.prefix, name, tierName, *buf, ix.ttlMillis, expireBatch)
		} else {
			_, err = ix.run(ctx, o, s, ix.prefix, name, tierName, *buf)
		}
	}
	ix.done(o, start, err)
	if err != nil {
		return fmt.Errorf("redis index: %s %d keys of %s on %s: %w", opNames[o], len(keys), pod, tier, err)
	}
	return nil
}

// ClearPod drops every entry of pod, in calls of at most clearBatch entries.
func (ix *Index) ClearPod(ctx context.Context, pod kvblock.Pod) error {
	start := time.Now()
	err := ix.clearPod(ctx, opClearPod, podName(pod))
	ix.done(opClearPod, start, err)
	if err != nil {
		return fmt.Errorf("redis index: clear %s: %w", pod, err)
	}
	return nil
}

func (ix *Index) clearPod(ctx context.Context, o op, name string) error {
	for {
		res, err := ix.run(ctx, o, clearScript, ix.prefix, name, clearBatch)
		if err != nil {
			return err
		}
		left, ok := res.(int64)
		if !ok {
			return fmt.Errorf("unexpected reply %T from the clear script", res)
		}
		if left == 0 {
			return nil
		}
	}
}

// Clear drops every entry of every pod: one ClearPod per pod, so it keeps
// the counters exact and never blocks the server for long. Entries stored
// concurrently with Clear may survive it.
func (ix *Index) Clear(ctx context.Context) error {
	start := time.Now()
	ix.m.roundTrips[opClear].Inc()
	names, err := ix.client.HKeys(ctx, ix.prefix+"pods").Result()
	for _, name := range names {
		if err != nil {
			break
		}
		err = ix.clearPod(ctx, opClear, name)
	}
	ix.done(opClear, start, err)
	if err != nil {
		return fmt.Errorf("redis index: clear: %w", err)
	}
	return nil
}

// Score appends one PodScore per candidate to dst, in candidate order. On
// error it still appends them, all zero: no data rather than a guess.
func (ix *Index) Score(ctx context.Context, keys []kvblock.Key, candidates []kvblock.Pod, dst []kvblock.PodScore) ([]kvblock.PodScore, error) {
	base := len(dst)
	for _, c := range candidates {
		dst = append(dst, kvblock.PodScore{Pod: c})
	}
	if len(keys) == 0 || len(candidates) == 0 {
		return dst, nil
	}
	start := time.Now()
	err := ix.score(ctx, keys, candidates, dst[base:])
	ix.done(opScore, start, err)
	if err != nil {
		clear(dst[base:])
		for i, c := range candidates {
			dst[base+i].Pod = c
		}
		return dst, fmt.Errorf("redis index: score %d keys for %d candidates: %w", len(keys), len(candidates), err)
	}
	return dst, nil
}

func (ix *Index) score(ctx context.Context, keys []kvblock.Key, candidates []kvblock.Pod, out []kvblock.PodScore) error {
	kb, cb := ix.buffer(), ix.buffer()
	defer ix.bufs.Put(kb)
	defer ix.bufs.Put(cb)
	*kb = appendKeys((*kb)[:0], keys)
	*cb = (*cb)[:0]
	for _, c := range candidates {
		n := len(c.Addr) + 1 + 20 // '#', rank digits
		if n > maxPodName {
			return fmt.Errorf("candidate address of %d bytes is longer than %d", len(c.Addr), maxPodName-21)
		}
		at := len(*cb)
		*cb = append(*cb, 0, 0)
		*cb = appendPodName(*cb, c)
		binary.BigEndian.PutUint16((*cb)[at:], uint16(len(*cb)-at-2))
	}
	args := make([]any, 0, 3+len(ix.weightArgs))
	args = append(args, ix.prefix, *kb, *cb)
	args = append(args, ix.weightArgs...)
	res, err := ix.run(ctx, opScore, scoreScript, args...)
	if err != nil {
		return err
	}
	reply, ok := res.([]any)
	if !ok || len(reply) != 2+2*len(out) {
		return fmt.Errorf("unexpected reply from the score script: %T of %d values for %d candidates", res, len(reply), len(out))
	}
	walked, ok1 := reply[0].(int64)
	hits, ok2 := reply[1].(int64)
	if !ok1 || !ok2 || walked < 0 || hits < 0 {
		return errors.New("unexpected counters in the reply of the score script")
	}
	for i := range out {
		matched, ok1 := reply[2+2*i].(int64)
		weighted, ok2 := reply[3+2*i].(string)
		w, err := strconv.ParseFloat(weighted, 64)
		if !ok1 || !ok2 || err != nil || matched < 0 || matched > int64(len(keys)) {
			return fmt.Errorf("unexpected score %v/%v in the reply of the score script", reply[2+2*i], reply[3+2*i])
		}
		out[i].Matched, out[i].Weighted = int(matched), w
	}
	ix.lookups.Add(uint64(walked))
	ix.hits.Add(uint64(hits))
	return nil
}

// Stats reports the shared index's size and write counters (all replicas
// together) and this Index value's own Lookups and Hits. One round trip.
func (ix *Index) Stats(ctx context.Context) (kvblock.Stats, error) {
	start := time.Now()
	ix.m.roundTrips[opStats].Inc()
	pipe := ix.client.Pipeline()
	counters := pipe.HMGet(ctx, ix.prefix+"stats", "keys", "entries", "admissions", "evictions", "removals")
	pods := pipe.HLen(ctx, ix.prefix+"pods")
	_, err := pipe.Exec(ctx)
	ix.done(opStats, start, err)
	if err != nil {
		return kvblock.Stats{}, fmt.Errorf("redis index: stats: %w", err)
	}
	var v [5]int64
	for i, x := range counters.Val() {
		s, ok := x.(string)
		if !ok {
			continue // absent: still zero
		}
		if v[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return kvblock.Stats{}, fmt.Errorf("redis index: stats: counter %d is %q: %w", i, s, err)
		}
	}
	return kvblock.Stats{
		Keys:       v[0],
		Entries:    v[1],
		Pods:       pods.Val(),
		Admissions: uint64(max(v[2], 0)),
		Evictions:  uint64(max(v[3], 0)),
		Removals:   uint64(max(v[4], 0)),
		Lookups:    ix.lookups.Load(),
		Hits:       ix.hits.Load(),
	}, nil
}

// run calls s by digest, sending its source when the server lacks it.
func (ix *Index) run(ctx context.Context, o op, s *script, args ...any) (any, error) {
	ix.m.roundTrips[o].Inc()
	res, err := ix.client.EvalSha(ctx, s.sha, nil, args...).Result()
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// NOSCRIPT means the script did not run, so sending it is safe.
		ix.m.scriptLoads.Inc()
		ix.m.roundTrips[o].Inc()
		res, err = ix.client.Eval(ctx, s.src, nil, args...).Result()
	}
	if err != nil {
		return nil, fmt.Errorf("%s script: %w", s.name, err)
	}
	return res, nil
}

func (ix *Index) done(o op, start time.Time, err error) {
	ix.m.duration[o].Observe(time.Since(start).Seconds())
	if err != nil {
		ix.m.errors[o].Inc()
	}
}

func (ix *Index) buffer() *[]byte {
	if b, ok := ix.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

// appendKeys appends each key as 8 big-endian bytes.
func appendKeys(dst []byte, keys []kvblock.Key) []byte {
	for _, k := range keys {
		dst = binary.BigEndian.AppendUint64(dst, uint64(k))
	}
	return dst
}

// podName is the pod's name in the server: "<addr>#<rank>". Splitting at the
// last '#' recovers both parts, so distinct pods never share a name.
func podName(p kvblock.Pod) string {
	return string(appendPodName(make([]byte, 0, len(p.Addr)+4), p))
}

func appendPodName(dst []byte, p kvblock.Pod) []byte {
	dst = append(dst, p.Addr...)
	dst = append(dst, '#')
	return strconv.AppendInt(dst, int64(p.Rank), 10)
}
