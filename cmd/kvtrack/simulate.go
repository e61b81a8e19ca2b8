package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kvtrack/kvtrack/examples/simulate"
)

func init() {
	register(command{
		name:    "simulate",
		summary: "compare routers (kvtrack precise, approximate, round robin, ...) on a simulated vLLM pool",
		run:     runSimulate,
	})
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulate", "simulate [flags]", stdout, stderr)
	cfg := simulate.DefaultConfig()
	fs.Uint64Var(&cfg.Seed, "rng-seed", cfg.Seed, "random seed of the workload, arrivals and random choices (not PYTHONHASHSEED: that is --hash-seed)")
	fs.IntVar(&cfg.Pods, "pods", cfg.Pods, "simulated vLLM pods")
	fs.IntVar(&cfg.CacheBlocks, "cache-blocks", cfg.CacheBlocks, "KV-cache blocks per pod")
	fs.IntVar(&cfg.BlockSize, "block-size", cfg.BlockSize, "tokens per block (vLLM --block-size)")
	fs.StringVar(&cfg.HashAlgo, "hash-algo", cfg.HashAlgo, "vLLM --prefix-caching-hash-algo")
	fs.StringVar(&cfg.HashSeed, "hash-seed", cfg.HashSeed, "PYTHONHASHSEED of the pods")
	fs.Float64Var(&cfg.PrefillRate, "prefill-rate", cfg.PrefillRate, "prompt tokens per second per pod")
	fs.DurationVar(&cfg.StepOverhead, "step-overhead", cfg.StepOverhead, "fixed modelled cost per prefill")
	fs.DurationVar(&cfg.DecodePerToken, "decode-per-token", cfg.DecodePerToken, "modelled time per output token (requests hold their blocks meanwhile)")
	fs.StringVar(&cfg.Workload, "workload", cfg.Workload, "shared-prefix or chat")
	fs.IntVar(&cfg.Requests, "requests", cfg.Requests, "requests per router")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "Poisson arrival rate, requests per second")
	fs.IntVar(&cfg.Groups, "groups", cfg.Groups, "shared-prefix groups, or chat conversations")
	fs.IntVar(&cfg.PromptsPerGroup, "prompts-per-group", cfg.PromptsPerGroup, "distinct questions per group (shared-prefix)")
	fs.IntVar(&cfg.SystemTokens, "system-tokens", cfg.SystemTokens, "tokens of each shared system prompt")
	fs.IntVar(&cfg.QuestionTokens, "question-tokens", cfg.QuestionTokens, "tokens of each question or user turn")
	fs.IntVar(&cfg.OutputTokens, "output-tokens", cfg.OutputTokens, "tokens of each answer")
	fs.Float64Var(&cfg.CharsPerToken, "chars-per-token", cfg.CharsPerToken, "characters per token of the text the approximate router hashes")
	fs.DurationVar(&cfg.EventLag, "event-lag", cfg.EventLag, "modelled delay before a pod's KV events are published")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "instances of each stateful router (EPP replicas), each request reaching one at random")
	fs.IntVar(&cfg.ApproxLRU, "approx-lru", cfg.ApproxLRU, "approximate router's per-pod LRU capacity in character blocks; 0 = GIE autoTune (the pod's KV blocks), 31250 = GIE's fixed default")
	fs.BoolVar(&cfg.Speculative, "speculative", cfg.Speculative, "kvtrack records a routed request's blocks on its pod until its events arrive (speculative.enabled)")
	fs.DurationVar(&cfg.SpeculativeTTL, "speculative-ttl", cfg.SpeculativeTTL, "modelled lifetime of kvtrack's speculative entries (speculative.ttl)")
	fs.BoolVar(&cfg.MapLayout, "map-layout", cfg.MapLayout, "publish vLLM v0.24+ map-encoded events instead of v0.23 arrays")
	fs.Float64Var(&cfg.PrefixWeight, "prefix-weight", cfg.PrefixWeight, "weight of the prefix score in the affinity routers")
	fs.Float64Var(&cfg.KVUsageWeight, "kv-usage-weight", cfg.KVUsageWeight, "weight of the KV-cache utilisation score in the affinity routers")
	fs.Float64Var(&cfg.QueueWeight, "queue-weight", cfg.QueueWeight, "weight of the queue score in the affinity routers")
	routers := fs.String("routers", strings.Join(simulate.RouterNames, ","), "routers to compare, comma-separated")
	jsonOut := fs.Bool("json", false, `print {"routers": [...]} as JSON instead of the table, and nothing else`)
	chart := fs.String("chart", "simulate.svg", "write the TTFT p90 / hit-rate chart as SVG here, after the table; empty for none (with --json: none unless given)")
	quiet := fs.Bool("quiet", false, "no progress bar (it is drawn only on a terminal anyway)")
	fs.deprecated("seed", "rng-seed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *jsonOut && !fs.set()["chart"] {
		*chart = ""
	}
	cfg.Routers = strings.Split(*routers, ",")
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var prog simulate.Progress
	var bar *progressBar
	if !*quiet && isTerminal(stderr) {
		bar = &progressBar{w: stderr, routers: len(cfg.Routers)}
		prog = bar.update
	}
	start := time.Now()
	rep, err := simulate.Run(ctx, cfg, prog)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return err
	}
	wall := time.Since(start)
	// The results first: a chart that cannot be written must not lose them.
	if *jsonOut {
		if err := rep.WriteJSON(stdout); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%d pods x %d blocks of %d tokens; %s workload, %d requests at %g req/s; modelled times\n\n",
			cfg.Pods, cfg.CacheBlocks, cfg.BlockSize, cfg.Workload, cfg.Requests, cfg.Rate)
		if err := rep.WriteTable(stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nsimulated in %.1fs\n", wall.Seconds())
	}
	if *chart == "" {
		return nil
	}
	if err := writeChart(*chart, rep); err != nil {
		return err
	}
	if !*jsonOut {
		fmt.Fprintf(stdout, "chart: %s\n", *chart)
	}
	return nil
}

func writeChart(path string, rep *simulate.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := rep.WriteSVG(f); err != nil {
		f.Close()
		return fmt.Errorf("chart: %w", err)
	}
	return f.Close()
}

// progressBar draws one line on stderr, redrawn at most every 100 ms.
type progressBar struct {
	w       io.Writer
	routers int

	mu      sync.Mutex
	index   int
	current string
	last    time.Time
	drawn   bool
}

func (p *progressBar) update(router string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if router != p.current {
		if p.current != "" {
			p.index++
		}
		p.current = router
	} else if done < total && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	const width = 30
	filled := width * done / max(total, 1)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d %-12s %5d/%d requests",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.index+1, p.routers, router, done, total)
	p.drawn = true
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
