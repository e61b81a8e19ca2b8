package kvcache

import (
	"context"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// storeOn records the blocks vLLM would publish for tokens on one engine
// (pod and rank) and tier.
func storeOn(t *testing.T, ix *Indexer, pod kvblock.Pod, tier kvblock.Tier, tokens []uint32) {
	t.Helper()
	keys, err := ix.keys.keys(nil, tokens, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Index().Add(context.Background(), pod, tier, keys); err != nil {
		t.Fatal(err)
	}
}

func scoreTokens(t *testing.T, ix *Indexer, tokens []uint32, pods ...string) Result {
	t.Helper()
	res, err := ix.Score(context.Background(), Request{TokenIDs: tokens, Pods: pods})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestScoreReportsTheTokensVLLMReuses: vLLM looks up at most n-1 of a
// prompt's n tokens, so a fully cached prompt reuses floor((n-1)/16) blocks
// of 16, one fewer than it has full blocks when n is a multiple of 16. The
// second request of each row is the first one scored again, from the key
// cache.
func TestScoreReportsTheTokensVLLMReuses(t *testing.T) {
	cases := []struct {
		n, stored   int // prompt tokens; tokens of it the pod holds (full blocks)
		blocks      int // Result.Blocks
		matched     int
		cachedToken int
		score       float64
	}{
		{n: 64, stored: 64, blocks: 3, matched: 3, cachedToken: 48, score: 1},
		{n: 65, stored: 64, blocks: 4, matched: 4, cachedToken: 64, score: 1},
		{n: 70, stored: 64, blocks: 4, matched: 4, cachedToken: 64, score: 1},
		{n: 70, stored: 32, blocks: 4, matched: 2, cachedToken: 32, score: 0.5},
		{n: 64, stored: 48, blocks: 3, matched: 3, cachedToken: 48, score: 1}, // as much as the full prompt
		{n: 17, stored: 16, blocks: 1, matched: 1, cachedToken: 16, score: 1},
		{n: 16, stored: 16, blocks: 0, matched: 0, cachedToken: 0, score: 0},
		{n: 1, stored: 0, blocks: 0, matched: 0, cachedToken: 0, score: 0},
	}
	for _, c := range cases {
		ix := newIndexer(t, Config{})
		prompt := seq(1, c.n)
		storeOn(t, ix, kvblock.Pod{Addr: "a:1"}, kvblock.TierGPU, prompt[:c.stored])
		for _, pass := range []string{"hashed", "from the key cache"} {
			res := scoreTokens(t, ix, prompt, "a:1")
			got := res.Pods[0]
			if res.Blocks != c.blocks || got.Matched != c.matched || got.CachedTokens != c.cachedToken || got.Score != c.score {
				t.Errorf("%d-token prompt, %d stored (%s): Blocks %d, Matched %d, CachedTokens %d, Score %v; want %d, %d, %d, %v",
					c.n, c.stored, pass, res.Blocks, got.Matched, got.CachedTokens, got.Score, c.blocks, c.matched, c.cachedToken, c.score)
			}
			if want := c.n / 16; len(res.Keys) != want {
				t.Errorf("%d-token prompt (%s): %d keys, want every full block's (%d)", c.n, pass, len(res.Keys), want)
			}
		}
	}
}

// TestScoreRanksTiers: the same prefix held on GPU ranks above it held only
// on CPU, which ranks above a miss; a CPU block counts its tier's weight,
// and a tier configured to weigh as much as GPU still loses the tie.
func TestScoreRanksTiers(t *testing.T) {
	cases := []struct {
		name    string
		weights map[string]float64
		cpu     float64 // the CPU-only pod's score
	}{
		{"default weights", nil, 0.8},
		{"CPU weighs as much as GPU", map[string]float64{"GPU": 1, "CPU": 1, "STORAGE": 0.5}, 1 - 1.0/(1<<20)},
		{"GPU weighs 2", map[string]float64{"GPU": 2, "CPU": 1}, 0.5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ix := newIndexer(t, Config{Index: IndexConfig{TierWeights: c.weights}})
			prompt := seq(1, 4*16+1)
			storeOn(t, ix, kvblock.Pod{Addr: "gpu:1"}, kvblock.TierGPU, prompt)
			storeOn(t, ix, kvblock.Pod{Addr: "cpu:1"}, kvblock.TierCPU, prompt)
			storeOn(t, ix, kvblock.Pod{Addr: "both:1"}, kvblock.TierCPU, prompt)
			storeOn(t, ix, kvblock.Pod{Addr: "both:1"}, kvblock.TierGPU, prompt)
			res := scoreTokens(t, ix, prompt, "gpu:1", "cpu:1", "miss:1", "both:1")
			gpu, cpu, miss, both := res.Pods[0], res.Pods[1], res.Pods[2], res.Pods[3]
			if gpu.Score != 1 || both.Score != 1 {
				t.Errorf("GPU-held prefix scores %v (and held on both tiers %v), want 1", gpu.Score, both.Score)
			}
			if !(gpu.Score > cpu.Score && cpu.Score > miss.Score) {
				t.Errorf("scores GPU %v, CPU-only %v, miss %v: want GPU > CPU > miss", gpu.Score, cpu.Score, miss.Score)
			}
			if d := cpu.Score - c.cpu; d > 1e-12 || d < -1e-12 {
				t.Errorf("CPU-only pod scores %v, want %v", cpu.Score, c.cpu)
			}
			// Whatever the tier, vLLM reuses the blocks (the offloading
			// connector loads CPU blocks back).
			if cpu.CachedTokens != 64 || cpu.Matched != 4 {
				t.Errorf("CPU-only pod: %d tokens in %d blocks cached, want 64 in 4", cpu.CachedTokens, cpu.Matched)
			}
		})
	}
}

// TestScoreDataParallelRanks writes rank 1's blocks of one engine and
// scores it in both deployment shapes.
func TestScoreDataParallelRanks(t *testing.T) {
	prompt := seq(1, 4*16+1)
	engine := kvblock.Pod{Addr: "10.0.0.7:8000", Rank: 1}

	t.Run("one endpoint per rank", func(t *testing.T) {
		ix := newIndexer(t, Config{Events: EventsConfig{DataParallelSize: 2}, DataParallel: DataParallelConfig{Endpoints: DPPerRank, APIPort: 8000}})
		storeOn(t, ix, engine, kvblock.TierGPU, prompt)
		storeOn(t, ix, kvblock.Pod{Addr: "10.0.0.7:8000"}, kvblock.TierGPU, prompt[:16])
		for range 2 { // the second time from the endpoint cache
			res := scoreTokens(t, ix, prompt, "10.0.0.7:8000", "10.0.0.7:8001", "10.0.0.7:8002", "10.0.0.8:8001")
			want := []int{1, 4, 0, 0} // rank 0, rank 1, not a rank, another engine's rank 1
			for i, w := range want {
				if res.Pods[i].Matched != w {
					t.Errorf("%s matches %d blocks, want %d", res.Pods[i].Pod, res.Pods[i].Matched, w)
				}
			}
			if res.Pods[1].Score != 1 {
				t.Errorf("rank 1's endpoint scores %v, want 1", res.Pods[1].Score)
			}
		}
	})

	t.Run("one endpoint in front of the ranks", func(t *testing.T) {
		ix := newIndexer(t, Config{Events: EventsConfig{DataParallelSize: 2}})
		storeOn(t, ix, engine, kvblock.TierGPU, prompt)
		storeOn(t, ix, kvblock.Pod{Addr: "10.0.0.8:8000"}, kvblock.TierGPU, prompt[:32])
		res := scoreTokens(t, ix, prompt, "10.0.0.7:8000", "10.0.0.8:8000", "10.0.0.9:8000")
		// vLLM's balancer picks either rank: the mean.
		want := []struct {
			score  float64
			tokens int
		}{{0.5, 32}, {0.25, 16}, {0, 0}}
		for i, w := range want {
			if got := res.Pods[i]; got.Score != w.score || got.CachedTokens != w.tokens {
				t.Errorf("%s: score %v, %d tokens; want %v, %d", got.Pod, got.Score, got.CachedTokens, w.score, w.tokens)
			}
		}
	})
}

func TestDataParallelConfigValidation(t *testing.T) {
	cases := []struct {
		name  string
		ranks int // events.dataParallelSize
		dp    DataParallelConfig
		field string // "" for valid
	}{
		{"zero value: no data parallelism", 0, DataParallelConfig{}, ""},
		{"shared ranks", 4, DataParallelConfig{}, ""},
		{"per-rank endpoints", 4, DataParallelConfig{Endpoints: DPPerRank, APIPort: 8000}, ""},
		{"unknown shape", 2, DataParallelConfig{Endpoints: "roundRobin"}, "dataParallel.endpoints"},
		{"per-rank without the API port", 2, DataParallelConfig{Endpoints: DPPerRank}, "dataParallel.apiPort"},
		{"per-rank ports past 65535", 4, DataParallelConfig{Endpoints: DPPerRank, APIPort: 65534}, "dataParallel.apiPort"},
	}
	for _, c := range cases {
		cfg := Config{Events: EventsConfig{DataParallelSize: c.ranks}, DataParallel: c.dp}
		cfg.Hash.Seed = "42"
		err := cfg.WithDefaults().Validate()
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: Validate = %v, want nil", c.name, err)
		case c.field != "" && (err == nil || !strings.Contains(err.Error(), c.field)):
			t.Errorf("%s: Validate = %v, want an error naming %s", c.name, err, c.field)
		}
	}
}

// TestSpeculateFollowsDataParallelRanks: a routing decision's speculative
// entries go where the endpoint's score reads them.
func TestSpeculateFollowsDataParallelRanks(t *testing.T) {
	prompt := seq(1, 4*16+1)
	cases := []struct {
		name   string
		dp     DataParallelConfig
		ranks  int
		routed string
		scores map[string]float64
	}{
		{"one endpoint per rank", DataParallelConfig{Endpoints: DPPerRank, APIPort: 8000}, 2, "10.0.0.7:8001",
			map[string]float64{"10.0.0.7:8000": 0, "10.0.0.7:8001": 1}},
		{"one endpoint in front of the ranks", DataParallelConfig{}, 2, "10.0.0.7:8000",
			map[string]float64{"10.0.0.7:8000": 1, "10.0.0.8:8000": 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ix := newIndexer(t, Config{Events: EventsConfig{DataParallelSize: c.ranks}, DataParallel: c.dp, Speculative: SpeculativeConfig{Enabled: true}})
			res := scoreTokens(t, ix, prompt, c.routed)
			if err := ix.Speculate(context.Background(), c.routed, res.Keys); err != nil {
				t.Fatal(err)
			}
			var eps []string
			for ep := range c.scores {
				eps = append(eps, ep)
			}
			for _, p := range scoreTokens(t, ix, prompt, eps...).Pods {
				if p.Score != c.scores[p.Pod] {
					t.Errorf("%s scores %v after a request was routed to %s, want %v", p.Pod, p.Score, c.routed, c.scores[p.Pod])
				}
			}
		})
	}
}
