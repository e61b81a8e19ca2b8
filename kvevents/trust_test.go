package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// forgedPub is a raw PUB connected to ep from source, for sending
// messages under any topic.
func forgedPub(t testing.TB, ep, source string) *zmq.Socket {
	t.Helper()
	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	pub.SetLinger(0)
	pub.SetSndhwm(0)
	if err := pub.Connect("tcp://" + source + ":0;" + strings.TrimPrefix(ep, "tcp://")); err != nil {
		t.Fatal(err)
	}
	return pub
}

// vmRSS returns the process's resident set in bytes, or 0 where /proc
// cannot tell.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

func heapInuse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestForgedTopicsMintNoPods is issue 14's attack: a known pod sends 20,000
// messages naming 20,000 pods at its own IP. None may become a pod, a
// metric series or a log line of its own; the forged messages are counted
// under one reason, logged at most once a second, and the pod's own events
// still apply.
func TestForgedTopicsMintNoPods(t *testing.T) {
	const forged = 20000
	reg := prometheus.NewRegistry()
	var logs logLines
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	idx := newMemIndex(t)
	p := startPool(t, Config{Endpoint: ep}, idx, WithRegisterer(reg), logs.option())
	if err := p.AddPod(context.Background(), podA, "", ""); err != nil {
		t.Fatal(err)
	}
	a := newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.2", topic: topicOf(podA), pod: podA, noReplay: true})
	a.waitSubscribed(func() bool { return p.streamStarted(podA) })

	heap0, rss0 := heapInuse(), vmRSS()
	start := time.Now()
	evil := forgedPub(t, ep, "127.0.0.2")
	payload := rawBatch(rawStored(hashes(900, 4), seqTokens(0, 64)))
	seq := make([]byte, 8)
	send := func(i int) {
		binary.BigEndian.PutUint64(seq, uint64(i))
		if _, err := evil.SendMessage(fmt.Sprintf("kv@127.0.0.2:%d@model-%d", 10000+i%50000, i), seq, payload); err != nil {
			t.Fatal(err)
		}
	}
	// PUB drops what it sends before its connection is up.
	repeatUntil(t, "the forged connection", func() { send(0) }, func() bool { return p.Stats().Rejected[RejectUnknownPod] > 0 })
	base := p.Stats().Rejected[RejectUnknownPod]
	for i := range forged {
		send(i)
	}
	eventually(t, "20,000 forged topics rejected", func() bool { return p.Stats().Rejected[RejectUnknownPod] >= base+forged })
	elapsed := time.Since(start)
	heap1, rss1 := heapInuse(), vmRSS()
	t.Logf("20,000 forged topics: heap in use %+.1f MB, RSS %+.1f MB (%.1f -> %.1f MB), in %v",
		float64(heap1-heap0)/(1<<20), float64(rss1-rss0)/(1<<20), float64(rss0)/(1<<20), float64(rss1)/(1<<20), elapsed.Round(time.Millisecond))
	if grew := heap1 - heap0; grew > 64<<20 {
		t.Errorf("heap grew %d MB under the forged topics, want < 64 MB", grew>>20)
	}

	if s := p.Stats(); s.Pods != 1 {
		t.Errorf("Pods = %d after the forged topics, want 1 (podA)", s.Pods)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pod" && l.GetValue() != podA.Addr {
					t.Errorf("metric %s has a series for pod %q", mf.GetName(), l.GetValue())
				}
			}
		}
	}
	// At most one line a second, plus one.
	if n, max := logs.count("names no pod added"), int(elapsed/time.Second)+1; n > max {
		t.Errorf("%d log lines for the forged topics in %v, want at most %d", n, elapsed, max)
	}

	// podA's own events still apply.
	a.publish(false, a.stored(hashes(100, 4), 0, seqTokens(0, 64), "GPU"))
	waitIndexEquals(t, idx, a.groundTruth)

	// Removing the pod frees its stream and its series.
	if err := p.RemovePod(context.Background(), podA); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Pods != 0 {
		t.Errorf("Pods = %d after RemovePod, want 0", s.Pods)
	}
	if n := podSeries(t, reg); n != 0 {
		t.Errorf("%d series with a pod label after RemovePod, want 0", n)
	}
}

// podSeries counts the gathered series that carry a pod label.
func podSeries(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pod" {
					n++
				}
			}
		}
	}
	return n
}

// BenchmarkIngestUnderForgedFlood is the latency of a legitimate pod's
// messages, from send to apply, while a known pod floods the bound socket
// with forged topics (each naming a new pod), at 20,000 messages a second
// and as fast as one goroutine of this process sends: p50 and p99 in
// milliseconds. The flooder shares the machine's cores with the pool.
func BenchmarkIngestUnderForgedFlood(b *testing.B) {
	for _, rate := range []string{"none", "20k/s", "max"} {
		b.Run("flood="+strings.ReplaceAll(rate, "/", "per"), func(b *testing.B) { benchForgedFlood(b, rate) })
	}
}

func benchForgedFlood(b *testing.B, rate string) {
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(b))
	var mu sync.Mutex
	sentAt := map[uint64]time.Time{}
	var lat []time.Duration
	observe := func(m Message) {
		mu.Lock()
		defer mu.Unlock()
		if at, ok := sentAt[m.Seq]; ok && m.Pod == podA {
			lat = append(lat, time.Since(at))
			delete(sentAt, m.Seq)
		}
	}
	p, err := NewPool(Config{Endpoint: ep, Limits: Limits{EventsPerSecond: -1}}, newMemIndex(b), WithObserver(observe))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer p.Close()
	defer cancel()
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	for _, pod := range []kvblock.Pod{podA, podB} {
		if err := p.AddPod(ctx, pod, "", ""); err != nil {
			b.Fatal(err)
		}
	}
	good := forgedPub(b, ep, "127.0.0.2")
	payload := rawBatch(rawStored(hashes(100, 1), seqTokens(0, 16)))
	seq := make([]byte, 8)
	for i := uint64(0); !p.streamStarted(podA); i++ {
		binary.BigEndian.PutUint64(seq, i)
		good.SendMessage(topicOf(podA), seq, payload)
		time.Sleep(time.Millisecond)
	}
	stop := make(chan struct{})
	var flooded atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		if rate == "none" {
			return
		}
		evil := forgedPub(b, ep, "127.0.0.3")
		fseq := make([]byte, 8)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.BigEndian.PutUint64(fseq, uint64(i))
			evil.SendMessage(fmt.Sprintf("kv@127.0.0.3:%d@m", 10000+i%50000), fseq, payload)
			flooded.Add(1)
			if rate == "20k/s" && i%100 == 99 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	b.ResetTimer()
	for i := range b.N {
		s := uint64(1_000_000 + i)
		binary.BigEndian.PutUint64(seq, s)
		mu.Lock()
		sentAt[s] = time.Now()
		mu.Unlock()
		good.SendMessage(topicOf(podA), seq, payload)
		time.Sleep(200 * time.Microsecond)
	}
	for {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	sortDurations(lat)
	q := func(f float64) float64 { return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))]) / 1e6 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(flooded.Load())/float64(b.N), "forged/op")
	b.ReportMetric(float64(p.Stats().Rejected[RejectUnknownPod]), "rejected")
}

func sortDurations(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j] < d[j-1]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

// TestStartReportsBindError checks that Start fails, synchronously, when
// the endpoint is taken, and that the pool is then stopped.
func TestStartReportsBindError(t *testing.T) {
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	first := startPool(t, Config{Endpoint: ep}, nil)
	waitReady(t, first)
	p, err := NewPool(Config{Endpoint: ep}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "binding") {
		t.Fatalf("Start on a taken endpoint = %v, want a bind error", err)
	}
	if err := p.AddPod(context.Background(), podA, "", ""); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPod after a failed Start = %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
}

// TestLifecycle walks a pool through Start, Ready, Close (twice) and what
// may be called after it.
func TestLifecycle(t *testing.T) {
	for _, mode := range []Mode{ModeBind, ModeConnect} {
		t.Run(string(mode), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			cfg := Config{Mode: mode}
			if mode == ModeBind {
				cfg.Endpoint = fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
			}
			p, err := NewPool(cfg, newMemIndex(t), WithRegisterer(reg))
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Ready():
				t.Fatal("Ready before Start")
			default:
			}
			if err := p.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			<-p.Ready() // closed by Start's return: no wait
			if err := p.Start(context.Background()); !errors.Is(err, ErrRunning) {
				t.Errorf("second Start = %v, want ErrRunning", err)
			}
			if n, _ := testutilCount(reg); n == 0 {
				t.Error("no metrics registered")
			}
			for range 2 {
				if err := p.Close(); err != nil {
					t.Errorf("Close = %v", err)
				}
			}
			if n, _ := testutilCount(reg); n != 0 {
				t.Errorf("%d metric families registered after Close, want 0", n)
			}
			ep := ""
			if mode == ModeConnect {
				ep = "tcp://127.0.0.1:1"
			}
			if err := p.AddPod(context.Background(), podA, ep, ""); !errors.Is(err, ErrClosed) {
				t.Errorf("AddPod after Close = %v, want ErrClosed", err)
			}
			if err := p.Run(context.Background()); !errors.Is(err, ErrClosed) {
				t.Errorf("Run after Close = %v, want ErrClosed", err)
			}
			if mode == ModeBind { // the endpoint is free again
				q := startPool(t, cfg, nil)
				waitReady(t, q)
			}
		})
	}
}

func testutilCount(reg *prometheus.Registry) (int, error) {
	mfs, err := reg.Gather()
	return len(mfs), err
}

// TestAddPodAfterRunReturns checks that a pool whose context ended refuses
// new pods instead of accepting them silently.
func TestAddPodAfterRunReturns(t *testing.T) {
	p, err := NewPool(Config{Mode: ModeConnect}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitReady(t, p)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.AddPod(context.Background(), podA, "tcp://127.0.0.1:1", ""); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPod after Run returned = %v, want ErrClosed", err)
	}
}

// TestObserverMayRemovePod checks that an observer calling RemovePod (of
// the pod whose message it sees) neither deadlocks nor lets that message
// be applied.
func TestObserverMayRemovePod(t *testing.T) {
	for _, mode := range []Mode{ModeBind, ModeConnect} {
		t.Run(string(mode), func(t *testing.T) {
			idx := newMemIndex(t)
			var p *Pool
			removed := make(chan error, 1)
			observe := func(m Message) {
				if len(m.Batch.Events) > 0 {
					removed <- p.RemovePod(context.Background(), m.Pod)
				}
			}
			cfg := Config{Mode: mode}
			if mode == ModeBind {
				cfg.Endpoint = fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
			}
			p = startPool(t, cfg, idx, WithObserver(observe))
			var pub *goPublisher
			if mode == ModeBind {
				pub = newGoPublisher(t, pubOpts{connectTo: cfg.Endpoint, source: "127.0.0.2", topic: topicOf(podA), pod: podA, noReplay: true})
				if err := p.AddPod(context.Background(), podA, "", ""); err != nil {
					t.Fatal(err)
				}
			} else {
				pub = newGoPublisher(t, pubOpts{noReplay: true})
				if err := p.AddPod(context.Background(), pub.pod, pub.pubEP, ""); err != nil {
					t.Fatal(err)
				}
			}
			pub.waitSubscribed(func() bool { return p.streamStarted(pub.pod) })
			pub.publish(false, rawStored(hashes(900, 2), seqTokens(0, 32)))
			select {
			case err := <-removed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the observer's RemovePod never returned: deadlock")
			}
			if d := indexDiff(idx, nil); d != "" {
				t.Errorf("the removed pod's message was applied:\n%s", d)
			}
		})
	}
}

// guardedIndex fails the test if a block of a pod is added after the pod
// was removed.
type guardedIndex struct {
	*kvblock.MemIndex
	gone atomic.Bool
	late atomic.Int64
}

func (g *guardedIndex) Add(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	if g.gone.Load() {
		g.late.Add(1)
	}
	return g.MemIndex.Add(ctx, pod, tier, keys)
}

// TestRemovePodRaceBindMode checks RemovePod's promise in bind mode while
// the pod publishes as fast as it can: once RemovePod returns, none of its
// events is applied and it holds no block.
func TestRemovePodRaceBindMode(t *testing.T) {
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	idx := &guardedIndex{MemIndex: newMemIndex(t)}
	p := startPool(t, Config{Endpoint: ep, Workers: 2, Limits: Limits{EventsPerSecond: -1}}, idx)
	pub := forgedPub(t, ep, "127.0.0.2")
	payload := rawBatch(rawStored(hashes(900, 2), seqTokens(0, 32)))
	for round := range 5 {
		idx.gone.Store(false)
		if err := p.AddPod(context.Background(), podA, "", ""); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			seq := make([]byte, 8)
			for i := uint64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				binary.BigEndian.PutUint64(seq, i)
				pub.SendMessage(topicOf(podA), seq, payload)
				if i%64 == 0 {
					runtime.Gosched()
				}
			}
		})
		eventually(t, "podA's events applied", func() bool { return p.streamStarted(podA) && p.Stats().Applied > 0 })
		if err := p.RemovePod(context.Background(), podA); err != nil {
			t.Fatal(err)
		}
		idx.gone.Store(true)
		applied := p.Stats().Applied
		// Let the publisher run on: its messages are rejected now.
		rejected := p.Stats().Rejected[RejectUnknownPeer] + p.Stats().Rejected[RejectUnknownPod]
		eventually(t, "podA's later messages rejected", func() bool {
			return p.Stats().Rejected[RejectUnknownPeer]+p.Stats().Rejected[RejectUnknownPod] > rejected+100
		})
		close(stop)
		wg.Wait()
		if n := idx.late.Load(); n > 0 {
			t.Fatalf("round %d: %d index adds after RemovePod returned", round, n)
		}
		if s := p.Stats(); s.Applied != applied {
			t.Errorf("round %d: applied went from %d to %d after RemovePod", round, applied, s.Applied)
		}
		sc, err := idx.Score(context.Background(), []kvblock.Key{900}, []kvblock.Pod{podA}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sc[0].Matched != 0 {
			t.Errorf("round %d: the removed pod still holds its block", round)
		}
	}
}

// freePortPair returns a free port whose successor is free too: rank 1 of
// a data-parallel engine uses port + 1.
func freePortPair(t *testing.T) int { return testnet.FreePortPair(t) }

// TestDataParallelRanks follows an engine with 2 data-parallel ranks in
// both modes over real sockets: rank r publishes on port + r (bind mode:
// connects to the pool's port + r; connect mode: binds its own port + r and
// replays on replay port + r), and its blocks are indexed under (pod, r).
// A batch naming a rank beyond the configured count is counted and logged.
func TestDataParallelRanks(t *testing.T) {
	pod := kvblock.Pod{Addr: "127.0.0.2:8000"}
	for _, mode := range []Mode{ModeBind, ModeConnect} {
		t.Run(string(mode), func(t *testing.T) {
			var logs logLines
			idx := newMemIndex(t)
			port, replayPort := freePortPair(t), freePortPair(t)
			cfg := Config{Mode: mode, DataParallelSize: 2, ReplayTimeout: time.Second}
			var ranks []*goPublisher
			if mode == ModeBind {
				cfg.Endpoint = fmt.Sprintf("tcp://127.0.0.1:%d", port)
				cfg.ReplayPort = replayPort
				p := startPool(t, cfg, idx, logs.option())
				if err := p.AddPod(context.Background(), pod, "", ""); err != nil {
					t.Fatal(err)
				}
				for r := range 2 {
					rp := kvblock.Pod{Addr: pod.Addr, Rank: r}
					ranks = append(ranks, newGoPublisher(t, pubOpts{connectTo: fmt.Sprintf("tcp://127.0.0.1:%d", port+r), source: "127.0.0.2",
						topic: topicOf(pod), pod: rp, replayPort: replayPort + r, host: "127.0.0.2"}))
				}
				testRanks(t, p, idx, &logs, ranks)
				return
			}
			p := startPool(t, cfg, idx, logs.option())
			for r := range 2 {
				ranks = append(ranks, newGoPublisher(t, pubOpts{port: port + r, replayPort: replayPort + r, topic: "kv@x@m",
					pod: kvblock.Pod{Addr: pod.Addr, Rank: r}}))
			}
			if err := p.AddPod(context.Background(), pod, fmt.Sprintf("tcp://127.0.0.1:%d", port), fmt.Sprintf("tcp://127.0.0.1:%d", replayPort)); err != nil {
				t.Fatal(err)
			}
			testRanks(t, p, idx, &logs, ranks)
		})
	}
}

func testRanks(t *testing.T, p *Pool, idx kvblock.Index, logs *logLines, ranks []*goPublisher) {
	t.Helper()
	for _, r := range ranks {
		r.waitSubscribed(func() bool { return p.streamStarted(r.pod) })
	}
	for i, r := range ranks {
		r.publish(true, r.stored(hashes(uint64(1000*(i+1)), 2), 0, seqTokens(0, 32), "GPU")) // lost: replayed from the rank's replay port
		r.publish(false, r.stored(hashes(uint64(1000*(i+1)+2), 1), uint64(1000*(i+1)+1), seqTokens(32, 16), "GPU"))
	}
	waitIndexEquals(t, idx, func() map[refEntry]int {
		want := map[refEntry]int{}
		for _, r := range ranks {
			maps.Copy(want, r.groundTruth())
		}
		return want
	})
	if s := p.Stats(); s.Replays != 2 || s.Pods != 2 {
		t.Errorf("replays, pods = %d, %d; want 2, 2", s.Replays, s.Pods)
	}
	r1 := ranks[1]
	r1.send(mpArr(mpF64(sampleTS), mpArr(), mpInt(5)), false)
	eventually(t, "the unknown rank counted", func() bool { return p.Stats().UnknownRank == 1 })
	if logs.count("beyond dataParallelSize") != 1 {
		t.Errorf("want one log line for the unknown rank:\n%s", strings.Join(logs.lines, "\n"))
	}
}

// hasIPv6Loopback reports whether [::1] can be bound.
func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// TestIPv6 follows a pod at [::1] over real IPv6 loopback sockets in both
// modes, with a bracketed topic and a replayed gap.
func TestIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback ([::1]) on this machine")
	}
	pod := kvblock.Pod{Addr: "[::1]:8000"}
	for _, mode := range []Mode{ModeBind, ModeConnect} {
		t.Run(string(mode), func(t *testing.T) {
			idx := newMemIndex(t)
			replayPort := freePort(t)
			var p *Pool
			var pub *goPublisher
			if mode == ModeBind {
				ep := fmt.Sprintf("tcp://[::1]:%d", freePort(t))
				p = startPool(t, Config{Endpoint: ep, ReplayPort: replayPort, ReplayTimeout: time.Second}, idx)
				if err := p.AddPod(context.Background(), pod, "", ""); err != nil {
					t.Fatal(err)
				}
				pub = newGoPublisher(t, pubOpts{connectTo: ep, topic: "kv@[::1]:8000@m", pod: pod, replayPort: replayPort, host: "::1"})
			} else {
				p = startPool(t, Config{Mode: ModeConnect, ReplayTimeout: time.Second}, idx)
				pub = newGoPublisher(t, pubOpts{host: "::1", replayPort: replayPort, topic: "kv@[::1]:8000@m", pod: pod})
				if err := p.AddPod(context.Background(), pod, pub.pubEP, pub.replayEP); err != nil {
					t.Fatal(err)
				}
			}
			pub.waitSubscribed(func() bool { return p.streamStarted(pod) })
			pub.publish(true, pub.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"))
			pub.publish(false, pub.stored(hashes(102, 1), 101, seqTokens(32, 16), "GPU"))
			waitIndexEquals(t, idx, pub.groundTruth)
			if s := p.Stats(); s.Replays != 1 {
				t.Errorf("replays = %d, want 1", s.Replays)
			}
		})
	}
}

// TestPortlessTopic follows a publisher configured as llm-d's guide does
// (kv@${POD_IP}@model, no port) over real sockets: its messages are the
// one pod's at that IP, until a second pod at the same IP makes the topic
// ambiguous, which is rejected with a log line naming the fix.
func TestPortlessTopic(t *testing.T) {
	var logs logLines
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	idx := newMemIndex(t)
	p := startPool(t, Config{Endpoint: ep}, idx, logs.option())
	if err := p.AddPod(context.Background(), podA, "", ""); err != nil {
		t.Fatal(err)
	}
	a := newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.2", topic: "kv@127.0.0.2@Qwen/Qwen3-8B", pod: podA, noReplay: true})
	a.waitSubscribed(func() bool { return p.streamStarted(podA) })
	a.publish(false, a.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"))
	waitIndexEquals(t, idx, a.groundTruth)

	if err := p.AddPod(context.Background(), kvblock.Pod{Addr: "127.0.0.2:8001"}, "", ""); err != nil {
		t.Fatal(err)
	}
	repeatUntil(t, "the ambiguous topic rejected", func() { a.send(rawBatch(rawStored(hashes(900, 1), seqTokens(0, 16))), false) },
		func() bool { return p.Stats().Rejected[RejectAmbiguousPod] > 0 })
	if logs.count("kv@<pod-ip>:<pod-port>@<model>") == 0 {
		t.Errorf("no log line naming the fix:\n%s", strings.Join(logs.lines, "\n"))
	}
	waitIndexEquals(t, idx, a.groundTruth) // nothing of the rejected messages
}

// TestAllowAnySourceBounded checks that with the source checks off, topics
// create pods only up to the bound, past which they are rejected.
func TestAllowAnySourceBounded(t *testing.T) {
	p, err := NewPool(Config{Mode: ModeBind, Security: Security{AllowAnySource: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub := &subscription{}
	for i := range maxUnaddedStreams + 10 {
		p.resolve(sub, p.routes.Load(), fmt.Appendf(nil, "kv@10.0.%d.%d:8000@m", i/256, i%256), "")
	}
	s := p.Stats()
	if s.Pods != maxUnaddedStreams || s.Rejected[RejectTooManyPods] != 10 {
		t.Errorf("pods, rejected = %d, %d; want %d, 10", s.Pods, s.Rejected[RejectTooManyPods], maxUnaddedStreams)
	}
	// An added pod is not counted against the bound, and removing one
	// makes room.
	if err := p.RemovePod(context.Background(), kvblock.Pod{Addr: "10.0.0.0:8000"}); err != nil {
		t.Fatal(err)
	}
	if p.resolve(sub, p.routes.Load(), []byte("kv@10.9.9.9:8000@m"), "") == nil {
		t.Error("no room after RemovePod")
	}
}
