package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Score appends one PodScore per candidate to dst, in candidate order. On
// error it still appends them, all zero: no data rather than a guess.
//
// It reads the prompt's blocks with one MGET per group, pipelined (one round
// trip standalone; one per node in a cluster, in parallel), together with
// the ids of candidates this client has not seen yet, and walks them here.
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

// scoreScratch is one Score's working memory, pooled.
type scoreScratch struct {
	names   []string // candidate names
	pids    []uint32 // candidate pod ids, 0 when unknown
	unknown []int    // candidates whose id is not cached
	vals    []string // block values in prompt order ("" when absent)
	bkeys   [][]string
	pos     [][]int
	tpid    []uint32 // open addressing table: candidate pod ids, 0 empty
	tslot   []int32  // their slots, -1 once they stopped matching
	mask    uint32
	slotPid []uint32 // pod id of each slot
	slot    []int32  // per candidate: its slot, -1 unknown
	best    []float64
	present []bool
	alive   []int32 // slots still matching
	matched []int
	weight  []float64
}

func (ix *Index) getScratch() *scoreScratch {
	if sc, ok := ix.scratch.Get().(*scoreScratch); ok {
		return sc
	}
	return &scoreScratch{}
}

func (ix *Index) score(ctx context.Context, keys []kvblock.Key, candidates []kvblock.Pod, out []kvblock.PodScore) error {
	sc := ix.getScratch()
	defer ix.scratch.Put(sc)

	sc.names, sc.pids, sc.unknown = sc.names[:0], sc.pids[:0], sc.unknown[:0]
	buf := make([]byte, 0, 64)
	ix.mu.RLock()
	gen := ix.gen
	for i, c := range candidates {
		buf = appendPodName(buf[:0], c)
		pid, ok := ix.podIDs[string(buf)]
		sc.names = append(sc.names, string(buf))
		sc.pids = append(sc.pids, pid)
		if !ok {
			sc.unknown = append(sc.unknown, i)
		}
	}
	ix.mu.RUnlock()

	// The blocks, by group, and the ids this client lacks: one pipeline.
	ng := len(ix.groups)
	sc.bkeys = resize(sc.bkeys, ng)
	sc.pos = resize(sc.pos, ng)
	for g := range ng {
		sc.bkeys[g], sc.pos[g] = sc.bkeys[g][:0], sc.pos[g][:0]
	}
	for i, k := range keys {
		g := ix.group(k)
		sc.bkeys[g] = append(sc.bkeys[g], ix.bucketName(g, uint32(k)))
		sc.pos[g] = append(sc.pos[g], i)
	}
	// With the blocks go the registry's generation, which vouches for the
	// cached ids, the ids not cached, and the (few) tiers.
	routing := make([]string, 0, ng+1)
	pipe := ix.client.Pipeline()
	genCmd := pipe.Get(ctx, ix.meta+"gen")
	bucketsCmd := pipe.Get(ctx, ix.meta+"buckets")
	var idsCmd *goredis.SliceCmd
	if len(sc.unknown) > 0 {
		idsCmd = pipe.HMGet(ctx, ix.meta+"pods", sc.fields(sc.unknown)...)
	}
	tiersCmd := pipe.HGetAll(ctx, ix.meta+"tiers")
	routing = append(routing, ix.meta+"pods")
	mgets := make([]*goredis.SliceCmd, ng)
	for g := range ng {
		if len(sc.bkeys[g]) > 0 {
			mgets[g] = pipe.MGet(ctx, sc.bkeys[g]...)
			routing = append(routing, sc.bkeys[g][0])
		}
	}
	ix.m.roundTrips[opScore].Add(float64(ix.nodes(ctx, routing)))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	if nb := bucketsCmd.Val(); nb != "" && nb != ix.nbArg {
		// The blocks are in other buckets than this client would read.
		return fmt.Errorf("the index uses %s buckets per group and this client %s; configure the same redis.buckets and redis.cluster.groups on every replica", nb, ix.nbArg)
	}
	if g := genCmd.Val(); g != gen && len(sc.unknown) < len(sc.names) {
		// The server lost the registry the cached ids came from: read
		// every candidate's id again.
		all := make([]int, len(sc.names))
		for i := range all {
			all[i] = i
		}
		ix.m.roundTrips[opScore].Inc()
		ids, err := ix.client.HMGet(ctx, ix.meta+"pods", sc.names...).Result()
		if err != nil {
			return err
		}
		if err := ix.learnIDs(g, sc, all, ids); err != nil {
			return err
		}
	} else if idsCmd != nil {
		if err := ix.learnIDs(g, sc, sc.unknown, idsCmd.Val()); err != nil {
			return err
		}
	}
	sc.vals = resize(sc.vals, len(keys))
	for g, cmd := range mgets {
		if cmd == nil {
			continue
		}
		vs := cmd.Val()
		if len(vs) != len(sc.pos[g]) {
			return fmt.Errorf("MGET of %d blocks returned %d values", len(sc.pos[g]), len(vs))
		}
		for j, v := range vs {
			s, _ := v.(string) // nil: absent
			at := sc.pos[g][j]
			run, err := blockRun(s, keys[at])
			if err != nil {
				return fmt.Errorf("bucket %q: %w", sc.bkeys[g][j], err)
			}
			sc.vals[at] = run
		}
	}

	var tiers tierTable
	if err := ix.readTiers(&tiers, tiersCmd.Val()); err != nil {
		return err
	}
	walked, hits := sc.walk(&tiers, out)
	ix.lookups.Add(uint64(walked))
	ix.hits.Add(uint64(hits))
	return nil
}

// fields returns the names of the candidates at idx.
func (sc *scoreScratch) fields(idx []int) []string {
	f := make([]string, len(idx))
	for j, i := range idx {
		f[j] = sc.names[i]
	}
	return f
}

// learnIDs sets the ids of the candidates at idx from an HMGET reply (0
// for a name never stored) and caches those found under generation gen.
func (ix *Index) learnIDs(gen string, sc *scoreScratch, idx []int, ids []any) error {
	if len(ids) != len(idx) {
		return fmt.Errorf("HMGET of %d pod names returned %d values", len(idx), len(ids))
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.setGen(gen)
	for j, v := range ids {
		i := idx[j]
		sc.pids[i] = 0
		s, ok := v.(string)
		if !ok {
			continue
		}
		pid, err := strconv.ParseUint(s, 10, 32)
		if err != nil || pid < 1 || pid > maxPodID {
			return fmt.Errorf("pod id %q of %s: want 1..%d", s, sc.names[i], maxPodID)
		}
		sc.pids[i] = uint32(pid)
		if gen != "" {
			ix.podIDs[sc.names[i]] = uint32(pid)
		}
	}
	return nil
}

// readTiers fills t from the tier registry and the configured weights.
func (ix *Index) readTiers(t *tierTable, all map[string]string) error {
	for name, s := range all {
		tid, err := strconv.ParseUint(s, 10, 8)
		if err != nil || tid < 1 {
			return fmt.Errorf("tier id %q of %s: want 1..255", s, name)
		}
		t.weight[tid] = ix.weights[name]
	}
	return nil
}

// walk computes the scores from sc.vals. Candidates naming the same pod
// share a slot; a pod's weight for a key is the best of its tiers', and its
// weighted score adds those in key order, as the in-memory index does.
func (sc *scoreScratch) walk(tiers *tierTable, out []kvblock.PodScore) (walked, hits int) {
	nslots := sc.prepare()
	sc.best = resize(sc.best, nslots)
	sc.present = resize(sc.present, nslots)
	sc.matched = resize(sc.matched, nslots)
	sc.weight = resize(sc.weight, nslots)
	sc.alive = sc.alive[:0]
	for s := range nslots {
		sc.matched[s], sc.weight[s], sc.present[s] = 0, 0, false
		sc.alive = append(sc.alive, int32(s))
	}
	for _, v := range sc.vals {
		if len(sc.alive) == 0 {
			break
		}
		walked++
		hit := false
		for r := 0; r+recordSize <= len(v); r += recordSize {
			pid := uint32(v[r])<<16 | uint32(v[r+1])<<8 | uint32(v[r+2])
			s := sc.lookup(pid)
			if s < 0 {
				continue
			}
			w := tiers.weight[v[r+3]]
			if !sc.present[s] {
				sc.present[s], sc.best[s] = true, w
				hit = true
			} else if w > sc.best[s] {
				sc.best[s] = w
			}
		}
		if hit {
			hits++
		}
		still := sc.alive[:0]
		for _, s := range sc.alive {
			if sc.present[s] {
				sc.present[s] = false
				sc.matched[s]++
				sc.weight[s] += sc.best[s]
				still = append(still, s)
			} else {
				sc.tslot[sc.find(sc.slotPid[s])] = -1 // later keys skip it
			}
		}
		sc.alive = still
	}
	for i := range out {
		if s := sc.slot[i]; s >= 0 {
			out[i].Matched, out[i].Weighted = sc.matched[s], sc.weight[s]
		} else {
			out[i].Matched, out[i].Weighted = 0, 0
		}
	}
	return walked, hits
}

// prepare numbers the distinct known candidates into slots and fills the
// pid -> slot table; it returns the number of slots.
func (sc *scoreScratch) prepare() int {
	size := 16
	for size < 2*len(sc.pids) {
		size *= 2
	}
	sc.tpid = resize(sc.tpid, size)
	sc.tslot = resize(sc.tslot, size)
	clear(sc.tpid)
	sc.mask = uint32(size - 1)
	sc.slot = resize(sc.slot, len(sc.pids))
	sc.slotPid = sc.slotPid[:0]
	n := 0
	for i, pid := range sc.pids {
		sc.slot[i] = -1
		if pid == 0 {
			continue
		}
		at := sc.find(pid)
		if sc.tpid[at] == pid {
			sc.slot[i] = sc.tslot[at]
			continue
		}
		sc.tpid[at], sc.tslot[at] = pid, int32(n)
		sc.slot[i] = int32(n)
		sc.slotPid = append(sc.slotPid, pid)
		n++
	}
	return n
}

// find returns pid's place in the table: where it is, or the empty place
// where it would go.
func (sc *scoreScratch) find(pid uint32) uint32 {
	at := (pid * 0x9E3779B1) >> 8 & sc.mask
	for sc.tpid[at] != 0 && sc.tpid[at] != pid {
		at = (at + 1) & sc.mask
	}
	return at
}

// lookup returns the slot of a candidate pod still matching, or -1.
func (sc *scoreScratch) lookup(pid uint32) int32 {
	at := sc.find(pid)
	if sc.tpid[at] != pid || pid == 0 {
		return -1
	}
	return sc.tslot[at]
}

func bitsLen(n int) int {
	b := 0
	for ; n > 1; n >>= 1 {
		b++
	}
	return b
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func be64(s string) uint64 {
	_ = s[7]
	return uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
		uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
}

// blockRun returns the records of block k in a bucket's value (see
// scripts.go), "" when the bucket does not hold it.
func blockRun(bucket string, k kvblock.Key) (string, error) {
	for i := 0; i < len(bucket); {
		if len(bucket)-i < 10 {
			return "", fmt.Errorf("truncated block header at byte %d of %d", i, len(bucket))
		}
		end := i + 10 + recordSize*(int(bucket[i+8])<<8|int(bucket[i+9]))
		if end > len(bucket) {
			return "", fmt.Errorf("block at byte %d runs past the end (%d bytes)", i, len(bucket))
		}
		if be64(bucket[i:i+8]) == uint64(k) {
			return bucket[i+10 : end], nil
		}
		i = end
	}
	return "", nil
}
