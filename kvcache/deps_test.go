package kvcache

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNoKubernetesDependencies guards the layering: a program that imports
// kvcache (the CLI, a standalone router) must not compile the EPP framework
// or Kubernetes client code, which only package scorer may pull in.
func TestNoKubernetesDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/kvtrack/kvtrack/kvcache").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps returned %d packages, want the whole graph:\n%s", len(deps), out)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") {
			t.Errorf("kvcache depends on %s", p)
		}
	}
}

// TestBuildsWithoutCgo guards the other half of the layering: the entry
// package builds with CGO_ENABLED=0, so a program that scores without
// following vLLM's ZMQ events (or with its own EventSource) needs no libzmq.
// The ZMQ transport lives in package kvevents, which such a program does
// not import. go list resolves the build exactly as go build would (a
// package whose files all need cgo is an error) without compiling it.
func TestBuildsWithoutCgo(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH")
	}
	cmd := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", "github.com/kvtrack/kvtrack/kvcache")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("CGO_ENABLED=0 go list -deps ./kvcache: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		pkg, n, _ := strings.Cut(strings.TrimSpace(line), " ")
		if n != "0" || pkg == "github.com/pebbe/zmq4" || pkg == "github.com/kvtrack/kvtrack/kvevents" {
			t.Errorf("kvcache depends on %s, which needs cgo", pkg)
		}
	}
}
