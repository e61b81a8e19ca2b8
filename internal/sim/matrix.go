package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Scenario is one row of the evidence matrix: a condition applied to the
// matrix's base configuration.
type Scenario struct {
	Name  string `json:"name"`
	About string `json:"about"`
	apply func(*Config)
}

// MatrixRouters are the routers each matrix cell compares. With one
// replica precise_shared and precise_isolated are precise itself and are
// not run again.
var MatrixRouters = []string{"precise", RouterPreciseShared, RouterPreciseIsolated, RouterPrecisePlacement, "approximate", "least_loaded", "oracle"}

// sameAsPreciseAtOneReplica are the precise variants that differ from
// precise only in what replicas share.
var sameAsPreciseAtOneReplica = []string{RouterPreciseShared, RouterPreciseIsolated}

// MatrixReplicas are the replica counts of the stateful routers the matrix
// crosses every scenario with.
var MatrixReplicas = []int{1, 2, 4}

// MatrixBase is the configuration every matrix cell starts from: the
// default simulation on 4 pods with 16 groups at 15 req/s (the same load
// per pod and the same 73% working set as the defaults) and 1,200 requests
// per router, so that the whole matrix runs in minutes. kvtrack's
// speculative entries live for kvcache's longest TTL, 1m: they must
// outlast a request's wait in the engine's queue, which in the overloaded
// cells reaches tens of seconds.
func MatrixBase() Config {
	cfg := DefaultConfig()
	cfg.Pods, cfg.Groups, cfg.Rate, cfg.Requests = 4, 16, 15, 1200
	cfg.SpeculativeTTL = time.Minute
	return cfg
}

// Scenarios returns the matrix's conditions. Each is one change from the
// base; base's working set is at 73% of the pool's KV capacity.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "base", About: "shared prefixes, working set at 73% of KV capacity", apply: func(*Config) {}},
		{Name: "pressure", About: "working set at 150% of KV capacity", apply: func(c *Config) {
			c.CacheBlocks = workingSetBlocks(*c) * 100 / 150 / c.Pods
		}},
		{Name: "restarts", About: "4 pod restarts, each clearing one pod's cache", apply: func(c *Config) { c.Restarts = 4 }},
		{Name: "external30", About: "30% of traffic reaches the pods around this router", apply: func(c *Config) { c.ExternalShare = 0.3 }},
		{Name: "chat", About: "multi-turn chat, each turn's prompt the whole history", apply: func(c *Config) {
			// From the base: 50 conversations, 1,000 requests.
			c.Workload = WorkloadChat
			c.Groups, c.Requests = 3*c.Groups+2, c.Requests*5/6
			c.SystemTokens, c.QuestionTokens, c.OutputTokens = 1000, 200, 200
		}},
		{Name: "template", About: "2 chat-template renderings of the same messages", apply: func(c *Config) {
			c.Variants, c.VariantKind = 2, VariantTemplate
		}},
		{Name: "salt", About: "2 cache_salt values on the same prompts", apply: func(c *Config) {
			c.Variants, c.VariantKind = 2, VariantSalt
		}},
	}
}

// workingSetBlocks is the shared-prefix workload's distinct prompt blocks.
func workingSetBlocks(c Config) int {
	return c.Groups * (c.SystemTokens + c.PromptsPerGroup*c.QuestionTokens) / c.BlockSize
}

// ScenariosNamed returns the scenarios named, in the order given.
func ScenariosNamed(names []string) ([]Scenario, error) {
	all := Scenarios()
	var out []Scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			valid := make([]string, len(all))
			for j, s := range all {
				valid[j] = s.Name
			}
			return nil, fmt.Errorf("scenario %q: valid: %s", n, strings.Join(valid, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// Cell is one scenario at one replica count.
type Cell struct {
	Scenario string   `json:"scenario"`
	Replicas int      `json:"replicas"`
	Config   Config   `json:"config"`
	Routers  []Result `json:"routers"`
	// PreciseOfOracle is precise's hit rate over the oracle's;
	// SharedOfOracle and IsolatedOfOracle the same for precise_shared and
	// precise_isolated.
	PreciseOfOracle  float64 `json:"precise_of_oracle"`
	SharedOfOracle   float64 `json:"shared_of_oracle"`
	IsolatedOfOracle float64 `json:"isolated_of_oracle"`
	// MarginPoints is precise's hit rate minus approximate's, in
	// percentage points.
	MarginPoints float64 `json:"margin_points"`
}

// Router returns the cell's result for name, or false.
func (c *Cell) Router(name string) (Result, bool) {
	for _, r := range c.Routers {
		if r.Name == name {
			return r, true
		}
	}
	return Result{}, false
}

// Matrix is the evidence matrix's outcome.
type Matrix struct {
	Scenarios []Scenario `json:"scenarios"`
	Cells     []Cell     `json:"cells"`
}

// MatrixProgress is told which cell is running and how far its current
// router has got.
type MatrixProgress func(cell, cells int, label, router string, done, total int)

// RunMatrix runs every scenario at every replica count on base with
// MatrixRouters. progress may be nil.
func RunMatrix(ctx context.Context, base Config, scenarios []Scenario, replicas []int, progress MatrixProgress) (*Matrix, error) {
	m := &Matrix{Scenarios: scenarios}
	total := len(scenarios) * len(replicas)
	for _, sc := range scenarios {
		for _, n := range replicas {
			cfg := base
			sc.apply(&cfg)
			cfg.Replicas = n
			cfg.Routers = MatrixRouters
			if n == 1 {
				cfg.Routers = slices.DeleteFunc(slices.Clone(MatrixRouters), func(r string) bool { return slices.Contains(sameAsPreciseAtOneReplica, r) })
			}
			label := fmt.Sprintf("%s x%d", sc.Name, n)
			var prog Progress
			if progress != nil {
				k := len(m.Cells)
				prog = func(router string, done, all int) { progress(k, total, label, router, done, all) }
			}
			rep, err := Run(ctx, cfg, prog)
			if err != nil {
				return nil, fmt.Errorf("matrix cell %s: %w", label, err)
			}
			c := Cell{Scenario: sc.Name, Replicas: n, Config: cfg, Routers: rep.Routers}
			if n == 1 {
				for i, name := range sameAsPreciseAtOneReplica {
					same, _ := c.Router("precise")
					same.Name = name
					c.Routers = slices.Insert(c.Routers, 1+i, same)
				}
				c.Config.Routers = MatrixRouters
			}
			p, _ := c.Router("precise")
			a, _ := c.Router("approximate")
			o, _ := c.Router("oracle")
			sh, _ := c.Router(RouterPreciseShared)
			is, _ := c.Router(RouterPreciseIsolated)
			if o.HitRate > 0 {
				c.PreciseOfOracle = p.HitRate / o.HitRate
				c.SharedOfOracle = sh.HitRate / o.HitRate
				c.IsolatedOfOracle = is.HitRate / o.HitRate
			}
			c.MarginPoints = 100 * (p.HitRate - a.HitRate)
			m.Cells = append(m.Cells, c)
		}
	}
	return m, nil
}

// WriteJSON prints the matrix as indented JSON: {"scenarios": [...],
// "cells": [{"scenario", "replicas", "config", "routers": [...],
// "precise_of_oracle", "margin_points"}, ...]}.
func (m *Matrix) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}

// WriteTable prints one line per cell: each router's hit rate, precise's
// share of the oracle's and its margin over approximate, and TTFT p50/p90
// and throughput of precise and approximate.
func (m *Matrix) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treplicas\tprecise\tshared\tisolated\tplacement\tapprox\tleast-loaded\toracle\tprecise/oracle\tshared/oracle\tisolated/oracle\tmargin\tp50/p90 precise\tp50/p90 shared\tp50/p90 isolated\tp50/p90 placement\tp50/p90 approx\treq/s precise\treq/s approx\t")
	for _, c := range m.Cells {
		get := func(n string) Result { r, _ := c.Router(n); return r }
		p, sh, is, pl := get("precise"), get(RouterPreciseShared), get(RouterPreciseIsolated), get(RouterPrecisePlacement)
		a, ll, o := get("approximate"), get("least_loaded"), get("oracle")
		ttft := func(r Result) string { return fmtMS(r.TTFTP50) + " / " + fmtMS(r.TTFTP90) }
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%+.1f\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t\n",
			c.Scenario, c.Replicas, 100*p.HitRate, 100*sh.HitRate, 100*is.HitRate, 100*pl.HitRate, 100*a.HitRate, 100*ll.HitRate, 100*o.HitRate,
			100*c.PreciseOfOracle, 100*c.SharedOfOracle, 100*c.IsolatedOfOracle, c.MarginPoints, ttft(p), ttft(sh), ttft(is), ttft(pl), ttft(a),
			p.Throughput, a.Throughput)
	}
	return tw.Flush()
}

// WriteSVG draws the matrix's hit rates: one group of bars per cell
// (precise, precise_shared, precise_isolated, approximate, least loaded,
// oracle).
func (m *Matrix) WriteSVG(w io.Writer) error {
	routers := []string{"precise", RouterPreciseShared, RouterPreciseIsolated, "approximate", "least_loaded", "oracle"}
	colors := []string{"#1b7f3b", "#7fc28e", "#b5dcbf", "#d98c1a", "#5a6fa8", "#2a9fd6"}
	const (
		left, top, plotH = 50, 60, 260
		barW, groupGap   = 7, 12
	)
	groupW := barW*len(routers) + groupGap
	width := left + groupW*len(m.Cells) + 20
	height := top + plotH + 110
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" text-anchor="middle">kvtrack simulate --matrix: prefix-cache hit rate per scenario and router replicas (modelled)</text>`+"\n", width/2)
	for i, r := range routers {
		x := left + i*130
		fmt.Fprintf(&b, `<rect x="%d" y="32" width="10" height="10" fill="%s"/><text x="%d" y="41">%s</text>`+"\n", x, colors[i], x+14, r)
	}
	bottom := top + plotH
	for _, pct := range []int{0, 25, 50, 75, 100} {
		y := float64(bottom) - float64(plotH)*float64(pct)/100
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%d%%</text>`+"\n", left, y, width-20, y, left-4, y+4, pct)
	}
	for k, c := range m.Cells {
		x0 := left + k*groupW + groupGap/2
		for i, name := range routers {
			r, _ := c.Router(name)
			h := float64(plotH) * r.HitRate
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"/>`+"\n", x0+i*barW, float64(bottom)-h, barW, h, colors[i])
		}
		cx := x0 + barW*len(routers)/2
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" transform="rotate(-50 %d %d)">%s</text>`+"\n", cx, bottom+12, cx, bottom+12,
			html.EscapeString(fmt.Sprintf("%s x%d", c.Scenario, c.Replicas)))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
