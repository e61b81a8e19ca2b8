package llmd

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/internal/testepp"
	"github.com/kvtrack/kvtrack/kvcache"
)

const scorerType = "precise-prefix-cache-scorer"

// guideParameters returns the precise-prefix-cache-scorer's parameters
// from an EndpointPickerConfig in testdata (copied from llm-d's published
// guides and docs; each file names its source).
func guideParameters(t *testing.T, file string) json.RawMessage {
	return testepp.PluginParameters(t, filepath.Join("testdata", file), scorerType)
}

func warningSettings(ws []Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Setting)
	}
	return out
}

// Every parameter block of llm-d's guides loads, maps to the kvtrack
// settings that mean the same, and names each setting kvtrack lacks.
func TestGuideParametersMapToKVTrack(t *testing.T) {
	tests := []struct {
		file         string
		check        func(t *testing.T, c kvcache.Config)
		wantWarnings []string
	}{
		{"gaie-kv-events.yaml", func(t *testing.T, c kvcache.Config) {
			// No hashSeed: keys from the events' tokens.
			wantConfig(t, c, kvcache.KeySchemeTokens, "", 64, kvcache.EventsBind, "tcp://*:5557", 0)
			if c.Tokenizer.Model != "Qwen/Qwen3-32B" || c.Tokenizer.Path != "" || c.Events.Workers != 4 || *c.Events.TopicFilter != "kv@" {
				t.Errorf("tokenizer %+v, workers %d, topic filter %q", c.Tokenizer, c.Events.Workers, *c.Events.TopicFilter)
			}
		}, []string{"tokenProcessorConfig.hashSeed", "hash.algorithm", "indexerConfig.tokenizersPoolConfig.uds"}},
		{"scheduler-central.yaml", func(t *testing.T, c kvcache.Config) {
			wantConfig(t, c, kvcache.KeySchemeVLLM, "42", 64, kvcache.EventsBind, "tcp://*:5557", 0)
			if c.Metrics.Enabled == nil || !*c.Metrics.Enabled || c.Hash.Algorithm != "sha256" {
				t.Errorf("metrics %v, algorithm %q; want metrics on, sha256", c.Metrics.Enabled, c.Hash.Algorithm)
			}
		}, []string{"hash.algorithm", "indexerConfig.tokenizersPoolConfig.uds"}},
		{"scheduler-pod-discovery.yaml", func(t *testing.T, c kvcache.Config) {
			wantConfig(t, c, kvcache.KeySchemeVLLM, "42", 64, kvcache.EventsConnect, "", 5557)
		}, []string{"hash.algorithm", "indexerConfig.tokenizersPoolConfig.uds"}},
		{"kv-cache-docs-example.yaml", func(t *testing.T, c kvcache.Config) {
			wantConfig(t, c, kvcache.KeySchemeVLLM, "12345", 16, kvcache.EventsBind, "tcp://indexer:5557", 0)
			if c.Index.Capacity != 100000000 || c.Events.Workers != 8 || c.Tokenizer.Path != filepath.Join("/mnt/models") {
				t.Errorf("capacity %d, workers %d, tokenizer %+v", c.Index.Capacity, c.Events.Workers, c.Tokenizer)
			}
		}, []string{"hash.algorithm", "indexerConfig.prefixStoreConfig", "indexerConfig.tokenizersPoolConfig.workersCount",
			"indexerConfig.tokenizersPoolConfig.minPrefixOverlapRatio", "indexerConfig.tokenizersPoolConfig.local.autoDiscoveryDir",
			"indexerConfig.kvBlockIndexConfig.inMemoryConfig.size", "indexerConfig.kvBlockIndexConfig.inMemoryConfig.podCacheSize",
			"indexerConfig.kvBlockIndexConfig.metricsLoggingInterval"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			params := guideParameters(t, tt.file)
			if !IsParameters(params) {
				t.Fatal("not recognised as llm-d's schema")
			}
			cfg, warnings, err := Load(params)
			if err != nil {
				t.Fatalf("parameters do not load: %v", err)
			}
			tt.check(t, cfg)
			got := warningSettings(warnings)
			if !slices.Equal(got, tt.wantWarnings) {
				t.Errorf("warnings about %q\nwant %q", got, tt.wantWarnings)
			}
			for _, w := range warnings {
				if len(w.Message) < 40 {
					t.Errorf("warning %s does not explain itself: %q", w.Setting, w.Message)
				}
			}
		})
	}
}

func wantConfig(t *testing.T, c kvcache.Config, scheme kvcache.KeyScheme, seed string, blockSize int, mode kvcache.EventsMode, endpoint string, port int) {
	t.Helper()
	if c.KeyScheme != scheme || c.Hash.Seed != seed || c.Hash.BlockSize != blockSize || c.Events.Mode != mode {
		t.Errorf("keyScheme %q, seed %q, blockSize %d, mode %q; want %q, %q, %d, %q", c.KeyScheme, c.Hash.Seed, c.Hash.BlockSize, c.Events.Mode, scheme, seed, blockSize, mode)
	}
	if endpoint != "" && c.Events.Endpoint != endpoint {
		t.Errorf("events.endpoint %q, want %q", c.Events.Endpoint, endpoint)
	}
	if port != 0 && c.Events.Port != port {
		t.Errorf("events.port %d, want %d", c.Events.Port, port)
	}
}

func TestParametersMapping(t *testing.T) {
	tests := []struct {
		name    string
		params  string
		check   func(c kvcache.Config) bool
		warning string // a setting warned about
		err     string
	}{
		{"redis URL", `{"tokenProcessorConfig": {"hashSeed": "1"}, "indexerConfig": {"kvBlockIndexConfig": {"redisConfig": {"address": "redis://u:p@10.0.0.9:6380/2"}}}}`,
			func(c kvcache.Config) bool {
				return c.Index.Backend == kvcache.IndexRedis && c.Redis.Addr == "10.0.0.9:6380" && c.Redis.Username == "u" && c.Redis.Password == "p" && c.Redis.DB == 2
			}, "", ""},
		{"valkey with RDMA", `{"tokenProcessorConfig": {"hashSeed": "1"}, "indexerConfig": {"kvBlockIndexConfig": {"redisConfig": {"address": "valkey://10.0.0.9:6379", "enableRDMA": true}}}}`,
			func(c kvcache.Config) bool { return c.Redis.Addr == "10.0.0.9:6379" }, "indexerConfig.kvBlockIndexConfig.redisConfig.enableRDMA", ""},
		{"local tokenizer map", `{"tokenProcessorConfig": {"hashSeed": "1"}, "indexerConfig": {"tokenizersPoolConfig": {"modelName": "m", "local": {"modelTokenizerMap": {"m": "/models/m/tokenizer.json"}}}}}`,
			func(c kvcache.Config) bool {
				return c.Tokenizer.Path == "/models/m/tokenizer.json" && c.Tokenizer.Model == "m"
			}, "", ""},
		{"hf download", `{"tokenProcessorConfig": {"hashSeed": "1"}, "indexerConfig": {"tokenizersPoolConfig": {"modelName": "m", "hf": {"enabled": true}}}}`,
			nil, "indexerConfig.tokenizersPoolConfig.hf", ""},
		{"empty hashSeed", `{"tokenProcessorConfig": {"hashSeed": ""}}`,
			func(c kvcache.Config) bool { return c.KeyScheme == kvcache.KeySchemeTokens }, "tokenProcessorConfig.hashSeed", ""},
		{"unknown llm-d field", `{"tokenProcessorConfig": {"blockSize": 16, "hashSed": "1"}}`, nil, "", `unknown field "hashSed"`},
		{"not an object", `[1]`, nil, "", "cannot unmarshal"},
		{"kvtrack's schema mixed in", `{"tokenProcessorConfig": {"blockSize": 16}, "hash": {"seed": "1"}}`, nil, "", `"hash" is not part of llm-d's schema`},
		{"bad redis scheme", `{"indexerConfig": {"kvBlockIndexConfig": {"redisConfig": {"address": "http://x:1"}}}}`, nil, "", `scheme "http"`},
		{"invalid mapped value", `{"tokenProcessorConfig": {"hashSeed": "1", "blockSize": -3}}`, nil, "", "hash.blockSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := Load(json.RawMessage(tt.params))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil && !tt.check(cfg) {
				t.Errorf("mapped config %+v", cfg)
			}
			if tt.warning != "" && !slices.Contains(warningSettings(warnings), tt.warning) {
				t.Errorf("warnings %q do not name %s", warningSettings(warnings), tt.warning)
			}
		})
	}
}
