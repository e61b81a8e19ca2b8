package scorer

import (
	"bytes"
	"encoding/json"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/llmd"
)

// LLMDWarning is an llm-d setting kvtrack maps approximately or not at all
// (see kvcache/llmd).
type LLMDWarning = llmd.Warning

// parseAnyParameters decodes the plugin's parameters in kvtrack's schema or
// in llm-d's, applies the defaults and validates. warnings are llm-d
// settings without an equivalent; nil for kvtrack's schema.
func parseAnyParameters(parameters json.RawMessage) (kvcache.Config, []LLMDWarning, error) {
	p := bytes.TrimSpace(parameters)
	if len(p) == 0 || !llmd.IsParameters(p) {
		cfg, err := ParseParameters(parameters)
		return cfg, nil, err
	}
	return llmd.Load(p)
}
