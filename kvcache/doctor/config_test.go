package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadConfigFileAcceptsEveryFileTheUserHas: doctor --config takes the
// router's file, the EPP's EndpointPickerConfig or the bare parameters,
// strictly, and says which shape it found.
func TestLoadConfigFileAcceptsEveryFileTheUserHas(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		shape string
		says  string // an error's text, when the file is refused
	}{
		{name: "bare parameters", file: "hash: {seed: 42, blockSize: 32}\n", shape: "kvtrack configuration"},
		{name: "router file", file: "listen: ':8080'\npods: [10.0.0.7:8000]\nkvcache:\n  hash: {seed: 42, blockSize: 32}\n",
			shape: "the router's kvcache section"},
		{name: "EPP config", file: `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: precise-prefix-cache-scorer
  name: kv
  parameters:
    hash: {seed: "42", blockSize: 32}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: kv}]
`, shape: "plugin kv of an EndpointPickerConfig"},
		{name: "EPP config without the plugin", file: "kind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n", says: "without a precise-prefix-cache-scorer plugin"},
		{name: "EPP config with two", file: "kind: EndpointPickerConfig\nplugins:\n- {type: precise-prefix-cache-scorer, name: a}\n- {type: precise-prefix-cache-scorer, name: b}\n", says: "several precise-prefix-cache-scorer plugins (a, b)"},
		{name: "typo in the router's section", file: "kvcache:\n  hash: {seed: 42, blockSzie: 32}\n", says: "hash.blockSzie: unknown field"},
		{name: "typo in the plugin's parameters", file: "kind: EndpointPickerConfig\nplugins:\n- type: precise-prefix-cache-scorer\n  parameters: {hash: {sead: 42}}\n", says: "hash.sead: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, shape, err := LoadConfigFile(path)
			if tt.says != "" {
				if err == nil || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), path) {
					t.Fatalf("LoadConfigFile = %v, want an error naming %s and saying %q", err, path, tt.says)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if shape != tt.shape || cfg.Hash.Seed != "42" || cfg.Hash.BlockSize != 32 {
				t.Errorf("LoadConfigFile = %q, seed %q, block size %d; want %q, 42, 32", shape, cfg.Hash.Seed, cfg.Hash.BlockSize, tt.shape)
			}
		})
	}
}
