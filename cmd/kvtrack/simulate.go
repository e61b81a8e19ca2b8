package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	simulate "github.com/kvtrack/kvtrack/internal/sim"
)

func init() {
	register(command{
		name:    "simulate",
		summary: "compare routers (kvtrack precise, approximate, round robin, ...) on a simulated vLLM pool",
		run:     runSimulate,
	})
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulate", simulateSynopsis, stdout, stderr)
	// The matrix starts from its own base; the flags then change it.
	matrixMode := wantsMatrix(args)
	cfg := simulate.DefaultConfig()
	if matrixMode {
		cfg = simulate.MatrixBase()
	}
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
	fs.BoolVar(&cfg.SharedIndex, "shared-index", cfg.SharedIndex, "precise replicas share one index and its speculative entries (as with one Redis index) instead of one each")
	fs.IntVar(&cfg.ApproxLRU, "approx-lru", cfg.ApproxLRU, "approximate router's per-pod LRU capacity in character blocks; 0 = GIE autoTune (the pod's KV blocks), 31250 = GIE's fixed default")
	fs.BoolVar(&cfg.Speculative, "speculative", cfg.Speculative, "kvtrack records a routed request's blocks on its pod until its events arrive (speculative.enabled)")
	fs.DurationVar(&cfg.SpeculativeTTL, "speculative-ttl", cfg.SpeculativeTTL, "modelled lifetime of kvtrack's speculative entries (speculative.ttl)")
	fs.BoolVar(&cfg.MapLayout, "map-layout", cfg.MapLayout, "publish vLLM v0.24+ map-encoded events instead of v0.23 arrays")
	fs.Float64Var(&cfg.PrefixWeight, "prefix-weight", cfg.PrefixWeight, "weight of the prefix score in the affinity routers")
	fs.Float64Var(&cfg.KVUsageWeight, "kv-usage-weight", cfg.KVUsageWeight, "weight of the KV-cache utilisation score in the affinity routers")
	fs.Float64Var(&cfg.QueueWeight, "queue-weight", cfg.QueueWeight, "weight of the queue score in the affinity routers")
	fs.Float64Var(&cfg.ExternalShare, "external-share", cfg.ExternalShare, "fraction of requests reaching the pods without this router (sent to a random pod)")
	fs.IntVar(&cfg.Restarts, "restarts", cfg.Restarts, "pod restarts spread over the run, each clearing one pod's prefix cache")
	fs.IntVar(&cfg.Variants, "variants", cfg.Variants, "ways each shared-prefix prompt is rendered (see --variant-kind)")
	fs.StringVar(&cfg.VariantKind, "variant-kind", cfg.VariantKind, "how variants differ: template (chat-template tokens) or salt (cache_salt)")
	fs.Float64Var(&cfg.PlacementWeight, "placement-weight", cfg.PlacementWeight, "precise_placement router: weight of a pod's free room for a new prefix")
	routers := fs.String("routers", strings.Join(simulate.RouterNames, ","), "routers to compare, comma-separated")
	jsonOut := fs.Bool("json", false, `print {"config": {...}, "routers": [...]} (with --matrix {"scenarios": [...], "cells": [...]}) as JSON instead of the table, and nothing else`)
	defaultChart := "simulate.svg"
	if matrixMode {
		defaultChart = "matrix.svg"
	}
	chart := fs.String("chart", defaultChart, "write the chart as SVG here, after the table; empty for none (with --json: none unless given)")
	quiet := fs.Bool("quiet", false, "no progress bar (it is drawn only on a terminal anyway)")
	fs.Bool("matrix", false, "run the evidence matrix: precise, precise_shared, precise_isolated, precise_placement, approximate, least_loaded and oracle over every scenario x replicas 1, 2, 4, from a 4-pod base (--routers and --replicas do not apply)")
	scenarioList := fs.String("matrix-scenarios", "", "with --matrix: the scenarios to run, comma-separated (default all)")
	replicaList := fs.String("matrix-replicas", "1,2,4", "with --matrix: the replica counts, comma-separated")
	fs.deprecated("seed", "rng-seed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *jsonOut && !fs.set()["chart"] {
		*chart = ""
	}
	cfg.Routers = strings.Split(*routers, ",")
	var mx matrixSpec
	if matrixMode {
		var err error
		if mx, err = parseMatrixSpec(*scenarioList, *replicaList); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	showProgress := !*quiet && !*jsonOut && isTerminal(stderr)
	if matrixMode {
		return runMatrix(ctx, cfg, mx, *jsonOut, *chart, showProgress, stdout, stderr)
	}
	var prog simulate.Progress
	var bar *progressBar
	if showProgress {
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

// wantsMatrix reports whether args turn --matrix on.
func wantsMatrix(args []string) bool {
	on := false
	for _, a := range args {
		if a == "--" {
			break
		}
		switch strings.TrimLeft(a, "-") {
		case "matrix", "matrix=true", "matrix=1":
			on = true
		case "matrix=false", "matrix=0":
			on = false
		}
	}
	return on
}

// matrixSpec is the grid --matrix runs.
type matrixSpec struct {
	scenarios []simulate.Scenario
	replicas  []int
}

func parseMatrixSpec(scenarios, replicas string) (matrixSpec, error) {
	var mx matrixSpec
	if scenarios == "" {
		mx.scenarios = simulate.Scenarios()
	} else {
		var err error
		if mx.scenarios, err = simulate.ScenariosNamed(strings.Split(scenarios, ",")); err != nil {
			return mx, fmt.Errorf("--matrix-scenarios: %w", err)
		}
	}
	for _, f := range strings.Split(replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return mx, fmt.Errorf("--matrix-replicas: %q: want positive integers", f)
		}
		mx.replicas = append(mx.replicas, n)
	}
	return mx, nil
}

func runMatrix(ctx context.Context, base simulate.Config, mx matrixSpec, jsonOut bool, chart string, progress bool, stdout, stderr io.Writer) error {
	var prog simulate.MatrixProgress
	var bar *progressBar
	if progress {
		bar = &progressBar{w: stderr}
		prog = bar.matrixUpdate
	}
	start := time.Now()
	m, err := simulate.RunMatrix(ctx, base, mx.scenarios, mx.replicas, prog)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return err
	}
	wall := time.Since(start)
	if chart != "" {
		if err := writeSVG(chart, m.WriteSVG); err != nil {
			return err
		}
	}
	if jsonOut {
		return m.WriteJSON(stdout)
	}
	fmt.Fprintf(stdout, "evidence matrix: %d pods x %d blocks, %d requests per router and cell (chat: %d), hit rates over the router's own requests; modelled times\n\n",
		base.Pods, base.CacheBlocks, base.Requests, base.Requests*5/6)
	for _, sc := range m.Scenarios {
		fmt.Fprintf(stdout, "  %-10s %s\n", sc.Name, sc.About)
	}
	fmt.Fprintln(stdout)
	if err := m.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nsimulated in %.1fs", wall.Seconds())
	if chart != "" {
		fmt.Fprintf(stdout, "; chart: %s", chart)
	}
	fmt.Fprintln(stdout)
	return nil
}

func writeChart(path string, rep *simulate.Report) error {
	return writeSVG(path, rep.WriteSVG)
}

func writeSVG(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := write(f); err != nil {
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

func (p *progressBar) matrixUpdate(cell, cells int, label, router string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := label + "/" + router
	if key == p.current && done < total && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.current, p.last = key, time.Now()
	fmt.Fprintf(p.w, "\r\033[Kcell %d/%d %-14s %-18s %5d/%d requests", cell+1, cells, label, router, done, total)
	p.drawn = true
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

const simulateSynopsis = `simulate [--matrix] [flags]

Replays one synthetic workload through a pool of simulated vLLM pods (real
block hashing and KV events, modelled prefill and decode time) once per
router, and prints one row per router: prefix-cache hit rate, time to first
token (p50, p90, mean), throughput, load spread and evicted blocks. The run is deterministic for a
given --rng-seed. The chart (--chart) is written after the table; with --json
only the JSON is written. --matrix runs every scenario over several replica
counts instead.

  kvtrack simulate --pods 4 --requests 500
  kvtrack simulate --workload chat --routers precise,round_robin --json`
