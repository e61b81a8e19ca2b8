package sim

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvtrack/kvtrack/internal/sim/approxprefix"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
)

// Workload kinds.
const (
	// WorkloadSharedPrefix is SGLang's generated-shared-prefix benchmark and
	// llm-d's 150 x 6k-token case: Groups system prompts, each followed by one
	// of PromptsPerGroup fixed questions; requests pick a prompt uniformly.
	WorkloadSharedPrefix = "shared-prefix"
	// WorkloadChat is multi-turn chat: each request continues one of Groups
	// conversations with a new user message; the prompt carries the whole
	// history, earlier answers included, so a turn arrives no earlier than
	// the answer to the one before it.
	WorkloadChat = "chat"
)

// Config describes one simulation. DefaultConfig returns the settings
// `kvtrack simulate` runs with; they put a pool of 8 pods near saturation
// with the prompts' working set at about 70% of the pool's KV capacity, the
// regime of llm-d's published benchmark, scaled down to run in seconds.
type Config struct {
	Seed uint64 `json:"seed"` // drives the workload, arrivals and random choices

	// Pool.
	Pods        int     `json:"pods"`
	CacheBlocks int     `json:"cache_blocks"`     // KV-cache blocks per pod
	BlockSize   int     `json:"block_size"`       // tokens per block (vLLM --block-size)
	HashAlgo    string  `json:"hash_algo"`        // vLLM --prefix-caching-hash-algo
	HashSeed    string  `json:"hash_seed"`        // PYTHONHASHSEED
	PrefillRate float64 `json:"prefill_tokens_s"` // prompt tokens per second per pod
	// StepOverhead is a fixed cost per prefill (scheduling, the first decode
	// step).
	StepOverhead time.Duration `json:"step_overhead"`
	// DecodePerToken is the modelled time per output token; a request keeps
	// its blocks for OutputTokens of it after its prefill.
	DecodePerToken time.Duration `json:"decode_per_token"`

	// Workload.
	Workload        string  `json:"workload"`
	Requests        int     `json:"requests"`
	Rate            float64 `json:"rate"` // Poisson arrivals per second
	Groups          int     `json:"groups"`
	PromptsPerGroup int     `json:"prompts_per_group"` // shared-prefix only
	SystemTokens    int     `json:"system_tokens"`
	QuestionTokens  int     `json:"question_tokens"`
	OutputTokens    int     `json:"output_tokens"`
	// CharsPerToken is the average length of a token in the prompts' text
	// form, which the approximate router hashes. Synthetic benchmark prompts
	// (random token IDs, as here and in llm-d's and SGLang's benchmarks)
	// decode to 6.4 characters per token with the Qwen3 and Llama-3.1
	// tokenizers; English prose is nearer 4, which GIE's plugin assumes.
	CharsPerToken float64 `json:"chars_per_token"`

	// EventLag holds each KV-event batch back for this much modelled time
	// before it is published. 0 publishes at once: kvtrack sees every event
	// emitted before a routing decision.
	EventLag time.Duration `json:"event_lag"`
	// Speculative turns on kvtrack's speculative entries (kvcache's
	// speculative.enabled): a routed request's blocks count as held by its
	// pod for SpeculativeTTL of modelled time, until its events arrive.
	Speculative    bool          `json:"speculative"`
	SpeculativeTTL time.Duration `json:"speculative_ttl"`
	// MapLayout publishes vLLM v0.24+ map-encoded events instead of v0.23's
	// arrays.
	MapLayout bool `json:"map_layout"`

	// Weights of the affinity routers (precise, approximate, oracle): score =
	// PrefixWeight*prefix + QueueWeight*queue, as an EPP config with the
	// prefix scorer at 2 and the queue scorer at 1.
	PrefixWeight  float64 `json:"prefix_weight"`
	KVUsageWeight float64 `json:"kv_usage_weight"`
	QueueWeight   float64 `json:"queue_weight"`

	// Replicas is the number of instances of each stateful router
	// (precise, approximate, round_robin), as EPP replicas behind one
	// Service: each request reaches one at random. Each approximate replica
	// learns only from the requests it routes; each kvtrack replica
	// subscribes to every pod's events (llm-d's active-active mode), keeps
	// its own index and shares its routing decisions with the other
	// replicas (speculative.peers over loopback TCP), unless the router is
	// precise_isolated.
	Replicas int `json:"replicas"`
	// SharedIndex makes the precise router's replicas share one kvtrack
	// index, speculative entries included, as replicas backed by one Redis
	// index do, instead of each keeping its own (llm-d's active-active
	// mode, where only the pods' events are shared).
	SharedIndex bool `json:"shared_index"`
	// ApproxLRU is the approximate router's per-pod LRU capacity in
	// character blocks; 0 is GIE's autoTune, which sizes it to the pod's
	// KV blocks (vllm:cache_config_info num_gpu_blocks).
	ApproxLRU int `json:"approx_lru"`

	// Scenario conditions, the evidence matrix's axes (matrix.go).

	// ExternalShare is the fraction of requests that reach the pods without
	// passing through the router under test (another gateway, direct
	// clients). They go to a pod chosen at random, the same pod in every
	// router's run; the pods publish their events like any other. Hit rate
	// and TTFT are reported over the router's own requests only.
	ExternalShare float64 `json:"external_share"`
	// Restarts is the number of pod restarts, spread evenly over the run:
	// at each, the next pod in turn loses its whole prefix cache, as
	// vLLM's reset_prefix_cache or a crash and restart does, and publishes
	// AllBlocksCleared. Requests it is running keep their blocks.
	Restarts int `json:"restarts"`
	// Variants renders each shared-prefix prompt in one of Variants ways,
	// chosen per request (1: one way). VariantKind says how they differ:
	// "template", in the tokens the chat template adds before the messages
	// (a date, a tools list, a template revision), while the messages, which
	// the approximate router hashes, are the same; "salt", in the request's
	// cache_salt, which vLLM mixes into the first block.
	Variants    int    `json:"variants"`
	VariantKind string `json:"variant_kind,omitempty"`
	// PlacementWeight is the weight, in the precise_placement router, of
	// each pod's free room as kvtrack's index sees it (1 - indexed blocks /
	// CacheBlocks), counted only for a prompt no pod holds any of: a new
	// prefix goes where it evicts least.
	PlacementWeight float64 `json:"placement_weight"`

	// Routers lists the routers to run, in order; empty means all.
	Routers []string `json:"routers,omitempty"`

	// audit, when set, sees each of the precise router's decisions: the
	// request, kvtrack's matched blocks per pod and the cluster, whose
	// truePrefix is the truth to compare them with. For tests.
	audit func(r *request, matched []int, c cluster)
}

// RouterNames are the routers a simulation compares, in report order.
var RouterNames = []string{"precise", "approximate", "round_robin", "random", "least_loaded", "oracle"}

// RouterPrecisePlacement is precise routing that also places new prefixes
// by the pods' cached blocks (Config.PlacementWeight). It is not among the
// default routers; the matrix runs it.
const RouterPrecisePlacement = "precise_placement"

// RouterPreciseShared is precise routing whose replicas share one index
// (Config.SharedIndex). The matrix runs it.
const RouterPreciseShared = "precise_shared"

// RouterPreciseIsolated is precise routing whose replicas share nothing but
// the pods' events: each keeps its own index and its own speculative
// entries, without speculative.peers. With one replica it is precise.
const RouterPreciseIsolated = "precise_isolated"

// Variant kinds.
const (
	VariantTemplate = "template"
	VariantSalt     = "salt"
)

// DefaultConfig returns the default simulation.
func DefaultConfig() Config {
	return Config{
		Seed:            1,
		Pods:            8,
		CacheBlocks:     4110,
		BlockSize:       16,
		HashAlgo:        string(blockhash.SHA256),
		HashSeed:        "42",
		PrefillRate:     10_000,
		StepOverhead:    2 * time.Millisecond,
		DecodePerToken:  10 * time.Millisecond,
		Workload:        WorkloadSharedPrefix,
		Requests:        3000,
		Rate:            30,
		Groups:          32,
		PromptsPerGroup: 5,
		SystemTokens:    6000,
		QuestionTokens:  1200,
		OutputTokens:    250,
		CharsPerToken:   6.4,
		Replicas:        2,
		Speculative:     true,
		SpeculativeTTL:  time.Duration(kvcache.DefaultSpeculativeTTL),
		PrefixWeight:    2,
		KVUsageWeight:   1,
		QueueWeight:     1,
		Variants:        1,
		PlacementWeight: 1,
	}
}

// Validate reports every invalid field, naming it and what is valid.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("simulate: %s: "+format, append([]any{field}, args...)...))
	}
	positive := func(field string, v int) {
		if v <= 0 {
			bad(field, "%d: must be > 0", v)
		}
	}
	positive("pods", c.Pods)
	if c.Pods > approxprefix.MaxPods {
		bad("pods", "%d: at most %d", c.Pods, approxprefix.MaxPods)
	}
	positive("cache_blocks", c.CacheBlocks)
	positive("block_size", c.BlockSize)
	positive("requests", c.Requests)
	positive("replicas", c.Replicas)
	if c.ApproxLRU < 0 {
		bad("approx_lru", "%d: must be >= 0 (0 for autoTune)", c.ApproxLRU)
	}
	positive("groups", c.Groups)
	positive("system_tokens", c.SystemTokens)
	positive("question_tokens", c.QuestionTokens)
	positive("output_tokens", c.OutputTokens)
	if c.Workload == WorkloadSharedPrefix {
		positive("prompts_per_group", c.PromptsPerGroup)
	}
	if c.PrefillRate <= 0 {
		bad("prefill_tokens_s", "%g: must be > 0", c.PrefillRate)
	}
	if c.CharsPerToken < 1 {
		bad("chars_per_token", "%g: must be >= 1", c.CharsPerToken)
	}
	if c.Rate <= 0 {
		bad("rate", "%g: must be > 0 requests per second", c.Rate)
	}
	if c.StepOverhead < 0 || c.DecodePerToken < 0 || c.EventLag < 0 {
		bad("step_overhead/decode_per_token/event_lag", "durations must be >= 0")
	}
	if c.Speculative && (c.SpeculativeTTL <= 0 || c.SpeculativeTTL > time.Minute) {
		bad("speculative_ttl", "%v: must be above 0 and at most 1m (kvcache's speculative.ttl)", c.SpeculativeTTL)
	}
	if c.PrefixWeight < 0 || c.KVUsageWeight < 0 || c.QueueWeight < 0 {
		bad("prefix_weight/kv_usage_weight/queue_weight", "must be >= 0")
	}
	if c.ExternalShare < 0 || c.ExternalShare >= 1 {
		bad("external_share", "%g: must be in [0, 1)", c.ExternalShare)
	}
	if c.Restarts < 0 {
		bad("restarts", "%d: must be >= 0", c.Restarts)
	}
	if c.PlacementWeight < 0 {
		bad("placement_weight", "%g: must be >= 0", c.PlacementWeight)
	}
	switch {
	case c.Variants < 1:
		bad("variants", "%d: must be >= 1", c.Variants)
	case c.Variants > 1 && c.VariantKind != VariantTemplate && c.VariantKind != VariantSalt:
		bad("variant_kind", "%q: valid: %s, %s", c.VariantKind, VariantTemplate, VariantSalt)
	case c.Variants > 1 && c.Workload != WorkloadSharedPrefix:
		bad("variants", "%d: variants apply to the %s workload only", c.Variants, WorkloadSharedPrefix)
	}
	if c.Workload != WorkloadSharedPrefix && c.Workload != WorkloadChat {
		bad("workload", "%q: valid: %s, %s", c.Workload, WorkloadSharedPrefix, WorkloadChat)
	}
	if _, err := blockhash.ParseAlgorithm(c.HashAlgo); err != nil {
		bad("hash_algo", "%v", err)
	}
	for _, r := range c.Routers {
		if !validRouter(r) {
			bad("routers", "%q: valid: %v", r, RouterNames)
		}
	}
	if c.BlockSize > 0 && c.CacheBlocks > 0 {
		// The longest request must fit an empty pod, or it would wait forever.
		longest := c.SystemTokens + c.QuestionTokens + c.OutputTokens + templateHeaderTokens
		if c.Workload == WorkloadChat {
			longest = c.SystemTokens + c.turnsPerConversation()*(c.QuestionTokens+c.OutputTokens)
		}
		if need := (longest + c.BlockSize - 1) / c.BlockSize; need > c.CacheBlocks {
			bad("cache_blocks", "%d: the longest request needs %d blocks", c.CacheBlocks, need)
		}
	}
	return errors.Join(errs...)
}

// approxLRU is the approximate router's per-pod LRU capacity.
func (c Config) approxLRU() int {
	if c.ApproxLRU > 0 {
		return c.ApproxLRU
	}
	return c.CacheBlocks
}

// turnsPerConversation is the most turns one chat can reach.
func (c Config) turnsPerConversation() int {
	if c.Groups <= 0 {
		return 0
	}
	return (c.Requests + c.Groups - 1) / c.Groups
}

func validRouter(name string) bool {
	if name == RouterPrecisePlacement || name == RouterPreciseShared || name == RouterPreciseIsolated {
		return true
	}
	for _, n := range RouterNames {
		if n == name {
			return true
		}
	}
	return false
}

func (c Config) routers() []string {
	if len(c.Routers) == 0 {
		return RouterNames
	}
	return c.Routers
}
