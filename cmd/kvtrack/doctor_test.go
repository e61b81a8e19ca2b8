package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/tokenization"
)

// startDoctorPod starts a fake vLLM pod (OpenAI API, events with replay)
// hashing with seed 42, and returns its address and endpoints.
func startDoctorPod(t *testing.T, dir string) (addr, events string, replayPort int) {
	t.Helper()
	tok, err := tokenization.Load(context.Background(), dir, tokenization.LoadOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(nil)
	addr = hs.Listener.Addr().String()
	pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: "kv@" + addr + "@m",
		ReplayEndpoint: "tcp://127.0.0.1:*"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	srv, err := vllmfake.NewServer(vllmfake.ServerConfig{Model: "m", Hash: blockhash.HashConfig{Seed: "42", BlockSize: 16}, Tokenizer: tok, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = srv
	hs.Start()
	t.Cleanup(hs.Close)
	rep := pub.ReplayEndpoint()
	replayPort, err = strconv.Atoi(rep[strings.LastIndexByte(rep, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return addr, pub.Endpoint(), replayPort
}

func TestDoctorCommand(t *testing.T) {
	dir := qwen3Dir(t)
	addr, events, replayPort := startDoctorPod(t, dir)
	cfgFile := filepath.Join(t.TempDir(), "kvtrack.yaml")
	yaml := "hash:\n  seed: \"42\"\n  blockSize: 16\nevents:\n  replayPort: " + strconv.Itoa(replayPort) + "\ntokenizer:\n  path: " + dir + "\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"doctor", "--config", cfgFile, "--pods", addr, "--events", events, "--duration", "1s", "--probe", "--replay-timeout", "500ms"}

	t.Run("healthy pod exits 0", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append(base, "--json"), &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		var rep struct {
			Passed bool `json:"passed"`
			Probes []struct {
				Verdict string `json:"verdict"`
			} `json:"probes"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("--json output: %v\n%s", err, stdout.String())
		}
		if !rep.Passed || len(rep.Probes) != 2 || rep.Probes[0].Verdict != "match" || rep.Probes[1].Verdict != "match" {
			t.Errorf("report %s, want passed with two matching probes", stdout.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("stderr %q; want nothing: progress is drawn only on a terminal", stderr.String())
		}
	})
	t.Run("flag overrides the config and the wrong seed exits 1", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append(base, "--hash-seed", "7"), &stdout, &stderr); code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		for _, want := range []string{"FAIL  hashing", `fix: set hash.seed: "42"`, "FAIL  probe-completion"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("checklist lacks %q:\n%s", want, stdout.String())
			}
		}
	})
}

func TestDoctorCommandRejectsBadConfigFile(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "kvtrack.json")
	if err := os.WriteFile(cfgFile, []byte(`{"hash": {"sead": "42"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"doctor", "--config", cfgFile, "--pods", "127.0.0.1:8000"}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2; stderr %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), `hash.sead: unknown field`) {
		t.Errorf("stderr %q does not name the unknown field", stderr.String())
	}
}
