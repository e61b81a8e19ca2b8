package redis_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// benchIndex is an Index on a local server of its own, without TTL, with
// its registry and a raw client to read the server's own statistics.
func benchIndex(b *testing.B, edit ...func(*redis.Config)) (*redis.Index, *prometheus.Registry, *goredis.Client) {
	b.Helper()
	srv := startServer(b)
	cfg := redis.DefaultConfig()
	cfg.Addr = srv.Addr()
	cfg.TTL = 0
	for _, e := range edit {
		e(&cfg)
	}
	// A busy machine can stall one big script call past the default.
	cfg.ReadTimeout = time.Duration(10 * time.Second)
	reg := prometheus.NewRegistry()
	ix, err := redis.New(cfg, redis.WithRegisterer(reg))
	if err != nil {
		b.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = ix.Close(); _ = rc.Close() })
	return ix, reg, rc
}

// serverMicros is the CPU time the server's main thread has used (INFO
// cpu), in microseconds: the part of a benchmark that scheduling noise on a
// busy machine does not inflate. It covers all of a command's cost, reading
// and parsing the request and writing the reply included, which INFO
// commandstats leaves out; and it counts a script's commands once, where
// commandstats counts them both inside the script's time and on their own
// lines. The server's own housekeeping (serverCron, ten times a second)
// comes with it, a few microseconds per call.
func serverMicros(b *testing.B, rc *goredis.Client) float64 {
	b.Helper()
	s, err := rc.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	found := 0
	for _, line := range strings.Split(s, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_user_main_thread" && name != "used_cpu_sys_main_thread") {
			continue
		}
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("INFO cpu line %q: %v", line, err)
		}
		total += sec * 1e6
		found++
	}
	if found != 2 {
		b.Fatalf("INFO cpu has no main-thread CPU times:\n%s", s)
	}
	return total
}

// reportServer adds server-us/op and round-trips/op for op since before.
func reportServer(b *testing.B, reg *prometheus.Registry, rc *goredis.Client, op string, usBefore, tripsBefore float64) {
	b.Helper()
	b.ReportMetric((serverMicros(b, rc)-usBefore)/float64(b.N), "server-us/op")
	b.ReportMetric((counterValue(reg, "kvtrack_redis_round_trips_total", op)-tripsBefore)/float64(b.N), "round-trips/op")
}

// BenchmarkRedisIndexScore scores a prompt of tokens/16 keys against pods
// candidates, where pod p holds the first (p+1)/pods of the prompt: the walk
// covers the whole prompt and visits every candidate's entries, the worst
// case for the walk. The filled case first stores 1M other one-pod blocks
// (skipped under -short), so that every bucket the score reads also packs
// 16 blocks of other prompts, as in a full index.
func BenchmarkRedisIndexScore(b *testing.B) {
	for _, tc := range []struct{ tokens, pods, fill int }{{8192, 100, 0}, {8192, 10, 0}, {1024, 100, 0}, {8192, 100, 1 << 20}} {
		name := fmt.Sprintf("tokens=%d/pods=%d", tc.tokens, tc.pods)
		if tc.fill > 0 {
			name += fmt.Sprintf("/filled=%d", tc.fill)
		}
		b.Run(name, func(b *testing.B) {
			if tc.fill > 0 && testing.Short() {
				b.Skip("stores 1M blocks; run without -short")
			}
			ix, reg, rc := benchIndex(b)
			ctx := context.Background()
			fillOthers(b, ix, tc.fill)
			ks := keyRange(0, tc.tokens/16)
			pods := make([]kvblock.Pod, tc.pods)
			for p := range pods {
				pods[p] = kvblock.Pod{Addr: fmt.Sprintf("10.2.%d.%d:8000", p/256, p%256)}
				if err := ix.Add(ctx, pods[p], kvblock.TierGPU, ks[:(p+1)*len(ks)/len(pods)]); err != nil {
					b.Fatal(err)
				}
			}
			dst := make([]kvblock.PodScore, 0, len(pods))
			if _, err := ix.Score(ctx, ks, pods, dst); err != nil { // learns the pod ids
				b.Fatal(err)
			}
			us, trips := serverMicros(b, rc), counterValue(reg, "kvtrack_redis_round_trips_total", "score")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				got, err := ix.Score(ctx, ks, pods, dst[:0])
				if err != nil {
					b.Fatal(err)
				}
				if got[len(got)-1].Matched != len(ks) {
					b.Fatalf("last pod matched %d, want %d", got[len(got)-1].Matched, len(ks))
				}
			}
			b.StopTimer()
			reportServer(b, reg, rc, "score", us, trips)
			b.ReportMetric(float64(len(ks)), "keys/op")
		})
	}
}

// fillOthers stores n one-pod blocks of a pod no benchmark scores, so that
// with the default buckets each bucket packs n/65536 blocks.
func fillOthers(b *testing.B, ix *redis.Index, n int) {
	b.Helper()
	other := kvblock.Pod{Addr: "10.2.255.255:8000"}
	for lo := 0; lo < n; lo += 4096 {
		if err := ix.Add(context.Background(), other, kvblock.TierGPU, keyRange(1<<30+lo, 1<<30+lo+4096)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisIndexAdd stores a 512-key prompt (8192 tokens) per op, each
// op on fresh keys of one of 100 pods.
func BenchmarkRedisIndexAdd(b *testing.B) { benchmarkAdd(b, 0) }

// BenchmarkRedisIndexAddFilled is BenchmarkRedisIndexAdd on an index that
// already holds 1M one-pod blocks (16 per bucket, the fill the default
// buckets are sized for): the script reads and writes longer buckets.
func BenchmarkRedisIndexAddFilled(b *testing.B) {
	if testing.Short() {
		b.Skip("stores 1M blocks; run without -short")
	}
	benchmarkAdd(b, 1<<20)
}

func benchmarkAdd(b *testing.B, fill int) {
	ix, reg, rc := benchIndex(b)
	ctx := context.Background()
	fillOthers(b, ix, fill)
	ops := newAddStream(b, ix)
	us, trips := serverMicros(b, rc), counterValue(reg, "kvtrack_redis_round_trips_total", "add")
	b.ReportAllocs()
	b.SetBytes(addKeys * 8)
	for b.Loop() {
		pod, keys := ops.next()
		if err := ix.Add(ctx, pod, kvblock.TierGPU, keys); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportServer(b, reg, rc, "add", us, trips)
	b.ReportMetric(addKeys, "keys/op")
}

// addKeys is the keys of one op of the add benchmarks: an 8,192-token
// prompt.
const addKeys = 512

// addStream makes the add benchmarks' ops: addKeys fresh keys each, for
// one of 100 pods in turn.
type addStream struct {
	pods []kvblock.Pod
	buf  []kvblock.Key
	n    int
}

// newAddStream interns the pods with one key each, so that the ops do not
// pay for it.
func newAddStream(b *testing.B, ix *redis.Index) *addStream {
	b.Helper()
	s := &addStream{pods: make([]kvblock.Pod, 100), buf: make([]kvblock.Key, addKeys)}
	for p := range s.pods {
		s.pods[p] = kvblock.Pod{Addr: fmt.Sprintf("10.3.0.%d:8000", p)}
		if err := ix.Add(context.Background(), s.pods[p], kvblock.TierGPU, []kvblock.Key{kvblock.Key(p)}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func (s *addStream) next() (kvblock.Pod, []kvblock.Key) {
	for i := range s.buf {
		s.buf[i] = kvblock.Key(uint64(s.n+i+1) * 0x9E3779B97F4A7C15)
	}
	s.n += len(s.buf)
	return s.pods[s.n/len(s.buf)%len(s.pods)], s.buf
}

// BenchmarkRedisIndexAddSmall stores events of 4 blocks (a BlockStored of
// a decode step) from 4 concurrent writers, as an Indexer's event workers
// do, and reports the server's time per event: small adds are bound by
// the cost of a script call rather than by their keys.
func BenchmarkRedisIndexAddSmall(b *testing.B) {
	ix, _, rc := benchIndex(b)
	ctx := context.Background()
	var next atomic.Uint64
	var pods [4]kvblock.Pod
	for p := range pods {
		pods[p] = kvblock.Pod{Addr: fmt.Sprintf("10.5.0.%d:8000", p)}
		if err := ix.Add(ctx, pods[p], kvblock.TierGPU, []kvblock.Key{kvblock.Key(p)}); err != nil {
			b.Fatal(err)
		}
	}
	var events atomic.Int64
	us := serverMicros(b, rc)
	b.SetParallelism(2) // 4 writers on 2 cores
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ks := make([]kvblock.Key, 4)
		pod := pods[next.Add(1)%4]
		for pb.Next() {
			base := next.Add(4)
			for i := range ks {
				ks[i] = kvblock.Key((base + uint64(i)) * 0x9E3779B97F4A7C15)
			}
			if err := ix.Add(ctx, pod, kvblock.TierGPU, ks); err != nil {
				b.Error(err)
				return
			}
			events.Add(1)
		}
	})
	b.StopTimer()
	b.ReportMetric((serverMicros(b, rc)-us)/float64(events.Load()), "server-us/event")
}

// BenchmarkRedisAddFloor is the least any synchronous Add in this layout
// costs the server: BenchmarkRedisIndexAdd's 512 fresh keys per op, their
// buckets read with one native MGET and written back, each with the new
// block's run appended, with one native MSET, and nothing else (no Lua, no
// locating, no counters, no log, no concurrency control). Any layout that
// places blocks by key touches about as many keys per Add; what this
// costs is what such an Add cannot go under.
func BenchmarkRedisAddFloor(b *testing.B) {
	_, _, rc := benchIndex(b)
	ctx := context.Background()
	const keysPerOp = 512
	names := make([]string, keysPerOp)
	args := make([]any, 0, 2*keysPerOp)
	run := make([]byte, 15)
	next := 0
	us := serverMicros(b, rc)
	b.ReportAllocs()
	for b.Loop() {
		for i := range names {
			k := uint64(next+i+1) * 0x9E3779B97F4A7C15
			var nb [4]byte
			binary.BigEndian.PutUint32(nb[:], uint32(k)%redis.DefaultBuckets)
			names[i] = redis.DefaultKeyPrefix + "{0}k" + string(nb[:])
		}
		next += keysPerOp
		vals, err := rc.MGet(ctx, names...).Result()
		if err != nil {
			b.Fatal(err)
		}
		args = args[:0]
		for i, v := range vals {
			s, _ := v.(string)
			args = append(args, names[i], s+string(run))
		}
		if err := rc.MSet(ctx, args...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((serverMicros(b, rc)-us)/float64(b.N), "server-us/op")
	b.ReportMetric(keysPerOp, "keys/op")
}

// BenchmarkRedisIndexMemory stores 1M (block, pod) entries and reports the
// server's used_memory growth (INFO memory) per entry, with each block held
// by podsPerKey pods: 1 is the worst case (every block costs its own key
// and run header), larger shares are shared prefixes. With the default
// buckets a bucket packs 16 one-pod blocks; the buckets= cases show the
// cost of a bucket count sized for 1 and for 64 blocks per bucket.
func BenchmarkRedisIndexMemory(b *testing.B) {
	if testing.Short() {
		b.Skip("stores 1M entries; run without -short")
	}
	const entries = 1 << 20
	for _, tc := range []struct{ podsPerKey, buckets int }{{1, 0}, {4, 0}, {16, 0}, {1, 1 << 20}, {1, 1 << 14}} {
		name := fmt.Sprintf("pods-per-key=%d", tc.podsPerKey)
		if tc.buckets > 0 {
			name += fmt.Sprintf("/buckets=%d", tc.buckets)
		}
		podsPerKey := tc.podsPerKey
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				ix, _, _ := benchIndex(b, func(c *redis.Config) { c.Buckets = tc.buckets })
				ctx := context.Background()
				base, _, err := ix.Memory(ctx)
				if err != nil {
					b.Fatal(err)
				}
				blocks := entries / podsPerKey
				ks := make([]kvblock.Key, 512)
				for p := range podsPerKey {
					pod := kvblock.Pod{Addr: fmt.Sprintf("10.4.0.%d:8000", p)}
					for lo := 0; lo < blocks; lo += len(ks) {
						for i := range ks {
							ks[i] = kvblock.Key(uint64(lo+i+1) * 0x9E3779B97F4A7C15)
						}
						if err := ix.Add(ctx, pod, kvblock.TierGPU, ks[:min(len(ks), blocks-lo)]); err != nil {
							b.Fatal(err)
						}
					}
				}
				st, err := ix.Stats(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if st.Entries != entries {
					b.Fatalf("stored %d entries, want %d", st.Entries, entries)
				}
				used, _, err := ix.Memory(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(used-base)/float64(st.Entries), "B/entry")
				b.ReportMetric(float64(st.Keys)/float64(cmp.Or(tc.buckets, redis.DefaultBuckets)), "blocks/bucket")
			}
		})
	}
}
