package kvevents

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// debianPython is the interpreter with Debian's python3-zmq and
// python3-msgpack (make deps / .ci/run install them).
const debianPython = "/usr/bin/python3"

// requirePython skips when the Python publisher cannot run here, except in
// CI (env CI set), where a missing part is a failure.
func requirePython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import zmq, msgpack").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s with python3-zmq and python3-msgpack is needed (run make deps): %v: %s", debianPython, err, out)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestPythonPublisher ingests the stream of an independent publisher
// written in Python with pyzmq and msgpack-python, in vLLM's array and map
// layouts, with integer and bytes hashes and both replay reply forms, and
// checks the index against the truth the publisher reports.
func TestPythonPublisher(t *testing.T) {
	requirePython(t)
	tests := []struct {
		layout, hashes string
		replyTopic     bool
	}{
		{"v0.23", "int", false},
		{"v0.24", "bytes", true},
	}
	for _, tt := range tests {
		t.Run(tt.layout+"/"+tt.hashes, func(t *testing.T) {
			idx := newMemIndex(t)
			p := connectPool(t, idx)
			pubEP := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
			replayEP := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
			args := []string{"testdata/pypublisher.py", "--pub", pubEP, "--replay", replayEP, "--layout", tt.layout,
				"--hashes", tt.hashes, "--topic", "kv@py@model", "--seed", "7"}
			if tt.replyTopic {
				args = append(args, "--reply-topic")
			}
			cmd := exec.Command(debianPython, args...)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stdin.Close()
				if err := cmd.Wait(); err != nil {
					t.Errorf("publisher: %v\n%s", err, stderr.String())
				}
			})
			lines := bufio.NewScanner(stdout)
			lines.Buffer(nil, 1<<24)
			if !lines.Scan() || lines.Text() != "ready" {
				t.Fatalf("publisher did not start: %q\n%s", lines.Text(), stderr.String())
			}
			pod := kvblock.Pod{Addr: "py-pod:8000"}
			if err := p.AddPod(t.Context(), pod, pubEP, replayEP); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the first message from the Python publisher", func() bool { return p.streamStarted(pod) })
			if _, err := stdin.Write([]byte("go\n")); err != nil {
				t.Fatal(err)
			}
			if !lines.Scan() {
				t.Fatalf("publisher reported no truth:\n%s", stderr.String())
			}
			var report struct {
				Truth [][3]json.RawMessage `json:"truth"`
			}
			if err := json.Unmarshal(lines.Bytes(), &report); err != nil {
				t.Fatal(err)
			}
			want := map[refEntry]int{}
			for _, e := range report.Truth {
				var h uint64
				var medium string
				var refs int
				if err := json.Unmarshal(e[0], &h); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(e[1], &medium); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(e[2], &refs); err != nil {
					t.Fatal(err)
				}
				want[refEntry{pod, kvblock.TierOf(medium), kvblock.Key(h)}] = refs
			}
			if len(want) == 0 {
				t.Fatal("publisher reported an empty truth; the scenario proves nothing")
			}
			waitIndexEquals(t, idx, func() map[refEntry]int { return want })
			if s := p.Stats(); s.Replays == 0 || s.MalformedBatches != 0 {
				t.Errorf("replays, malformed = %d, %d; want > 0, 0", s.Replays, s.MalformedBatches)
			}
		})
	}
}
