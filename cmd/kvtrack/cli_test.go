package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// --help is asked for: it goes to stdout (pageable, greppable) and exits 0.
func TestHelpGoesToStdout(t *testing.T) {
	cases := [][]string{{"--help"}, {"help"}, {"-h"}}
	for _, n := range commandNames() {
		cases = append(cases, []string{n, "--help"})
	}
	for _, args := range cases {
		out, errOut, code := runCLI(t, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage: kvtrack") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0, the usage on stdout, nothing on stderr", args, code, out, errOut)
		}
		if len(args) == 2 && strings.Contains(out, "deprecated") {
			t.Errorf("%v: help lists deprecated aliases:\n%s", args, out)
		}
	}
}

// An unknown flag is reported once, on one line, with where help is.
func TestUnknownFlagReportedOnce(t *testing.T) {
	for _, n := range commandNames() {
		out, errOut, code := runCLI(t, n, "--no-such-flag")
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code != 2 || out != "" || len(lines) != 1 ||
			strings.Count(errOut, "no-such-flag") != 1 || !strings.Contains(errOut, "kvtrack "+n+" --help") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and one line naming the flag and --help", n, code, out, errOut)
		}
	}
}

// "kvtrack help CMD" is "kvtrack CMD --help"; a command without flags
// prints no empty "Flags:" heading.
func TestHelpCommandShowsThatCommandsHelp(t *testing.T) {
	for _, n := range commandNames() {
		viaHelp, errOut, code := runCLI(t, "help", n)
		direct, _, _ := runCLI(t, n, "--help")
		if code != 0 || errOut != "" || viaHelp != direct {
			t.Errorf("help %s: exit %d, stderr %q, stdout %q; want exit 0 and the output of '%s --help' %q", n, code, errOut, viaHelp, n, direct)
		}
		if strings.HasSuffix(strings.TrimSpace(direct), "Flags:") {
			t.Errorf("%s --help ends in an empty Flags: heading:\n%s", n, direct)
		}
	}
	if _, errOut, code := runCLI(t, "help", "no-such-command"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("help no-such-command: exit %d, stderr %q; want exit 2 naming the unknown command", code, errOut)
	}
}

func TestNoArgumentsPrintsCommandsAndFails(t *testing.T) {
	out, errOut, code := runCLI(t)
	if code != 2 || out != "" || !strings.Contains(errOut, "Commands:") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// One vocabulary across commands; the old names still work, with a warning.
func TestDeprecatedFlagAliases(t *testing.T) {
	tokens := "100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115"
	tests := []struct {
		name       string
		old, cur   []string
		wantWarned string
	}{
		{"hash --algo --seed", []string{"hash", "--algo", "xxhash", "--seed", "7", "--tokens", tokens},
			[]string{"hash", "--hash-algo", "xxhash", "--hash-seed", "7", "--tokens", tokens}, "--seed is deprecated; use --hash-seed"},
		{"demo --seed", []string{"demo", "--seed", "7"}, []string{"demo", "--hash-seed", "7"}, "--seed is deprecated; use --hash-seed"},
		{"hash --scheme", []string{"hash", "--scheme", "tokens", "--tokens", tokens},
			[]string{"hash", "--key-scheme", "tokens", "--tokens", tokens}, "--scheme is deprecated; use --key-scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldOut, oldErr, oldCode := runCLI(t, tt.old...)
			curOut, curErr, curCode := runCLI(t, tt.cur...)
			if oldCode != 0 || curCode != 0 || oldOut != curOut {
				t.Fatalf("old names: exit %d %q; current: exit %d %q", oldCode, oldOut, curCode, curOut)
			}
			if !strings.Contains(oldErr, tt.wantWarned) || curErr != "" {
				t.Errorf("old names stderr %q (want %q); current names stderr %q (want empty)", oldErr, tt.wantWarned, curErr)
			}
		})
	}
}

// What tokenize prints, hash reads from stdin.
func TestHashReadsTokenizeOutputFromStdin(t *testing.T) {
	dir := qwen3Dir(t)
	tokOut, errOut, code := runCLI(t, "tokenize", "--tokenizer", dir, "--text", strings.Repeat("The quick brown fox jumps over the lazy dog. ", 4))
	if code != 0 {
		t.Fatalf("tokenize: exit %d: %s", code, errOut)
	}
	var ids []uint32
	if err := json.Unmarshal([]byte(tokOut), &ids); err != nil {
		t.Fatalf("tokenize printed %q: %v", tokOut, err)
	}
	var csv []string
	for _, id := range ids {
		csv = append(csv, strconv.FormatUint(uint64(id), 10))
	}
	want, _, code := runCLI(t, "hash", "--hash-seed", "42", "--tokens", strings.Join(csv, ","))
	if code != 0 || want == "" {
		t.Fatalf("hash of comma-separated IDs: exit %d, %q", code, want)
	}
	old := stdin
	stdin = strings.NewReader(tokOut)
	t.Cleanup(func() { stdin = old })
	got, errOut, code := runCLI(t, "hash", "--hash-seed", "42", "--tokens", "-")
	if code != 0 || got != want {
		t.Errorf("hash --tokens - of tokenize's output: exit %d, %q (stderr %q); want %q", code, got, errOut, want)
	}
}

func TestVersion(t *testing.T) {
	old := readBuildInfo
	t.Cleanup(func() { readBuildInfo = old })
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want []string
	}{
		{"installed at a version", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.3.0"}},
			[]string{"kvtrack v0.3.0\n", "go        go1.26.0\n"}},
		{"built in a checkout", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}},
			[]string{"kvtrack (devel) 0123456789ab\n", "revision  0123456789abcdef0123\n", "modified  true\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readBuildInfo = func() (*debug.BuildInfo, bool) { return tt.bi, true }
			for _, args := range [][]string{{"version"}, {"--version"}} {
				out, _, code := runCLI(t, args...)
				for _, w := range tt.want {
					if code != 0 || !strings.Contains(out, w) {
						t.Errorf("%v: exit %d, stdout %q; want it to contain %q", args, code, out, w)
					}
				}
			}
		})
	}
}

var smallSim = []string{"simulate", "--pods", "2", "--requests", "40", "--groups", "2", "--prompts-per-group", "4",
	"--system-tokens", "64", "--question-tokens", "32", "--output-tokens", "4", "--cache-blocks", "400", "--routers", "precise,round_robin"}

// --json prints JSON and nothing else: no chart file, no progress.
func TestSimulateJSONWritesOnlyJSON(t *testing.T) {
	t.Chdir(t.TempDir())
	out, errOut, code := runCLI(t, append(smallSim, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var v struct {
		Routers []json.RawMessage `json:"routers"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Routers) != 2 {
		t.Errorf("stdout is not the JSON report (%v): %q", err, out)
	}
	if errOut != "" {
		t.Errorf("stderr %q, want nothing (not a terminal: no progress)", errOut)
	}
	if entries, _ := os.ReadDir("."); len(entries) != 0 {
		t.Errorf("--json wrote files: %v", entries)
	}
}

// A chart that cannot be written fails the command after the table is out.
func TestSimulateChartErrorKeepsTheTable(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "no-such-dir", "chart.svg")
	out, errOut, code := runCLI(t, append(smallSim, "--chart", bad)...)
	if code != 1 || !strings.Contains(out, "precise") || !strings.Contains(out, "round_robin") || !strings.Contains(errOut, "chart") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 with the table on stdout and the chart error on stderr", code, out, errOut)
	}
}
