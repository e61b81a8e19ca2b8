package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/kvtrack/kvtrack/internal/testnet"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestDecodeGolden decodes every sample payload (byte-identical to vLLM's
// encoder) and compares the JSON with testdata/decode/<sample>.json.
func TestDecodeGolden(t *testing.T) {
	samples, err := filepath.Glob("../../kvevents/testdata/*.msgpack")
	if err != nil || len(samples) == 0 {
		t.Fatalf("no sample payloads found: %v", err)
	}
	for _, sample := range samples {
		name := strings.TrimSuffix(filepath.Base(sample), ".msgpack")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"decode", sample}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			golden := filepath.Join("testdata", "decode", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(stdout.Bytes(), want) {
				t.Errorf("decode %s differs from %s:\n got %s\nwant %s", sample, golden, stdout.String(), want)
			}
		})
	}
}

func TestDecodeUsageAndErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.msgpack")
	if err := os.WriteFile(bad, []byte{0x93, 0xcb}, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"decode"}, 2, "exactly one FILE"},
		{[]string{"decode", "a", "b"}, 2, "exactly one FILE"},
		{[]string{"decode", filepath.Join(t.TempDir(), "missing")}, 1, "no such file"},
		{[]string{"decode", bad}, 1, "malformed event batch"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantErr)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestListen runs listen against a real PUB socket speaking vLLM's
// protocol and checks the JSON lines and the gap warning.
func TestListen(t *testing.T) {
	port := testnet.FreePort(t)
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pub.SetLinger(0)
	if err := pub.Bind(ep); err != nil {
		t.Fatal(err)
	}
	payload, err := os.ReadFile("../../kvevents/testdata/v0.23_array_block_stored.msgpack")
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq uint64) {
		if _, err := pub.SendMessage("kv-events", binary.BigEndian.AppendUint64(nil, seq), payload); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"listen", "--connect", ep}, &stdout, &stderr) }()

	deadline := time.Now().Add(10 * time.Second)
	for seq := uint64(0); !strings.Contains(stdout.String(), "\n"); seq++ {
		if time.Now().After(deadline) {
			t.Fatalf("listen printed nothing; stderr: %s", stderr.String())
		}
		send(seq)
		time.Sleep(5 * time.Millisecond)
	}
	first := strings.SplitN(stdout.String(), "\n", 2)[0]
	var line struct {
		Pod   string `json:"pod"`
		Rank  int    `json:"rank"`
		Seq   uint64 `json:"seq"`
		Batch struct {
			Events []struct {
				Type        string   `json:"type"`
				BlockHashes []uint64 `json:"block_hashes"`
			} `json:"events"`
		} `json:"batch"`
	}
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatalf("first line %q: %v", first, err)
	}
	wantPod := strings.TrimPrefix(ep, "tcp://")
	if line.Pod != wantPod || line.Rank != 0 || len(line.Batch.Events) != 1 || line.Batch.Events[0].Type != "BlockStored" ||
		line.Batch.Events[0].BlockHashes[1] != 8353329011930047756 {
		t.Errorf("first line = %+v, want pod %s rank 0 with the sample BlockStored", line, wantPod)
	}
	send(line.Seq + 1000) // a gap, and no replay endpoint to fill it
	waitStderr(t, &stderr, "sequence gap", deadline)
	stopListen(t, cancel, done, &stderr)
}
