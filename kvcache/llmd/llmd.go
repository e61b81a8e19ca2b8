// Package llmd maps the parameters of llm-d's precise-prefix-cache-scorer
// (llm-d-inference-scheduler, as llm-d's guides configure it) onto
// kvcache.Config, so an EndpointPickerConfig written for llm-d loads in
// kvtrack's scorer, the router or kvtrack doctor unchanged.
package llmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kvtrack/kvtrack/kvcache"
)

// Settings kvtrack has no equivalent for are reported, each once, as
// warnings that say what kvtrack does instead.
//
// The one difference that decides whether routing works: llm-d computes
// its own block keys from the prompt's tokens, while kvtrack keys blocks by
// the hashes vLLM itself publishes. kvtrack must therefore reproduce vLLM's
// hash exactly: the pods' PYTHONHASHSEED (llm-d's hashSeed), their
// --prefix-caching-hash-algo (kvtrack's hash.algorithm, which llm-d does not
// have) and their --block-size (llm-d's blockSize).

// topLevel are the top-level keys of llm-d's parameter block.
var topLevel = []string{"tokenProcessorConfig", "indexerConfig", "kvEventsConfig"}

// Warning is one llm-d setting kvtrack maps only approximately or not
// at all.
type Warning struct {
	// Setting is the llm-d parameter's path, e.g.
	// "indexerConfig.tokenizersPoolConfig.uds", or the kvtrack field a
	// default was chosen for, e.g. "hash.algorithm".
	Setting string
	// Message says what kvtrack does instead, and what to set.
	Message string
}

func (w Warning) String() string { return w.Setting + ": " + w.Message }

// schema is llm-d's schema, as llm-d-kv-cache documents it
// (docs/configuration.md) and llm-d's guides use it. Unknown fields are an
// error, as in kvtrack's own schema.
type schema struct {
	TokenProcessorConfig *tokenProcessor `json:"tokenProcessorConfig"`
	IndexerConfig        *struct {
		PrefixStoreConfig    json.RawMessage `json:"prefixStoreConfig"`
		TokenizersPoolConfig *struct {
			ModelName             string          `json:"modelName"`
			WorkersCount          *int            `json:"workersCount"`
			MinPrefixOverlapRatio *float64        `json:"minPrefixOverlapRatio"`
			HF                    json.RawMessage `json:"hf"`
			Local                 *struct {
				AutoDiscoveryDir               string            `json:"autoDiscoveryDir"`
				AutoDiscoveryTokenizerFileName string            `json:"autoDiscoveryTokenizerFileName"`
				ModelTokenizerMap              map[string]string `json:"modelTokenizerMap"`
			} `json:"local"`
			UDS *struct {
				SocketFile string `json:"socketFile"`
			} `json:"uds"`
		} `json:"tokenizersPoolConfig"`
		KVBlockIndexConfig *struct {
			InMemoryConfig *struct {
				Size         *int `json:"size"`
				PodCacheSize *int `json:"podCacheSize"`
			} `json:"inMemoryConfig"`
			CostAwareMemoryConfig  json.RawMessage `json:"costAwareMemoryConfig"`
			RedisConfig            *redisConfig    `json:"redisConfig"`
			EnableMetrics          *bool           `json:"enableMetrics"`
			MetricsLoggingInterval string          `json:"metricsLoggingInterval"`
		} `json:"kvBlockIndexConfig"`
		KVCacheBackendConfigs json.RawMessage `json:"kvCacheBackendConfigs"`
		// TokenProcessorConfig sat inside indexerConfig in llm-d-kv-cache
		// before it moved to the top level.
		TokenProcessorConfig *tokenProcessor `json:"tokenProcessorConfig"`
	} `json:"indexerConfig"`
	KVEventsConfig *struct {
		ZMQEndpoint        string  `json:"zmqEndpoint"`
		TopicFilter        *string `json:"topicFilter"`
		Concurrency        *int    `json:"concurrency"`
		DiscoverPods       *bool   `json:"discoverPods"`
		PodDiscoveryConfig *struct {
			SocketPort int `json:"socketPort"`
		} `json:"podDiscoveryConfig"`
	} `json:"kvEventsConfig"`
}

type tokenProcessor struct {
	BlockSize *int    `json:"blockSize"`
	HashSeed  *string `json:"hashSeed"`
}

type redisConfig struct {
	Address     string `json:"address"`
	BackendType string `json:"backendType"`
	EnableRDMA  bool   `json:"enableRDMA"`
}

// IsParameters reports whether parameters are written in llm-d's
// schema: a JSON object with any of tokenProcessorConfig, indexerConfig or
// kvEventsConfig at the top.
func IsParameters(parameters json.RawMessage) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(parameters, &top) != nil {
		return false
	}
	for _, k := range topLevel {
		if _, ok := top[k]; ok {
			return true
		}
	}
	return false
}

// ToConfig maps llm-d's precise-prefix-cache-scorer parameters onto a
// kvcache.Config (defaults not yet applied) and returns, in a stable order,
// one warning per setting that kvtrack has no equivalent for. An unknown
// field, or kvtrack's own fields mixed in, is an error.
func ToConfig(parameters json.RawMessage) (kvcache.Config, []Warning, error) {
	var cfg kvcache.Config
	var top map[string]json.RawMessage
	if err := json.Unmarshal(parameters, &top); err != nil {
		return cfg, nil, fmt.Errorf("llm-d parameters: %w", err)
	}
	var foreign []string
	for k := range top {
		if !isTopLevelKey(k) {
			foreign = append(foreign, k)
		}
	}
	if len(foreign) > 0 {
		sort.Strings(foreign)
		return cfg, nil, fmt.Errorf("llm-d parameters: %q is not part of llm-d's schema (tokenProcessorConfig, indexerConfig, kvEventsConfig); write the block either as llm-d's or as kvtrack's (see scorer/README.md), not both", foreign[0])
	}
	var p schema
	dec := json.NewDecoder(bytes.NewReader(parameters))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return cfg, nil, fmt.Errorf("llm-d parameters: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return cfg, nil, errors.New("llm-d parameters: trailing data after the JSON object")
	}
	m := mapper{cfg: &cfg}
	m.tokenProcessor(&p)
	if err := m.indexer(&p); err != nil {
		return cfg, nil, err
	}
	if err := m.events(&p); err != nil {
		return cfg, nil, err
	}
	return cfg, m.warnings, nil
}

func isTopLevelKey(k string) bool {
	for _, t := range topLevel {
		if k == t {
			return true
		}
	}
	return false
}

type mapper struct {
	cfg      *kvcache.Config
	warnings []Warning
	seen     map[string]bool
}

// warn records a warning for setting, once.
func (m *mapper) warn(setting, format string, args ...any) {
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	if m.seen[setting] {
		return
	}
	m.seen[setting] = true
	m.warnings = append(m.warnings, Warning{Setting: setting, Message: fmt.Sprintf(format, args...)})
}

func (m *mapper) tokenProcessor(p *schema) {
	tp := p.TokenProcessorConfig
	if tp == nil && p.IndexerConfig != nil {
		tp = p.IndexerConfig.TokenProcessorConfig
	}
	if tp != nil && tp.BlockSize != nil {
		m.cfg.Hash.BlockSize = *tp.BlockSize // vLLM's --block-size, both ways
	}
	if tp != nil && tp.HashSeed != nil && *tp.HashSeed != "" {
		m.cfg.Hash.Seed = *tp.HashSeed
	} else {
		// llm-d then hashes with an empty seed of its own; kvtrack cannot
		// guess the pods' PYTHONHASHSEED, so it keys by the events' tokens.
		m.cfg.KeyScheme = kvcache.KeySchemeTokens
		m.warn("tokenProcessorConfig.hashSeed",
			"not set: kvtrack keys blocks with the hashes vLLM publishes, which it can recompute only with the pods' PYTHONHASHSEED; "+
				"without it kvtrack derives keys from the events' token IDs (keyScheme: tokens). Set hashSeed to the PYTHONHASHSEED every vLLM pod runs with to key by vLLM's hashes")
	}
	m.warn("hash.algorithm",
		"llm-d has no hash-algorithm setting; kvtrack recomputes vLLM's own block hashes and assumes vLLM's default, sha256. "+
			"If the pods run with --prefix-caching-hash-algo, write the parameters in kvtrack's schema with hash.algorithm set to it")
}

func (m *mapper) indexer(p *schema) error {
	ic := p.IndexerConfig
	if ic == nil {
		return nil
	}
	if len(ic.PrefixStoreConfig) > 0 {
		m.warn("indexerConfig.prefixStoreConfig",
			"no equivalent: kvtrack caches whole tokenized prompts and their chained block keys, sized in bytes (tokenizer.cacheBytes, hash.chainCacheBytes), instead of character blocks")
	}
	if len(ic.KVCacheBackendConfigs) > 0 {
		m.warn("indexerConfig.kvCacheBackendConfigs",
			"no equivalent: kvtrack weighs the media each event names with index.tierWeights (GPU 1, CPU 0.8, disk 0.5 by default)")
	}
	if err := m.tokenizers(p); err != nil {
		return err
	}
	return m.blockIndex(p)
}

func (m *mapper) tokenizers(p *schema) error {
	tc := p.IndexerConfig.TokenizersPoolConfig
	if tc == nil {
		return nil
	}
	const prefix = "indexerConfig.tokenizersPoolConfig"
	m.cfg.Tokenizer.Model = tc.ModelName
	if tc.WorkersCount != nil {
		m.warn(prefix+".workersCount", "no equivalent: kvtrack tokenizes on the scoring goroutine with a shared, lock-free prompt cache; there is no worker pool to size")
	}
	if tc.MinPrefixOverlapRatio != nil {
		m.warn(prefix+".minPrefixOverlapRatio", "no equivalent: kvtrack reuses a cached tokenization only for an identical prompt, so tokens always equal a fresh tokenization")
	}
	if l := tc.Local; l != nil {
		switch {
		case l.ModelTokenizerMap[tc.ModelName] != "":
			m.cfg.Tokenizer.Path = l.ModelTokenizerMap[tc.ModelName]
		case l.AutoDiscoveryDir != "":
			m.cfg.Tokenizer.Path = filepath.Join(l.AutoDiscoveryDir, filepath.FromSlash(tc.ModelName))
			m.warn(prefix+".local.autoDiscoveryDir",
				"kvtrack does not scan directories: it loads the tokenizer from %q (autoDiscoveryDir/modelName); set tokenizer.path if the model's tokenizer.json lives elsewhere", m.cfg.Tokenizer.Path)
		}
		if len(l.ModelTokenizerMap) > 1 || (len(l.ModelTokenizerMap) == 1 && l.ModelTokenizerMap[tc.ModelName] == "") {
			m.warn(prefix+".local.modelTokenizerMap", "kvtrack serves one model per scorer: only the entry for modelName %q is used", tc.ModelName)
		}
	}
	if len(tc.HF) > 0 && !bytes.Equal(bytes.TrimSpace(tc.HF), []byte("null")) && m.cfg.Tokenizer.Path == "" {
		m.warn(prefix+".hf",
			"no equivalent: kvtrack does not download tokenizers when it starts; mount the model's tokenizer files and set tokenizer.path, or set tokenizer.url to a vLLM server's base URL")
	}
	if tc.UDS != nil && tc.UDS.SocketFile != "" {
		m.warn(prefix+".uds",
			"no equivalent: kvtrack tokenizes in process (tokenizer.path: the model's tokenizer.json and tokenizer_config.json, chat template included) or over HTTP with a vLLM server's /tokenize (tokenizer.url); "+
				"without either, only requests that carry token IDs are scored. The UDS tokenizer sidecar is not needed")
	}
	return nil
}

func (m *mapper) blockIndex(p *schema) error {
	bc := p.IndexerConfig.KVBlockIndexConfig
	if bc == nil {
		return nil
	}
	const prefix = "indexerConfig.kvBlockIndexConfig"
	if mc := bc.InMemoryConfig; mc != nil {
		if mc.Size != nil {
			m.cfg.Index.Capacity = *mc.Size
			m.warn(prefix+".inMemoryConfig.size",
				"mapped to index.capacity = %d; llm-d counts block keys, kvtrack counts (block, pod) entries, so a key held by several pods uses several", *mc.Size)
		}
		if mc.PodCacheSize != nil {
			m.warn(prefix+".inMemoryConfig.podCacheSize", "no equivalent: kvtrack records every pod that holds a block; the index's capacity bounds the total instead")
		}
	}
	if len(bc.CostAwareMemoryConfig) > 0 && !bytes.Equal(bytes.TrimSpace(bc.CostAwareMemoryConfig), []byte("null")) {
		m.warn(prefix+".costAwareMemoryConfig", "no equivalent: kvtrack's memory index is bounded by index.capacity entries (about 32 bytes each)")
	}
	if rc := bc.RedisConfig; rc != nil && rc.Address != "" {
		if err := m.redis(rc); err != nil {
			return err
		}
	}
	if bc.EnableMetrics != nil {
		v := *bc.EnableMetrics
		m.cfg.Metrics.Enabled = &v
	}
	if bc.MetricsLoggingInterval != "" {
		m.warn(prefix+".metricsLoggingInterval", "no equivalent: kvtrack exports its metrics to Prometheus (kvtrack_*) and does not log them periodically")
	}
	return nil
}

// redis maps redisConfig.address, a redis://, rediss://, valkey:// or
// valkeys:// URL or a bare host:port, onto kvtrack's redis settings.
func (m *mapper) redis(rc *redisConfig) error {
	const setting = "indexerConfig.kvBlockIndexConfig.redisConfig"
	m.cfg.Index.Backend = kvcache.IndexRedis
	addr := rc.Address
	if !strings.Contains(addr, "://") {
		m.cfg.Redis.Addr = addr
	} else {
		u, err := url.Parse(addr)
		if err != nil {
			return fmt.Errorf("llm-d parameters: %s.address: %w", setting, err)
		}
		switch u.Scheme {
		case "redis", "valkey":
		case "rediss", "valkeys":
			m.warn(setting+".address", "TLS (%s://) is not mapped: set redis.tls in kvtrack's schema", u.Scheme)
		default:
			return fmt.Errorf("llm-d parameters: %s.address %q: scheme %q (valid: redis, rediss, valkey, valkeys)", setting, addr, u.Scheme)
		}
		m.cfg.Redis.Addr = u.Host
		if u.User != nil {
			m.cfg.Redis.Username = u.User.Username()
			m.cfg.Redis.Password, _ = u.User.Password()
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil {
				return fmt.Errorf("llm-d parameters: %s.address %q: database %q is not a number", setting, addr, db)
			}
			m.cfg.Redis.DB = n
		}
	}
	if rc.EnableRDMA {
		m.warn(setting+".enableRDMA", "no equivalent: kvtrack talks to Redis or Valkey over TCP")
	}
	return nil
}

func (m *mapper) events(p *schema) error {
	ec := p.KVEventsConfig
	if ec == nil {
		return nil
	}
	const prefix = "kvEventsConfig"
	m.cfg.Events.TopicFilter = ec.TopicFilter
	if ec.Concurrency != nil {
		m.cfg.Events.Workers = *ec.Concurrency
	}
	discover := ec.DiscoverPods != nil && *ec.DiscoverPods
	switch {
	case discover:
		// Each pod's publisher binds; the scorer dials the pods it follows.
		m.cfg.Events.Mode = kvcache.EventsConnect
		if pd := ec.PodDiscoveryConfig; pd != nil && pd.SocketPort != 0 {
			m.cfg.Events.Port = pd.SocketPort
		}
		if ec.ZMQEndpoint != "" {
			m.warn(prefix+".zmqEndpoint", "ignored with discoverPods: true, as in llm-d: kvtrack dials tcp://<pod-ip>:%d", max(m.cfg.Events.Port, kvcache.DefaultEventsPort))
		}
	default:
		// One SUB socket binds and the pods' publishers connect to it.
		m.cfg.Events.Mode = kvcache.EventsBind
		m.cfg.Events.Endpoint = ec.ZMQEndpoint
		if ec.PodDiscoveryConfig != nil {
			m.warn(prefix+".podDiscoveryConfig", "ignored without discoverPods: true, as in llm-d")
		}
	}
	return nil
}

// Load is ToConfig with kvtrack's defaults applied and the result
// validated: what the scorer runs with.
func Load(parameters json.RawMessage) (kvcache.Config, []Warning, error) {
	cfg, warnings, err := ToConfig(parameters)
	if err != nil {
		return cfg, nil, err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, warnings, fmt.Errorf("llm-d parameters, mapped to kvtrack's: %w", err)
	}
	return cfg, warnings, nil
}
