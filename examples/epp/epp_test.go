package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/config/loader"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/datalayer"
	fwkdl "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
	fwkplugin "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/plugin"
	fwksched "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"
	extractormetrics "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/datalayer/extractor/metrics"
	sourcemetrics "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/datalayer/source/metrics"
	sourcenotifications "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/datalayer/source/notifications"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/flowcontrol/fairness"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/flowcontrol/ordering"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/flowcontrol/saturationdetector/utilization"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/flowcontrol/usagelimits"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/requesthandling/parsers/openai"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/scheduling/picker"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/scheduling/profile"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/scheduling/scorer/kvcacheutilization"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/plugins/scheduling/scorer/queuedepth"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/scheduling"

	"github.com/kvtrack/kvtrack/internal/testtokenizer"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/scorer"
	"github.com/kvtrack/kvtrack/tokenization"

	"github.com/kvtrack/kvtrack/internal/pypub"
	"github.com/kvtrack/kvtrack/internal/testwait"
)

// registerInTreePlugins registers the upstream plugin types the example
// configuration names or the loader adds by default, exactly as the runner's
// own registerInTreePlugins does before it loads a configuration.
func registerInTreePlugins() {
	fwkplugin.Register(picker.MaxScorePickerType, picker.MaxScorePickerFactory)
	fwkplugin.Register(profile.SingleProfileHandlerType, profile.SingleProfileHandlerFactory)
	fwkplugin.Register(kvcacheutilization.KvCacheUtilizationScorerType, kvcacheutilization.KvCacheUtilizationScorerFactory)
	fwkplugin.Register(queuedepth.QueueScorerType, queuedepth.QueueScorerFactory)
	fwkplugin.Register(fairness.GlobalStrictFairnessPolicyType, fairness.GlobalStrictFairnessPolicyFactory)
	fwkplugin.Register(ordering.FCFSOrderingPolicyType, ordering.FCFSOrderingPolicyFactory)
	fwkplugin.Register(usagelimits.StaticUsageLimitPolicyType, usagelimits.StaticPolicyFactory)
	fwkplugin.Register(sourcemetrics.MetricsDataSourceType, sourcemetrics.MetricsDataSourceFactory)
	fwkplugin.Register(extractormetrics.MetricsExtractorType, extractormetrics.CoreMetricsExtractorFactory)
	fwkplugin.Register(sourcenotifications.EndpointNotificationSourceType, sourcenotifications.EndpointSourceFactory)
	fwkplugin.Register(openai.OpenAIParserType, openai.OpenAIParserPluginFactory)
	fwkplugin.Register(utilization.UtilizationDetectorType, utilization.UtilizationDetectorFactory)
}

const (
	python = "/usr/bin/python3" // Debian's, with python3-zmq and python3-msgpack
	model  = "Qwen/Qwen3-0.6B"
)

// requirePublisher skips when Debian's python3 with zmq and msgpack is
// genuinely absent on this machine; CI installs them (.ci/run).
func requirePublisher(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import zmq, msgpack").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s with zmq and msgpack is required in CI: %v", python, err)
		}
		t.Skipf("skipping: %s with python3-zmq and python3-msgpack not installed (%v); run hack/install-deps.sh", python, err)
	}
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

// publish starts the vLLM stand-in on endpoint, which publishes one
// BlockStored per token sequence under topic as soon as a subscriber joins.
// The returned function waits until it has published.
func publish(t *testing.T, endpoint, topic, seed string, blockSize int, sequences ...[]uint32) (waitPublished func()) {
	t.Helper()
	return pypub.Start(t, pypub.Pod{Endpoint: endpoint, Topic: topic, Seed: seed, BlockSize: blockSize, Sequences: sequences})
}

// vllmMetrics serves a vLLM /metrics page with the given load.
func vllmMetrics(t *testing.T, waiting int, kvUsage float64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=%q} %d\n", model, waiting)
		fmt.Fprintf(w, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=%q} 1\n", model)
		fmt.Fprintf(w, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=%q} %g\n", model, kvUsage)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// exampleConfig is epp-config.yaml with the two settings that name things on
// a real cluster pointed at this machine: the tokenizer file and the
// engines' event port.
func exampleConfig(t *testing.T, eventsPort int) []byte {
	t.Helper()
	b, err := os.ReadFile("epp-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(testtokenizer.Qwen3Dir(t), "tokenizer.json")
	s := string(b)
	for old, repl := range map[string]string{
		"path: /models/tokenizer.json": "path: " + tok,
		"port: 5557":                   fmt.Sprintf("port: %d", eventsPort),
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("epp-config.yaml no longer contains %q", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	return []byte(s)
}

func TestExampleConfigRoutesToPodHoldingPrefix(t *testing.T) {
	requirePublisher(t)
	eventsPort := freePort(t)
	routesToPodHoldingPrefix(t, exampleConfig(t, eventsPort), eventsPort, 16)
}

// llmdConfig is examples/epp's EndpointPickerConfig with the scorer's
// parameters replaced by the precise-prefix-cache-scorer block of llm-d's
// pod-discovery guide (kvcache/llmd/testdata/scheduler-pod-discovery.yaml:
// block size 64, hashSeed "42", per-pod discovery on socketPort), its
// socket port pointed at this machine and, since the guide's UDS tokenizer
// sidecar has no kvtrack equivalent, the model's tokenizer given the llm-d
// way, under tokenizersPoolConfig.local.
func llmdConfig(t *testing.T, eventsPort int) []byte {
	t.Helper()
	tok := filepath.Join(testtokenizer.Qwen3Dir(t), "tokenizer.json")
	params := fmt.Sprintf(`
    tokenProcessorConfig:
      blockSize: 64
      hashSeed: "42"
    indexerConfig:
      tokenizersPoolConfig:
        modelName: %s
        uds:
          socketFile: /tmp/tokenizer/tokenizer-uds.socket
        local:
          modelTokenizerMap:
            %s: %s
      kvBlockIndexConfig:
        enableMetrics: true
    kvEventsConfig:
      topicFilter: "kv@"
      concurrency: 4
      discoverPods: true
      podDiscoveryConfig:
        socketPort: %d
`, model, model, tok, eventsPort)
	b := exampleConfig(t, eventsPort)
	s := string(b)
	start := strings.Index(s, "  parameters:\n") + len("  parameters:\n")
	end := strings.Index(s, "- type: queue-scorer")
	if start < len("  parameters:\n") || end < start {
		t.Fatal("epp-config.yaml's scorer parameters not found")
	}
	return []byte(s[:start] + strings.TrimPrefix(params, "\n") + s[end:])
}

// An llm-d guide's scorer parameters load (with warnings) and route.
func TestLLMDGuideParametersRouteToPodHoldingPrefix(t *testing.T) {
	requirePublisher(t)
	eventsPort := freePort(t)
	routesToPodHoldingPrefix(t, llmdConfig(t, eventsPort), eventsPort, 64)
}

// routesToPodHoldingPrefix loads an EndpointPickerConfig as the EPP does,
// feeds a pod's KV events over ZMQ and checks that the scheduler sends
// requests sharing the pod's cached prefix to it.
func routesToPodHoldingPrefix(t *testing.T, config []byte, eventsPort, blockSize int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := testr.NewWithOptions(t, testr.Options{Verbosity: 0})

	scorer.Register(scorer.WithRegisterer(prometheus.NewRegistry()))
	registerInTreePlugins()

	raw, _, err := loader.LoadRawConfig(config, logger)
	if err != nil {
		t.Fatalf("LoadRawConfig: %v", err)
	}
	handle := fwkplugin.NewEppHandle(ctx, func() []types.NamespacedName { return nil })
	cfg, err := loader.InstantiateAndConfigure(raw, handle, logger)
	if err != nil {
		t.Fatalf("InstantiateAndConfigure: %v", err)
	}
	precise, err := fwkplugin.PluginByType[*scorer.Scorer](handle, scorer.PreciseScorerType)
	if err != nil {
		t.Fatal(err)
	}

	// The data layer as the runner drives it: pods join through the
	// runtime, which polls their metrics and sends endpoint events to the
	// scorer's extractor, which dials their event publishers.
	rt := datalayer.NewRuntime(20 * time.Millisecond)
	if err := rt.Configure(cfg.DataConfig, true, "", logger); err != nil {
		t.Fatalf("datalayer Configure: %v", err)
	}
	defer rt.Stop()

	// Three pods on distinct loopback addresses, so that each has its own
	// event port like a real pod. The one holding the prefix (b) is also
	// the most loaded, so the load scorers alone would never pick it.
	type pod struct {
		addr    string
		waiting int
		kvUsage float64
	}
	pods := []pod{{"127.0.0.1", 0, 0.1}, {"127.0.0.2", 6, 0.7}, {"127.0.0.3", 1, 0.2}}
	holder := pods[1].addr

	// What the holder's engine has cached: a completion prompt and a chat
	// conversation, tokenized by the real Qwen3 tokenizer as vLLM would
	// (completions with special tokens, chat through the template).
	tok := testtokenizer.Qwen3(t)
	prefix := strings.Repeat("You are a careful assistant for the kvtrack project. Answer from the manual. ", 20)
	tokens, err := tok.Encode(prefix, true)
	if err != nil {
		t.Fatal(err)
	}
	system := strings.Repeat("You route requests for the kvtrack project; quote the manual verbatim. ", 20)
	chatTokens, err := tok.EncodeChat(&tokenization.ChatRequest{
		Messages:            json.RawMessage(fmt.Sprintf(`[{"role":"system","content":%q},{"role":"user","content":"What is a block?"}]`, system)),
		AddGenerationPrompt: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	published := publish(t, fmt.Sprintf("tcp://%s:%d", holder, eventsPort), "kv@"+holder+":8000@"+model, "42", blockSize, tokens, chatTokens)

	dlEndpoints := make([]fwkdl.Endpoint, len(pods))
	for i, p := range pods {
		srv := vllmMetrics(t, p.waiting, p.kvUsage)
		dlEndpoints[i] = rt.NewEndpoint(ctx, &fwkdl.EndpointMetadata{
			NamespacedName: types.NamespacedName{Namespace: "default", Name: fmt.Sprintf("vllm-%d", i)},
			PodName:        fmt.Sprintf("vllm-%d", i),
			Address:        p.addr,
			Port:           "8000",
			MetricsHost:    strings.TrimPrefix(srv.URL, "http://"),
		}, nil)
		if dlEndpoints[i] == nil {
			t.Fatalf("runtime refused endpoint %s", p.addr)
		}
	}

	// Wait for the engine's events to reach the index and for every pod's
	// metrics to be scraped once.
	published()
	waitFor(t, "the holder's blocks to arrive over ZMQ", func() bool {
		res, err := precise.Indexer().Score(ctx, kvcache.Request{Model: model, TokenIDs: tokens, Pods: []string{holder + ":8000"}})
		return err == nil && res.Blocks > 0 && res.Pods[0].Matched == res.Blocks
	})
	waitFor(t, "metrics of every pod", func() bool {
		for _, ep := range dlEndpoints {
			if ep.GetMetrics().UpdateTime.IsZero() {
				return false
			}
		}
		return true
	})

	sched := scheduling.NewSchedulerWithConfig(cfg.SchedulerConfig)
	pick := func(body *fwksched.LLMRequestBody) string {
		t.Helper()
		candidates := make([]fwksched.Endpoint, len(dlEndpoints))
		for i, ep := range dlEndpoints {
			candidates[i] = fwksched.NewEndpoint(ep.GetMetadata(), ep.GetMetrics(), ep.GetAttributes())
		}
		req := &fwksched.LLMRequest{
			RequestId:   fmt.Sprintf("req-%d", time.Now().UnixNano()),
			TargetModel: model,
			Body:        body,
		}
		res, err := sched.Schedule(ctx, req, candidates)
		if err != nil {
			t.Fatalf("Schedule: %v", err)
		}
		targets := res.ProfileResults[res.PrimaryProfileName].TargetEndpoints
		if len(targets) == 0 {
			t.Fatal("Schedule picked no endpoint")
		}
		return targets[0].GetMetadata().Address
	}

	completion := func(prompt string) *fwksched.LLMRequestBody {
		return &fwksched.LLMRequestBody{Completions: &fwksched.CompletionsRequest{Prompt: fwksched.Prompt{Raw: prompt}}}
	}
	chat := func(system, user string) *fwksched.LLMRequestBody {
		return &fwksched.LLMRequestBody{ChatCompletions: &fwksched.ChatCompletionsRequest{AddGenerationPrompt: true, Messages: []fwksched.Message{
			{Role: "system", Content: fwksched.Content{Raw: system}},
			{Role: "user", Content: fwksched.Content{Raw: user}},
		}}}
	}
	if got := pick(completion(prefix + "How do I configure the scorer?")); got != holder {
		t.Errorf("completion sharing the cached prefix went to %s, want %s (the pod holding it)", got, holder)
	}
	if got := pick(chat(system, "And how are pods named?")); got != holder {
		t.Errorf("chat sharing the cached system prompt went to %s, want %s (the pod holding it)", got, holder)
	}
	// Controls: prompts nobody holds go where the load scorers send them,
	// which is not the loaded holder.
	if got := pick(completion(strings.Repeat("An unrelated question about gardening and tomatoes. ", 30))); got == holder {
		t.Errorf("a completion no pod holds went to the most loaded pod %s", got)
	}
	if got := pick(chat(strings.Repeat("You are a gardener. ", 60), "What is a block?")); got == holder {
		t.Errorf("a chat no pod holds went to the most loaded pod %s", got)
	}

	// The holder leaves the pool: its subscription stops and its blocks go.
	rt.ReleaseEndpoint(dlEndpoints[1])
	res, err := precise.Indexer().Score(ctx, kvcache.Request{Model: model, TokenIDs: tokens, Pods: []string{holder + ":8000"}})
	if err != nil || res.Pods[0].Matched != 0 {
		t.Errorf("after the holder left, it still matches %d blocks (err %v)", res.Pods[0].Matched, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}
