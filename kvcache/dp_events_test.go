package kvcache_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache"
)

// TestBindModeScoresDataParallelRanks runs an engine with two DP ranks whose
// rank 1 publishes to the bound port + 1, as vLLM offsets its endpoint, and
// caches a prompt there. With one endpoint per rank, rank 1's endpoint
// (API port + 1) holds the prefix and rank 0's does not; with one endpoint
// in front of both ranks, that endpoint scores the mean.
func TestBindModeScoresDataParallelRanks(t *testing.T) {
	const pod = "127.0.0.1:8000" // the engine's topic names rank 0's API server
	cases := []struct {
		name   string
		dp     kvcache.DataParallelConfig
		scores map[string]float64
	}{
		{"one endpoint per rank", kvcache.DataParallelConfig{Endpoints: kvcache.DPPerRank, APIPort: 8000},
			map[string]float64{"127.0.0.1:8000": 0, "127.0.0.1:8001": 1}},
		{"one endpoint in front of the ranks", kvcache.DataParallelConfig{Endpoints: kvcache.DPShared},
			map[string]float64{"127.0.0.1:8000": 0.5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			port := testnet.FreePortPair(t)
			endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", port)
			ix := start(t, kvcache.Config{
				Events:       kvcache.EventsConfig{Mode: kvcache.EventsBind, Endpoint: endpoint, DataParallelSize: 2},
				DataParallel: c.dp,
			})
			for ep := range c.scores {
				if err := ix.AddPod(context.Background(), ep); err != nil {
					t.Fatal(err)
				}
			}
			rank1 := connectEngine(t, fmt.Sprintf("tcp://127.0.0.1:%d", port+1), "kv@"+pod+"@m")
			rank1.waitSubscribed()
			prompt := tokens(11, 4*16)
			rank1.store(prompt)

			next := append(prompt[:len(prompt):len(prompt)], 7)
			var eps []string
			for ep := range c.scores {
				eps = append(eps, ep)
			}
			waitFor(t, func() (bool, string) {
				res, err := ix.Score(context.Background(), kvcache.Request{TokenIDs: next, Pods: eps})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range res.Pods {
					if p.Score != c.scores[p.Pod] {
						return false, fmt.Sprintf("%+v", res.Pods)
					}
				}
				return true, ""
			})
		})
	}
}

// TestConnectModeScoresDataParallelRanks is the same in connect mode:
// rank r's publisher binds events.port + r (vLLM's offset_endpoint_port),
// the Indexer dials every rank of each pod it adds, and only rank 1 holds
// the prompt.
func TestConnectModeScoresDataParallelRanks(t *testing.T) {
	cases := []struct {
		name   string
		dp     kvcache.DataParallelConfig
		scores map[string]float64
	}{
		{"one endpoint per rank", kvcache.DataParallelConfig{Endpoints: kvcache.DPPerRank, APIPort: 8000},
			map[string]float64{"127.0.0.1:8000": 0, "127.0.0.1:8001": 1}},
		{"one endpoint in front of the ranks", kvcache.DataParallelConfig{Endpoints: kvcache.DPShared},
			map[string]float64{"127.0.0.1:8000": 0.5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			port := testnet.FreePortPair(t)
			pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: fmt.Sprintf("tcp://*:%d", port+1), Rank: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pub.Close() })
			rank1 := &engine{t, pub}
			ix := start(t, kvcache.Config{
				Events:       kvcache.EventsConfig{Port: port, DataParallelSize: 2},
				DataParallel: c.dp,
			})
			var eps []string
			for ep := range c.scores {
				eps = append(eps, ep)
				if err := ix.AddPod(context.Background(), ep); err != nil {
					t.Fatal(err)
				}
			}
			rank1.waitSubscribed()
			prompt := tokens(21, 4*16)
			rank1.store(prompt)
			next := append(prompt[:len(prompt):len(prompt)], 7)
			waitFor(t, func() (bool, string) {
				res, err := ix.Score(context.Background(), kvcache.Request{TokenIDs: next, Pods: eps})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range res.Pods {
					if p.Score != c.scores[p.Pod] {
						return false, fmt.Sprintf("%+v", res.Pods)
					}
				}
				return true, ""
			})
		})
	}
}

// waitFor polls cond until it holds, failing the test with cond's last
// description at the test binary's deadline (events cross real sockets on
// a busy machine).
func waitFor(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last scores: %s", last)
		}
	})
	testwait.For(t, "the scores to settle", func() bool {
		var ok bool
		ok, last = cond()
		return ok
	})
}
