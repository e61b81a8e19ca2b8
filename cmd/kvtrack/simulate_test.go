package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// tinyMatrix is a grid of two small cells, so the test runs in seconds.
var tinyMatrix = []string{"simulate", "--matrix", "--matrix-scenarios", "base,salt", "--matrix-replicas", "2",
	"--pods", "2", "--groups", "4", "--prompts-per-group", "2", "--system-tokens", "256", "--question-tokens", "64",
	"--output-tokens", "32", "--cache-blocks", "200", "--requests", "60", "--rate", "20", "--chart", ""}

// With --json stdout carries the matrix as JSON and nothing else; there is
// no progress bar when stdout is not a terminal.
func TestSimulateMatrixJSONIsOnlyJSON(t *testing.T) {
	out, errOut, code := runCLI(t, append(tinyMatrix, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var m struct {
		Cells []struct {
			Scenario string `json:"scenario"`
			Replicas int    `json:"replicas"`
			Routers  []struct {
				Name    string  `json:"name"`
				HitRate float64 `json:"hit_rate"`
			} `json:"routers"`
		} `json:"cells"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Errorf("stdout has more after the JSON document")
	}
	if len(m.Cells) != 2 || m.Cells[0].Scenario != "base" || m.Cells[1].Scenario != "salt" || m.Cells[0].Replicas != 2 {
		t.Errorf("cells %+v, want base x2 and salt x2", m.Cells)
	}
	if errOut != "" {
		t.Errorf("stderr %q, want nothing (no terminal, no progress)", errOut)
	}
}

func TestSimulateMatrixTable(t *testing.T) {
	out, errOut, code := runCLI(t, tinyMatrix...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"precise/oracle", "margin", "salt", "cache_salt"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestSimulateMatrixRejectsBadGrid(t *testing.T) {
	for _, args := range [][]string{
		{"simulate", "--matrix", "--matrix-scenarios", "nosuch"},
		{"simulate", "--matrix", "--matrix-replicas", "0"},
		{"simulate", "--matrix", "--matrix-replicas", "two"},
	} {
		_, errOut, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(errOut, "matrix") {
			t.Errorf("%v: exit %d, stderr %q; want a usage error naming the flag", args, code, errOut)
		}
	}
}
