package redis

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

const (
	// foldKeys bounds the keys one fold call applies (whole ops: the last
	// may go over), as writeChunk bounds an add's.
	foldKeys = 1024
	// maxPendingOps is the length of a group's write log past which a
	// write folds the group itself before returning: the log stays short,
	// so that a score reading its tail reads little, and writers cannot
	// outrun the folds.
	maxPendingOps = 16
	// sweepEvery is how often a folder also folds groups it did not write
	// to: ops a replica logged and did not fold before it stopped.
	sweepEvery = time.Second
	// maxFoldRounds bounds the fold calls per group of one foldAll, so that
	// Stats or Clear under a stream of writes ends.
	maxFoldRounds = 64
	// closeFoldTimeout bounds Close's last fold.
	closeFoldTimeout = 2 * time.Second
)

// logAdd is the kind of an add in the write log (fold_log, scripts.go):
// only adds are logged; a remove applies the log and then itself.
const logAdd = 'a'

// writeLog is an Index's write-behind state (Config.WriteBehind): the
// groups it logged ops to since their last fold, and its folder.
type writeLog struct {
	dirty   []atomic.Bool // per group
	stopped atomic.Bool
	// held stops this client's folds, leaving its ops in the log (tests
	// use it to score ops no fold has applied yet).
	held atomic.Bool
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newWriteLog(groups int) *writeLog {
	return &writeLog{
		dirty: make([]atomic.Bool, groups),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// logWrite appends the add of pod pid on tier tid for each group's part of
// keys (8 bytes each, grouped as appendByGroup does) to the group's write
// log, in one pipeline (a round trip per node, in parallel), and wakes the
// folder. A group whose log has grown past maxPendingOps is folded before
// logWrite returns.
func (ix *Index) logWrite(ctx context.Context, pid uint32, tid uint8, keys []kvblock.Key) error {
	buf := ix.buffer()
	defer ix.bufs.Put(buf)
	*buf = ix.appendByGroup((*buf)[:0], keys)
	pipe := ix.client.Pipeline()
	var groups []int
	var lens []*goredis.IntCmd
	var routing []string
	for g, part := range ix.splitGroups(*buf, keys) {
		if len(part) == 0 {
			continue
		}
		rec := make([]byte, 5, 5+len(part)/8*12)
		rec[0] = logAdd
		rec[1], rec[2], rec[3], rec[4] = byte(pid>>16), byte(pid>>8), byte(pid), tid
		rec = append(rec, part...)
		for i := 0; i < len(part); i += 8 {
			rec = binary.BigEndian.AppendUint32(rec, binary.BigEndian.Uint32(part[i+4:])%ix.nb)
		}
		lens = append(lens, pipe.RPush(ctx, ix.groups[g]+"w", rec))
		groups = append(groups, g)
		routing = append(routing, ix.groups[g]+"w")
	}
	ix.m.roundTrips[opAdd].Add(float64(ix.nodes(ctx, routing)))
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	var full []int
	for i, g := range groups {
		ix.wlog.dirty[g].Store(true)
		if lens[i].Val() > maxPendingOps {
			full = append(full, g)
		}
	}
	select {
	case ix.wlog.wake <- struct{}{}:
	default: // already woken
	}
	if len(full) > 0 {
		// The add is logged whatever this fold does: a failure (counted in
		// kvtrack_redis_errors_total{op="fold"}) leaves it to the folder.
		_, _ = ix.foldGroups(ctx, full)
	}
	return nil
}

// foldLoop folds the groups this client logged to whenever it is woken,
// and every group once a sweepEvery, until Close.
func (ix *Index) foldLoop() {
	wl := ix.wlog
	defer close(wl.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-wl.stop
		cancel()
	}()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		var groups []int
		select {
		case <-wl.stop:
			return
		case <-wl.wake:
			groups = ix.takeDirty()
		case <-t.C:
			groups = ix.pendingGroups(ctx)
		}
		for round := 0; len(groups) > 0 && round < maxFoldRounds; round++ {
			left, err := ix.foldGroups(ctx, groups)
			if err != nil {
				// Counted in kvtrack_redis_errors_total{op="fold"}; the ops stay
				// in the log for the next wake-up or sweep.
				break
			}
			groups = left
		}
	}
}

// takeDirty returns the groups logged to since the last call, and clears
// their marks.
func (ix *Index) takeDirty() []int {
	var groups []int
	for g := range ix.wlog.dirty {
		if ix.wlog.dirty[g].Swap(false) {
			groups = append(groups, g)
		}
	}
	return groups
}

// pendingGroups returns the groups whose write log is not empty (one
// pipeline of LLEN), or none when the server does not answer.
func (ix *Index) pendingGroups(ctx context.Context) []int {
	pipe := ix.client.Pipeline()
	lens := make([]*goredis.IntCmd, len(ix.groups))
	for g, gp := range ix.groups {
		lens[g] = pipe.LLen(ctx, gp+"w")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil
	}
	var groups []int
	for g, c := range lens {
		if c.Val() > 0 {
			groups = append(groups, g)
		}
	}
	return groups
}

// foldGroups runs one fold call on each of groups, pipelined, and returns
// those whose log still holds ops.
func (ix *Index) foldGroups(ctx context.Context, groups []int) ([]int, error) {
	if ix.wlog != nil && ix.wlog.held.Load() {
		return nil, nil
	}
	start := time.Now()
	left, err := ix.foldOnce(ctx, groups)
	ix.done(opFold, start, err)
	if err != nil {
		return nil, fmt.Errorf("redis index: fold the write log: %w", err)
	}
	return left, nil
}

func (ix *Index) foldOnce(ctx context.Context, groups []int) ([]int, error) {
	tierArgs, err := ix.foldTierArgs(ctx, opFold)
	if err != nil {
		return nil, err
	}
	calls := make([]call, len(groups))
	for i, g := range groups {
		args := append([]any{ix.groups[g], ix.nbArg, foldKeys}, tierArgs...)
		calls[i] = call{s: foldScript, key: ix.stats[g], args: args}
	}
	res, err := ix.runAll(ctx, opFold, calls)
	if err != nil {
		return nil, err
	}
	var left []int
	for i, r := range res {
		v, ok := r.([]any)
		if !ok || len(v) != 4 {
			return nil, fmt.Errorf("unexpected reply %v from the fold script", r)
		}
		applied, _ := v[0].(int64)
		rejected, _ := v[1].(int64)
		pending, _ := v[2].(int64)
		malformed, _ := v[3].(int64)
		ix.m.folded.Add(float64(applied))
		ix.m.foldRejected[rejectReferences].Add(float64(rejected))
		ix.m.foldRejected[rejectMalformed].Add(float64(malformed))
		if pending > 0 {
			left = append(left, groups[i])
		}
	}
	return left, nil
}

// foldTierArgs returns the tier arguments of fold_log (scripts.go): the
// epoch length and TTL of the tiers without a TTL of their own, the ids
// of those with one, their epoch lengths and their TTLs.
func (ix *Index) foldTierArgs(ctx context.Context, o op) ([]any, error) {
	ids, err := ix.ownTierIDs(ctx, o)
	if err != nil {
		return nil, err
	}
	args := make([]any, 0, 3+2*len(ids))
	args = append(args, ix.epochMillis, ix.ttlMillis, string(ids))
	args = append(args, ix.widths[1:]...)
	for _, name := range ix.ownNames {
		args = append(args, ix.ownTTL[name])
	}
	return args, nil
}

// ownTierIDs returns the ids of the tiers with TTLs of their own, a byte
// each in the order of ix.ownNames, registering them on first use: a fold
// must know them to expire those tiers' entries on their own TTLs.
func (ix *Index) ownTierIDs(ctx context.Context, o op) ([]byte, error) {
	if len(ix.ownNames) == 0 {
		return nil, nil
	}
	if own, ok := ix.cachedOwn(); ok {
		return []byte(own), nil
	}
	args := append([]any{ix.meta, ix.nbArg, ""}, toAny(ix.ownNames)...)
	res, err := ix.runAll(ctx, o, []call{{s: internScript, key: ix.meta + "pods", args: args}})
	if err != nil {
		return nil, err
	}
	v, ok := res[0].([]any)
	if !ok || len(v) != 2+len(ix.ownNames) {
		return nil, fmt.Errorf("unexpected reply %v from the intern script", res[0])
	}
	gen, _ := v[1].(string)
	ids := make([]byte, len(ix.ownNames))
	for i := range ids {
		t, ok := v[2+i].(int64)
		if !ok || t < 1 || t > 255 {
			return nil, fmt.Errorf("unexpected tier ids %v from the intern script", v[2:])
		}
		ids[i] = byte(t)
	}
	ix.mu.Lock()
	ix.setGen(gen)
	for i, name := range ix.ownNames {
		ix.tierIDs[name] = ids[i]
	}
	ix.mu.Unlock()
	return ids, nil
}

// foldAll folds every group's log until it is empty (or maxFoldRounds
// calls per group): Stats, ClearPod and Clear then see every write logged
// before they were called.
func (ix *Index) foldAll(ctx context.Context) error {
	groups := make([]int, len(ix.groups))
	for g := range groups {
		groups[g] = g
	}
	for round := 0; len(groups) > 0 && round < maxFoldRounds; round++ {
		left, err := ix.foldGroups(ctx, groups)
		if err != nil {
			return err
		}
		groups = left
	}
	return nil
}

// applyLog applies to sc.vals (the runs of keys, in prompt order) the adds
// of a group's write log that no fold had applied when Score read the
// log, oldest first: each gives its keys a record of its pod and tier.
// Score asks only whether a pod holds a key, so a record's epoch does not
// matter, and neither does an add that a fold applied between the reads
// of the log and of the buckets, and so is counted twice.
func (sc *scoreScratch) applyLog(keys []kvblock.Key, ops []string) {
	if len(ops) == 0 {
		return
	}
	if sc.where == nil {
		sc.where = make(map[kvblock.Key]int32, len(keys))
	}
	if len(sc.where) == 0 {
		sc.nextAt = resize(sc.nextAt, len(keys))
		for i := len(keys) - 1; i >= 0; i-- {
			sc.nextAt[i] = -1
			if at, ok := sc.where[keys[i]]; ok {
				sc.nextAt[i] = at
			}
			sc.where[keys[i]] = int32(i)
		}
	}
	for _, op := range ops {
		if !wellFormed(op) {
			continue // the fold drops it and counts it
		}
		rec := op[1:5] + "\x00"
		for i, end := 5, 5+(len(op)-5)/12*8; i < end; i += 8 {
			at, ok := sc.where[kvblock.Key(be64(op[i:i+8]))]
			for ; ok && at >= 0; at = sc.nextAt[at] {
				sc.vals[at] += rec
			}
		}
	}
}

// wellFormed reports whether op is a write-log add: its kind, a pod id, a
// tier id, and at least one key with its bucket id. The log is the
// server's, so anything with access to it could have written something
// else; only the shape is checked, as a client that can write the log can
// write the buckets too (the trust boundary is the server's ACL).
func wellFormed(op string) bool {
	return len(op) >= 5+12 && (len(op)-5)%12 == 0 && op[0] == logAdd
}
