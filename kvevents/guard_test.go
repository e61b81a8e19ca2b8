package kvevents

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// The pods of the rejection tests. Linux routes all of 127.0.0.0/8 to lo,
// so each can connect from its own source IP.
var (
	podA = kvblock.Pod{Addr: "127.0.0.2:8000"} // known, honest
	podB = kvblock.Pod{Addr: "127.0.0.3:8000"} // known, the attacker in some cases
	podC = kvblock.Pod{Addr: "127.0.0.1:8000"} // never added
)

func topicOf(pod kvblock.Pod) string { return "kv@" + pod.Addr + "@model" }

// guardRig is a bind-mode pool over a memory index, with podA added and
// publishing from its own IP, and a baseline of blocks indexed.
type guardRig struct {
	t   *testing.T
	p   *Pool
	idx *kvblock.MemIndex
	ep  string
	a   *goPublisher
}

func newGuardRig(t *testing.T, cfg Config) *guardRig {
	t.Helper()
	port := freePort(t)
	cfg.Mode = ModeBind
	cfg.Endpoint = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	r := &guardRig{t: t, idx: newMemIndex(t), ep: cfg.Endpoint}
	r.p = startPool(t, cfg, r.idx)
	r.addPod(podA)
	r.a = r.publisher(podA, topicOf(podA))
	r.a.waitSubscribed(func() bool { return r.p.streamStarted(podA) })
	r.a.publish(false, r.a.stored(hashes(100, 4), 0, seqTokens(0, 64), "GPU"))
	waitIndexEquals(t, r.idx, r.a.groundTruth)
	return r
}

func (r *guardRig) addPod(pod kvblock.Pod) {
	r.t.Helper()
	if err := r.p.AddPod(context.Background(), pod, "", ""); err != nil {
		r.t.Fatal(err)
	}
}

// publisher connects a PUB from pod's IP that sends topic.
func (r *guardRig) publisher(pod kvblock.Pod, topic string) *goPublisher {
	host, _, _ := strings.Cut(pod.Addr, ":")
	return newGoPublisher(r.t, pubOpts{connectTo: r.ep, source: host, topic: topic, pod: pod, noReplay: true})
}

// probeKeys are the baseline's keys and every key an attack stores.
var probeKeys = []kvblock.Key{100, 101, 102, 103, 900, 901, 902, 903, 904, 905, 906, 907, 908, 909}

func (r *guardRig) scores() []kvblock.PodScore {
	r.t.Helper()
	var out []kvblock.PodScore
	for i := range probeKeys {
		sc, err := r.idx.Score(context.Background(), probeKeys[i:i+1], []kvblock.Pod{podA, podB, podC}, nil)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, sc...)
	}
	return out
}

// rawStored is a BlockStored event that the publisher's ground truth does
// not record: what an attack sends.
func rawStored(hs []uint64, tokens []uint32) mp {
	return mpArr(mpStr("BlockStored"), mpUints(hs...), mpNil(), mpTokens(tokens), mpInt(16), mpNil(), mpStr("GPU"),
		mpNil(), mpNil(), mpInt(0), mpStr("full_attention"), mpNil())
}

func rawBatch(events ...mp) []byte { return mpArr(mpF64(sampleTS), mpArr(events...), mpInt(0)) }

// repeatUntil sends with send every few milliseconds until cond holds:
// PUB/SUB drops what is sent before a connection is up.
func repeatUntil(t *testing.T, what string, send func(), cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		send()
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *Pool) podRejected(pod kvblock.Pod, r RejectReason) uint64 {
	p.mu.Lock()
	s := p.streams[pod]
	p.mu.Unlock()
	if s == nil {
		return 0
	}
	return s.rejected[r].Load()
}

// TestRejections sends each kind of hostile or oversized input over real
// libzmq sockets and checks that it is counted, changes no score, and
// leaves the honest stream flowing.
func TestRejections(t *testing.T) {
	hostile := rawStored(hashes(900, 4), seqTokens(0, 64))
	cases := []struct {
		name   string
		cfg    Config
		attack func(t *testing.T, r *guardRig)
		// counted reports whether the attack has been seen and counted.
		counted func(r *guardRig) bool
	}{
		{
			name: "unknown peer",
			attack: func(t *testing.T, r *guardRig) {
				c := r.publisher(podC, topicOf(podC))
				repeatUntil(t, "the held handshake", func() { c.send(rawBatch(hostile), false) },
					func() bool { return r.p.Stats().Rejected[RejectUnknownPeer] > 0 })
			},
			counted: func(r *guardRig) bool { return r.p.Stats().Rejected[RejectUnknownPeer] > 0 },
		},
		{
			name: "topic naming another pod",
			attack: func(t *testing.T, r *guardRig) {
				r.addPod(podB)
				b := r.publisher(podB, topicOf(podA)) // podB's IP, podA's topic
				repeatUntil(t, "the forged message", func() { b.send(rawBatch(hostile), false) },
					func() bool { return r.p.Stats().Rejected[RejectPeerMismatch] > 0 })
			},
			counted: func(r *guardRig) bool { return r.p.Stats().Rejected[RejectPeerMismatch] > 0 },
		},
		{
			name: "removed pod on its open connection",
			attack: func(t *testing.T, r *guardRig) {
				r.addPod(podB)
				b := r.publisher(podB, topicOf(podB))
				b.waitSubscribed(func() bool { return r.p.streamStarted(podB) })
				if err := r.p.RemovePod(context.Background(), podB); err != nil {
					t.Fatal(err)
				}
				b.send(rawBatch(hostile), false)
			},
			counted: func(r *guardRig) bool { return r.p.Stats().Rejected[RejectUnknownPeer] > 0 },
		},
		{
			name: "oversized message",
			cfg:  Config{Limits: Limits{MaxMessageBytes: 4096}},
			attack: func(t *testing.T, r *guardRig) {
				r.a.send(rawBatch(rawStored(hashes(900, 10), seqTokens(0, 2000))), false) // ~10 KB
			},
			counted: func(r *guardRig) bool { return r.p.Stats().Disconnects > 0 },
		},
		{
			name:   "too many blocks",
			cfg:    Config{Limits: Limits{MaxBlocksPerEvent: 8}},
			attack: func(t *testing.T, r *guardRig) { r.a.send(rawBatch(rawStored(hashes(900, 9), nil)), false) },
			counted: func(r *guardRig) bool {
				return r.p.Stats().Rejected[RejectBlocks] == 1 && r.p.podRejected(podA, RejectBlocks) == 1
			},
		},
		{
			name: "too many tokens",
			cfg:  Config{Limits: Limits{MaxTokensPerEvent: 100}},
			attack: func(t *testing.T, r *guardRig) {
				r.a.send(rawBatch(rawStored(hashes(900, 2), seqTokens(0, 101))), false)
			},
			counted: func(r *guardRig) bool {
				return r.p.Stats().Rejected[RejectTokens] == 1 && r.p.podRejected(podA, RejectTokens) == 1
			},
		},
		{
			name: "too many events",
			cfg:  Config{Limits: Limits{MaxEventsPerBatch: 4}},
			attack: func(t *testing.T, r *guardRig) {
				var evs []mp
				for i := range 5 {
					evs = append(evs, rawStored(hashes(900+uint64(i), 1), seqTokens(0, 16)))
				}
				r.a.send(rawBatch(evs...), false)
			},
			counted: func(r *guardRig) bool {
				return r.p.Stats().Rejected[RejectEvents] == 1 && r.p.podRejected(podA, RejectEvents) == 1
			},
		},
		{
			name: "over the rate",
			// The baseline spends 1 of 10 tokens; the bucket refills one
			// token in 1000 s.
			cfg: Config{Limits: Limits{EventsPerSecond: 0.001, EventsBurst: 10}},
			attack: func(t *testing.T, r *guardRig) {
				var evs []mp
				for i := range 10 {
					evs = append(evs, rawStored(hashes(900+uint64(i), 1), seqTokens(0, 16)))
				}
				r.a.send(rawBatch(evs...), false)
			},
			counted: func(r *guardRig) bool {
				return r.p.Stats().Rejected[RejectRate] == 1 && r.p.podRejected(podA, RejectRate) == 1
			},
		},
		{
			name:    "malformed payload",
			attack:  func(t *testing.T, r *guardRig) { r.a.send([]byte{0x93, 0xcb, 0x41}, false) },
			counted: func(r *guardRig) bool { return r.p.Stats().MalformedBatches == 1 },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newGuardRig(t, tc.cfg)
			before := r.scores()
			tc.attack(t, r)
			eventually(t, "the rejection to be counted", func() bool { return tc.counted(r) })

			// The honest stream keeps flowing (after a reconnect, for the
			// oversized message, whose connection libzmq dropped).
			applied := r.p.Stats().Applied
			repeatUntil(t, "podA's next message", func() { r.a.publish(false) },
				func() bool { return r.p.streamNext(podA) > r.a.lastSeq() })
			if got := r.scores(); !slices.Equal(got, before) {
				t.Errorf("scores changed:\n got %v\nwant %v", got, before)
			}
			r.a.publish(false, r.a.stored(hashes(104, 1), 103, seqTokens(64, 16), "GPU"))
			waitIndexEquals(t, r.idx, r.a.groundTruth)
			if s := r.p.Stats(); s.Applied <= applied {
				t.Errorf("applied = %d after the follow-up, want more than %d", s.Applied, applied)
			}
		})
	}
}

// streamNext returns the sequence number pod's stream expects next.
func (p *Pool) streamNext(pod kvblock.Pod) uint64 {
	p.mu.Lock()
	s := p.streams[pod]
	p.mu.Unlock()
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

func (p *goPublisher) lastSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq - 1
}

// TestAllowAnySource checks the development escape hatch: an unknown peer
// publishing for a pod at another IP is indexed.
func TestAllowAnySource(t *testing.T) {
	port := freePort(t)
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	idx := newMemIndex(t)
	p := startPool(t, Config{Endpoint: ep, Security: Security{AllowAnySource: true}}, idx)
	pub := newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.1", topic: "kv@10.0.0.9:8000@model", pod: kvblock.Pod{Addr: "10.0.0.9:8000"}, noReplay: true})
	pub.waitSubscribed(func() bool { return p.streamStarted(pub.pod) })
	pub.publish(false, pub.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"))
	waitIndexEquals(t, idx, pub.groundTruth)
	if s := p.Stats(); s.Rejected != [numRejectReasons]uint64{} {
		t.Errorf("rejected = %v, want none", s.Rejected)
	}
}

// TestAddPodNeedsIPInBindMode checks that bind mode refuses a pod it could
// not admit by address.
func TestAddPodNeedsIPInBindMode(t *testing.T) {
	p, err := NewPool(Config{Mode: ModeBind}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.AddPod(context.Background(), kvblock.Pod{Addr: "vllm-0.vllm:8000"}, "", "")
	if err == nil || !strings.Contains(err.Error(), "allowAnySource") {
		t.Errorf("AddPod(hostname) = %v, want an error naming security.allowAnySource", err)
	}
}

// TestRejectedMetrics checks the exported series: the total by reason and
// the per-pod series of a known pod.
func TestRejectedMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	port := freePort(t)
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	p := startPool(t, Config{Endpoint: ep, Limits: Limits{MaxBlocksPerEvent: 1}}, newMemIndex(t), WithRegisterer(reg))
	if err := p.AddPod(context.Background(), podA, "", ""); err != nil {
		t.Fatal(err)
	}
	a := newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.2", topic: topicOf(podA), pod: podA, noReplay: true})
	a.waitSubscribed(func() bool { return p.streamStarted(podA) })
	a.send(rawBatch(rawStored(hashes(900, 2), nil)), false)
	eventually(t, "the rejection", func() bool { return p.Stats().Rejected[RejectBlocks] == 1 })
	want := `
# HELP kvtrack_events_rejected_total KV-event messages (and held publisher handshakes) rejected by the source checks and limits, by reason.
# TYPE kvtrack_events_rejected_total counter
kvtrack_events_rejected_total{reason="ambiguous_pod"} 0
kvtrack_events_rejected_total{reason="blocks"} 1
kvtrack_events_rejected_total{reason="events"} 0
kvtrack_events_rejected_total{reason="peer_mismatch"} 0
kvtrack_events_rejected_total{reason="pods"} 0
kvtrack_events_rejected_total{reason="rate"} 0
kvtrack_events_rejected_total{reason="tokens"} 0
kvtrack_events_rejected_total{reason="topic"} 0
kvtrack_events_rejected_total{reason="unknown_peer"} 0
kvtrack_events_rejected_total{reason="unknown_pod"} 0
# HELP kvtrack_events_pod_rejected_total KV-event messages of a known (pod, rank) rejected by a limit, by reason.
# TYPE kvtrack_events_pod_rejected_total counter
kvtrack_events_pod_rejected_total{pod="127.0.0.2:8000",reason="blocks"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kvtrack_events_rejected_total", "kvtrack_events_pod_rejected_total"); err != nil {
		t.Error(err)
	}
}

// BenchmarkMessageChecks is the per-message cost of the checks on a
// 1-block batch: the limits, the rate bucket and the bind-mode peer check
// (a cached topic, the peer's IPv4 matching it).
func BenchmarkMessageChecks(b *testing.B) {
	p, err := NewPool(Config{Mode: ModeBind}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.AddPod(context.Background(), podA, "", ""); err != nil {
		b.Fatal(err)
	}
	dec := NewDecoder()
	batch, err := dec.Decode(rawBatch(rawStored(hashes(900, 1), seqTokens(0, 16))))
	if err != nil {
		b.Fatal(err)
	}
	lim := p.cfg.Limits
	lim.EventsPerSecond = 1e12
	var bk bucket
	topic := []byte(topicOf(podA))
	b.Run("limits+rate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, over := lim.overLimits(batch); over {
				b.Fatal("over limits")
			}
			if !bk.take(len(batch.Events), lim.EventsPerSecond, lim.EventsBurst, p.clock.Add(1000)) {
				b.Fatal("rate")
			}
		}
	})
	b.Run("resolve", func(b *testing.B) { // a topic not yet cached
		sub := &subscription{checkPeer: true}
		rt := p.routes.Load()
		b.ReportAllocs()
		for b.Loop() {
			if p.resolve(sub, rt, topic, "127.0.0.2") == nil {
				b.Fatal("rejected")
			}
		}
	})
}

// TestResolve is the bind-mode rule for which pod a message is for: the
// topic's address must name a pod added to the pool (the whole
// address:port, or an IP alone when exactly one pod has it), of a rank that
// is followed, and the sender's IP must be that pod's.
func TestResolve(t *testing.T) {
	p, err := NewPool(Config{Mode: ModeBind, DataParallelSize: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range []kvblock.Pod{
		{Addr: "127.0.0.2:8000"},
		{Addr: "[::1]:8000"},
		{Addr: "10.0.0.7"},
		{Addr: "10.0.0.8:8000"}, {Addr: "10.0.0.8:8001"}, // two pods on one IP
		{Addr: "10.0.0.9:8000", Rank: 1}, // rank 1 only
	} {
		if err := p.AddPod(context.Background(), pod, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	const ok = RejectReason(255)
	tests := []struct {
		peer, topic string
		rank        int
		want        RejectReason // ok: accepted for wantPod
		wantPod     kvblock.Pod
	}{
		{"127.0.0.2", "kv@127.0.0.2:8000@m", 0, ok, kvblock.Pod{Addr: "127.0.0.2:8000"}},
		{"127.0.0.2", "kv@127.0.0.2:8000@m", 1, ok, kvblock.Pod{Addr: "127.0.0.2:8000", Rank: 1}},
		{"127.0.0.2", "kv@127.0.0.2:8000@org/model@v2", 0, ok, kvblock.Pod{Addr: "127.0.0.2:8000"}},
		{"::ffff:127.0.0.2", "kv@127.0.0.2:8000@m", 0, ok, kvblock.Pod{Addr: "127.0.0.2:8000"}},
		{"127.0.0.2", "kv@127.0.0.2@m", 0, ok, kvblock.Pod{Addr: "127.0.0.2:8000"}}, // no port: the one pod at that IP
		{"::1", "kv@[::1]:8000@m", 0, ok, kvblock.Pod{Addr: "[::1]:8000"}},
		{"::1", "kv@::1@m", 0, ok, kvblock.Pod{Addr: "[::1]:8000"}},
		{"10.0.0.7", "kv@10.0.0.7@m", 0, ok, kvblock.Pod{Addr: "10.0.0.7"}},
		{"10.0.0.9", "kv@10.0.0.9:8000@m", 1, ok, kvblock.Pod{Addr: "10.0.0.9:8000", Rank: 1}},

		{"127.0.0.2", "kv@127.0.0.2:9999@m", 0, RejectUnknownPod, kvblock.Pod{}}, // a pod minted from a known IP
		{"127.0.0.2", "kv@127.0.0.2:8000x@m", 0, RejectUnknownPod, kvblock.Pod{}},
		{"10.0.0.9", "kv@10.0.0.9:8000@m", 0, RejectUnknownPod, kvblock.Pod{}}, // rank 0 not added
		{"10.0.0.8", "kv@10.0.0.8@m", 0, RejectAmbiguousPod, kvblock.Pod{}},
		{"127.0.0.2", "kv@127.0.0.20:8000@m", 0, RejectUnknownPod, kvblock.Pod{}},
		{"127.0.0.2", "kv@10.0.0.7@m", 0, RejectPeerMismatch, kvblock.Pod{}},
		{"::1", "kv@127.0.0.2:8000@m", 0, RejectPeerMismatch, kvblock.Pod{}},
		{"127.0.0.3", "kv@127.0.0.3:8000@m", 0, RejectUnknownPeer, kvblock.Pod{}}, // not a known pod's IP
		{"", "kv@127.0.0.2:8000@m", 0, RejectUnknownPeer, kvblock.Pod{}},
		{"127.0.0.2", "kv@pod-a:8000@m", 0, RejectUnknownPod, kvblock.Pod{}},
		{"127.0.0.2", "kv@" + strings.Repeat("1", maxTopicBytes) + "@m", 0, RejectTopic, kvblock.Pod{}},
	}
	for _, tt := range tests {
		before := p.Stats().Rejected
		s := p.resolve(&subscription{checkPeer: true, rank: tt.rank}, p.routes.Load(), []byte(tt.topic), tt.peer)
		after := p.Stats().Rejected
		switch {
		case tt.want == ok && (s == nil || s.pod != tt.wantPod):
			t.Errorf("resolve(peer %q, %q, rank %d) = %v, want %v", tt.peer, tt.topic, tt.rank, s, tt.wantPod)
		case tt.want != ok && (s != nil || after[tt.want] != before[tt.want]+1):
			t.Errorf("resolve(peer %q, %q, rank %d) = %v, rejected %v -> %v; want %s counted", tt.peer, tt.topic, tt.rank, s, before, after, tt.want)
		}
	}
	if err := p.RemovePod(context.Background(), kvblock.Pod{Addr: "127.0.0.2:8000"}); err != nil {
		t.Fatal(err)
	}
	if s := p.resolve(&subscription{checkPeer: true}, p.routes.Load(), []byte("kv@127.0.0.2:8000@m"), "127.0.0.2"); s != nil {
		t.Error("resolve accepts a removed pod")
	}
	if n := p.Stats().Pods; n != 9 { // 4 pods x 2 ranks, and 10.0.0.9's rank 1
		t.Errorf("Pods = %d after RemovePod, want 9", n)
	}
}

func TestBucket(t *testing.T) {
	var b bucket
	const sec = int64(time.Second)
	steps := []struct {
		n    int
		at   int64
		want bool
	}{
		{10, 1 * sec, true},    // starts full
		{1, 1 * sec, false},    // empty
		{5, 2 * sec, true},     // refilled 5 in a second
		{1, 2 * sec, false},    // empty again
		{10, 100 * sec, true},  // capped at the burst
		{11, 200 * sec, false}, // more than the burst never passes
	}
	for i, s := range steps {
		if got := b.take(s.n, 5, 10, s.at); got != s.want {
			t.Errorf("step %d: take(%d) at %ds = %v, want %v", i, s.n, s.at/sec, got, s.want)
		}
	}
}

// TestEngineConnectsBeforeItsPodIsAdded checks that an engine that connects
// before the router knows its pod is held, not locked out (a libzmq peer
// whose handshake is refused never reconnects), and is admitted once
// AddPod names its IP.
func TestEngineConnectsBeforeItsPodIsAdded(t *testing.T) {
	port := freePort(t)
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	idx := newMemIndex(t)
	p := startPool(t, Config{Endpoint: ep}, idx)
	pub := newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.2", topic: topicOf(podA), pod: podA, noReplay: true})
	eventually(t, "the held handshake", func() bool { return p.Stats().Rejected[RejectUnknownPeer] > 0 })
	pub.publish(false, rawStored(hashes(900, 2), seqTokens(0, 32))) // not delivered: no connection yet
	time.Sleep(50 * time.Millisecond)
	if s := p.Stats(); s.Received != 0 {
		t.Fatalf("received %d messages from a pod not yet added, want 0", s.Received)
	}
	if err := p.AddPod(context.Background(), podA, "", ""); err != nil {
		t.Fatal(err)
	}
	pub.waitSubscribed(func() bool { return p.streamStarted(podA) })
	pub.publish(false, pub.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"))
	waitIndexEquals(t, idx, pub.groundTruth)
}
