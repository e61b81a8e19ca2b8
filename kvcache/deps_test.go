package kvcache

import (
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
