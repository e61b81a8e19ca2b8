package kvcache

import (
	"slices"
	"sync"
	"sync/atomic"
)

// loraNames knows which model names are LoRA adapters: those configured in
// lora.adapters and those the engines' BlockStored events name in
// lora_name (vLLM v0.14+). A request whose model is an adapter is keyed
// with the adapter's name, as vLLM v0.11.1+ hashes it
// (kv_cache_utils._gen_lora_extra_hash_keys: lora_request.lora_name).
//
// Reads are lock-free: the learned set is copied on write, which happens
// once per new name.
type loraNames struct {
	configured map[string]struct{}
	base       map[string]struct{} // never adapters, whatever events say

	mu      sync.Mutex // serializes writers of learned
	learned atomic.Pointer[map[string]struct{}]
}

// maxLearnedAdapters bounds the names learned from events, so that a
// publisher cannot grow the set without limit.
const maxLearnedAdapters = 1024

// maxAdapterName bounds one learned name's length.
const maxAdapterName = 256

func newLoRANames(cfg LoRAConfig) *loraNames {
	l := &loraNames{configured: map[string]struct{}{}, base: map[string]struct{}{}}
	for _, a := range cfg.Adapters {
		l.configured[a] = struct{}{}
	}
	for _, b := range cfg.BaseModels {
		l.base[b] = struct{}{}
	}
	l.learned.Store(&map[string]struct{}{})
	return l
}

// adapterFor returns model when it names a LoRA adapter, else "".
func (l *loraNames) adapterFor(model string) string {
	if model == "" {
		return ""
	}
	if _, ok := l.configured[model]; ok {
		return model
	}
	if _, ok := (*l.learned.Load())[model]; ok {
		return model
	}
	return ""
}

// observe learns an adapter name an engine's BlockStored event carries
// (vLLM v0.14+). The event source calls it on its workers for every such
// event: the common case (a name already known) allocates nothing.
func (l *loraNames) observe(name string) {
	if name == "" || l.adapterFor(name) != "" || len(name) > maxAdapterName {
		return
	}
	if _, ok := l.base[name]; ok {
		return
	}
	l.learn(name)
}

func (l *loraNames) learn(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := *l.learned.Load()
	if _, ok := cur[name]; ok || len(cur) >= maxLearnedAdapters {
		return
	}
	next := make(map[string]struct{}, len(cur)+1)
	for k := range cur {
		next[k] = struct{}{}
	}
	next[string([]byte(name))] = struct{}{} // the event's string is the decoder's
	l.learned.Store(&next)
}

// Adapters returns the adapter names kvtrack keys with LoRA: the configured
// ones and those learned from events, sorted.
func (ix *Indexer) Adapters() []string {
	var out []string
	for a := range ix.lora.configured {
		out = append(out, a)
	}
	for a := range *ix.lora.learned.Load() {
		if _, ok := ix.lora.configured[a]; !ok {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}
