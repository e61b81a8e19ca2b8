package sim

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report as an aligned text table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "router\thit rate\tTTFT p50\tTTFT p90\tTTFT mean\tthroughput\toutput tok/s\tload spread\tevicted blocks\t")
	for _, x := range r.Routers {
		fmt.Fprintf(tw, "%s\t%.1f%%\t%s\t%s\t%s\t%.2f req/s\t%.0f\t%.2f\t%d\t\n",
			x.Name, 100*x.HitRate, fmtMS(x.TTFTP50), fmtMS(x.TTFTP90), fmtMS(x.TTFTMean),
			x.Throughput, x.OutputTPS, x.LoadSpread, x.EvictedBlocks)
	}
	return tw.Flush()
}

func fmtMS(ms float64) string {
	if ms >= 10_000 {
		return fmt.Sprintf("%.1f s", ms/1000)
	}
	if ms >= 1000 {
		return fmt.Sprintf("%.2f s", ms/1000)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// WriteJSON prints the report as indented JSON:
// {"config": {...}, "routers": [{"name": "precise", "hit_rate": ...}, ...]}.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSVG draws two bar charts side by side: TTFT p90 (log scale) and
// prefix-cache hit rate, one bar per router.
func (r *Report) WriteSVG(w io.Writer) error {
	const (
		width, height = 900, 380
		panelW        = 400
		top, bottom   = 60, 300
		barGap        = 10
	)
	colors := map[string]string{
		"precise": "#1b7f3b", "approximate": "#d98c1a", "round_robin": "#7a7a7a",
		"random": "#a0a0a0", "least_loaded": "#5a6fa8", "oracle": "#2a9fd6",
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	c := r.Config
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" text-anchor="middle">%s</text>`+"\n", width/2,
		html.EscapeString(fmt.Sprintf("kvtrack simulate: %d pods, %s, %d requests at %g req/s (modelled)", c.Pods, c.Workload, c.Requests, c.Rate)))
	n := len(r.Routers)
	panel := func(x0 int, title string, value func(Result) float64, scale func(float64) float64, label func(float64) string) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" text-anchor="middle">%s</text>`+"\n", x0+panelW/2, top-16, html.EscapeString(title))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, bottom, x0+panelW, bottom)
		bw := (panelW - barGap*(n+1)) / max(n, 1)
		for i, res := range r.Routers {
			v := value(res)
			h := (bottom - top) * scale(v)
			x := x0 + barGap + i*(bw+barGap)
			col := colors[res.Name]
			if col == "" {
				col = "#444"
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"/>`+"\n", x, float64(bottom)-h, bw, h, col)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="middle">%s</text>`+"\n", x+bw/2, float64(bottom)-h-4, html.EscapeString(label(v)))
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" transform="rotate(-35 %d %d)">%s</text>`+"\n", x+bw/2, bottom+14, x+bw/2, bottom+14, html.EscapeString(res.Name))
		}
	}
	maxP90 := 1.0
	for _, res := range r.Routers {
		maxP90 = max(maxP90, res.TTFTP90)
	}
	// Log scale from 1 ms so that sub-second and minute-long tails share a
	// chart.
	logScale := func(v float64) float64 {
		if v <= 1 {
			return 0.01
		}
		return max(0.01, math.Log10(v)/math.Log10(maxP90*1.2))
	}
	panel(40, "TTFT p90 (log scale, lower is better)", func(x Result) float64 { return x.TTFTP90 }, logScale, fmtMS)
	panel(width-panelW-40, "prefix-cache hit rate (higher is better)", func(x Result) float64 { return x.HitRate },
		func(v float64) float64 { return max(v, 0.005) }, func(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) })
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
