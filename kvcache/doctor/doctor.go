package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvevents"
)

// Status is the outcome of one check.
type Status string

// The statuses, from best to worst.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one line of the checklist.
type Check struct {
	// Name says what was checked: config, events, layout, sequence, replay,
	// topic, media, block-size, hashing, seed-agreement, probe-completion,
	// probe-chat.
	Name string `json:"name"`
	// Pod says where, "" for deployment-wide checks; Rank is the DP rank
	// for checks of one event stream, nil for the others.
	Pod    string `json:"pod,omitempty"`
	Rank   *int   `json:"rank,omitempty"`
	Status Status `json:"status"`
	// Reason says what was seen and what it means.
	Reason string `json:"reason"`
	// Fix is the change to make, "" when nothing needs changing.
	Fix string `json:"fix,omitempty"`
}

// Report is the outcome of Run.
type Report struct {
	// Passed is true when every check passed.
	Passed  bool      `json:"passed"`
	Checks  []Check   `json:"checks"`
	Streams []Stream  `json:"streams"`
	Probes  []Probe   `json:"probes,omitempty"`
	Elapsed string    `json:"elapsed"`
	Started time.Time `json:"started"`
}

// Options says what to check and how long to take.
type Options struct {
	// Config is the router's configuration (defaults are applied).
	Config kvcache.Config
	// Pods are the pods' OpenAI API addresses, host:port. In connect mode
	// each pod's event endpoint is derived as the router derives it
	// (tcp://host:events.port, rank r on port + r) unless Events names it;
	// in bind mode they are the pods the topics must name.
	Pods []string
	// Events optionally names each pod's rank-0 event endpoint (one per
	// pod, same order), for engines whose publisher is not where the
	// router would look; it implies connect mode.
	Events []string
	// DataParallelSize is the number of DP ranks per pod. Default 1.
	DataParallelSize int
	// Duration is how long to listen. Default 10s.
	Duration time.Duration
	// ReplayTimeout bounds the wait for a replay answer. Default 2s.
	ReplayTimeout time.Duration
	// Probe sends a completion and a chat request to every pod.
	Probe bool
	// Model is the served model name for the probe; default
	// Config.Tokenizer.Model, else the first model the pod lists.
	Model string
	// ProbeWait bounds the wait for a probe's events. Default 5s.
	ProbeWait time.Duration
	// HTTPClient sends the probes; nil means one with a 30s timeout.
	HTTPClient *http.Client
	// Tokenizer, when set, replaces the one Config.Tokenizer describes.
	Tokenizer kvcache.Tokenizer
	// Progress, when set, receives a one-line status about twice a second
	// and at each step; calls never overlap.
	Progress func(line string)
}

func (o *Options) withDefaults() {
	o.Config = o.Config.WithDefaults()
	if o.DataParallelSize <= 0 {
		o.DataParallelSize = 1
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.ReplayTimeout <= 0 {
		o.ReplayTimeout = 2 * time.Second
	}
	if o.ProbeWait <= 0 {
		o.ProbeWait = 5 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if report := o.Progress; report != nil {
		var mu sync.Mutex // the listener and the probe both report
		o.Progress = func(line string) {
			mu.Lock()
			defer mu.Unlock()
			report(line)
		}
	}
}

// bindMode reports whether the doctor binds, as the router would.
func (o *Options) bindMode() bool {
	return o.Config.Events.Mode == kvcache.EventsBind && len(o.Events) == 0
}

// ErrOptions wraps every error about Options themselves.
var ErrOptions = errors.New("doctor: invalid options")

// Run checks the deployment and returns the report. An error means the
// checks could not run at all (bad options, an endpoint that cannot be
// bound); everything wrong with the deployment is in the Report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.withDefaults()
	if err := validate(&opts); err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &Report{Started: start}
	var checks checklist
	if err := opts.Config.Validate(); err != nil {
		checks.add(Check{Name: "config", Status: Fail, Reason: err.Error(), Fix: "correct the fields named above in the config file or flags"})
	} else if tok, ok := tokenizerCheck(ctx, &opts); !ok {
		checks.add(Check{Name: "config", Status: Fail, Reason: "the configuration is valid, but " + tok,
			Fix: "point tokenizer.path at the served model's tokenizer.json or its directory (as the router sees it), or tokenizer.url at a vLLM server"})
	} else {
		checks.add(Check{Name: "config", Status: Pass, Reason: "the configuration is valid; " + tok})
	}
	engines := engineVersions(ctx, &opts)

	col, err := newCollector(&opts)
	if err != nil {
		return nil, err
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	col.start(cctx, &wg)

	reach := col.dialAll(ctx)
	progressDone := make(chan struct{})
	go col.progress(cctx, &opts, start, progressDone)

	var probes []Probe
	if opts.Probe {
		probes = runProbes(ctx, &opts, col)
	}
	select {
	case <-time.After(time.Until(start.Add(opts.Duration))):
	case <-ctx.Done():
	}
	stop()
	wg.Wait()
	<-progressDone
	if opts.Progress != nil {
		opts.Progress(fmt.Sprintf("checking replay endpoints (up to %v)", opts.ReplayTimeout))
	}
	replays := col.checkReplays(ctx, opts.ReplayTimeout)

	a := analyzer{opts: &opts, col: col, reach: <-reach, replays: replays, probes: probes, engines: engines}
	a.run(&checks)
	rep.Checks = checks.list
	rep.Streams = col.streams(engines)
	rep.Probes = probes
	rep.Passed = true
	for _, c := range rep.Checks {
		if c.Status != Pass {
			rep.Passed = false
		}
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, ctx.Err()
}

func validate(o *Options) error {
	if len(o.Events) > 0 && len(o.Events) != len(o.Pods) {
		return fmt.Errorf("%w: %d event endpoints for %d pods; give one per pod, in the same order", ErrOptions, len(o.Events), len(o.Pods))
	}
	if !o.bindMode() && len(o.Pods) == 0 {
		return fmt.Errorf("%w: no pods: connect mode needs each pod's address (host:port of its OpenAI API)", ErrOptions)
	}
	for _, p := range o.Pods {
		if _, port, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("%w: pod %q is not host:port: %v", ErrOptions, p, err)
		} else if _, err := strconv.Atoi(port); err != nil {
			return fmt.Errorf("%w: pod %q has no numeric port", ErrOptions, p)
		}
	}
	for _, ep := range o.Events {
		if _, err := kvevents.RankEndpoint(ep, o.DataParallelSize-1); err != nil {
			return fmt.Errorf("%w: %v", ErrOptions, err)
		}
	}
	if o.Probe && len(o.Pods) == 0 {
		return fmt.Errorf("%w: the probe needs pod addresses", ErrOptions)
	}
	return nil
}

// checklist accumulates checks in order.
type checklist struct{ list []Check }

func (c *checklist) add(ch Check) { c.list = append(c.list, ch) }
