package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/doctor"
)

func init() {
	register(command{
		name:    "doctor",
		summary: "check a live vLLM deployment against a kvtrack config and name what breaks routing",
		run:     runDoctor,
	})
}

const doctorSynopsis = `doctor [--config FILE] [flags] --pods HOST:PORT[,...] [--probe] [--json]

Checks that precise prefix routing can work on a live deployment, with the
configuration the router uses (the kvcache JSON/YAML config; flags override
its fields). For each pod and DP rank it listens to the KV events for
--duration and reports, as pass / warn / fail with the reason and the fix:
whether events flow, the vLLM layout (and version range) they use, sequence
gaps, whether the replay endpoint answers, the media and block sizes, the
topic against the router's filter, and whether the published block hashes
match the configured algorithm, seed and block size (if not: which setting
differs, and the config line to change).

--probe also sends one completion and one chat request with a fixed prompt
to each pod's OpenAI API and compares the hashes the pod publishes for them
with the keys kvtrack computes through its tokenizer and chat template; a
mismatch is blamed on the tokenizer, the template or the hashing, with the
first differing block.

Event endpoints are derived as the router derives them: connect mode dials
tcp://<pod host>:<events.port> (rank r on port + r); bind mode binds
events.endpoint and reads the pod from each topic kv@<pod-ip:port>@<model>.
--events names each pod's endpoint instead (connect mode).

Exit status: 0 when every check passes, 1 otherwise, 2 for bad usage.`

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", doctorSynopsis, stdout, stderr)
	configFile := fs.String("config", "", "kvcache config file (JSON, or YAML by extension .yaml/.yml)")
	pods := fs.String("pods", "", "comma-separated pod addresses, host:port of each pod's OpenAI API")
	events := fs.String("events", "", "comma-separated event endpoints, one per pod (default: derived from the config)")
	dp := fs.Int("dp", 1, "data-parallel ranks per pod (rank r publishes on port + r)")
	duration := fs.Duration("duration", 10*time.Second, "how long to listen to the events")
	probe := fs.Bool("probe", false, "send a completion and a chat request to each pod and compare end to end")
	modelName := fs.String("model", "", "served model name for --probe (default: tokenizer.model, else the pod's first model)")
	probeWait := fs.Duration("probe-wait", 5*time.Second, "how long to wait for a probe's events")
	replayTimeout := fs.Duration("replay-timeout", 2*time.Second, "how long to wait for a replay answer")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a checklist")
	// Config overrides.
	quiet := fs.Bool("quiet", false, "no progress line (it is drawn only on a terminal anyway)")
	seed := fs.String("hash-seed", "", "hash.seed: the engines' PYTHONHASHSEED")
	algo := fs.String("hash-algo", "", "hash.algorithm: the engines' --prefix-caching-hash-algo")
	blockSize := fs.Int("block-size", 0, "hash.blockSize: the engines' --block-size")
	scheme := fs.String("key-scheme", "", "keyScheme: vllm or tokens")
	mode := fs.String("mode", "", "events.mode: connect or bind")
	bind := fs.String("bind", "", "events.endpoint to bind in bind mode, e.g. tcp://*:5557")
	eventsPort := fs.Int("events-port", 0, "events.port: each pod's publisher port in connect mode")
	replayPort := fs.Int("replay-port", 0, "events.replayPort: each pod's replay port (0: none)")
	topicFilter := fs.String("topic-filter", "", "events.topicFilter: the router's topic prefix")
	tokPath := fs.String("tokenizer", "", "tokenizer.path: tokenizer.json or its directory")
	tokURL := fs.String("tokenizer-url", "", "tokenizer.url: a vLLM server to tokenize with")
	fs.deprecated("seed", "hash-seed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	var cfg kvcache.Config
	if *configFile != "" {
		var (
			shape string
			err   error
		)
		if cfg, shape, err = doctor.LoadConfigFile(*configFile); err != nil {
			return fmt.Errorf("%w: --config: %v", errUsage, err)
		}
		if strings.Contains(shape, "llm-d") {
			fmt.Fprintf(stderr, "kvtrack doctor: --config: read %s\n", shape)
		}
	}
	set := fs.set()
	overrides := []struct {
		flag  string
		apply func()
	}{
		{"hash-seed", func() { cfg.Hash.Seed = *seed }},
		{"hash-algo", func() { cfg.Hash.Algorithm = *algo }},
		{"block-size", func() { cfg.Hash.BlockSize = *blockSize }},
		{"key-scheme", func() { cfg.KeyScheme = kvcache.KeyScheme(*scheme) }},
		{"mode", func() { cfg.Events.Mode = kvcache.EventsMode(*mode) }},
		{"bind", func() { cfg.Events.Endpoint = *bind }},
		{"events-port", func() { cfg.Events.Port = *eventsPort }},
		{"replay-port", func() { cfg.Events.ReplayPort = *replayPort }},
		{"topic-filter", func() { cfg.Events.TopicFilter = topicFilter }},
		{"tokenizer", func() { cfg.Tokenizer.Path = *tokPath }},
		{"tokenizer-url", func() { cfg.Tokenizer.URL = *tokURL }},
	}
	for _, o := range overrides {
		if set[o.flag] {
			o.apply()
		}
	}
	if set["bind"] && !set["mode"] {
		cfg.Events.Mode = kvcache.EventsBind
	}

	opts := doctor.Options{
		Config: cfg, Pods: splitList(*pods), Events: splitList(*events), DataParallelSize: *dp,
		Duration: *duration, Probe: *probe, Model: *modelName, ProbeWait: *probeWait, ReplayTimeout: *replayTimeout,
	}
	width := 0
	if !*quiet && isTerminal(stderr) {
		opts.Progress = func(line string) {
			line = "kvtrack doctor: " + line
			pad := max(width-len(line), 0)
			width = len(line)
			fmt.Fprintf(stderr, "\r%s%s", line, strings.Repeat(" ", pad))
		}
	}
	rep, err := doctor.Run(ctx, opts)
	if width > 0 {
		fmt.Fprintf(stderr, "\r%s\r", strings.Repeat(" ", width))
	}
	if errors.Is(err, doctor.ErrOptions) {
		return fs.usageError("%v", err)
	}
	if rep == nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := doctor.WriteText(stdout, rep); err != nil {
		return err
	}
	if err != nil {
		return err // interrupted: the report is partial
	}
	if !rep.Passed {
		return errNotPassed
	}
	return nil
}

var errNotPassed = errors.New("not every check passed (see the report)")

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
