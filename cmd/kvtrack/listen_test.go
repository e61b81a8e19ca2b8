package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/kvtrack/kvtrack/internal/testnet"
)

// TestListenAllow runs listen --bind --allow against a publisher at an
// allowed IP that sends both its own topic and topics naming pods nobody
// allowed: only its own pod's events are printed, and the forged ones are
// reported on standard error, not one line each.
func TestListenAllow(t *testing.T) {
	port := testnet.FreePort(t)
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	payload, err := os.ReadFile("../../kvevents/testdata/v0.23_array_block_stored.msgpack")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"listen", "--bind", ep, "--allow", "127.0.0.2:8000"}, &stdout, &stderr)
	}()

	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pub.SetLinger(0)
	if err := pub.Connect(fmt.Sprintf("tcp://127.0.0.2:0;127.0.0.1:%d", port)); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	send := func(topic string) {
		if _, err := pub.SendMessage(topic, binary.BigEndian.AppendUint64(nil, seq), payload); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatalf("listen printed nothing; stderr: %s", stderr.String())
		}
		send("kv@127.0.0.2:8000@m")
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 1000 {
		send(fmt.Sprintf("kv@127.0.0.2:%d@m", 9000+i))
	}
	waitStderr(t, &stderr, "names no pod added", deadline)
	stopListen(t, cancel, done, &stderr)
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if !strings.Contains(line, `"pod":"127.0.0.2:8000"`) {
			t.Errorf("printed a line for another pod: %s", line)
		}
	}
	if n := strings.Count(stderr.String(), "names no pod added"); n > 3 {
		t.Errorf("%d lines about the forged topics, want them rate-limited:\n%s", n, stderr.String())
	}
}

// waitStderr waits until listen's standard error says substr.
func waitStderr(t *testing.T, stderr *syncBuffer, substr string, deadline time.Time) {
	t.Helper()
	for !strings.Contains(stderr.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("listen never said %q; stderr: %s", substr, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopListen cancels listen and checks that it exits cleanly.
func stopListen(t *testing.T, cancel context.CancelFunc, done <-chan int, stderr *syncBuffer) {
	t.Helper()
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("listen exited %d: %s", code, stderr.String())
	}
}
