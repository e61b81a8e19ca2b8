// Package pypub runs examples/epp/testdata/vllm_publisher.py, the Python
// stand-in for a vLLM engine's KV-event publisher, for tests: an
// implementation of vLLM's hashing and wire format independent of
// kvtrack's Go code.
package pypub

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/internal/testwait"
)

// Python is Debian's interpreter, with python3-zmq and python3-msgpack.
const Python = "/usr/bin/python3"

// Require skips t when Python with zmq and msgpack is absent (and fails it
// under CI, which installs them).
func Require(t testing.TB) {
	t.Helper()
	if err := exec.Command(Python, "-c", "import zmq, msgpack").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s with zmq and msgpack is required in CI: %v", Python, err)
		}
		t.Skipf("skipping: %s with python3-zmq and python3-msgpack not installed (%v); run hack/install-deps.sh", Python, err)
	}
}

// Pod describes one publisher.
type Pod struct {
	Endpoint  string // to bind, e.g. tcp://127.0.0.2:5557
	Topic     string
	Seed      string
	BlockSize int
	LoRA      string     // the adapter the blocks belong to, or ""
	Sequences [][]uint32 // one BlockStored each
}

// Start runs the publisher for p; it publishes once a subscriber joins. The
// returned function waits until it has.
func Start(t testing.TB, p Pod) (waitPublished func()) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "examples", "epp", "testdata", "vllm_publisher.py")
	args := []string{script, p.Endpoint, p.Topic, p.Seed, fmt.Sprint(p.BlockSize)}
	if p.LoRA != "" {
		args = append(args, p.LoRA)
	}
	cmd := exec.Command(Python, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	seqs, _ := json.Marshal(p.Sequences)
	if _, err := stdin.Write(append(seqs, '\n')); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	if line, err := lines.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("publisher on %s did not start: %q, %v", p.Endpoint, line, err)
	}
	said := make(chan string, 1)
	go func() {
		line, _ := lines.ReadString('\n')
		said <- strings.TrimSpace(line)
	}()
	return func() {
		t.Helper()
		select {
		case line := <-said:
			if line != "published" {
				t.Fatalf("publisher on %s said %q, want \"published\"", p.Endpoint, line)
			}
		case <-testwait.Context(t).Done():
			t.Fatalf("no subscriber reached the publisher on %s by the test binary's deadline", p.Endpoint)
		}
	}
}
