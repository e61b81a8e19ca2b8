// Package testepp reads the EPP's EndpointPickerConfig files that tests
// keep as fixtures (llm-d's published guides, kvtrack's examples).
package testepp

import (
	"encoding/json"
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

// PluginParameters returns the parameters of the first plugin of
// pluginType in the EndpointPickerConfig at path, failing the test when
// the file cannot be read or has no such plugin.
func PluginParameters(t testing.TB, path, pluginType string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var epc struct {
		Plugins []struct {
			Type       string          `json:"type"`
			Parameters json.RawMessage `json:"parameters"`
		} `json:"plugins"`
	}
	if err := yaml.Unmarshal(b, &epc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, p := range epc.Plugins {
		if p.Type == pluginType {
			return p.Parameters
		}
	}
	t.Fatalf("%s has no %s plugin", path, pluginType)
	return nil
}
