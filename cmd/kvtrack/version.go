package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

func init() {
	register(command{
		name:    "version",
		summary: "print kvtrack's version and how it was built",
		run:     runVersion,
	})
}

// readBuildInfo is debug.ReadBuildInfo; tests replace it.
var readBuildInfo = debug.ReadBuildInfo

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version\n\nPrints the module version, the VCS revision and time the binary was built\nfrom (recorded by go build or go install in a git checkout, unless\n-buildvcs=false), and the Go toolchain and platform.", stdout, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bi, ok := readBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "kvtrack (no build information: built without module support)")
		return nil
	}
	fmt.Fprintf(stdout, "kvtrack %s\n", buildVersion(bi))
	fmt.Fprintf(stdout, "  go        %s\n", bi.GoVersion)
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for _, k := range []struct{ key, label string }{
		{"vcs.revision", "revision"}, {"vcs.time", "time"}, {"vcs.modified", "modified"},
		{"GOOS", "os"}, {"GOARCH", "arch"}, {"CGO_ENABLED", "cgo"},
	} {
		if v, ok := settings[k.key]; ok {
			fmt.Fprintf(stdout, "  %-9s %s\n", k.label, v)
		}
	}
	return nil
}

// buildVersion is the module version `go install module@version` records,
// else the VCS revision a `go build` in a checkout records.
func buildVersion(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			rev := s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return "(devel) " + rev
		}
	}
	return "(devel)"
}
