package doctor

import (
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache"
)

// doctor --config reads whichever file the user has: kvtrack's own
// parameters, an EndpointPickerConfig, the router's file, or llm-d's
// scorer parameters (what scorer/README.md's migration section verifies).
func TestParseConfigFileShapes(t *testing.T) {
	const llmdParams = `tokenProcessorConfig: {blockSize: 64, hashSeed: "42"}
indexerConfig:
  tokenizersPoolConfig:
    modelName: Qwen/Qwen3-32B
    uds: {socketFile: /tmp/tokenizer/tokenizer-uds.socket}
kvEventsConfig: {topicFilter: "kv@", concurrency: 4, discoverPods: false, zmqEndpoint: "tcp://*:5557"}
`
	tests := []struct {
		name      string
		file      string
		wantShape string // substrings of the shape, in order
		wantSeed  string
		wantBS    int
		wantMode  kvcache.EventsMode
	}{
		{"kvtrack parameters", `hash: {seed: "7", blockSize: 32}`, "kvtrack configuration", "7", 32, ""},
		{"router file", "kvcache:\n  hash: {seed: \"8\"}\n", "the router's kvcache section", "8", 0, ""},
		{"EndpointPickerConfig", "kind: EndpointPickerConfig\nplugins:\n- type: precise-prefix-cache-scorer\n  parameters:\n    hash: {seed: \"9\", blockSize: 16}\n",
			"plugin precise-prefix-cache-scorer of an EndpointPickerConfig", "9", 16, ""},
		{"llm-d parameters", llmdParams, "kvtrack configuration in llm-d's schema (mapped approximately or not at all: hash.algorithm, indexerConfig.tokenizersPoolConfig.uds)", "42", 64, kvcache.EventsBind},
		{"llm-d parameters in an EndpointPickerConfig", "kind: EndpointPickerConfig\nplugins:\n- type: precise-prefix-cache-scorer\n  parameters:\n    tokenProcessorConfig: {blockSize: 16, hashSeed: \"5\"}\n",
			"EndpointPickerConfig in llm-d's schema", "5", 16, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, shape, err := ParseConfigFile([]byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(shape, tt.wantShape) {
				t.Errorf("shape %q, want it to contain %q", shape, tt.wantShape)
			}
			if cfg.Hash.Seed != tt.wantSeed || cfg.Hash.BlockSize != tt.wantBS || cfg.Events.Mode != tt.wantMode {
				t.Errorf("hash seed %q block size %d events mode %q; want %q %d %q",
					cfg.Hash.Seed, cfg.Hash.BlockSize, cfg.Events.Mode, tt.wantSeed, tt.wantBS, tt.wantMode)
			}
		})
	}
}

// A typo is still an error naming the field, in either schema.
func TestParseConfigFileRejectsUnknownFields(t *testing.T) {
	for _, file := range []string{"hash: {blockSzie: 16}\n", "tokenProcessorConfig: {blockSzie: 16}\n"} {
		if _, _, err := ParseConfigFile([]byte(file)); err == nil || !strings.Contains(err.Error(), "blockSzie") {
			t.Errorf("%q: error %v, want one naming blockSzie", file, err)
		}
	}
}
