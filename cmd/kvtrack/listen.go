package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/go-logr/logr/funcr"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

func init() {
	register(command{
		name:    "listen",
		summary: "print live vLLM KV events as JSON lines, warning on sequence gaps",
		run:     runListen,
	})
}

const listenSynopsis = `listen (--bind EP [--allow POD[,POD...]] | --connect EP[,EP...]) [--replay EP[,EP...]] [--topic PREFIX] [--dp N]

Subscribes to vLLM KV-event publishers and prints every batch as one JSON
line: {"pod", "rank", "seq", "replayed", "batch": {ts, data_parallel_rank,
events}}. Warnings (sequence gaps, replays, engine restarts, malformed
messages) go to standard error. Stop with Ctrl-C.

--bind EP      bind a SUB socket that engines connect to (vLLM's endpoint
               names this host); the pod is read from the topic
               kv@<pod-ip:port>@<model>.
--allow PODs   with --bind, follow only these pods, as kvtrack does: each
               is the ip:port the engine's topic names (an IP alone matches
               a topic that names no port), and only that IP may publish
               for it. Other messages are rejected, counted and reported at
               most once a second. Without it any host may publish for any
               pod (up to 1024 pods).
--connect EPs  connect to each engine's PUB (vLLM's default tcp://*:5557 on
               the engine); the pod is the endpoint's host:port.
--replay EPs   in connect mode, the replay endpoint of each --connect
               endpoint, in order; in bind mode, one endpoint whose port is
               every pod's replay port (at the host in the topic).
--dp N         engines run N data-parallel ranks: rank r publishes on port + r
               and replays on replay port + r (--bind binds port + r;
               --connect dials each endpoint's port + r).`

func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("listen", listenSynopsis, stderr)
	bind := fs.String("bind", "", "SUB endpoint to bind, e.g. tcp://*:5557")
	connect := fs.String("connect", "", "comma-separated publisher endpoints to connect to, e.g. tcp://10.0.0.7:5557")
	replay := fs.String("replay", "", "replay endpoint(s): one per --connect endpoint, or one for --bind")
	topic := fs.String("topic", "", `topic prefix filter (default "kv@" with --bind, "" with --connect)`)
	dp := fs.Int("dp", 1, "data-parallel ranks per engine")
	allow := fs.String("allow", "", "with --bind: comma-separated pod addresses (ip:port, as topics name them) that may publish (default: any)")
	verbose := fs.Int("v", 0, "log verbosity (1 adds per-message problems)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*bind == "") == (*connect == "") {
		return fmt.Errorf("%w: give exactly one of --bind and --connect", errUsage)
	}
	if *allow != "" && *bind == "" {
		return fmt.Errorf("%w: --allow applies to --bind only", errUsage)
	}
	if *dp < 1 {
		return fmt.Errorf("%w: --dp %d: must be at least 1", errUsage, *dp)
	}
	cfg := kvevents.Config{Workers: 1, DataParallelSize: 1}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["topic"] {
		cfg.TopicFilter = topic
	}

	var out sync.Mutex // the observer runs on the pool's worker
	enc := json.NewEncoder(stdout)
	observe := func(m kvevents.Message) {
		out.Lock()
		defer out.Unlock()
		warnSkipped(stderr, m.Batch)
		_ = enc.Encode(struct {
			Pod      string    `json:"pod"`
			Rank     int       `json:"rank"`
			Seq      uint64    `json:"seq"`
			Replayed bool      `json:"replayed"`
			Batch    jsonBatch `json:"batch"`
		}{m.Pod.Addr, m.Pod.Rank, m.Seq, m.Replayed, batchJSON(m.Batch)})
	}
	logger := funcr.New(func(prefix, args string) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintln(stderr, "kvtrack listen:", args)
	}, funcr.Options{Verbosity: *verbose})

	type podEP struct {
		pod            kvblock.Pod
		endpoint, repl string
	}
	var pods []podEP
	if *bind != "" {
		cfg.Mode, cfg.Endpoint, cfg.DataParallelSize = kvevents.ModeBind, *bind, *dp
		cfg.Security.AllowAnySource = *allow == ""
		if *allow != "" {
			for _, addr := range strings.Split(*allow, ",") {
				pods = append(pods, podEP{pod: kvblock.Pod{Addr: strings.TrimSpace(addr)}})
			}
		}
		if *replay != "" {
			port, err := endpointPort(*replay)
			if err != nil {
				return fmt.Errorf("%w: --replay: %v", errUsage, err)
			}
			cfg.ReplayPort = port
		}
	} else {
		cfg.Mode, cfg.DataParallelSize = kvevents.ModeConnect, *dp
		eps := strings.Split(*connect, ",")
		var replays []string
		if *replay != "" {
			replays = strings.Split(*replay, ",")
			if len(replays) != len(eps) {
				return fmt.Errorf("%w: %d --replay endpoints for %d --connect endpoints; give one per endpoint", errUsage, len(replays), len(eps))
			}
		}
		for i, ep := range eps {
			addr, err := kvevents.PodFromEndpoint(ep)
			if err != nil {
				return fmt.Errorf("%w: --connect: %v", errUsage, err)
			}
			// Rank 0 stands for every rank: the pool dials port + r.
			pe := podEP{pod: kvblock.Pod{Addr: addr}, endpoint: ep}
			if replays != nil {
				pe.repl = replays[i]
			}
			pods = append(pods, pe)
		}
	}
	pool, err := kvevents.NewPool(cfg, nil, kvevents.WithObserver(observe), kvevents.WithLogger(logger))
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, pe := range pods {
		if err := pool.AddPod(ctx, pe.pod, pe.endpoint, pe.repl); err != nil {
			return err
		}
	}
	return pool.Run(ctx)
}

// endpointPort returns the port of a tcp endpoint such as tcp://*:5558.
func endpointPort(ep string) (int, error) {
	i := strings.LastIndexByte(ep, ':')
	if !strings.HasPrefix(ep, "tcp://") || i < 0 {
		return 0, fmt.Errorf("%q is not a tcp://host:port endpoint", ep)
	}
	var port int
	if _, err := fmt.Sscanf(ep[i+1:], "%d", &port); err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("%q has no valid port", ep)
	}
	return port, nil
}
