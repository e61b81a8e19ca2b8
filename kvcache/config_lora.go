package kvcache

import "fmt"

// LoRAConfig names the LoRA adapters the engines serve. A request whose
// model is an adapter is keyed with the adapter's name, as vLLM v0.11.1+
// hashes it; adapters the engines' events name in lora_name (vLLM v0.14+)
// are learned without configuration.
type LoRAConfig struct {
	// Adapters are the adapter names (each engine's --lora-modules names,
	// or those loaded at run time).
	Adapters []string `json:"adapters,omitempty"`
	// BaseModels are the served base model names. They are never keyed as
	// adapters, even when an event claims the name.
	BaseModels []string `json:"baseModels,omitempty"`
}

// validate reports an empty name or a name that is both an adapter and a
// base model.
func (c LoRAConfig) validate(bad func(field, format string, args ...any)) {
	base := map[string]bool{}
	for i, b := range c.BaseModels {
		if b == "" {
			bad(fmt.Sprintf("lora.baseModels[%d]", i), "empty name (valid: a served model name)")
		}
		base[b] = true
	}
	for i, a := range c.Adapters {
		switch {
		case a == "":
			bad(fmt.Sprintf("lora.adapters[%d]", i), "empty name (valid: an adapter name as requests send it in \"model\")")
		case base[a]:
			bad(fmt.Sprintf("lora.adapters[%d]", i), "%q is also in lora.baseModels (valid: a name is an adapter or a base model, not both)", a)
		}
	}
}
