package doctor_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"

	"github.com/kvtrack/kvtrack/internal/vllmfake"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/doctor"
	"github.com/kvtrack/kvtrack/tokenization"
)

const model = "Qwen/Qwen3-0.6B"

// qwen3Dir materialises the committed Qwen3 tokenizer (gzipped under
// tokenization/testdata) once per test binary.
var qwen3Dir = sync.OnceValues(func() (string, error) {
	src := filepath.Join("..", "..", "tokenization", "testdata", "qwen3")
	dir, err := os.MkdirTemp("", "kvtrack-doctor-qwen3-")
	if err != nil {
		return "", err
	}
	in, err := os.Open(filepath.Join(src, "tokenizer.json.gz"))
	if err != nil {
		return "", err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return "", err
	}
	out, err := os.Create(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, zr); err != nil {
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	cfg, err := os.ReadFile(filepath.Join(src, "tokenizer_config.json"))
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644)
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := qwen3Dir(); err == nil && dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

var qwen3Local = sync.OnceValues(func() (*tokenization.Local, error) {
	dir, err := qwen3Dir()
	if err != nil {
		return nil, err
	}
	return tokenization.Load(context.Background(), dir, tokenization.LoadOptions{Offline: true})
})

func qwen3(t *testing.T) (*tokenization.Local, string) {
	t.Helper()
	l, err := qwen3Local()
	if err != nil {
		t.Fatalf("loading the Qwen3 tokenizer: %v", err)
	}
	dir, _ := qwen3Dir()
	return l, dir
}

// pod is the engine configuration of one fake pod.
type pod struct {
	hash      blockhash.HashConfig
	topic     string // "{pod}" is replaced by the pod's address
	layout    vllmfake.Layout
	replay    bool
	silent    bool   // binds its publisher but never publishes
	absent    bool   // no publisher at all: nothing listens on its port
	connectTo string // publisher connects here (bind mode) instead of binding
	gapEvery  int    // skip a sequence number every n batches
	tokenizer vllmfake.Tokenizer
	notVLLM   bool // answers 404 at GET /version, as publishers other than vLLM do
}

// fake is a running fake pod.
type fake struct {
	addr     string // host:port of the OpenAI API
	events   string // its publisher's endpoint (connect mode)
	replay   string
	replayPt int
	srv      *vllmfake.Server
	pub      *vllmfake.Publisher
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

func portOf(t *testing.T, ep string) int {
	t.Helper()
	p, err := strconv.Atoi(ep[strings.LastIndexByte(ep, ':')+1:])
	if err != nil {
		t.Fatalf("endpoint %q: %v", ep, err)
	}
	return p
}

// startPod starts a fake pod: an HTTP server with vLLM's OpenAI routes and
// a ZMQ publisher, plus background traffic of fresh prompts (which vLLM
// publishes as root BlockStored events) once a subscriber is connected.
func startPod(t *testing.T, p pod) *fake {
	t.Helper()
	tok := p.tokenizer
	if tok == nil {
		tok, _ = qwen3(t)
	}
	if p.hash.BlockSize == 0 {
		p.hash.BlockSize = 16
	}
	f := &fake{}
	hs := httptest.NewUnstartedServer(nil)
	f.addr = hs.Listener.Addr().String()
	if !p.absent {
		pc := vllmfake.PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: strings.ReplaceAll(p.topic, "{pod}", f.addr), Layout: p.layout}
		if p.connectTo != "" {
			pc.Endpoint = p.connectTo
		}
		if p.replay {
			pc.ReplayEndpoint = "tcp://127.0.0.1:*"
		}
		pub, err := vllmfake.NewPublisher(pc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		f.pub, f.events = pub, pub.Endpoint()
		if p.replay {
			f.replay = pub.ReplayEndpoint()
			f.replayPt = portOf(t, f.replay)
		}
	} else {
		f.events = "tcp://127.0.0.1:" + strconv.Itoa(freePort(t))
	}
	srvPub := f.pub
	if p.silent {
		srvPub = nil
	}
	srv, err := vllmfake.NewServer(vllmfake.ServerConfig{Model: model, Hash: p.hash, Tokenizer: tok, Publisher: srvPub})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	hs.Config.Handler = srv
	if p.notVLLM {
		hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/version" {
				http.NotFound(w, r)
				return
			}
			srv.ServeHTTP(w, r)
		})
	}
	hs.Start()
	t.Cleanup(hs.Close)
	if srvPub != nil {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		t.Cleanup(func() { cancel(); wg.Wait() })
		wg.Go(func() { traffic(ctx, srv, srvPub, p.gapEvery) })
	}
	return f
}

// traffic sends a fresh 40-token prompt every 30ms once the doctor has
// subscribed.
func traffic(ctx context.Context, srv *vllmfake.Server, pub *vllmfake.Publisher, gapEvery int) {
	if pub.WaitSubscribed(ctx) != nil {
		return
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; ctx.Err() == nil; n++ {
		tokens := make([]uint32, 40)
		for i := range tokens {
			tokens[i] = uint32(rng.IntN(150000))
		}
		_, _ = srv.Prefill(tokens)
		if gapEvery > 0 && n%gapEvery == 0 {
			pub.SkipSequence(1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Millisecond):
		}
	}
}

func config(seed string, mutate ...func(*kvcache.Config)) kvcache.Config {
	c := kvcache.Config{Hash: kvcache.HashConfig{Seed: seed, BlockSize: 16}}
	empty := ""
	c.Events.TopicFilter = &empty
	for _, m := range mutate {
		m(&c)
	}
	return c
}

// run runs the doctor against fakes in connect mode, naming each fake's
// publisher with Options.Events.
func run(t *testing.T, cfg kvcache.Config, probe bool, fakes ...*fake) *doctor.Report {
	t.Helper()
	o := doctor.Options{Config: cfg, Duration: 1500 * time.Millisecond, ReplayTimeout: 500 * time.Millisecond, ProbeWait: 2 * time.Second, Probe: probe}
	for _, f := range fakes {
		o.Pods = append(o.Pods, f.addr)
		o.Events = append(o.Events, f.events)
	}
	rep, err := doctor.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

// check returns the report's check named name for pod ("" for global).
func check(t *testing.T, rep *doctor.Report, name, pod string) doctor.Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name && c.Pod == pod {
			return c
		}
	}
	t.Fatalf("no %s check for %q in:\n%s", name, pod, text(rep))
	return doctor.Check{}
}

func text(rep *doctor.Report) string {
	var b bytes.Buffer
	_ = doctor.WriteText(&b, rep)
	return b.String()
}

func want(t *testing.T, rep *doctor.Report, name, pod string, status doctor.Status, reason, fix string) {
	t.Helper()
	c := check(t, rep, name, pod)
	if c.Status != status || !strings.Contains(c.Reason, reason) || !strings.Contains(c.Fix, fix) {
		t.Errorf("%s check = %s %q (fix %q); want %s, reason containing %q, fix containing %q\n%s",
			name, c.Status, c.Reason, c.Fix, status, reason, fix, text(rep))
	}
}

func TestHealthyPodPassesEverything(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, topic: "kv@{pod}@" + model, replay: true})
	_, dir := qwen3(t)
	cfg := config("42", func(c *kvcache.Config) {
		c.Events.ReplayPort = f.replayPt
		c.Tokenizer.Path = dir
		c.Events.TopicFilter = nil // the default kv@
	})
	rep := run(t, cfg, true, f)
	if !rep.Passed {
		t.Fatalf("healthy pod did not pass:\n%s", text(rep))
	}
	want(t, rep, "hashing", f.addr, doctor.Pass, "reproduced with sha256, seed \"42\", block size 16", "")
	want(t, rep, "layout", f.addr, doctor.Pass, "array of 12 fields, as vLLM v0.23 sends; the pod reports vLLM 0.23.0", "")
	want(t, rep, "replay", f.addr, doctor.Pass, "answered a replay", "")
	want(t, rep, "probe-completion", f.addr, doctor.Pass, "equal the keys kvtrack computes", "")
	want(t, rep, "probe-chat", f.addr, doctor.Pass, "equal the keys kvtrack computes", "")
	if len(rep.Streams) != 1 || rep.Streams[0].Messages == 0 || rep.Streams[0].Version != "v0.23" || rep.Streams[0].EngineVersion != vllmfake.Version {
		t.Errorf("streams = %+v, want one v0.23 stream with messages", rep.Streams)
	}
}

func TestHashMisconfigurations(t *testing.T) {
	tests := []struct {
		name    string
		engine  blockhash.HashConfig
		check   string
		reason  string
		wantFix string
	}{
		{"wrong seed", blockhash.HashConfig{Seed: "1234"}, "hashing", `seed "1234" with sha256 does`, `hash.seed: "1234"`},
		{"unguessable seed", blockhash.HashConfig{Seed: "s3cr3t"}, "hashing", "PYTHONHASHSEED differs, or is unset", "PYTHONHASHSEED"},
		{"wrong algorithm", blockhash.HashConfig{Seed: "42", Algorithm: blockhash.XXHashCBOR}, "hashing", "match algorithm xxhash_cbor", "hash.algorithm: xxhash_cbor"},
		{"wrong block size", blockhash.HashConfig{Seed: "42", BlockSize: 32}, "block-size", "block_size 32; the config says 16", "hash.blockSize: 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startPod(t, pod{hash: tt.engine})
			rep := run(t, config("42"), false, f)
			want(t, rep, tt.check, f.addr, doctor.Fail, tt.reason, tt.wantFix)
			if rep.Passed {
				t.Error("report passed")
			}
		})
	}
}

func TestWrongBlockSizeAlsoFailsHashing(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42", BlockSize: 32}})
	rep := run(t, config("42"), false, f)
	want(t, rep, "hashing", f.addr, doctor.Fail, "blocks of 32 tokens", "hash.blockSize: 32")
}

func TestTopicFilteredOutByRouter(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, topic: "kv-events"})
	filter := kvcache.DefaultTopicFilter
	rep := run(t, config("42", func(c *kvcache.Config) { c.Events.TopicFilter = &filter }), false, f)
	want(t, rep, "topic", f.addr, doctor.Fail, `topic "kv-events", which the router's filter "kv@" drops`, `"kv@`+f.addr+`@<model>"`)
}

func TestReplayEndpointThatDoesNotAnswer(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}})
	port := freePort(t)
	rep := run(t, config("42", func(c *kvcache.Config) { c.Events.ReplayPort = port }), false, f)
	want(t, rep, "replay", f.addr, doctor.Fail, "did not answer a replay request", `"replay_endpoint":"tcp://*:`+strconv.Itoa(port))
	want(t, rep, "hashing", f.addr, doctor.Pass, "reproduced", "")
}

func TestNoReplayConfiguredWarns(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}})
	rep := run(t, config("42"), false, f)
	want(t, rep, "replay", f.addr, doctor.Warn, "no replay endpoint is configured", "events.replayPort: 5558")
	if rep.Passed {
		t.Error("a report with a warning passed")
	}
}

func TestSilentPublisher(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, silent: true})
	rep := run(t, config("42"), false, f)
	want(t, rep, "events", f.addr, doctor.Fail, "accepts connections but sent no event", "--probe")
}

func TestUnreachablePublisher(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, absent: true})
	start := time.Now()
	rep := run(t, config("42"), false, f)
	want(t, rep, "events", f.addr, doctor.Fail, "nothing accepts connections at "+f.events, "--events")
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Run took %v against an unreachable pod; it must stay bounded", el)
	}
}

func TestEndpointDerivedFromEventsPort(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, layout: vllmfake.LayoutMap})
	cfg := config("42", func(c *kvcache.Config) { c.Events.Port = portOf(t, f.events) })
	rep, err := doctor.Run(context.Background(), doctor.Options{Config: cfg, Pods: []string{f.addr}, Duration: time.Second, ReplayTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want(t, rep, "events", f.addr, doctor.Pass, "messages", "")
	want(t, rep, "layout", f.addr, doctor.Pass, "a map of 11 entries, as vLLM v0.24 or later sends", "")
	if got := rep.Streams[0].Endpoint; got != f.events {
		t.Errorf("derived endpoint %q, want %q", got, f.events)
	}
}

func TestSequenceGaps(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, gapEvery: 3})
	rep := run(t, config("42"), false, f)
	want(t, rep, "sequence", f.addr, doctor.Warn, "gaps lost", "replay")
	if s := rep.Streams[0]; s.Gaps == 0 || s.Lost != uint64(s.Gaps) {
		t.Errorf("stream gaps %d lost %d; want gaps > 0, one lost per gap", s.Gaps, s.Lost)
	}
}

func TestPodsWithDifferentSeedsDisagree(t *testing.T) {
	a := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}})
	b := startPod(t, pod{hash: blockhash.HashConfig{Seed: "43"}})
	rep := run(t, config("42"), false, a, b)
	want(t, rep, "seed-agreement", "", doctor.Fail, "publish different hashes for the same first block", "same PYTHONHASHSEED")
	want(t, rep, "hashing", a.addr, doctor.Pass, "reproduced", "")
	want(t, rep, "hashing", b.addr, doctor.Fail, "PYTHONHASHSEED differs", "")
}

func TestBindMode(t *testing.T) {
	port := freePort(t)
	ep := "tcp://127.0.0.1:" + strconv.Itoa(port)
	good := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, topic: "kv@{pod}@" + model, connectTo: ep})
	bad := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, topic: "kv-events", connectTo: ep})
	cfg := config("42", func(c *kvcache.Config) {
		c.Events.Mode, c.Events.Endpoint, c.Events.TopicFilter = kvcache.EventsBind, ep, nil
	})
	rep, err := doctor.Run(context.Background(), doctor.Options{Config: cfg, Pods: []string{good.addr, bad.addr}, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want(t, rep, "events", good.addr, doctor.Pass, "messages", "")
	want(t, rep, "topic", good.addr, doctor.Pass, "passes the filter", "")
	want(t, rep, "events", bad.addr, doctor.Fail, "no message whose topic names "+bad.addr, `"topic":"kv@`+bad.addr)
	want(t, rep, "topic", "", doctor.Fail, `topics that name no pod ("kv-events")`, "kv@<pod-ip:port>@<model>")
}

// bosTokenizer adds a token to completion prompts that kvtrack's Qwen3
// tokenizer does not: a tokenizer mismatch (as a BOS-adding tokenizer
// class would cause). Chat prompts go through the template untouched.
type bosTokenizer struct{ *tokenization.Local }

func (b bosTokenizer) Encode(text string, add bool) ([]uint32, error) {
	ids, err := b.Local.Encode(text, add)
	if add {
		ids = append([]uint32{151643}, ids...)
	}
	return ids, err
}

func TestProbeClassifiesMismatches(t *testing.T) {
	l, dir := qwen3(t)
	other, err := tokenization.Load(context.Background(), dir, tokenization.LoadOptions{Offline: true,
		ChatTemplate: "{{ 'You are a helpful assistant.\n' }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		engine               pod
		completion, chat     string
		completionBlock      int
		wantReason, wantFix  string
		checkName, checkWhat string
	}{
		{"tokenizer", pod{hash: blockhash.HashConfig{Seed: "42"}, tokenizer: bosTokenizer{l}}, "tokenizer", "match", 0,
			"token 0 (block 0): the pod has 151643", "tokenizer.path", "probe-completion", ""},
		{"template", pod{hash: blockhash.HashConfig{Seed: "42"}, tokenizer: other}, "match", "template", -1,
			"renders the chat template differently", "chat template", "probe-chat", ""},
		{"hashing", pod{hash: blockhash.HashConfig{Seed: "7"}}, "hashing", "hashing", 0,
			"the pod's hashes of its own tokens differ", "PYTHONHASHSEED", "probe-completion", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startPod(t, tt.engine)
			cfg := config("42", func(c *kvcache.Config) { c.Tokenizer.Path = dir })
			rep := run(t, cfg, true, f)
			if len(rep.Probes) != 2 {
				t.Fatalf("%d probes, want 2:\n%s", len(rep.Probes), text(rep))
			}
			comp, chat := rep.Probes[0], rep.Probes[1]
			if comp.Verdict != tt.completion || chat.Verdict != tt.chat {
				t.Fatalf("verdicts completion %q, chat %q; want %q, %q\n%s", comp.Verdict, chat.Verdict, tt.completion, tt.chat, text(rep))
			}
			if tt.completionBlock >= 0 && comp.FirstDifferingBlock != tt.completionBlock {
				t.Errorf("completion's first differing block %d, want %d", comp.FirstDifferingBlock, tt.completionBlock)
			}
			if tt.name == "template" && chat.FirstDifferingBlock != 0 {
				t.Errorf("chat's first differing block %d, want 0", chat.FirstDifferingBlock)
			}
			want(t, rep, tt.checkName, f.addr, doctor.Fail, tt.wantReason, tt.wantFix)
		})
	}
}

func TestProbeReportsModelNotServed(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}})
	_, dir := qwen3(t)
	cfg := config("42", func(c *kvcache.Config) { c.Tokenizer.Path, c.Tokenizer.Model = dir, "other/model" })
	rep := run(t, cfg, true, f)
	want(t, rep, "probe-completion", f.addr, doctor.Fail, "does not exist", "model name")
}

func TestReportJSON(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "1234"}})
	rep := run(t, config("42"), false, f)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Passed bool `json:"passed"`
		Checks []struct {
			Name, Pod, Status, Reason, Fix string
		} `json:"checks"`
		Streams []struct {
			Messages int    `json:"messages"`
			Layout   string `json:"layout"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Passed || len(back.Checks) == 0 || len(back.Streams) != 1 || back.Streams[0].Layout != "array of 12 fields" {
		t.Errorf("JSON report %s does not carry the checks and streams", b)
	}
	found := false
	for _, c := range back.Checks {
		found = found || (c.Name == "hashing" && c.Status == "fail" && strings.Contains(c.Fix, `hash.seed: "1234"`))
	}
	if !found {
		t.Errorf("JSON report lacks the failing hashing check: %s", b)
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		o    doctor.Options
		want string
	}{
		{"no pods in connect mode", doctor.Options{Config: config("42")}, "no pods"},
		{"pod without port", doctor.Options{Config: config("42"), Pods: []string{"10.0.0.1"}}, "not host:port"},
		{"events count", doctor.Options{Config: config("42"), Pods: []string{"10.0.0.1:8000"}, Events: []string{"tcp://a:1", "tcp://b:1"}}, "2 event endpoints for 1 pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := doctor.Run(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// dpPublishers binds publishers for ranks 0 and 1 on consecutive ports, as
// a vLLM engine with two data-parallel ranks does ("*" makes them bind), and
// returns them with their loopback endpoints.
func dpPublishers(t *testing.T, topic string) ([]*vllmfake.Publisher, []string) {
	t.Helper()
	for range 20 {
		base := freePort(t)
		var pubs []*vllmfake.Publisher
		for r := range 2 {
			pub, err := vllmfake.NewPublisher(vllmfake.PublisherConfig{Endpoint: "tcp://*:" + strconv.Itoa(base+r), Topic: topic, Rank: r})
			if err != nil {
				break
			}
			pubs = append(pubs, pub)
		}
		if len(pubs) == 2 {
			t.Cleanup(func() { pubs[0].Close(); pubs[1].Close() })
			return pubs, []string{"tcp://127.0.0.1:" + strconv.Itoa(base), "tcp://127.0.0.1:" + strconv.Itoa(base+1)}
		}
		for _, p := range pubs {
			p.Close()
		}
	}
	t.Fatal("no two consecutive free ports")
	return nil, nil
}

func TestDataParallelRanksAreCheckedSeparately(t *testing.T) {
	tok, _ := qwen3(t)
	pubs, eps := dpPublishers(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for r, seed := range []string{"42", "1337"} { // rank 1 runs with another PYTHONHASHSEED
		srv, err := vllmfake.NewServer(vllmfake.ServerConfig{Model: model, Hash: blockhash.HashConfig{Seed: seed, BlockSize: 16}, Tokenizer: tok, Publisher: pubs[r]})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { traffic(ctx, srv, pubs[r], 0) })
	}
	addr := "127.0.0.1:8000"
	rep, err := doctor.Run(context.Background(), doctor.Options{Config: config("42"), Pods: []string{addr}, Events: eps[:1],
		DataParallelSize: 2, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var hashing []doctor.Check
	for _, c := range rep.Checks {
		if c.Name == "hashing" {
			hashing = append(hashing, c)
		}
	}
	if len(hashing) != 2 || *hashing[0].Rank != 0 || hashing[0].Status != doctor.Pass || *hashing[1].Rank != 1 || hashing[1].Status != doctor.Fail {
		t.Fatalf("hashing checks %+v; want rank 0 pass, rank 1 fail\n%s", hashing, text(rep))
	}
	if !strings.Contains(hashing[1].Fix, `hash.seed: "1337"`) {
		t.Errorf("rank 1 fix %q does not name its seed", hashing[1].Fix)
	}
	if len(rep.Streams) != 2 || rep.Streams[1].Endpoint != eps[1] || rep.Streams[1].Messages == 0 {
		t.Errorf("streams %+v; want rank 1 on %s with messages", rep.Streams, eps[1])
	}
}

// Under keyScheme tokens the pods' hashes do not matter: the probe passes
// with any seed and fails only where the tokens differ.
func TestProbeUnderTokensSchemeComparesTokensOnly(t *testing.T) {
	l, dir := qwen3(t)
	tests := []struct {
		name             string
		engine           pod
		completion, chat string
	}{
		{"another seed, same tokens", pod{hash: blockhash.HashConfig{Seed: "7"}}, "match", "match"},
		{"no seed at all", pod{hash: blockhash.HashConfig{Seed: "", Algorithm: blockhash.XXHash}}, "match", "match"},
		{"tokens differ", pod{hash: blockhash.HashConfig{Seed: "7"}, tokenizer: bosTokenizer{l}}, "tokenizer", "match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startPod(t, tt.engine)
			cfg := config("", func(c *kvcache.Config) { c.KeyScheme, c.Tokenizer.Path = kvcache.KeySchemeTokens, dir })
			rep := run(t, cfg, true, f)
			if len(rep.Probes) != 2 || rep.Probes[0].Verdict != tt.completion || rep.Probes[1].Verdict != tt.chat {
				t.Fatalf("probes %+v; want completion %q, chat %q\n%s", rep.Probes, tt.completion, tt.chat, text(rep))
			}
			for _, p := range rep.Probes {
				if strings.Contains(p.Fix, "keyScheme") || strings.Contains(p.Reason, "hashes") {
					t.Errorf("probe %s blames the hashes under keyScheme tokens: %q (fix %q)", p.Kind, p.Reason, p.Fix)
				}
			}
		})
	}
}

// The layout names a vLLM release only for a pod that says it is vLLM.
func TestLayoutNamesAVLLMVersionOnlyForVLLM(t *testing.T) {
	tests := []struct {
		name                 string
		notVLLM              bool
		reason, absent       string
		version, engineVersn string
	}{
		{"vLLM", false, "as vLLM v0.23 sends; the pod reports vLLM 0.23.0", "", "v0.23", vllmfake.Version},
		{"another publisher", true, "does not answer GET /version as vLLM does, so no vLLM version is claimed", "reports vLLM", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}, notVLLM: tt.notVLLM})
			rep := run(t, config("42"), false, f)
			c := check(t, rep, "layout", f.addr)
			if !strings.Contains(c.Reason, tt.reason) || (tt.absent != "" && strings.Contains(c.Reason, tt.absent)) {
				t.Errorf("layout reason %q; want it to contain %q and not %q", c.Reason, tt.reason, tt.absent)
			}
			if len(rep.Streams) != 1 || rep.Streams[0].Version != tt.version || rep.Streams[0].EngineVersion != tt.engineVersn {
				t.Errorf("streams %+v; want version %q, engine version %q", rep.Streams, tt.version, tt.engineVersn)
			}
		})
	}
}

// The config check loads the tokenizer, as the router does at start.
func TestConfigCheckLoadsTheTokenizer(t *testing.T) {
	f := startPod(t, pod{hash: blockhash.HashConfig{Seed: "42"}})
	_, dir := qwen3(t)
	tests := []struct {
		name   string
		path   string
		status doctor.Status
		reason string
	}{
		{"loads", dir, doctor.Pass, "loads"},
		{"missing", filepath.Join(t.TempDir(), "nowhere"), doctor.Fail, "does not load"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := run(t, config("42", func(c *kvcache.Config) { c.Tokenizer.Path = tt.path }), false, f)
			want(t, rep, "config", "", tt.status, tt.reason, "")
		})
	}
}
