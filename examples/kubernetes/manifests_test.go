package kubernetes

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kvtrack/kvtrack/kvcache"
)

// object is one parsed manifest document.
type object map[string]any

func (o object) get(path ...any) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := cur.(map[string]any)
			cur = m[k]
		case int:
			s, _ := cur.([]any)
			if k >= len(s) {
				return nil
			}
			cur = s[k]
		}
	}
	return cur
}

func (o object) str(path ...any) string { s, _ := o.get(path...).(string); return s }

func (o object) num(path ...any) int { f, _ := o.get(path...).(float64); return int(f) }

// loadManifests parses every document of every YAML file here.
func loadManifests(t *testing.T) map[string]object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	objs := map[string]object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var o object
			if err := yaml.Unmarshal(doc, &o); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			kind, name := o.str("kind"), o.str("metadata", "name")
			if o.str("apiVersion") == "" || kind == "" || name == "" {
				t.Fatalf("%s document %d lacks apiVersion, kind or metadata.name", f, i)
			}
			objs[kind+"/"+name] = o
		}
	}
	return objs
}

func mustObject(t *testing.T, objs map[string]object, key string) object {
	t.Helper()
	o, ok := objs[key]
	if !ok {
		t.Fatalf("no %s among the manifests", key)
	}
	return o
}

// vllmSettings are the values kvtrack must agree with, read from the vLLM
// Deployment.
type vllmSettings struct {
	model, algo, seed, topic, eventsEndpoint string
	blockSize, httpPort, eventsPort          int
	labels                                   map[string]any
}

func readVLLM(t *testing.T, d object) vllmSettings {
	t.Helper()
	c := object(d.get("spec", "template", "spec", "containers", 0).(map[string]any))
	flags := map[string]string{}
	for _, a := range c.get("args").([]any) {
		k, v, _ := strings.Cut(a.(string), "=")
		flags[k] = v
	}
	var s vllmSettings
	s.model = flags["--model"]
	if name := flags["--served-model-name"]; name != "" {
		s.model = name
	}
	s.algo = flags["--prefix-caching-hash-algo"]
	if s.algo == "" {
		s.algo = "sha256" // vLLM's default since v0.10.2
	}
	if _, ok := flags["--enable-prefix-caching"]; !ok {
		t.Error("vLLM runs without --enable-prefix-caching")
	}
	var err error
	if s.blockSize, err = strconv.Atoi(flags["--block-size"]); err != nil {
		t.Errorf("--block-size %q: %v", flags["--block-size"], err)
	}
	for _, e := range c.get("env").([]any) {
		e := object(e.(map[string]any))
		if e.str("name") == "PYTHONHASHSEED" {
			s.seed = e.str("value")
		}
	}
	if s.seed == "" {
		t.Error("vLLM has no PYTHONHASHSEED: its block hashes cannot be reproduced")
	}
	for _, p := range c.get("ports").([]any) {
		p := object(p.(map[string]any))
		if p.str("name") == "http" {
			s.httpPort = p.num("containerPort")
		}
	}
	if port, _ := strconv.Atoi(flags["--port"]); port != s.httpPort {
		t.Errorf("--port %d differs from the http containerPort %d", port, s.httpPort)
	}
	var kv struct {
		Enable    bool   `json:"enable_kv_cache_events"`
		Publisher string `json:"publisher"`
		Endpoint  string `json:"endpoint"`
		Topic     string `json:"topic"`
	}
	if err := json.Unmarshal([]byte(flags["--kv-events-config"]), &kv); err != nil {
		t.Fatalf("--kv-events-config is not JSON: %v", err)
	}
	if !kv.Enable || kv.Publisher != "zmq" {
		t.Errorf("--kv-events-config: enable_kv_cache_events %v, publisher %q; want true, zmq", kv.Enable, kv.Publisher)
	}
	u, err := url.Parse(kv.Endpoint)
	if err != nil || u.Scheme != "tcp" {
		t.Fatalf("kv events endpoint %q: want tcp://*:PORT", kv.Endpoint)
	}
	s.eventsEndpoint, s.topic = kv.Endpoint, kv.Topic
	s.eventsPort, _ = strconv.Atoi(u.Port())
	s.labels, _ = d.get("spec", "template", "metadata", "labels").(map[string]any)
	return s
}

// The precise-prefix-cache-scorer's parameters from the EPP ConfigMap.
type scorerParams struct {
	Hash struct {
		Algorithm string `json:"algorithm"`
		Seed      string `json:"seed"`
		BlockSize int    `json:"blockSize"`
	} `json:"hash"`
	Events struct {
		Mode        string  `json:"mode"`
		Port        int     `json:"port"`
		TopicFilter *string `json:"topicFilter"`
	} `json:"events"`
}

func readEPPConfig(t *testing.T, cm object) (object, scorerParams, json.RawMessage) {
	t.Helper()
	var cfg object
	if err := yaml.Unmarshal([]byte(cm.str("data", "epp-config.yaml")), &cfg); err != nil {
		t.Fatalf("EndpointPickerConfig: %v", err)
	}
	if cfg.str("kind") != "EndpointPickerConfig" {
		t.Fatalf("ConfigMap holds a %q, want an EndpointPickerConfig", cfg.str("kind"))
	}
	for _, p := range cfg.get("plugins").([]any) {
		p := object(p.(map[string]any))
		if p.str("type") != "precise-prefix-cache-scorer" {
			continue
		}
		raw, _ := json.Marshal(p.get("parameters"))
		var sp scorerParams
		if err := json.Unmarshal(raw, &sp); err != nil {
			t.Fatal(err)
		}
		return cfg, sp, raw
	}
	t.Fatal("the EndpointPickerConfig has no precise-prefix-cache-scorer")
	return nil, scorerParams{}, nil
}

func TestEPPConfigAgreesWithVLLMFlags(t *testing.T) {
	objs := loadManifests(t)
	v := readVLLM(t, mustObject(t, objs, "Deployment/vllm-qwen3"))
	_, p, _ := readEPPConfig(t, mustObject(t, objs, "ConfigMap/kvtrack-epp-config"))

	algo := p.Hash.Algorithm
	if algo == "" {
		algo = "sha256" // kvtrack's default, vLLM's too
	}
	blockSize := p.Hash.BlockSize
	if blockSize == 0 {
		blockSize = 16
	}
	checks := []struct{ what, epp, vllm string }{
		{"hash algorithm", algo, v.algo},
		{"hash seed (PYTHONHASHSEED)", p.Hash.Seed, v.seed},
		{"block size", strconv.Itoa(blockSize), strconv.Itoa(v.blockSize)},
		{"events port", strconv.Itoa(p.Events.Port), strconv.Itoa(v.eventsPort)},
	}
	for _, c := range checks {
		if c.epp != c.vllm {
			t.Errorf("%s: EPP config %q, vLLM %q", c.what, c.epp, c.vllm)
		}
	}
	if p.Events.Mode != "connect" || !strings.Contains(v.eventsEndpoint, "*") {
		t.Errorf("events mode %q with vLLM endpoint %q: in connect mode each pod must bind (tcp://*:PORT)", p.Events.Mode, v.eventsEndpoint)
	}
	filter := "kv@"
	if p.Events.TopicFilter != nil {
		filter = *p.Events.TopicFilter
	}
	want := "kv@$(POD_IP):" + strconv.Itoa(v.httpPort) + "@" + v.model
	if v.topic != want {
		t.Errorf("vLLM topic %q, want %q (the pod as the EPP addresses it, then the model)", v.topic, want)
	}
	if !strings.HasPrefix(v.topic, filter) {
		t.Errorf("vLLM topic %q does not pass the EPP's topic filter %q", v.topic, filter)
	}
}

func TestPoolAndEPPReferToEachOther(t *testing.T) {
	objs := loadManifests(t)
	v := readVLLM(t, mustObject(t, objs, "Deployment/vllm-qwen3"))
	pool := mustObject(t, objs, "InferencePool/vllm-qwen3")
	if got := pool.num("spec", "targetPorts", 0, "number"); got != v.httpPort {
		t.Errorf("InferencePool targets port %d, vLLM serves on %d", got, v.httpPort)
	}
	sel, _ := pool.get("spec", "selector", "matchLabels").(map[string]any)
	for k, val := range sel {
		if v.labels[k] != val {
			t.Errorf("InferencePool selects %s=%v, the vLLM pods are labelled %v", k, val, v.labels[k])
		}
	}
	svcName := pool.str("spec", "endpointPickerRef", "name")
	svc := mustObject(t, objs, "Service/"+svcName)
	eppPort := pool.num("spec", "endpointPickerRef", "port", "number")
	if svc.num("spec", "ports", 0, "port") != eppPort {
		t.Errorf("endpointPickerRef port %d is not the EPP Service's first port %d", eppPort, svc.num("spec", "ports", 0, "port"))
	}

	epp := mustObject(t, objs, "Deployment/kvtrack-epp")
	c := object(epp.get("spec", "template", "spec", "containers", 0).(map[string]any))
	flags := map[string]string{}
	for _, a := range c.get("args").([]any) {
		k, val, _ := strings.Cut(a.(string), "=")
		flags[k] = val
	}
	if flags["--pool-name"] != pool.str("metadata", "name") {
		t.Errorf("EPP --pool-name %q, InferencePool %q", flags["--pool-name"], pool.str("metadata", "name"))
	}
	if flags["--grpc-port"] != strconv.Itoa(eppPort) {
		t.Errorf("EPP --grpc-port %q, endpointPickerRef port %d", flags["--grpc-port"], eppPort)
	}
	mount := object(c.get("volumeMounts", 0).(map[string]any)).str("mountPath")
	if filepath.Dir(flags["--config-file"]) != mount {
		t.Errorf("--config-file %q is not under the config mount %q", flags["--config-file"], mount)
	}
	cmName := epp.str("spec", "template", "spec", "volumes", 0, "configMap", "name")
	mustObject(t, objs, "ConfigMap/"+cmName)
}

func TestDockerfileBuildsTheEPPExample(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`go build .*\./examples/epp`),
		regexp.MustCompile(`libzmq3-dev`),
		regexp.MustCompile(`libzmq5`),
	} {
		if !want.Match(data) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}

// The scorer's parameters are a kvcache.Config: they must decode strictly
// (a misspelt field is an error, not a silent default) and validate, as the
// plugin decodes them.
func TestEPPScorerParametersAreAValidKVCacheConfig(t *testing.T) {
	objs := loadManifests(t)
	_, _, raw := readEPPConfig(t, mustObject(t, objs, "ConfigMap/kvtrack-epp-config"))
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var cfg kvcache.Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("scorer parameters %s: %v", raw, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("scorer parameters do not validate: %v", err)
	}
	if cfg.Tokenizer.Path == "" && cfg.Tokenizer.URL == "" {
		t.Error("no tokenizer: the gateway's text prompts could not be scored")
	}
}

// The ConfigMap follows examples/epp's EndpointPickerConfig: the same
// plugins, data layer and scheduling profile; only the scorer's parameters
// may differ (here the tokenizer is the pods' /tokenize).
func TestEPPConfigHasTheEPPExampleShape(t *testing.T) {
	objs := loadManifests(t)
	got, _, _ := readEPPConfig(t, mustObject(t, objs, "ConfigMap/kvtrack-epp-config"))
	data, err := os.ReadFile("../epp/epp-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want object
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	shape := func(o object) string {
		var types []string
		for _, p := range o.get("plugins").([]any) {
			types = append(types, object(p.(map[string]any)).str("type"))
		}
		rest, _ := json.Marshal(map[string]any{"apiVersion": o.get("apiVersion"), "kind": o.get("kind"),
			"dataLayer": o.get("dataLayer"), "schedulingProfiles": o.get("schedulingProfiles")})
		return strings.Join(types, ",") + " " + string(rest)
	}
	if g, w := shape(got), shape(want); g != w {
		t.Errorf("ConfigMap's EndpointPickerConfig:\n%s\nexamples/epp/epp-config.yaml:\n%s", g, w)
	}
}
