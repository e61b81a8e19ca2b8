package kvcache_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/internal/testredis"
	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvevents"
)

// These tests feed Indexers through real libzmq sockets from vllmfake's
// publisher, which speaks vLLM's wire format.

const seed = "42"

func tokens(from, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(from + i)
	}
	return out
}

// vllmKeys are the hashes vLLM publishes for tokens' full blocks with
// PYTHONHASHSEED=42, sha256 and block size 16.
func vllmKeys(t testing.TB, toks []uint32) []kvblock.Key {
	t.Helper()
	h, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: blockhash.SHA256, Seed: seed, BlockSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := h.BlockKeys(nil, toks, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// engine is one fake vLLM engine's event publisher.
type engine struct {
	t   *testing.T
	pub *vllmfake.Publisher
}

// newEngine binds a publisher on a free loopback port (as vLLM binds
// tcp://*:5557) and returns it with the port.
func newEngine(t *testing.T, topic string) (*engine, int) {
	t.Helper()
	pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	var port int
	if _, err := fmt.Sscanf(pub.Endpoint()[strings.LastIndexByte(pub.Endpoint(), ':')+1:], "%d", &port); err != nil {
		t.Fatalf("publisher endpoint %q: %v", pub.Endpoint(), err)
	}
	return &engine{t, pub}, port
}

// connectEngine connects a publisher to a consumer that binds endpoint.
func connectEngine(t *testing.T, endpoint, topic string) *engine {
	t.Helper()
	pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: endpoint, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	return &engine{t, pub}
}

func (e *engine) waitSubscribed() {
	e.t.Helper()
	if err := e.pub.WaitSubscribed(testwait.Context(e.t)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *engine) store(toks []uint32) {
	e.t.Helper()
	ev := vllmfake.Event{Kind: vllmfake.BlockStored, Hashes: vllmKeys(e.t, toks), Tokens: toks, BlockSize: 16}
	if _, err := e.pub.Publish(1, []vllmfake.Event{ev}); err != nil {
		e.t.Fatal(err)
	}
}

// storeOn publishes the blocks of toks as stored on medium ("CPU",
// "STORAGE"), as vLLM's offloading connectors publish them.
func (e *engine) storeOn(toks []uint32, medium string) {
	e.t.Helper()
	ev := vllmfake.Event{Kind: vllmfake.BlockStored, Hashes: vllmKeys(e.t, toks), Tokens: toks, BlockSize: 16, Medium: medium}
	if _, err := e.pub.Publish(1, []vllmfake.Event{ev}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *engine) remove(keys []kvblock.Key) {
	e.t.Helper()
	if _, err := e.pub.Publish(2, []vllmfake.Event{{Kind: vllmfake.BlockRemoved, Hashes: keys}}); err != nil {
		e.t.Fatal(err)
	}
}

// start builds an Indexer following events with kvevents' ZMQ source,
// starts it and waits until it is ready; it is closed when the test ends.
func start(t *testing.T, cfg kvcache.Config, opts ...kvcache.Option) *kvcache.Indexer {
	t.Helper()
	cfg.Hash.Seed = seed
	ix, err := kvcache.New(cfg, append([]kvcache.Option{kvcache.WithEventSource(kvevents.Source)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ix.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	if err := ix.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ix.Ready():
	case <-ix.Done():
		t.Fatalf("events stopped before they were ready: %v", ix.Err())
	}
	return ix
}

// matched scores a request that continues toks by one token, as the next
// turn of a conversation does, so that every full block of toks is within
// vLLM's lookup (which never includes a prompt's last token).
func matched(t *testing.T, ix *kvcache.Indexer, pod string, toks []uint32) int {
	t.Helper()
	next := append(toks[:len(toks):len(toks)], 7)
	res, err := ix.Score(context.Background(), kvcache.Request{TokenIDs: next, Pods: []string{pod}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Pods[0].Matched
}

func waitMatched(t *testing.T, ix *kvcache.Indexer, pod string, toks []uint32, want int) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%s to match %d blocks", pod, want), func() bool {
		return matched(t, ix, pod, toks) == want
	})
}

// TestSharedRedisIndexersSeeEachOthersEvents is two EPP replicas over one
// redis (a standalone server, and a cluster of three masters): the one with
// events enabled applies a pod's events, and the read-only one
// (events.enabled false) scores from them at once.
func TestSharedRedisIndexersSeeEachOthersEvents(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis func(t *testing.T) kvcache.RedisConfig
	}{
		{"standalone", func(t *testing.T) kvcache.RedisConfig {
			return kvcache.RedisConfig{Addr: testredis.Start(t)}
		}},
		{"cluster", func(t *testing.T) kvcache.RedisConfig {
			return kvcache.RedisConfig{Addr: testredis.StartCluster(t, 3, 0).Addr(),
				Cluster: kvcache.RedisClusterConfig{Enabled: true}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testSharedRedisIndexers(t, tc.redis(t)) })
	}
}

func testSharedRedisIndexers(t *testing.T, rc kvcache.RedisConfig) {
	const pod = "127.0.0.1:8000"
	eng, port := newEngine(t, "kv@"+pod+"@m")
	off := false
	writer := start(t, kvcache.Config{Index: kvcache.IndexConfig{Backend: kvcache.IndexRedis}, Redis: rc,
		Events: kvcache.EventsConfig{Port: port}})
	reader := start(t, kvcache.Config{Index: kvcache.IndexConfig{Backend: kvcache.IndexRedis}, Redis: rc,
		Events: kvcache.EventsConfig{Enabled: &off}})

	ctx := context.Background()
	// Both replicas see the pod join; only the writer subscribes.
	for _, ix := range []*kvcache.Indexer{writer, reader} {
		if err := ix.AddPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	eng.waitSubscribed()

	prompt := tokens(1, 4*16)
	eng.store(prompt)
	waitMatched(t, reader, pod, prompt, 4)
	eng.remove(vllmKeys(t, prompt)[2:])
	waitMatched(t, reader, pod, prompt, 2)

	// The pod leaves: the read-only replica leaves the entries alone, the
	// writer clears them, and the reader sees that.
	if err := reader.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := matched(t, writer, pod, prompt); got != 2 {
		t.Fatalf("after the read-only replica removed the pod, it matches %d, want 2", got)
	}
	if err := writer.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := matched(t, reader, pod, prompt); got != 0 {
		t.Errorf("after the writer removed the pod, the reader sees %d blocks, want 0", got)
	}
}

// TestConnectModeDefaultsAcceptVLLMDefaultTopic feeds an Indexer with
// default events settings from an engine publishing under vLLM's default
// empty topic: in connect mode the socket, not the topic, names the pod.
func TestConnectModeDefaultsAcceptVLLMDefaultTopic(t *testing.T) {
	const pod = "127.0.0.1:8000"
	eng, port := newEngine(t, "")
	ix := start(t, kvcache.Config{Events: kvcache.EventsConfig{Port: port}})
	if err := ix.AddPod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	eng.waitSubscribed()
	prompt := tokens(3, 2*16)
	eng.store(prompt)
	waitMatched(t, ix, pod, prompt, 2)
}

// TestBindModeNamesPodByTopic has the engine connect to the Indexer's bound
// endpoint; the pod is the one its topic names, and it must be a pod the
// Indexer was told about (bind mode admits only known pods' addresses).
func TestBindModeNamesPodByTopic(t *testing.T) {
	const pod = "127.0.0.1:8000"
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	ix := start(t, kvcache.Config{Events: kvcache.EventsConfig{Mode: kvcache.EventsBind, Endpoint: endpoint}})
	if err := ix.AddPod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	eng := connectEngine(t, endpoint, "kv@"+pod+"@m")
	eng.waitSubscribed()
	prompt := tokens(7, 3*16)
	eng.store(prompt)
	waitMatched(t, ix, pod, prompt, 3)
	if got := matched(t, ix, "127.0.0.2:8000", prompt); got != 0 {
		t.Errorf("another pod matches %d blocks, want 0", got)
	}
}

// TestMetricsShareOneRegistry registers everything an Indexer has (the
// index's, the event pool's and its own metrics) on one registry, feeds it
// through a real socket and checks each family reports what happened; the
// beat logs the index line when configured.
func TestMetricsShareOneRegistry(t *testing.T) {
	const pod = "127.0.0.1:8000"
	eng, port := newEngine(t, "kv@"+pod+"@m")
	reg := prometheus.NewRegistry()
	var mu sync.Mutex
	var logs []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		logs = append(logs, prefix+" "+args)
		mu.Unlock()
	}, funcr.Options{})
	ix := start(t, kvcache.Config{
		Events:      kvcache.EventsConfig{Port: port},
		Speculative: kvcache.SpeculativeConfig{Enabled: true},
		Metrics:     kvcache.MetricsConfig{BeatInterval: kvcache.Duration(20 * time.Millisecond)},
	}, kvcache.WithRegisterer(reg), kvcache.WithLogger(log))

	ctx := context.Background()
	if err := ix.AddPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eng.waitSubscribed()
	prompt := tokens(1, 4*16)
	eng.store(prompt)
	waitMatched(t, ix, pod, prompt, 4) // one score, a key-cache miss, then hits

	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	values := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "kvtrack_") {
			t.Errorf("metric %s lacks the kvtrack_ prefix", f.GetName())
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			values[f.GetName()] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			values[f.GetName()] = m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			values[f.GetName()] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	for name, atLeast := range map[string]float64{
		"kvtrack_index_entries":                    4,
		"kvtrack_index_admissions_total":           4,
		"kvtrack_events_received_total":            1,
		"kvtrack_events_applied_total":             1,
		"kvtrack_indexer_scores_total":             1,
		"kvtrack_indexer_score_blocks_total":       4,
		"kvtrack_indexer_score_duration_seconds":   1,
		"kvtrack_indexer_key_cache_misses_total":   1,
		"kvtrack_indexer_chain_cache_misses_total": 4,
	} {
		got, ok := values[name]
		if !ok {
			t.Errorf("%s not registered", name)
		} else if got < atLeast {
			t.Errorf("%s = %v, want at least %v", name, got, atLeast)
		}
	}

	testwait.For(t, "a metrics beat line with entries=4", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range logs {
			if strings.Contains(l, `"msg"="index"`) && strings.Contains(l, `"entries"=4`) {
				return true
			}
		}
		return false
	})
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

// TestDefaultConfigBindsNothing starts two Indexers with the default events
// configuration side by side: had either bound a port, the other's Start
// would fail. Connect mode opens sockets only as pods are added.
func TestDefaultConfigBindsNothing(t *testing.T) {
	a, b := start(t, kvcache.Config{}), start(t, kvcache.Config{})
	if a.Config().Events.Mode != kvcache.EventsConnect || b.Config().Events.Mode != kvcache.EventsConnect {
		t.Fatalf("default events.mode = %q, want connect", a.Config().Events.Mode)
	}
}

// TestStartReportsABindConflict is the EPP that must not look healthy when
// its event port is taken: the second Indexer binding the same endpoint
// fails in Start, with the endpoint in the error.
func TestStartReportsABindConflict(t *testing.T) {
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	cfg := kvcache.Config{Hash: kvcache.HashConfig{Seed: seed}, Events: kvcache.EventsConfig{Mode: kvcache.EventsBind, Endpoint: endpoint}}
	start(t, cfg)
	second, err := kvcache.New(cfg, kvcache.WithEventSource(kvevents.Source))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	err = second.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(endpoint, "tcp://")) {
		t.Fatalf("Start on a taken endpoint = %v, want an error naming %s", err, endpoint)
	}
}

// TestCloseReleasesTheEndpointAndMetrics closes a bound Indexer and builds
// the same one again on the same registry: the port and every metric
// registration were released.
func TestCloseReleasesTheEndpointAndMetrics(t *testing.T) {
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	cfg := kvcache.Config{Hash: kvcache.HashConfig{Seed: seed}, Events: kvcache.EventsConfig{Mode: kvcache.EventsBind, Endpoint: endpoint}}
	reg := prometheus.NewRegistry()
	for i := range 2 {
		ix, err := kvcache.New(cfg, kvcache.WithEventSource(kvevents.Source), kvcache.WithRegisterer(reg))
		if err != nil {
			t.Fatalf("New #%d: %v", i+1, err)
		}
		if err := ix.Start(t.Context()); err != nil {
			t.Fatalf("Start #%d: %v", i+1, err)
		}
		if err := ix.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
		if err := ix.Close(); err != nil {
			t.Errorf("second Close = %v, want nil (idempotent)", err)
		}
		if err := ix.AddPod(t.Context(), "127.0.0.1:8000"); err == nil {
			t.Errorf("AddPod after Close = nil, want ErrClosed")
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 0 {
		t.Errorf("after Close the registry still holds %d metric families, e.g. %s", len(mfs), mfs[0].GetName())
	}
}

// TestRemovePodForgetsBlocks: a pod that leaves the pool takes its blocks
// with it.
func TestRemovePodForgetsBlocks(t *testing.T) {
	const pod = "127.0.0.1:8000"
	eng, port := newEngine(t, "")
	ix := start(t, kvcache.Config{Events: kvcache.EventsConfig{Port: port}})
	ctx := context.Background()
	if err := ix.AddPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eng.waitSubscribed()
	prompt := tokens(1, 2*16)
	eng.store(prompt)
	waitMatched(t, ix, pod, prompt, 2)
	if err := ix.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := matched(t, ix, pod, prompt); got != 0 {
		t.Errorf("after RemovePod the pod matches %d blocks, want 0", got)
	}
}

// TestOffloadedBlocksScoreBelowGPUBlocks: three engines publish the same
// prompt's blocks over ZMQ, one on GPU, one offloaded to CPU, none on the
// third; the GPU pod ranks first, the CPU-only pod second, above the miss.
func TestOffloadedBlocksScoreBelowGPUBlocks(t *testing.T) {
	gpu, gpuPort := newEngine(t, "")
	cpu, cpuPort := newEngine(t, "")
	if gpuPort == cpuPort {
		t.Fatal("two publishers on one port")
	}
	prompt := tokens(31, 4*16)
	next := append(prompt[:len(prompt):len(prompt)], 9)
	// Connect mode dials <pod address>:events.port, and both engines
	// publish on loopback on ports of their own: each is followed by an
	// Indexer of its own, both applying events to one index.
	ix := start(t, kvcache.Config{Events: kvcache.EventsConfig{Port: gpuPort}})
	cpuIx := start(t, kvcache.Config{Events: kvcache.EventsConfig{Port: cpuPort}}, kvcache.WithIndex(ix.Index()))
	if err := ix.AddPod(context.Background(), "127.0.0.1:8000"); err != nil {
		t.Fatal(err)
	}
	if err := cpuIx.AddPod(context.Background(), "127.0.0.1:8001"); err != nil {
		t.Fatal(err)
	}
	gpu.waitSubscribed()
	cpu.waitSubscribed()
	gpu.store(prompt)
	cpu.storeOn(prompt, "CPU")
	pods := []string{"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}
	var res kvcache.Result
	testwait.For(t, "both engines' blocks to be indexed", func() bool {
		var err error
		res, err = ix.Score(context.Background(), kvcache.Request{TokenIDs: next, Pods: pods})
		if err != nil {
			t.Fatal(err)
		}
		return res.Pods[0].Matched == 4 && res.Pods[1].Matched == 4
	})
	if g, c, miss := res.Pods[0].Score, res.Pods[1].Score, res.Pods[2].Score; !(g > c && c > miss) {
		t.Errorf("scores GPU %v, CPU %v, miss %v; want GPU > CPU > miss", g, c, miss)
	}
}

// TestFullyCachedPromptReportsVLLMsCachedTokens: vLLM looks up at most a
// prompt's first n-1 tokens, so a prompt of exactly two cached blocks
// reuses one, and one token more reuses both.
func TestFullyCachedPromptReportsVLLMsCachedTokens(t *testing.T) {
	const pod = "127.0.0.1:8000"
	eng, port := newEngine(t, "")
	ix := start(t, kvcache.Config{Events: kvcache.EventsConfig{Port: port}})
	if err := ix.AddPod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	eng.waitSubscribed()
	prompt := tokens(41, 2*16)
	eng.store(prompt)
	longer := append(prompt[:len(prompt):len(prompt)], 5)
	cached := func(toks []uint32) int {
		res, err := ix.Score(context.Background(), kvcache.Request{TokenIDs: toks, Pods: []string{pod}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Pods[0].CachedTokens
	}
	testwait.For(t, "the engine's two blocks to be indexed", func() bool { return cached(longer) == 32 })
	if got := cached(prompt); got != 16 {
		t.Errorf("a fully cached 32-token prompt reports %d cached tokens, want 16 (vLLM looks up 31)", got)
	}
}
