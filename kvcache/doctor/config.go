package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/llmd"
)

// PluginType is the EPP plugin type whose parameters are kvtrack's
// configuration (scorer.PreciseScorerType, spelled out here so that doctor
// does not compile the EPP framework).
const PluginType = "precise-prefix-cache-scorer"

// LoadConfigFile reads kvtrack's configuration from whichever file the user
// already has, and says which shape it found:
//
//   - the EPP's EndpointPickerConfig: the parameters of its
//     precise-prefix-cache-scorer plugin ("plugin <name> of an
//     EndpointPickerConfig");
//   - examples/router's file: its kvcache section ("the router's kvcache
//     section");
//   - or the configuration itself, as the plugin's parameters are written
//     ("kvtrack configuration").
//
// Parameters in llm-d's schema (tokenProcessorConfig, indexerConfig,
// kvEventsConfig), at the top or in the plugin, are mapped as the scorer
// maps them (package llmd); the shape then says so and names the settings
// mapped approximately or not at all.
//
// Each is decoded strictly with kvcache.DecodeStrict (an unknown field is
// an error naming its path); defaults are not applied, so that flags can
// override fields before the caller validates. Errors name the file.
func LoadConfigFile(path string) (kvcache.Config, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return kvcache.Config{}, "", err
	}
	cfg, shape, err := ParseConfigFile(data)
	if err != nil {
		return kvcache.Config{}, "", fmt.Errorf("%s: %w", path, err)
	}
	return cfg, shape, nil
}

// ParseConfigFile is LoadConfigFile on the file's contents.
func ParseConfigFile(data []byte) (kvcache.Config, string, error) {
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		// Not a mapping: let the loader say what is wrong with it.
		return decode(data, "kvtrack configuration")
	}
	switch {
	case top["kind"] == "EndpointPickerConfig" || (top["plugins"] != nil && top["hash"] == nil):
		return fromEPPConfig(top)
	case top["kvcache"] != nil:
		sub, err := json.Marshal(top["kvcache"])
		if err != nil {
			return kvcache.Config{}, "", fmt.Errorf("kvcache section: %w", err)
		}
		return decode(sub, "the router's kvcache section")
	}
	if j, err := json.Marshal(top); err == nil && llmd.IsParameters(j) {
		return decode(j, "kvtrack configuration")
	}
	return decode(data, "kvtrack configuration")
}

func decode(data []byte, shape string) (kvcache.Config, string, error) {
	if llmd.IsParameters(data) {
		cfg, warnings, err := llmd.ToConfig(data)
		shape += " in llm-d's schema"
		if err != nil {
			return kvcache.Config{}, "", fmt.Errorf("%s: %w", shape, err)
		}
		if len(warnings) > 0 {
			names := make([]string, len(warnings))
			for i, w := range warnings {
				names[i] = w.Setting
			}
			shape += " (mapped approximately or not at all: " + strings.Join(names, ", ") + ")"
		}
		return cfg, shape, nil
	}
	var cfg kvcache.Config
	if err := kvcache.DecodeStrict(data, &cfg); err != nil {
		return kvcache.Config{}, "", fmt.Errorf("%s: %w", shape, err)
	}
	return cfg, shape, nil
}

// fromEPPConfig finds the precise-prefix-cache-scorer plugin among an
// EndpointPickerConfig's plugins and loads its parameters.
func fromEPPConfig(top map[string]any) (kvcache.Config, string, error) {
	plugins, _ := top["plugins"].([]any)
	type found struct {
		name   string
		params any
	}
	var matches []found
	for _, p := range plugins {
		m, ok := p.(map[string]any)
		if !ok || m["type"] != PluginType {
			continue
		}
		name, _ := m["name"].(string)
		if name == "" {
			name = PluginType
		}
		matches = append(matches, found{name, m["parameters"]})
	}
	switch len(matches) {
	case 0:
		return kvcache.Config{}, "", fmt.Errorf("an EndpointPickerConfig without a %s plugin (add one, or give doctor its parameters)", PluginType)
	case 1:
	default:
		names := make([]string, len(matches))
		for i, m := range matches {
			names[i] = m.name
		}
		return kvcache.Config{}, "", errors.New("an EndpointPickerConfig with several " + PluginType +
			" plugins (" + strings.Join(names, ", ") + "); give doctor the parameters of the one to check")
	}
	m := matches[0]
	params, err := json.Marshal(m.params)
	if err != nil {
		return kvcache.Config{}, "", fmt.Errorf("plugin %s: %w", m.name, err)
	}
	return decode(params, "plugin "+m.name+" of an EndpointPickerConfig")
}
