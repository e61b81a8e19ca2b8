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
	// of up to writeChunk blocks (64k tokens in 16-token blocks) is one call
	// per group.
	writeChunk = 4096
	// clearKeys bounds the logged keys one ClearPod or Clear script call
	// drains (whole batches: the last may go over).
	clearKeys = 4096
	// minExpireKeys is the fewest logged keys an add may expire; one that
	// stores more may expire twice the keys it stores, so expiry keeps up.
	minExpireKeys = 512
	// maxPodID is the largest pod id a 3-byte record holds.
	maxPodID = 1<<24 - 1
	// recordSize is the size of one (pod, tier, epoch) record in a block.
	recordSize = 5
)

// Index is a kvblock.Index kept in Redis, shared by every Index value (in
// any process) configured with the same server (or cluster), database and
// key prefix.
//
// Add and Remove of a prompt are one script call per group the keys fall in
// (one group standalone), sent in one pipeline; Score is one MGET per group,
// pipelined, with the walk done here. Writes are not retried: the scripts
// count references, and a retry after a lost reply could apply a store
// twice. A failed call returns an error (the index may then hold part of
// the batch, until the pod is cleared or its entries expire) and is counted
// in kvtrack_redis_errors_total; a failed Score still appends a zero score
// per candidate ("no data"), so a caller that degrades on error can use the
// result as is.
//
// When several replicas share one server, each pod's events must be applied
// by exactly one of them, or references are counted once per replica.
//
// Index is safe for concurrent use.
type Index struct {
	client  goredis.UniversalClient
	cluster *goredis.ClusterClient // nil standalone
	meta    string                 // M: "<prefix>{m}"
	groups  []string               // G of each group: "<prefix>{g}"
	stats   []string               // each group's counters key, G+"s"
	nb      uint32                 // buckets per group
	nbArg   string                 // nb, as the scripts take it

	ttlMillis   int64
	epochMillis int64
	// ownTTL is the TTL in ms of the tiers that have one of their own
	// (WithTierTTL); ownNames lists them, in the order intern asks for
	// their ids.
	ownTTL   map[string]int64
	ownNames []string
	// widths is the epoch length in ms of the tiers without a TTL of their
	// own, then of each of ownNames: expiry needs every log's current
	// epoch.
	widths  []any
	weights kvblock.TierWeights
	media   *kvblock.Media // names tiers in the registry: numbers stay local to a process
	m       *metrics

	reloading atomic.Bool // a cluster topology reload is under way

	// Score's counters are this value's own; the other Stats are shared.
	lookups atomic.Uint64
	hits    atomic.Uint64

	// Ids never change once the server assigned them, so they are cached
	// for good.
	mu      sync.RWMutex
	gen     string // the registry generation the cached ids belong to
	podIDs  map[string]uint32
	tierIDs map[string]uint8

	bufs    sync.Pool // *[]byte request buffers
	scratch sync.Pool // *scoreScratch
}

// tierTable is the weight of each tier id.
type tierTable struct {
	weight [256]float64
}

var _ kvblock.Index = (*Index)(nil)

// Option configures New.
type Option func(*options)

type options struct {
	reg     prometheus.Registerer
	weights kvblock.TierWeights
	tierTTL map[string]time.Duration
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

// WithTierTTL gives the entries stored on tier (a medium name, such as
// "SPECULATIVE") a TTL of their own instead of Config.TTL, so that they
// expire in Redis even when the replica that wrote them is gone. Like
// Config.TTL, expiry is coarse (between ttl and 1.25 ttl after the last
// store) and runs on the write path: the first write to an entry's group
// by any client after that drops it. Every replica sharing the index must
// give the same tiers the same TTLs. A ttl of 0 or less is ignored.
func WithTierTTL(tier string, ttl time.Duration) Option {
	return func(o *options) {
		if ttl <= 0 {
			return
		}
		if o.tierTTL == nil {
			o.tierTTL = map[string]time.Duration{}
		}
		o.tierTTL[tier] = ttl
	}
}

// New validates cfg and returns an Index on the server it names. It does not
// connect: the first operation does, so a replica can start while Redis is
// down. Call Ping to check the server, and Close when done.
func New(cfg Config, opts ...Option) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis index: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.weights == nil {
		o.weights = kvblock.DefaultTierWeights()
	}
	if err := o.weights.Validate(); err != nil {
		return nil, fmt.Errorf("redis index: tier weights: %w", err)
	}
	for name, w := range o.weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("redis index: tier weight %q is %v; want a finite number", name, w)
		}
	}
	client, err := cfg.newClient()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.reg)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	ix := &Index{
		client:    client,
		meta:      cfg.KeyPrefix + "{m}",
		ttlMillis: time.Duration(cfg.TTL).Milliseconds(),
		weights:   o.weights,
		media:     o.weights.Media(),
		m:         m,
		podIDs:    map[string]uint32{},
		tierIDs:   map[string]uint8{},
		ownTTL:    map[string]int64{},
	}
	for name, ttl := range o.tierTTL {
		ix.ownTTL[name] = max(1, ttl.Milliseconds())
		ix.ownNames = append(ix.ownNames, name)
	}
	slices.Sort(ix.ownNames)
	ix.cluster, _ = client.(*goredis.ClusterClient)
	if ix.ttlMillis > 0 {
		ix.epochMillis = epochOf(ix.ttlMillis)
	}
	ix.widths = []any{ix.epochMillis}
	for _, name := range ix.ownNames {
		ix.widths = append(ix.widths, epochOf(ix.ownTTL[name]))
	}
	ng := cfg.Cluster.groups()
	ix.nb = uint32(max(1, (cfg.Buckets+ng-1)/ng))
	ix.nbArg = strconv.FormatUint(uint64(ix.nb), 10)
	for g := range ng {
		gp := cfg.KeyPrefix + "{" + strconv.Itoa(g) + "}"
		ix.groups = append(ix.groups, gp)
		ix.stats = append(ix.stats, gp+"s")
	}
	return ix, nil
}

// epochOf is the epoch length of a TTL, both in ms: a quarter of it.
func epochOf(ttl int64) int64 { return max(1, ttl/4) }

// Close closes the connections.
func (ix *Index) Close() error { return ix.client.Close() }

// Ping checks that the server (every master of a cluster) answers.
func (ix *Index) Ping(ctx context.Context) error {
	start := time.Now()
	ix.m.roundTrips[opPing].Inc()
	var err error
	if ix.cluster != nil {
		err = ix.cluster.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = ix.client.Ping(ctx).Err()
	}
	ix.done(opPing, start, err)
	if err != nil {
		return fmt.Errorf("redis index: ping: %w", err)
	}
	return nil
}

// Add records that pod holds keys on tier, one reference per key.
func (ix *Index) Add(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	return ix.write(ctx, opAdd, pod, tier, keys)
}

// Remove drops one reference to each (key, pod, tier).
func (ix *Index) Remove(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	return ix.write(ctx, opRemove, pod, tier, keys)
}

func (ix *Index) write(ctx context.Context, o op, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	if len(keys) == 0 {
		return nil
	}
	start := time.Now()
	err := ix.writeKeys(ctx, o, pod, tier, keys)
	ix.done(o, start, err)
	if err != nil {
		return fmt.Errorf("redis index: %s %d keys of %s on %s: %w", opNames[o], len(keys), pod, ix.media.Name(tier), err)
	}
	return nil
}

func (ix *Index) writeKeys(ctx context.Context, o op, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	name, tierName := podName(pod), ix.media.Name(tier)
	var pid uint32
	var tid uint8
	var own string
	var err error
	if o == opAdd {
		pid, tid, own, err = ix.intern(ctx, o, name, tierName)
		if err != nil {
			return err
		}
	} else {
		var ok bool
		if pid, tid, ok = ix.cachedIDs(name, tierName); !ok {
			// Ids unknown here: look them up without creating any; a pod or
			// tier the server never saw holds nothing to remove.
			if pid, tid, ok, err = ix.lookupIDs(ctx, o, name, tierName); err != nil || !ok {
				return err
			}
		}
	}
	var pb [4]byte
	binary.BigEndian.PutUint32(pb[:], pid)
	pidStr := strconv.FormatUint(uint64(pid), 10)
	buf := ix.buffer()
	defer ix.bufs.Put(buf)
	var calls []call
	for lo := 0; lo < len(keys); lo += writeChunk {
		chunk := keys[lo:min(lo+writeChunk, len(keys))]
		*buf = ix.appendByGroup((*buf)[:0], chunk)
		for g, part := range ix.splitGroups(*buf, chunk) {
			if len(part) == 0 {
				continue
			}
			// Room for the add script's arguments and a bucket name per key.
			args := make([]any, 0, 11+len(ix.widths)+len(part)/8)
			args = append(args, ix.groups[g], ix.nbArg, pidStr, string(pb[1:]), string([]byte{tid}), string(part))
			s := removeScript
			if o == opAdd {
				s = addScript
				width, ttl, ownID := ix.epochMillis, ix.ttlMillis, 0
				if t, ok := ix.ownTTL[tierName]; ok {
					width, ttl, ownID = epochOf(t), t, int(tid)
				}
				stored := len(part) / 8
				args = append(args, width, ttl, ownID, max(minExpireKeys, 2*stored), own)
				args = append(args, ix.widths...)
			}
			args = ix.appendBucketNames(args, g, part)
			calls = append(calls, call{s: s, key: ix.stats[g], args: args})
		}
	}
	_, err = ix.runAll(ctx, o, calls)
	return err
}

// ClearPod drops every entry of pod, in calls of bounded work.
func (ix *Index) ClearPod(ctx context.Context, pod kvblock.Pod) error {
	start := time.Now()
	err := ix.clearPod(ctx, pod)
	ix.done(opClearPod, start, err)
	if err != nil {
		return fmt.Errorf("redis index: clear %s: %w", pod, err)
	}
	return nil
}

func (ix *Index) clearPod(ctx context.Context, pod kvblock.Pod) error {
	pid, _, ok, err := ix.lookupIDs(ctx, opClearPod, podName(pod), "")
	if err != nil || !ok {
		return err
	}
	id := strconv.FormatUint(uint64(pid), 10)
	return ix.drainGroups(ctx, opClearPod, func(g int) call {
		return call{s: clearPodScript, key: ix.stats[g], args: []any{ix.groups[g], ix.nbArg, id, clearKeys}}
	})
}

// Clear drops every entry of every pod, in calls of bounded work, so it
// keeps the counters exact and never blocks the server for long. Entries
// stored concurrently with Clear may survive it.
func (ix *Index) Clear(ctx context.Context) error {
	start := time.Now()
	err := ix.drainGroups(ctx, opClear, func(g int) call {
		return call{s: clearScript, key: ix.stats[g], args: []any{ix.groups[g], ix.nbArg, clearKeys}}
	})
	ix.done(opClear, start, err)
	if err != nil {
		return fmt.Errorf("redis index: clear: %w", err)
	}
	return nil
}

// drainGroups runs mk's call on every group, and again on each group whose
// call reported work left, until none does.
func (ix *Index) drainGroups(ctx context.Context, o op, mk func(g int) call) error {
	pending := make([]int, len(ix.groups))
	for g := range pending {
		pending[g] = g
	}
	for len(pending) > 0 {
		calls := make([]call, len(pending))
		for i, g := range pending {
			calls[i] = mk(g)
		}
		res, err := ix.runAll(ctx, o, calls)
		if err != nil {
			return err
		}
		next := pending[:0]
		for i, g := range pending {
			left, ok := res[i].(int64)
			if !ok {
				return fmt.Errorf("unexpected reply %T from the %s script", res[i], calls[i].s.name)
			}
			if left > 0 {
				next = append(next, g)
			}
		}
		pending = next
	}
	return nil
}

// Stats reports the shared index's size and write counters (all replicas
// together) and this Index value's own Lookups and Hits. One round trip
// (one per node in a cluster, in parallel).
func (ix *Index) Stats(ctx context.Context) (kvblock.Stats, error) {
	start := time.Now()
	st, err := ix.readStats(ctx)
	ix.done(opStats, start, err)
	if err != nil {
		return kvblock.Stats{}, fmt.Errorf("redis index: stats: %w", err)
	}
	st.Lookups, st.Hits = ix.lookups.Load(), ix.hits.Load()
	return st, nil
}

func (ix *Index) readStats(ctx context.Context) (kvblock.Stats, error) {
	ix.m.roundTrips[opStats].Add(float64(ix.nodes(ctx, ix.stats)))
	pipe := ix.client.Pipeline()
	counters := make([]*goredis.SliceCmd, len(ix.groups))
	pods := make([]*goredis.StringSliceCmd, len(ix.groups))
	for g := range ix.groups {
		counters[g] = pipe.HMGet(ctx, ix.stats[g], "keys", "entries", "admissions", "evictions", "removals")
		pods[g] = pipe.HKeys(ctx, ix.groups[g]+"pc")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return kvblock.Stats{}, err
	}
	var v [5]int64
	podSet := map[string]struct{}{}
	for g := range ix.groups {
		for i, x := range counters[g].Val() {
			s, ok := x.(string)
			if !ok {
				continue // absent: still zero
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return kvblock.Stats{}, fmt.Errorf("counter %d of group %d is %q: %w", i, g, s, err)
			}
			v[i] += n
		}
		for _, p := range pods[g].Val() {
			podSet[p] = struct{}{}
		}
	}
	return kvblock.Stats{
		Keys:       v[0],
		Entries:    v[1],
		Pods:       int64(len(podSet)),
		Admissions: uint64(max(v[2], 0)),
		Evictions:  uint64(max(v[3], 0)),
		Removals:   uint64(max(v[4], 0)),
	}, nil
}

// call is one script call on the group (or registry) key names.
type call struct {
	s    *script
	key  string
	args []any
}

// runAll sends calls in one pipeline (one round trip per node involved, in
// parallel) by digest, and sends the source of those the server lacked in a
// second one. It returns the replies in order, or the first error.
func (ix *Index) runAll(ctx context.Context, o op, calls []call) ([]any, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	keys := make([]string, len(calls))
	for i, c := range calls {
		keys[i] = c.key
	}
	ix.m.roundTrips[o].Add(float64(ix.nodes(ctx, keys)))
	cmds := make([]*goredis.Cmd, len(calls))
	pipe := ix.client.Pipeline()
	for i, c := range calls {
		cmds[i] = pipe.EvalSha(ctx, c.s.sha, []string{c.key}, c.args...)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	var again []int
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			// NOSCRIPT means the script did not run, so sending it is safe.
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		ix.m.scriptLoads.Add(float64(len(again)))
		retry := make([]string, len(again))
		for j, i := range again {
			retry[j] = keys[i]
		}
		ix.m.roundTrips[o].Add(float64(ix.nodes(ctx, retry)))
		pipe := ix.client.Pipeline()
		for _, i := range again {
			cmds[i] = pipe.Eval(ctx, calls[i].s.src, []string{calls[i].key}, calls[i].args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	res := make([]any, len(cmds))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("%s script: %w", calls[i].s.name, err)
		}
		res[i] = v
	}
	return res, nil
}

// nodes is the number of servers a pipeline on keys goes to: the round
// trips it costs, made in parallel.
func (ix *Index) nodes(ctx context.Context, keys []string) int {
	if ix.cluster == nil {
		return 1
	}
	seen := make(map[*goredis.Client]struct{}, 4)
	for _, k := range keys {
		c, err := ix.cluster.MasterForKey(ctx, k)
		if err != nil {
			return max(1, len(seen))
		}
		seen[c] = struct{}{}
	}
	return max(1, len(seen))
}

// cachedIDs returns the ids of a pod and a tier when both are cached.
func (ix *Index) cachedIDs(name, tierName string) (uint32, uint8, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	pid, ok1 := ix.podIDs[name]
	tid, ok2 := ix.tierIDs[tierName]
	return pid, tid, ok1 && ok2
}

// cachedOwn returns the ids of the tiers with TTLs of their own, a byte
// each, when all are cached.
func (ix *Index) cachedOwn() (string, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ids := make([]byte, len(ix.ownNames))
	for i, n := range ix.ownNames {
		id, ok := ix.tierIDs[n]
		if !ok {
			return "", false
		}
		ids[i] = id
	}
	return string(ids), true
}

// intern returns the ids of a pod and a tier, and those of the tiers with
// TTLs of their own (a byte each), asking the server to assign them on
// first sight.
func (ix *Index) intern(ctx context.Context, o op, name, tierName string) (uint32, uint8, string, error) {
	if pid, tid, ok := ix.cachedIDs(name, tierName); ok {
		if own, ok := ix.cachedOwn(); ok {
			return pid, tid, own, nil
		}
	}
	args := append([]any{ix.meta, ix.nbArg, name, tierName}, toAny(ix.ownNames)...)
	res, err := ix.runAll(ctx, o, []call{{s: internScript, key: ix.meta + "pods", args: args}})
	if err != nil {
		return 0, 0, "", err
	}
	ids, ok := res[0].([]any)
	if !ok || len(ids) != 3+len(ix.ownNames) {
		return 0, 0, "", fmt.Errorf("unexpected reply %v from the intern script", res[0])
	}
	pid, ok1 := ids[0].(int64)
	gen, ok2 := ids[1].(string)
	if !ok1 || !ok2 || pid < 1 || pid > maxPodID {
		return 0, 0, "", fmt.Errorf("unexpected ids %v from the intern script", ids)
	}
	tids := make([]uint8, len(ids)-2)
	for i, v := range ids[2:] {
		t, ok := v.(int64)
		if !ok || t < 1 || t > 255 {
			return 0, 0, "", fmt.Errorf("unexpected tier ids %v from the intern script", ids[2:])
		}
		tids[i] = uint8(t)
	}
	ix.mu.Lock()
	ix.setGen(gen)
	ix.podIDs[name] = uint32(pid)
	ix.tierIDs[tierName] = tids[0]
	for i, n := range ix.ownNames {
		ix.tierIDs[n] = tids[1+i]
	}
	ix.mu.Unlock()
	return uint32(pid), tids[0], string(tids[1:]), nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// lookupIDs reads the ids of a pod and a tier (tierName "" to skip it)
// without assigning any; ok is false when the server has none.
func (ix *Index) lookupIDs(ctx context.Context, o op, name, tierName string) (pid uint32, tid uint8, ok bool, err error) {
	ix.m.roundTrips[o].Add(float64(ix.nodes(ctx, []string{ix.meta + "pods"})))
	pipe := ix.client.Pipeline()
	gc := pipe.Get(ctx, ix.meta+"gen")
	pc := pipe.HGet(ctx, ix.meta+"pods", name)
	var tc *goredis.StringCmd
	if tierName != "" {
		tc = pipe.HGet(ctx, ix.meta+"tiers", tierName)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if errors.Is(err, goredis.Nil) {
			return 0, 0, false, nil
		}
		return 0, 0, false, err
	}
	p, err := pc.Uint64()
	if err != nil || p < 1 || p > maxPodID {
		return 0, 0, false, fmt.Errorf("pod id %q of %s: want 1..%d", pc.Val(), name, maxPodID)
	}
	if tc != nil {
		t, err := tc.Uint64()
		if err != nil || t < 1 || t > 255 {
			return 0, 0, false, fmt.Errorf("tier id %q of %s: want 1..255", tc.Val(), tierName)
		}
		tid = uint8(t)
		ix.remember(gc.Val(), name, uint32(p), tierName, tid)
	}
	return uint32(p), tid, true, nil
}

// remember caches ids read under registry generation gen.
func (ix *Index) remember(gen, name string, pid uint32, tierName string, tid uint8) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.setGen(gen)
	ix.podIDs[name] = pid
	ix.tierIDs[tierName] = tid
}

// setGen voids the cached ids unless they belong to gen. ix.mu is held.
func (ix *Index) setGen(gen string) {
	if gen != ix.gen || gen == "" {
		ix.gen = gen
		clear(ix.podIDs)
		clear(ix.tierIDs)
	}
}

func (ix *Index) done(o op, start time.Time, err error) {
	ix.m.duration[o].Observe(time.Since(start).Seconds())
	if err != nil {
		ix.m.errors[o].Inc()
		// The server may have restarted and lost its registries: ask it
		// for ids again rather than write under ids it has forgotten.
		ix.mu.Lock()
		ix.setGen("")
		ix.mu.Unlock()
		ix.reloadTopology()
	}
}

// reloadTopology has a cluster client read the slot map again after a
// failure, in the background and one reload at a time: after a failover
// the client otherwise keeps sending to the dead master until its own
// periodic refresh.
func (ix *Index) reloadTopology() {
	if ix.cluster == nil || !ix.reloading.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer ix.reloading.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ix.cluster.ReloadState(ctx)
	}()
}

func (ix *Index) buffer() *[]byte {
	if b, ok := ix.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

// bucketName is the name of the bucket in group g that holds keys whose
// low 32 bits are low. The scripts name buckets the same way (bucket, in
// the Lua prelude).
func (ix *Index) bucketName(g int, low uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], low%ix.nb)
	return ix.groups[g] + "k" + string(b[:])
}

// appendBucketNames appends the bucket name of each key in part (8 bytes
// each) of group g: the write scripts take them rather than make them,
// which costs a script more than receiving them. The names share one
// allocation.
func (ix *Index) appendBucketNames(args []any, g int, part []byte) []any {
	prefix := ix.groups[g] + "k"
	size := len(prefix) + 4
	buf := make([]byte, 0, len(part)/8*size)
	for i := 0; i+8 <= len(part); i += 8 {
		buf = append(buf, prefix...)
		buf = binary.BigEndian.AppendUint32(buf, binary.BigEndian.Uint32(part[i+4:])%ix.nb)
	}
	names := string(buf)
	for at := 0; at < len(names); at += size {
		args = append(args, names[at:at+size])
	}
	return args
}

// group is the group a key belongs to.
func (ix *Index) group(k kvblock.Key) int {
	if len(ix.groups) == 1 {
		return 0
	}
	// Keys are hashes already; the multiply spreads sequential test keys.
	return int((uint64(k) * 0x9E3779B97F4A7C15 >> 32) % uint64(len(ix.groups)))
}

// appendByGroup appends keys as 8 big-endian bytes each, grouped by group
// in group order; splitGroups cuts the result into the groups' parts.
func (ix *Index) appendByGroup(dst []byte, keys []kvblock.Key) []byte {
	if len(ix.groups) == 1 {
		for _, k := range keys {
			dst = binary.BigEndian.AppendUint64(dst, uint64(k))
		}
		return dst
	}
	counts := make([]int, len(ix.groups)+1)
	for _, k := range keys {
		counts[ix.group(k)+1]++
	}
	for g := 1; g < len(counts); g++ {
		counts[g] += counts[g-1]
	}
	base := len(dst)
	dst = append(dst, make([]byte, 8*len(keys))...)
	for _, k := range keys {
		g := ix.group(k)
		binary.BigEndian.PutUint64(dst[base+8*counts[g]:], uint64(k))
		counts[g]++
	}
	return dst
}

func (ix *Index) splitGroups(buf []byte, keys []kvblock.Key) [][]byte {
	if len(ix.groups) == 1 {
		return [][]byte{buf}
	}
	parts := make([][]byte, len(ix.groups))
	counts := make([]int, len(ix.groups))
	for _, k := range keys {
		counts[ix.group(k)]++
	}
	at := 0
	for g, n := range counts {
		parts[g] = buf[at : at+8*n]
		at += 8 * n
	}
	return parts
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
