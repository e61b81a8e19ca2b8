package kvcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// validConfig is the smallest configuration Validate accepts.
func validConfig() Config {
	return Config{Hash: HashConfig{Seed: "42"}}
}

func TestDefaultConfigValues(t *testing.T) {
	c := DefaultConfig()
	checks := []struct {
		name      string
		got, want any
	}{
		{"keyScheme", c.KeyScheme, KeySchemeVLLM},
		{"hash.algorithm", c.Hash.Algorithm, "sha256"},
		{"hash.blockSize", c.Hash.BlockSize, 16},
		{"hash.keyCacheBytes", c.Hash.KeyCacheBytes, 16 << 20},
		{"hash.chainCacheBytes", c.Hash.ChainCacheBytes, 16 << 20},
		{"index.backend", c.Index.Backend, IndexMemory},
		{"index.capacity", c.Index.Capacity, 1 << 24},
		{"index.shards", c.Index.Shards, 0},
		{"index.tierWeights.GPU", c.Index.TierWeights["GPU"], 1.0},
		{"index.tierWeights.CPU", c.Index.TierWeights["CPU"], 0.8},
		{"events.enabled", *c.Events.Enabled, true},
		{"events.mode", c.Events.Mode, EventsConnect},
		{"events.port", c.Events.Port, 5557},
		{"events.topicFilter", *c.Events.TopicFilter, ""},
		{"events.replayPort", c.Events.ReplayPort, 0},
		{"events.workers", c.Events.Workers, 4},
		{"events.queueSize", c.Events.QueueSize, 4096},
		{"tokenizer.cacheBytes", c.Tokenizer.CacheBytes, 64 << 20},
		{"speculative.enabled", c.Speculative.Enabled, false},
		{"speculative.ttl", time.Duration(c.Speculative.TTL), 10 * time.Second},
		{"metrics.enabled", *c.Metrics.Enabled, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestDefaultTopicFilterFollowsMode(t *testing.T) {
	for mode, want := range map[EventsMode]string{EventsConnect: "", EventsBind: "kv@"} {
		c := Config{Events: EventsConfig{Mode: mode}}.WithDefaults()
		if got := *c.Events.TopicFilter; got != want {
			t.Errorf("events.topicFilter default in %s mode = %q, want %q", mode, got, want)
		}
	}
}

func TestWithDefaultsKeepsSetFields(t *testing.T) {
	empty := ""
	off := false
	c := Config{
		KeyScheme: KeySchemeTokens,
		Hash:      HashConfig{Algorithm: "xxhash", BlockSize: 64},
		Events:    EventsConfig{Mode: EventsBind, Port: 6000, TopicFilter: &empty, Workers: 2},
		Metrics:   MetricsConfig{Enabled: &off},
	}.WithDefaults()
	if c.KeyScheme != KeySchemeTokens || c.Hash.Algorithm != "xxhash" || c.Hash.BlockSize != 64 ||
		c.Events.Mode != EventsBind || c.Events.Port != 6000 || *c.Events.TopicFilter != "" ||
		c.Events.Workers != 2 || *c.Metrics.Enabled {
		t.Errorf("WithDefaults overwrote set fields: %+v", c)
	}
}

func TestValidateAcceptsValid(t *testing.T) {
	for name, c := range map[string]Config{
		"minimal vllm":        validConfig(),
		"tokens without seed": {KeyScheme: KeySchemeTokens},
		"bind tcp":            {Hash: HashConfig{Seed: "0"}, Events: EventsConfig{Mode: EventsBind, Endpoint: "tcp://*:5557"}},
		"bind ipc":            {Hash: HashConfig{Seed: "0"}, Events: EventsConfig{Mode: EventsBind, Endpoint: "ipc:///tmp/kv.sock"}},
		"remote tokenizer":    {Hash: HashConfig{Seed: "0"}, Tokenizer: TokenizerConfig{URL: "http://10.0.0.7:8000"}},
		"every algorithm field": {Hash: HashConfig{Algorithm: "sha256_cbor", Seed: "42", BlockSize: 64},
			Index: IndexConfig{Capacity: 1000, Shards: 64, TierWeights: map[string]float64{"GPU": 1, "CPU": 0}}},
		"cache disabled": {KeyScheme: KeySchemeTokens, Tokenizer: TokenizerConfig{CacheBytes: -1}},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v, want nil", name, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
		valid string // a fragment of the message listing what is valid
	}{
		{"key scheme", func(c *Config) { c.KeyScheme = "sglang" }, "keyScheme", "valid: vllm, tokens"},
		{"algorithm", func(c *Config) { c.Hash.Algorithm = "md5" }, "hash.algorithm", "sha256_cbor"},
		{"missing seed", func(c *Config) { c.Hash.Seed = "" }, "hash.seed", "PYTHONHASHSEED"},
		{"block size", func(c *Config) { c.Hash.BlockSize = -16 }, "hash.blockSize", "valid: 1 to 65536"},
		{"key cache", func(c *Config) { c.Hash.KeyCacheBytes = -2 }, "hash.keyCacheBytes", "-1 to disable"},
		{"chain cache", func(c *Config) { c.Hash.ChainCacheBytes = -2 }, "hash.chainCacheBytes", "-1 to disable"},
		{"backend", func(c *Config) { c.Index.Backend = "etcd" }, "index.backend", "valid: memory, redis"},
		{"capacity", func(c *Config) { c.Index.Capacity = -1 }, "index.capacity", "no smaller than index.shards"},
		{"capacity below shards", func(c *Config) { c.Index.Capacity = 8; c.Index.Shards = 16 }, "index.capacity", "no smaller than index.shards"},
		{"shards", func(c *Config) { c.Index.Shards = 12 }, "index.shards", "power of two"},
		{"tier weight", func(c *Config) { c.Index.TierWeights = map[string]float64{"CPU": -0.5} }, "index.tierWeights.CPU", "finite number >= 0"},
		{"tier weight NaN", func(c *Config) { c.Index.TierWeights = map[string]float64{"GPU": math.NaN()} }, "index.tierWeights.GPU", "finite number >= 0"},
		{"too many media", func(c *Config) { c.Index.TierWeights = manyMedia(kvblock.MaxMedia + 1) }, "index.tierWeights", "up to 27 other media"},
		{"the other tier as a medium", func(c *Config) { c.Index.TierWeights = map[string]float64{"(other)": 1} }, "index.tierWeights", "tier of unconfigured media"},
		{"events mode", func(c *Config) { c.Events.Mode = "listen" }, "events.mode", "valid: connect, bind"},
		{"bind without endpoint", func(c *Config) { c.Events.Mode = EventsBind }, "events.endpoint", "tcp://*:5557"},
		{"bind bad transport", func(c *Config) { c.Events.Mode = EventsBind; c.Events.Endpoint = "udp://*:1" }, "events.endpoint", "tcp, ipc or inproc"},
		{"bind no port", func(c *Config) { c.Events.Mode = EventsBind; c.Events.Endpoint = "tcp://*" }, "events.endpoint", "no port"},
		{"port", func(c *Config) { c.Events.Port = 70000 }, "events.port", "valid: 1 to 65535"},
		{"replay port", func(c *Config) { c.Events.ReplayPort = -1 }, "events.replayPort", "0 to disable"},
		{"workers", func(c *Config) { c.Events.Workers = -2 }, "events.workers", "valid: 1 to 1024"},
		{"queue size", func(c *Config) { c.Events.QueueSize = -5 }, "events.queueSize", "positive"},
		{"tokenizer both", func(c *Config) { c.Tokenizer.Path = "/m/tokenizer.json"; c.Tokenizer.URL = "http://x:1" }, "tokenizer", "at most one"},
		{"tokenizer url", func(c *Config) { c.Tokenizer.URL = "10.0.0.7:8000" }, "tokenizer.url", "http://10.0.0.7:8000"},
		{"token cache", func(c *Config) { c.Tokenizer.CacheBytes = -7 }, "tokenizer.cacheBytes", "-1 to disable"},
		{"ttl negative", func(c *Config) { c.Speculative.TTL = Duration(-time.Second) }, "speculative.ttl", "at most 1m0s"},
		{"ttl huge", func(c *Config) { c.Speculative.TTL = Duration(time.Hour) }, "speculative.ttl", "at most 1m0s"},
		{"beat", func(c *Config) { c.Metrics.BeatInterval = Duration(-time.Second) }, "metrics.beatInterval", "0 to disable"},
		// The redis section is validated by the backend and reported here,
		// under redis., in the same style.
		{"redis addr", withRedis(func(r *RedisConfig) { r.Addr = "no-port" }), "redis.addr", `"no-port" is not host:port (valid: e.g. localhost:6379`},
		{"redis db", withRedis(func(r *RedisConfig) { r.DB = -1 }), "redis.db", "-1 is negative (valid: a database number >= 0)"},
		{"redis password", withRedis(func(r *RedisConfig) { r.Username = "kv" }), "redis.password", "(valid: the ACL user's password)"},
		{"redis tls", withRedis(func(r *RedisConfig) { r.TLS.CAFile = "ca.pem" }), "redis.tls.enabled", "(fix: set tls.enabled: true, or drop them)"},
		{"redis pool", withRedis(func(r *RedisConfig) { r.PoolSize = -1 }), "redis.poolSize", "(valid: 0 for 10 per CPU, or a number of connections)"},
		{"redis timeout", withRedis(func(r *RedisConfig) { r.ReadTimeout = Duration(-time.Second) }), "redis.readTimeout", "-1s is negative (valid: 0 for the default"},
		{"redis cluster db", withRedis(func(r *RedisConfig) { r.Cluster.Enabled = true; r.DB = 1 }), "redis.db", "(valid: 0, Redis Cluster's only database)"},
		{"redis cluster groups", withRedis(func(r *RedisConfig) { r.Cluster.Groups = 5000 }), "redis.cluster.groups", "(valid: 0 for the default, up to 4096)"},
		{"redis ttl", withRedis(func(r *RedisConfig) { r.TTL = Duration(time.Microsecond) }), "redis.ttl", "or a negative value such as -1s to disable expiry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate() = %v, want a FieldError for %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field+":") || !strings.Contains(err.Error(), tt.valid) {
				t.Errorf("Validate() = %q, want it to name %q and say %q", err, tt.field, tt.valid)
			}
		})
	}
}

func TestRedisSection(t *testing.T) {
	c := Config{Hash: HashConfig{Seed: "42"}, Index: IndexConfig{Backend: IndexRedis}}.WithDefaults()
	if c.Redis.Addr != "localhost:6379" || c.Redis.TTL == 0 || c.Redis.Buckets != 65536 {
		t.Errorf("empty redis section with the redis backend = %+v, want redis.DefaultConfig()", c.Redis)
	}
	c.Redis.Addr = "no-port"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "redis.addr") {
		t.Errorf("Validate() = %v, want an error naming redis.addr", err)
	}
	c.Redis.Addr, c.Redis.Buckets = "localhost:6379", -3
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "redis.buckets") {
		t.Errorf("Validate() = %v, want an error naming redis.buckets", err)
	}
	c.Index.Backend = IndexMemory
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() with the memory backend = %v, want the unused redis section ignored", err)
	}
	var d Config
	if err := json.Unmarshal([]byte(`{"index": {"backend": "redis"}, "redis": {"addr": "10.0.0.9:6379", "keyPrefix": "a:"}}`), &d); err != nil {
		t.Fatal(err)
	}
	if d.Redis.Addr != "10.0.0.9:6379" || d.Redis.KeyPrefix != "a:" {
		t.Errorf("decoded redis section = %+v", d.Redis)
	}
}

func TestValidateReportsEveryBadField(t *testing.T) {
	c := Config{KeyScheme: "x", Hash: HashConfig{BlockSize: -1}, Events: EventsConfig{Workers: -1}}
	err := c.Validate()
	for _, field := range []string{"keyScheme", "hash.blockSize", "events.workers"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("Validate() = %v, want it to name %s", err, field)
		}
	}
}

const jsonConfig = `{
  "keyScheme": "vllm",
  "hash": {"algorithm": "sha256_cbor", "seed": "42", "blockSize": 64, "keyCacheBytes": 1048576},
  "index": {"capacity": 5000000, "shards": 32, "tierWeights": {"GPU": 1, "CPU": 0.5}},
  "events": {"enabled": false, "mode": "bind", "endpoint": "tcp://*:5557", "topicFilter": "", "replayPort": 5558, "workers": 8, "queueSize": 100},
  "tokenizer": {"path": "/models/qwen3/tokenizer.json"},
  "speculative": {"enabled": true, "ttl": "1500ms"},
  "metrics": {"beatInterval": "30s"}
}`

const yamlConfig = `
keyScheme: vllm
hash: {algorithm: sha256_cbor, seed: "42", blockSize: 64, keyCacheBytes: 1048576}
index:
  capacity: 5000000
  shards: 32
  tierWeights: {GPU: 1, CPU: 0.5}
events: {enabled: false, mode: bind, endpoint: "tcp://*:5557", topicFilter: "", replayPort: 5558, workers: 8, queueSize: 100}
tokenizer: {path: /models/qwen3/tokenizer.json}
speculative: {enabled: true, ttl: 1500ms}
metrics: {beatInterval: 30s}
`

func checkDecoded(t *testing.T, c Config) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if c.Hash != (HashConfig{Algorithm: "sha256_cbor", Seed: "42", BlockSize: 64, KeyCacheBytes: 1 << 20}) {
		t.Errorf("hash = %+v", c.Hash)
	}
	if c.Index.Capacity != 5_000_000 || c.Index.Shards != 32 || c.Index.TierWeights["CPU"] != 0.5 {
		t.Errorf("index = %+v", c.Index)
	}
	if c.Events.Enabled == nil || *c.Events.Enabled || c.Events.Mode != EventsBind || c.Events.Endpoint != "tcp://*:5557" || c.Events.TopicFilter == nil ||
		*c.Events.TopicFilter != "" || c.Events.ReplayPort != 5558 || c.Events.Workers != 8 || c.Events.QueueSize != 100 {
		t.Errorf("events = %+v", c.Events)
	}
	if c.Tokenizer.Path != "/models/qwen3/tokenizer.json" {
		t.Errorf("tokenizer = %+v", c.Tokenizer)
	}
	if !c.Speculative.Enabled || time.Duration(c.Speculative.TTL) != 1500*time.Millisecond {
		t.Errorf("speculative = %+v", c.Speculative)
	}
	if time.Duration(c.Metrics.BeatInterval) != 30*time.Second {
		t.Errorf("metrics = %+v", c.Metrics)
	}
}

func TestConfigFromJSON(t *testing.T) {
	var c Config
	if err := json.Unmarshal([]byte(jsonConfig), &c); err != nil {
		t.Fatal(err)
	}
	checkDecoded(t, c)
}

func TestConfigFromYAML(t *testing.T) {
	var c Config
	if err := DecodeStrict([]byte(yamlConfig), &c); err != nil {
		t.Fatal(err)
	}
	checkDecoded(t, c)
}

func TestConfigJSONRoundTrip(t *testing.T) {
	in := validConfig().WithDefaults()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Config
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	b2, _ := json.Marshal(out)
	if string(b) != string(b2) {
		t.Errorf("round trip changed the config:\n%s\n%s", b, b2)
	}
}

func TestDurationRejectsGarbage(t *testing.T) {
	var c Config
	err := json.Unmarshal([]byte(`{"speculative": {"ttl": "soon"}}`), &c)
	if err == nil || !strings.Contains(err.Error(), `"soon"`) {
		t.Errorf("Unmarshal = %v, want an error quoting the bad duration", err)
	}
}

// manyMedia returns weights naming n media besides the built-in ones.
func manyMedia(n int) map[string]float64 {
	w := map[string]float64{"GPU": 1}
	for i := range n {
		w[fmt.Sprintf("MEDIUM%d", i)] = 0.5
	}
	return w
}

// withRedis selects the redis backend and edits its section.
func withRedis(edit func(*RedisConfig)) func(*Config) {
	return func(c *Config) {
		c.Index.Backend = IndexRedis
		edit(&c.Redis)
	}
}

// TestRedisErrorsOnce: a bad redis field is reported once, in kvcache's
// style, whoever checks it.
func TestRedisErrorsOnce(t *testing.T) {
	c := validConfig()
	c.Index.Backend = IndexRedis
	c.Redis.DB = -1
	err := c.Validate()
	want := "kvcache config: redis.db: -1 is negative (valid: a database number >= 0)"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want exactly %q", err, want)
	}
}
