package kvcache

import (
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInfoDesc is kvtrack_build_info: 1, labelled with the kvtrack module
// version the binary was built with, the VCS revision and the Go version,
// so dashboards can tell which release each replica runs.
var buildInfoDesc = prometheus.NewDesc("kvtrack_build_info",
	"Always 1; labels name the kvtrack module version, the VCS revision of the binary and its Go version.",
	[]string{"version", "revision", "goversion"}, nil)

// buildLabels reads the binary's build information once.
var buildLabels = sync.OnceValue(func() [3]string {
	labels := [3]string{"unknown", "unknown", "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return labels
	}
	labels[2] = bi.GoVersion
	const module = "github.com/kvtrack/kvtrack"
	if bi.Main.Path == module {
		labels[0] = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			labels[0] = d.Version
		}
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			labels[1] = s.Value
		}
	}
	return labels
})

func buildInfoMetric() prometheus.Metric {
	l := buildLabels()
	return prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1, l[0], l[1], l[2])
}
