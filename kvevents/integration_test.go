package kvevents

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"strings"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func connectPool(t *testing.T, idx kvblock.Index, opts ...Option) *Pool {
	t.Helper()
	return startPool(t, Config{Mode: ModeConnect, ReplayTimeout: time.Second}, idx, opts...)
}

func addPub(t *testing.T, p *Pool, pub *goPublisher) {
	t.Helper()
	if err := p.AddPod(context.Background(), pub.pod, pub.pubEP, pub.replayEP); err != nil {
		t.Fatal(err)
	}
	pub.waitSubscribed(func() bool { return p.Stats().Received > 0 && p.streamStarted(pub.pod) })
}

// streamStarted reports whether a message of pod has been processed.
func (p *Pool) streamStarted(pod kvblock.Pod) bool {
	p.mu.Lock()
	s := p.streams[pod]
	p.mu.Unlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

func TestIngestConnectMode(t *testing.T) {
	for _, layout := range []string{"array", "map"} {
		t.Run(layout, func(t *testing.T) {
			idx := newMemIndex(t)
			p := connectPool(t, idx)
			pub := newGoPublisher(t, pubOpts{layout: layout})
			addPub(t, p, pub)

			pub.publish(false, pub.stored(hashes(100, 4), 0, seqTokens(0, 64), "GPU"))
			pub.publish(false, pub.stored(hashes(104, 2), 103, seqTokens(64, 32), "GPU"), pub.stored(hashes(100, 2), 0, seqTokens(0, 32), "CPU"))
			pub.publish(false, pub.removed(hashes(102, 1), "GPU"), pub.removed(hashes(100, 1), "CPU"))
			waitIndexEquals(t, idx, pub.groundTruth)
			if s := p.Stats(); s.SequenceGaps != 0 || s.Lost != 0 || s.MalformedBatches != 0 {
				t.Errorf("stats = %+v, want no gaps, losses or malformed batches", s)
			}
		})
	}
}

func TestIngestBindModePodFromTopic(t *testing.T) {
	port := freePortPair(t)
	idx := newMemIndex(t)
	filter := "kv@"
	p := startPool(t, Config{Mode: ModeBind, Endpoint: fmt.Sprintf("tcp://127.0.0.1:%d", port), DataParallelSize: 2, TopicFilter: &filter}, idx)
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	ep1 := fmt.Sprintf("tcp://127.0.0.1:%d", port+1)
	// Two pods, at 127.0.0.2 and 127.0.0.3, publishing from their own IPs.
	for _, addr := range []string{"127.0.0.2:8000", "127.0.0.3:8000"} {
		if err := p.AddPod(context.Background(), kvblock.Pod{Addr: addr}, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	pods := []*goPublisher{
		newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.2", topic: "kv@127.0.0.2:8000@Qwen/Qwen3-8B", pod: kvblock.Pod{Addr: "127.0.0.2:8000"}, noReplay: true}),
		newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.3", topic: "kv@127.0.0.3:8000@Qwen/Qwen3-8B", pod: kvblock.Pod{Addr: "127.0.0.3:8000"}, noReplay: true, layout: "map"}),
		// DP rank 1 of the first pod publishes to port + 1.
		newGoPublisher(t, pubOpts{connectTo: ep1, source: "127.0.0.2", topic: "kv@127.0.0.2:8000@Qwen/Qwen3-8B", pod: kvblock.Pod{Addr: "127.0.0.2:8000", Rank: 1}, noReplay: true}),
	}
	other := newGoPublisher(t, pubOpts{connectTo: ep, source: "127.0.0.2", topic: "other-topic", noReplay: true})
	for _, pub := range pods {
		pub.waitSubscribed(func() bool { return p.streamStarted(pub.pod) })
	}
	for i, pub := range pods {
		pub.publish(false, pub.stored(hashes(uint64(1000*(i+1)), 3), 0, seqTokens(0, 48), "GPU"))
	}
	other.publish(false, other.stored(hashes(9000, 1), 0, seqTokens(0, 16), "GPU")) // filtered out by kv@
	waitIndexEquals(t, idx, func() map[refEntry]int {
		want := map[refEntry]int{}
		for _, pub := range pods {
			maps.Copy(want, pub.groundTruth())
		}
		return want
	})
	if s := p.Stats(); s.Pods != 4 || s.PodsWithoutReplay != 4 { // each pod added has 2 ranks
		t.Errorf("pods, without replay = %d, %d; want 4, 4 (no replay port configured)", s.Pods, s.PodsWithoutReplay)
	}
}

func TestIngestBindModeUnknownTopicCounted(t *testing.T) {
	port := freePort(t)
	empty := ""
	p := startPool(t, Config{Endpoint: fmt.Sprintf("tcp://127.0.0.1:%d", port), TopicFilter: &empty}, newRefIndex())
	if err := p.AddPod(context.Background(), kvblock.Pod{Addr: "127.0.0.1:8000"}, "", ""); err != nil {
		t.Fatal(err)
	}
	pub := newGoPublisher(t, pubOpts{connectTo: fmt.Sprintf("tcp://127.0.0.1:%d", port), topic: "no-pod-here", noReplay: true})
	pub.waitSubscribed(func() bool { return p.Stats().DroppedUnknownPod > 0 })
	if s := p.Stats(); s.Pods != 1 || p.streamStarted(kvblock.Pod{Addr: "127.0.0.1:8000"}) {
		t.Errorf("Pods = %d, started %v; want the added pod only, without messages", s.Pods, p.streamStarted(kvblock.Pod{Addr: "127.0.0.1:8000"}))
	}
}

func TestReplayFillsGap(t *testing.T) {
	for _, replyTopic := range []bool{false, true} {
		t.Run(fmt.Sprintf("replyTopic=%v", replyTopic), func(t *testing.T) {
			idx := newMemIndex(t)
			p := connectPool(t, idx)
			pub := newGoPublisher(t, pubOpts{replyTopic: replyTopic, topic: "kv-events"})
			addPub(t, p, pub)

			pub.publish(false, pub.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"))
			pub.publish(true, pub.stored(hashes(102, 2), 101, seqTokens(32, 32), "GPU")) // lost on the wire
			pub.publish(true, pub.removed(hashes(100, 1), "GPU"))                        // lost on the wire
			pub.publish(false, pub.removed(hashes(103, 1), "GPU"))                       // needs 103 stored first
			waitIndexEquals(t, idx, pub.groundTruth)
			eventually(t, "the replay to be counted", func() bool { return p.Stats().Replays == 1 })
			if s := p.Stats(); s.SequenceGaps != 1 || s.Lost != 0 || s.ReplayFailures != 0 {
				t.Errorf("gaps, lost, replay failures = %d, %d, %d; want 1, 0, 0", s.SequenceGaps, s.Lost, s.ReplayFailures)
			}
		})
	}
}

// TestLiveEventsHeldDuringReplay checks that live messages arriving while a
// replay is in flight wait for it: applied first, the remove of a block the
// lost message stored would be a no-op and the block would stay indexed.
func TestLiveEventsHeldDuringReplay(t *testing.T) {
	idx := newMemIndex(t)
	p := connectPool(t, idx)
	pub := newGoPublisher(t, pubOpts{})
	addPub(t, p, pub)

	release := make(chan struct{})
	pub.mu.Lock()
	pub.replayHook = func(uint64) { <-release }
	pub.mu.Unlock()

	pub.publish(true, pub.stored(hashes(200, 3), 0, seqTokens(0, 48), "GPU")) // lost
	pub.publish(false, pub.stored(hashes(300, 1), 0, seqTokens(0, 16), "CPU"))
	eventually(t, "the replay to start", func() bool { return p.Stats().SequenceGaps == 1 })
	for i := range 20 {
		pub.publish(false, pub.removed(hashes(200+uint64(i%3), 1), "GPU"), pub.stored(hashes(200+uint64(i%3), 1), 0, seqTokens(0, 16), "GPU"))
	}
	pub.publish(false, pub.removed(hashes(201, 1), "GPU"))
	eventually(t, "live messages to be held", func() bool { return p.heldCount(pub.pod) == 22 })
	if st, _ := idx.Stats(context.Background()); st.Entries != 0 {
		got := st.Entries
		t.Errorf("index has %d entries while the replay is in flight, want 0 (live events held back)", got)
	}
	close(release)
	waitIndexEquals(t, idx, pub.groundTruth)
}

func (p *Pool) heldCount(pod kvblock.Pod) int {
	p.mu.Lock()
	s := p.streams[pod]
	p.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

func TestRestartClearsPod(t *testing.T) {
	idx := newMemIndex(t)
	p := connectPool(t, idx)
	pub := newGoPublisher(t, pubOpts{})
	addPub(t, p, pub)
	// Enough messages that the restarted publisher's first sequence number
	// to arrive (after ZMQ reconnects) is below the old one's: that is what
	// tells a restart from a gap.
	for i := range 100 {
		pub.publish(false, pub.stored(hashes(uint64(100+10*i), 2), 0, seqTokens(0, 32), "GPU"))
	}
	waitIndexEquals(t, idx, pub.groundTruth)

	pub.restart() // sequence back to 0, empty cache
	pub.waitSubscribed(func() bool { return p.Stats().Restarts == 1 })
	pub.publish(false, pub.stored(hashes(5000, 2), 0, seqTokens(0, 32), "GPU"))
	waitIndexEquals(t, idx, pub.groundTruth)
}

func TestAllBlocksClearedClearsOnlyThatRank(t *testing.T) {
	idx := newMemIndex(t)
	p := connectPool(t, idx)
	r0 := newGoPublisher(t, pubOpts{pod: kvblock.Pod{Addr: "10.0.0.9:8000", Rank: 0}})
	r1 := newGoPublisher(t, pubOpts{pod: kvblock.Pod{Addr: "10.0.0.9:8000", Rank: 1}})
	addPub(t, p, r0)
	addPub(t, p, r1)
	r0.publish(false, r0.stored(hashes(100, 3), 0, seqTokens(0, 48), "GPU"))
	r1.publish(false, r1.stored(hashes(100, 3), 0, seqTokens(0, 48), "GPU"))
	r0.publish(false, r0.cleared(), r0.stored(hashes(500, 1), 0, seqTokens(0, 16), "GPU"))
	both := func() map[refEntry]int {
		want := r0.groundTruth()
		maps.Copy(want, r1.groundTruth())
		return want
	}
	waitIndexEquals(t, idx, both)
}

func TestNoReplayEndpointDegraded(t *testing.T) {
	idx := newMemIndex(t)
	reg := prometheus.NewPedanticRegistry()
	p := connectPool(t, idx, WithRegisterer(reg))
	pub := newGoPublisher(t, pubOpts{noReplay: true})
	addPub(t, p, pub)

	pub.publish(true, pub.stored(hashes(100, 1), 0, seqTokens(0, 16), "GPU")) // lost for good
	pub.publish(false, pub.stored(hashes(200, 1), 0, seqTokens(0, 16), "GPU"))
	eventually(t, "the gap to be counted", func() bool { return p.Stats().Lost == 1 })

	want := fmt.Sprintf(`
# HELP kvtrack_events_pods_without_replay (pod, rank) event streams with no replay endpoint configured: a gap is counted, not repaired.
# TYPE kvtrack_events_pods_without_replay gauge
kvtrack_events_pods_without_replay 1
# HELP kvtrack_events_replay_configured 1 if the (pod, rank) event stream has a replay endpoint configured, else 0.
# TYPE kvtrack_events_replay_configured gauge
kvtrack_events_replay_configured{pod=%q,rank="0"} 0
# HELP kvtrack_events_sequence_gaps_total Gaps seen in a (pod, rank) message sequence.
# TYPE kvtrack_events_sequence_gaps_total counter
kvtrack_events_sequence_gaps_total 1
`, pub.pod.Addr)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kvtrack_events_replay_configured", "kvtrack_events_pods_without_replay", "kvtrack_events_sequence_gaps_total"); err != nil {
		t.Error(err)
	}
	// The stream's last message time is exported, for "pod went silent".
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var last float64
	for _, mf := range mfs {
		if mf.GetName() == "kvtrack_events_last_timestamp_seconds" && len(mf.GetMetric()) == 1 {
			last = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if now := float64(time.Now().Unix()); last < now-3600 || last > now+1 {
		t.Errorf("kvtrack_events_last_timestamp_seconds = %v, want about now (%v)", last, now)
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := NewPool(Config{Mode: ModeBind}, newRefIndex(), WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"kvtrack_events_received_total", "kvtrack_events_applied_total", "kvtrack_events_dropped_total",
		"kvtrack_events_malformed_total", "kvtrack_events_unknown_tags_total", "kvtrack_events_unknown_fields_total",
		"kvtrack_events_sequence_gaps_total", "kvtrack_events_replays_total", "kvtrack_events_restarts_total",
		"kvtrack_events_lost_total", "kvtrack_events_hash_mismatches_total", "kvtrack_events_pods", "kvtrack_events_pods_without_replay",
	} {
		if !got[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
}

func TestMalformedPayloadSkipped(t *testing.T) {
	idx := newMemIndex(t)
	p := connectPool(t, idx)
	pub := newGoPublisher(t, pubOpts{})
	addPub(t, p, pub)
	pub.send([]byte{0x93, 0xcb, 1, 2}, false) // truncated
	pub.publish(false, pub.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"), mpArr(mpStr("BlockEvicted"), mpUints(1)))
	waitIndexEquals(t, idx, pub.groundTruth)
	if s := p.Stats(); s.MalformedBatches != 1 || s.UnknownTags != 1 || s.SequenceGaps != 0 {
		t.Errorf("malformed batches, unknown tags, gaps = %d, %d, %d; want 1, 1, 0", s.MalformedBatches, s.UnknownTags, s.SequenceGaps)
	}
}

func TestRemovePodClearsAndCloses(t *testing.T) {
	idx := newMemIndex(t)
	p := connectPool(t, idx)
	a := newGoPublisher(t, pubOpts{})
	b := newGoPublisher(t, pubOpts{})
	addPub(t, p, a)
	addPub(t, p, b)
	a.publish(false, a.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"))
	b.publish(false, b.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU"))
	waitIndexEquals(t, idx, func() map[refEntry]int { w := a.groundTruth(); maps.Copy(w, b.groundTruth()); return w })

	monitor := a.monitorDisconnect()
	if err := p.RemovePod(context.Background(), a.pod); err != nil {
		t.Fatal(err)
	}
	if d := indexDiff(idx, b.groundTruth()); d != "" {
		t.Fatalf("after RemovePod the index still holds the pod's blocks:\n%s", d)
	}
	eventually(t, "the SUB socket to disconnect from the publisher", monitor)
	a.publish(false, a.stored(hashes(900, 1), 0, seqTokens(0, 16), "GPU"))
	b.publish(false, b.stored(hashes(900, 1), 0, seqTokens(0, 16), "GPU"))
	waitIndexEquals(t, idx, b.groundTruth)
	if s := p.Stats(); s.Pods != 1 {
		t.Errorf("Pods = %d, want 1", s.Pods)
	}
}

// TestBindModeReplayPort checks that in bind mode a gap is replayed from the
// pod's host (taken from the topic) at Config.ReplayPort.
func TestBindModeReplayPort(t *testing.T) {
	port := freePort(t)
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	replayPort := freePort(t)
	idx := newMemIndex(t)
	p := startPool(t, Config{Endpoint: ep, ReplayPort: replayPort, ReplayTimeout: time.Second}, idx)
	pub := newGoPublisher(t, pubOpts{connectTo: ep, topic: "kv@127.0.0.1:8000@model", pod: kvblock.Pod{Addr: "127.0.0.1:8000"}, replayPort: replayPort})
	if err := p.AddPod(context.Background(), pub.pod, "", ""); err != nil {
		t.Fatal(err)
	}
	pub.waitSubscribed(func() bool { return p.streamStarted(pub.pod) })
	pub.publish(true, pub.stored(hashes(100, 2), 0, seqTokens(0, 32), "GPU")) // lost on the wire
	pub.publish(false, pub.stored(hashes(102, 1), 101, seqTokens(32, 16), "GPU"))
	waitIndexEquals(t, idx, pub.groundTruth)
	if s := p.Stats(); s.Replays != 1 || s.PodsWithoutReplay != 0 {
		t.Errorf("replays, degraded = %d, %d; want 1, 0", s.Replays, s.PodsWithoutReplay)
	}
}
