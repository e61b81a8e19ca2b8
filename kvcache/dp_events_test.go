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

// dpShapes are vLLM's two data-parallel deployment shapes for an engine
// with two ranks whose rank 1 alone holds a prompt: with one endpoint per
// rank, rank 1's endpoint (API port + 1) holds the prefix and rank 0's does
// not; with one endpoint in front of both ranks, it scores the mean.
var dpShapes = []struct {
	name   string
	dp     kvcache.DataParallelConfig
	scores map[string]float64
}{
	{"one endpoint per rank", kvcache.DataParallelConfig{Endpoints: kvcache.DPPerRank, APIPort: 8000},
		map[string]float64{"127.0.0.1:8000": 0, "127.0.0.1:8001": 1}},
	{"one endpoint in front of the ranks", kvcache.DataParallelConfig{Endpoints: kvcache.DPShared},
		map[string]float64{"127.0.0.1:8000": 0.5}},
}

// TestDataParallelRanksScore runs both shapes in both event modes, with
// rank 1's events on port + 1 as vLLM offsets every KV-events endpoint: in
// bind mode rank 1 connects to the Indexer's bound port + 1, in connect
// mode it binds events.port + 1 and the Indexer dials it.
func TestDataParallelRanksScore(t *testing.T) {
	const pod = "127.0.0.1:8000" // the engine's topic names rank 0's API server
	for _, mode := range []kvcache.EventsMode{kvcache.EventsBind, kvcache.EventsConnect} {
		for _, c := range dpShapes {
			t.Run(string(mode)+"/"+c.name, func(t *testing.T) {
				port := testnet.FreePortPair(t)
				events := kvcache.EventsConfig{Mode: mode, DataParallelSize: 2, Port: port}
				if mode == kvcache.EventsBind {
					events.Port, events.Endpoint = 0, fmt.Sprintf("tcp://127.0.0.1:%d", port)
				}
				ix := start(t, kvcache.Config{Events: events, DataParallel: c.dp})
				var eps []string
				for ep := range c.scores {
					eps = append(eps, ep)
					if err := ix.AddPod(context.Background(), ep); err != nil {
						t.Fatal(err)
					}
				}
				var rank1 *engine
				if mode == kvcache.EventsBind {
					rank1 = connectEngine(t, fmt.Sprintf("tcp://127.0.0.1:%d", port+1), "kv@"+pod+"@m")
				} else {
					pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: fmt.Sprintf("tcp://*:%d", port+1), Rank: 1})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { pub.Close() })
					rank1 = &engine{t, pub}
				}
				rank1.waitSubscribed()
				prompt := tokens(11, 4*16)
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
