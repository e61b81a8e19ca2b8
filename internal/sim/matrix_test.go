package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// tinyConfig is a pool small enough for a whole matrix in seconds: 2 pods,
// 4 groups of short prompts.
func tinyConfig() Config {
	cfg := MatrixBase()
	cfg.Pods, cfg.Groups, cfg.PromptsPerGroup = 2, 4, 2
	cfg.SystemTokens, cfg.QuestionTokens, cfg.OutputTokens = 256, 64, 32
	cfg.CacheBlocks, cfg.Requests, cfg.Rate = 200, 60, 20
	return cfg
}

func TestMatrixSmoke(t *testing.T) {
	var scenarios []Scenario
	for _, sc := range Scenarios() {
		if sc.Name == "base" || sc.Name == "restarts" {
			scenarios = append(scenarios, sc)
		}
	}
	m, err := RunMatrix(context.Background(), tinyConfig(), scenarios, []int{1, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Cells) != 4 {
		t.Fatalf("%d cells, want 2 scenarios x 2 replica counts", len(m.Cells))
	}
	for _, c := range m.Cells {
		var names []string
		for _, r := range c.Routers {
			names = append(names, r.Name)
		}
		if !slices.Equal(names, MatrixRouters) {
			t.Errorf("cell %s x%d: routers %v, want %v", c.Scenario, c.Replicas, names, MatrixRouters)
		}
		p, _ := c.Router("precise")
		for _, name := range sameAsPreciseAtOneReplica {
			v, _ := c.Router(name)
			if c.Replicas == 1 && (p.HitRate != v.HitRate || p.TTFTP90 != v.TTFTP90) {
				t.Errorf("cell %s x1: %s %+v differs from precise %+v with one replica", c.Scenario, name, v, p)
			}
		}
		if c.Config.Replicas != c.Replicas {
			t.Errorf("cell %s x%d ran with %d replicas", c.Scenario, c.Replicas, c.Config.Replicas)
		}
	}
	if m.Cells[2].Config.Restarts == 0 {
		t.Error("the restarts scenario restarted nothing")
	}
	var buf bytes.Buffer
	if err := m.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Cells []struct {
			Scenario        string           `json:"scenario"`
			Replicas        int              `json:"replicas"`
			PreciseOfOracle *float64         `json:"precise_of_oracle"`
			MarginPoints    *float64         `json:"margin_points"`
			Routers         []map[string]any `json:"routers"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("matrix JSON: %v", err)
	}
	if len(got.Cells) != 4 || got.Cells[0].PreciseOfOracle == nil || got.Cells[0].MarginPoints == nil || len(got.Cells[0].Routers) != len(MatrixRouters) {
		t.Errorf("matrix JSON lacks cells or fields: %s", buf.String())
	}
	var table, svg strings.Builder
	if err := m.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "restarts") || !strings.Contains(svg.String(), "restarts x2") {
		t.Errorf("table or chart lacks a cell:\n%s", table.String())
	}
}

// With one replica and nothing else routing, kvtrack's view of every pod
// is the truth (its cache plus the work queued on it) at every decision,
// whatever the condition: a pod restart is an AllBlocksCleared, salted and
// differently rendered prompts are different blocks, and under pressure a
// request's speculative entry keeps its claim until the request runs, even
// when another request stored the blocks and the pod evicted them. With
// outside traffic the truth leaves out the outside requests still queued,
// which no event can show; once they run, their events tell the rest.
func TestPreciseSeesTheTruthUnderEveryCondition(t *testing.T) {
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			cfg := tinyConfig()
			sc.apply(&cfg)
			if cfg.Workload == WorkloadChat {
				cfg.Groups, cfg.SystemTokens, cfg.QuestionTokens, cfg.OutputTokens, cfg.Requests = 6, 128, 32, 32, 60
			}
			cfg.Replicas, cfg.Routers = 1, []string{"precise"}
			if cfg.ExternalShare > 0 {
				// Enough outside requests, and little enough room, that the
				// pods evict blocks kvtrack had speculated on.
				cfg.Requests, cfg.CacheBlocks = 200, 80
			}
			var decisions, wrong int
			cfg.audit = func(r *request, matched []int, c cluster) {
				decisions++
				for i, m := range matched {
					// vLLM looks up at most the prompt's first n-1 tokens, and
					// so does kvtrack (the pods here model it the same way).
					limit := (len(r.prompt) - 1) / cfg.BlockSize
					if truth := min(visiblePrefix(c.(*sim).pods[i], r.keys[:r.promptBlocks]), limit); m != truth {
						wrong++
						if wrong <= 3 {
							t.Errorf("request %d, pod %d: kvtrack sees %d blocks, the pod holds or is computing %d", r.id, i, m, truth)
						}
					}
				}
			}
			if _, err := Run(context.Background(), cfg, nil); err != nil {
				t.Fatal(err)
			}
			if routed := cfg.Requests - externalRequests(t, cfg); decisions != routed || wrong != 0 {
				t.Errorf("%d of %d decisions audited, %d pod views wrong", decisions, routed, wrong)
			}
		})
	}
}

// Replicas that share their routing decisions (speculative.peers) each
// see the truth at every decision, the requests the other replicas routed
// and still queued included; replicas that share only the pods' events
// (precise_isolated) do not, since no event shows a queued request.
func TestReplicasSharingDecisionsSeeEachOthersQueuedRequests(t *testing.T) {
	for _, tc := range []struct {
		router    string
		wantExact bool
	}{
		{"precise", true},
		{RouterPreciseIsolated, false},
	} {
		t.Run(tc.router, func(t *testing.T) {
			cfg := tinyConfig()
			for _, sc := range Scenarios() {
				if sc.Name == "pressure" {
					sc.apply(&cfg)
				}
			}
			cfg.Replicas, cfg.Routers, cfg.Requests = 2, []string{tc.router}, 120
			var decisions, wrong int
			cfg.audit = func(r *request, matched []int, c cluster) {
				decisions++
				limit := (len(r.prompt) - 1) / cfg.BlockSize
				for i, m := range matched {
					if truth := min(visiblePrefix(c.(*sim).pods[i], r.keys[:r.promptBlocks]), limit); m != truth {
						wrong++
					}
				}
			}
			if _, err := Run(context.Background(), cfg, nil); err != nil {
				t.Fatal(err)
			}
			if decisions != cfg.Requests {
				t.Fatalf("%d of %d decisions audited", decisions, cfg.Requests)
			}
			if exact := wrong == 0; exact != tc.wantExact {
				t.Errorf("%s x2: %d of %d pod views differ from the truth; want exact = %v", tc.router, wrong, decisions*cfg.Pods, tc.wantExact)
			}
		})
	}
}

// visiblePrefix is truePrefix without the blocks only outside requests
// still waiting in the pod's queue are about to compute.
func visiblePrefix(p *pod, keys []kvblock.Key) int {
	outside := make(map[kvblock.Key]int32)
	for _, j := range p.queue {
		if j.r.external {
			for _, k := range j.r.keys[:j.r.promptBlocks] {
				outside[k]++
			}
		}
	}
	for n, k := range keys {
		if !p.pool.Contains(k) && p.coming[k] <= outside[k] {
			return n
		}
	}
	return len(keys)
}

// externalRequests counts cfg's requests that bypass the router.
func externalRequests(t *testing.T, cfg Config) int {
	t.Helper()
	reqs, err := generate(cfg, mustHasher(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range reqs {
		if r.external {
			n++
		}
	}
	return n
}

func TestVariantsDifferWhereTheyShould(t *testing.T) {
	for _, kind := range []string{VariantTemplate, VariantSalt} {
		t.Run(kind, func(t *testing.T) {
			cfg := tinyConfig()
			cfg.Variants, cfg.VariantKind, cfg.Requests = 2, kind, 200
			reqs, err := generate(cfg, mustHasher(t, cfg))
			if err != nil {
				t.Fatal(err)
			}
			// Two requests for the same messages in different variants: the
			// approximate router hashes the same text, the engine's blocks
			// differ from the first one on.
			for i, a := range reqs {
				for _, b := range reqs[:i] {
					if a.text != b.text || variantOf(a) == variantOf(b) {
						continue
					}
					// A salt changes block 0; a template the block holding
					// the token that differs, and every block after it.
					differs := 0
					if kind == VariantTemplate {
						differs = templateDateToken / cfg.BlockSize
					}
					if a.keys[differs] == b.keys[differs] || a.keys[a.promptBlocks-1] == b.keys[b.promptBlocks-1] {
						t.Fatalf("requests %d and %d (%s variants) share block %d or their last prompt block", a.id, b.id, kind, differs)
					}
					if kind == VariantSalt && (a.salt == b.salt || !slices.Equal(a.prompt, b.prompt)) {
						t.Fatalf("salt variants %d and %d: salts %q %q, same tokens %v", a.id, b.id, a.salt, b.salt, slices.Equal(a.prompt, b.prompt))
					}
					return
				}
			}
			t.Fatal("no two requests for the same prompt in different variants")
		})
	}
}

// variantOf tells a request's variant by its salt and first tokens.
func variantOf(r *request) string {
	return r.salt + string(rune(r.prompt[templateDateToken]))
}

func TestExternalRequestsBypassTheRouter(t *testing.T) {
	cfg := tinyConfig()
	cfg.ExternalShare, cfg.Requests = 0.3, 200
	cfg.Routers = []string{"round_robin"}
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Routers[0]
	if r.Routed >= r.Requests || r.Routed < r.Requests/2 {
		t.Errorf("routed %d of %d requests with 30%% external", r.Routed, r.Requests)
	}
}
