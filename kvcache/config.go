package kvcache

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
	"github.com/kvtrack/kvtrack/kvevents"
)

// KeyScheme says how block keys are derived; see the package doc.
type KeyScheme string

// The key schemes.
const (
	// KeySchemeVLLM uses the hash vLLM publishes as the key and recomputes it
	// for requests with vLLM's algorithm, seed and block size.
	KeySchemeVLLM KeyScheme = "vllm"
	// KeySchemeTokens derives keys from the token IDs events carry, for
	// engines whose hashes cannot be reproduced.
	KeySchemeTokens KeyScheme = "tokens"
)

// IndexBackend names the Index implementation.
type IndexBackend string

// The index backends.
const (
	IndexMemory IndexBackend = "memory" // in-process, sharded
	IndexRedis  IndexBackend = "redis"  // shared by several replicas
)

// EventsMode says who dials whom on the ZMQ event stream.
type EventsMode string

// The event subscription modes.
const (
	// EventsBind binds one SUB socket that every engine connects to; the
	// pod is named by the topic (kv@<addr:port>@<model>).
	EventsBind EventsMode = "bind"
	// EventsConnect dials each pod's publisher at <pod ip>:<port> as pods are
	// added; the pod is the one that was added.
	EventsConnect EventsMode = "connect"
)

// Config is the whole configuration of an Indexer. The zero value is not
// valid; start from DefaultConfig (or let New fill the zero fields with the
// defaults through WithDefaults) and call Validate.
//
// The JSON form is what the EPP plugin takes as its parameters and what the
// CLI reads with -config; field names are lowerCamelCase.
type Config struct {
	// KeyScheme is "vllm" (default) or "tokens".
	KeyScheme KeyScheme `json:"keyScheme,omitempty" yaml:"keyScheme,omitempty"`
	// Hash must match the engines' --prefix-caching-hash-algo,
	// PYTHONHASHSEED and --block-size (the block size matters for both
	// schemes).
	Hash HashConfig `json:"hash" yaml:"hash"`
	// Index configures where the (block, pod) entries live.
	Index IndexConfig `json:"index" yaml:"index"`
	// Redis is the server of the redis index backend; used only with
	// index.backend "redis". Left entirely empty, it takes
	// redis.DefaultConfig() (localhost:6379, one-hour entry TTL); once any
	// field is set, a zero ttl disables expiry.
	Redis redis.Config `json:"redis,omitzero" yaml:"redis,omitempty"`
	// Events configures the ZMQ subscription to the engines' KV events.
	Events EventsConfig `json:"events" yaml:"events"`
	// Tokenizer turns prompts into token IDs. It may be left empty when
	// every request carries token IDs.
	Tokenizer TokenizerConfig `json:"tokenizer" yaml:"tokenizer"`
	// Speculative configures the short-lived entries recorded for a routing
	// decision before the engine's events confirm it.
	Speculative SpeculativeConfig `json:"speculative" yaml:"speculative"`
	// Metrics configures instrumentation.
	Metrics MetricsConfig `json:"metrics" yaml:"metrics"`

	// DataParallel describes engines run with vLLM data parallelism: how
	// many ranks each has and how endpoints map to ranks (dataparallel.go).
	DataParallel DataParallelConfig `json:"dataParallel,omitzero" yaml:"dataParallel,omitempty"`
}

// HashConfig is how the engines hash their blocks.
type HashConfig struct {
	// Algorithm is vLLM's --prefix-caching-hash-algo: sha256 (vLLM's
	// default), sha256_cbor, xxhash, xxhash_cbor or the legacy
	// sha256_cbor_64bit. Default sha256. Unused by the tokens scheme.
	Algorithm string `json:"algorithm,omitempty" yaml:"algorithm,omitempty"`
	// Seed is the engines' PYTHONHASHSEED string. vLLM seeds randomly when
	// it is unset, and then its hashes cannot be reproduced: use the tokens
	// scheme. Required by the vllm scheme.
	Seed string `json:"seed,omitempty" yaml:"seed,omitempty"`
	// BlockSize is the engines' --block-size in tokens. Default 16.
	BlockSize int `json:"blockSize,omitempty" yaml:"blockSize,omitempty"`
	// KeyCacheBytes bounds kvtrack's cache of recent requests' block keys
	// (8 bytes per block plus about 64 per request), which lets a request
	// seen again skip tokenization and hashing. Default 16 MiB, about 4,000
	// prompts of 32k characters; -1 disables the cache.
	KeyCacheBytes int `json:"keyCacheBytes,omitempty" yaml:"keyCacheBytes,omitempty"`
	// ChainCacheBytes bounds the vllm scheme's cache of recently hashed
	// prompt prefixes (56 bytes per block), which lets a new prompt that
	// shares a prefix with earlier ones (a system prompt, a chat's earlier
	// turns) hash only the blocks after it. Default 16 MiB, about 300,000
	// blocks; -1 disables the cache. Unused by the tokens scheme.
	ChainCacheBytes int `json:"chainCacheBytes,omitempty" yaml:"chainCacheBytes,omitempty"`
}

// IndexConfig configures the block index.
type IndexConfig struct {
	// Backend is "memory" (default) or "redis".
	Backend IndexBackend `json:"backend,omitempty" yaml:"backend,omitempty"`
	// Capacity bounds the number of (block, pod, tier) entries the memory
	// index holds; past it the least recently stored or scored keys are
	// evicted. Default 16M (100 pods of 160k blocks, about 0.5 GiB).
	Capacity int `json:"capacity,omitempty" yaml:"capacity,omitempty"`
	// Shards is the number of independently locked shards of the memory
	// index, a power of two. Default 0 lets the index choose (256).
	Shards int `json:"shards,omitempty" yaml:"shards,omitempty"`
	// TierWeights is the weight of a block held on each medium in the
	// weighted score (finite, >= 0). Default GPU 1, CPU 0.8, STORAGE 0.5.
	// Speculative entries weigh SPECULATIVE, 1 unless set here.
	TierWeights kvblock.TierWeights `json:"tierWeights,omitempty" yaml:"tierWeights,omitempty"`
}

// EventsConfig configures the KV-event subscription.
type EventsConfig struct {
	// Enabled makes this Indexer apply the engines' KV events to its index.
	// Default true. Set it false on every replica but one when several
	// share one redis index: each replica that applies a pod's events takes
	// its own reference on every block it stores, so two appliers double
	// the counts and blocks outlive their removal. A replica with events
	// disabled opens no socket, only reads the index (plus its own
	// speculative entries), and leaves clearing departed pods to the
	// replica that applies events.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// Mode is "connect" (default) or "bind". In connect mode nothing is
	// opened until AddPod, which dials that pod's publisher at
	// <pod address>:Port; New and Run alone open no socket. In bind mode Run
	// binds Endpoint, and engines connect to it.
	Mode EventsMode `json:"mode,omitempty" yaml:"mode,omitempty"`
	// Endpoint is the ZMQ endpoint the bind mode binds, e.g.
	// "tcp://*:5557". Required in bind mode, unused in connect mode.
	Endpoint string `json:"endpoint,omitempty" yaml:"endpoint,omitempty"`
	// Port is the port of each pod's publisher in connect mode (vLLM's
	// kv-events endpoint, default 5557). DP rank r publishes on Port+r.
	Port int `json:"port,omitempty" yaml:"port,omitempty"`
	// TopicFilter is the ZMQ subscription prefix; "" takes every topic.
	// Default "kv@" in bind mode, where the topic must name the pod, and ""
	// in connect mode, where the socket does (vLLM's default topic is "").
	TopicFilter *string `json:"topicFilter,omitempty" yaml:"topicFilter,omitempty"`
	// ReplayPort is the port of each pod's replay (ROUTER) endpoint, used to
	// fill sequence gaps. 0 (default) disables replay.
	ReplayPort int `json:"replayPort,omitempty" yaml:"replayPort,omitempty"`
	// Workers is the number of goroutines applying events to the index;
	// events of one pod always go to the same worker. Default 4.
	Workers int `json:"workers,omitempty" yaml:"workers,omitempty"`
	// QueueSize is the number of messages each worker queues before new
	// ones are dropped (and counted). Default 4096.
	QueueSize int `json:"queueSize,omitempty" yaml:"queueSize,omitempty"`
	// Limits bound what one publisher can make kvtrack hold and do.
	Limits EventsLimits `json:"limits,omitzero" yaml:"limits,omitempty"`
	// Security says who may publish in bind mode.
	Security EventsSecurity `json:"security,omitzero" yaml:"security,omitempty"`
}

// EventsLimits bound the event stream (kvevents.Limits). A message over a
// limit is rejected whole and counted in kvtrack_events_rejected_total;
// the rest of the stream keeps flowing. Zero fields take the defaults.
type EventsLimits struct {
	// MaxMessageBytes is libzmq's ZMQ_MAXMSGSIZE: a peer sending a larger
	// frame is disconnected before it is buffered. Default 16 MiB.
	MaxMessageBytes int64 `json:"maxMessageBytes,omitempty" yaml:"maxMessageBytes,omitempty"`
	// MaxBlocksPerEvent bounds the block hashes of one event. Default 65536.
	MaxBlocksPerEvent int `json:"maxBlocksPerEvent,omitempty" yaml:"maxBlocksPerEvent,omitempty"`
	// MaxTokensPerEvent bounds the token ids of one event. Default 1048576.
	MaxTokensPerEvent int `json:"maxTokensPerEvent,omitempty" yaml:"maxTokensPerEvent,omitempty"`
	// MaxEventsPerBatch bounds the events of one message. Default 65536.
	MaxEventsPerBatch int `json:"maxEventsPerBatch,omitempty" yaml:"maxEventsPerBatch,omitempty"`
	// EventsPerSecond is the rate of events each pod may have applied.
	// Default 100000; -1 disables the limit.
	EventsPerSecond float64 `json:"eventsPerSecond,omitempty" yaml:"eventsPerSecond,omitempty"`
	// EventsBurst is the depth of each pod's rate bucket. Default 1000000.
	EventsBurst int `json:"eventsBurst,omitempty" yaml:"eventsBurst,omitempty"`
	// MaxQueuedBytes bounds the payload bytes received and not yet
	// applied, over all pods. Default 256 MiB.
	MaxQueuedBytes int64 `json:"maxQueuedBytes,omitempty" yaml:"maxQueuedBytes,omitempty"`
	// MaxReplayBytes bounds the bytes one replay collects. Default 256 MiB.
	MaxReplayBytes int64 `json:"maxReplayBytes,omitempty" yaml:"maxReplayBytes,omitempty"`
}

// EventsSecurity says who may publish in bind mode (kvevents.Security).
type EventsSecurity struct {
	// AllowAnySource accepts events from any address, for any pod. For
	// development only: by default the bound socket accepts only the IPs
	// of the pods the Indexer follows, and a message only for the pod at
	// its sender's IP.
	AllowAnySource bool `json:"allowAnySource,omitempty" yaml:"allowAnySource,omitempty"`
}

// TokenizerConfig says where token IDs come from. At most one of Path and
// URL may be set; with neither, requests must carry token IDs.
type TokenizerConfig struct {
	// Path is a local tokenizer.json, or a directory holding it and
	// tokenizer_config.json (for the chat template).
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// URL is a vLLM server (http://host:port) whose /tokenize endpoint
	// tokenizes and renders chat for us.
	URL string `json:"url,omitempty" yaml:"url,omitempty"`
	// Model is the model name sent to the remote tokenizer. Default: the
	// request's model.
	Model string `json:"model,omitempty" yaml:"model,omitempty"`
	// CacheBytes bounds the cache of whole prompts and their tokens (prompt
	// bytes plus 4 per token). Default 64 MiB; -1 disables the cache.
	CacheBytes int `json:"cacheBytes,omitempty" yaml:"cacheBytes,omitempty"`
}

// SpeculativeConfig configures speculative entries: when a request is
// routed, its blocks are recorded on the chosen pod, so that a burst of
// requests sharing a prefix follows the first one before the engine's
// events arrive. Those come only once the engine has computed the blocks,
// after the request's wait in the engine's queue and its prefill, which
// under load take seconds. An entry ends when the engine's BlockStored
// confirms the block on that pod (the index's own entry then tells the
// truth, evictions included) or after TTL, which thus bounds only requests
// that never ran.
type SpeculativeConfig struct {
	// Enabled turns speculative recording on. Default false.
	Enabled bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// TTL is how long an unconfirmed speculative entry lives: longer than a
	// request's queueing and prefill. Default 10s; at most 1m.
	TTL Duration `json:"ttl,omitempty" yaml:"ttl,omitempty"`
}

// MetricsConfig configures instrumentation.
type MetricsConfig struct {
	// Enabled registers kvtrack's metrics on the Registerer given to New.
	// Default true; it has no effect without a Registerer.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// BeatInterval is the period of the one-line summary log. 0 (default)
	// disables it.
	BeatInterval Duration `json:"beatInterval,omitempty" yaml:"beatInterval,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("2s",
// "500ms") in JSON and YAML.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"2s\" or \"500ms\")", b)
	}
	*d = Duration(v)
	return nil
}

// Defaults.
const (
	DefaultAlgorithm       = "sha256"
	DefaultBlockSize       = 16
	DefaultIndexCapacity   = 1 << 24
	DefaultEventsPort      = 5557
	DefaultTopicFilter     = "kv@" // in bind mode
	DefaultEventWorkers    = 4
	DefaultEventQueueSize  = 4096
	DefaultTokenCacheBytes = 64 << 20
	DefaultKeyCacheBytes   = 16 << 20
	DefaultChainCacheBytes = 16 << 20
	DefaultSpeculativeTTL  = Duration(10 * time.Second)
	maxSpeculativeTTL      = time.Minute
	maxBlockSize           = 1 << 16
	maxEventWorkers        = 1024
	maxShards              = 1 << 16
	speculativeMediumName  = "SPECULATIVE"
	defaultSpeculativeTier = 1.0
)

// DefaultConfig returns the configuration used for every field left at its
// zero value. Its Hash.Seed is empty, which Validate rejects for the vllm
// scheme: the seed cannot be guessed.
func DefaultConfig() Config {
	return Config{}.WithDefaults()
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.KeyScheme == "" {
		c.KeyScheme = KeySchemeVLLM
	}
	if c.Hash.Algorithm == "" {
		c.Hash.Algorithm = DefaultAlgorithm
	}
	if c.Hash.BlockSize == 0 {
		c.Hash.BlockSize = DefaultBlockSize
	}
	if c.Hash.KeyCacheBytes == 0 {
		c.Hash.KeyCacheBytes = DefaultKeyCacheBytes
	}
	if c.Hash.ChainCacheBytes == 0 {
		c.Hash.ChainCacheBytes = DefaultChainCacheBytes
	}
	if c.Index.Backend == "" {
		c.Index.Backend = IndexMemory
	}
	if c.Index.Capacity == 0 {
		c.Index.Capacity = DefaultIndexCapacity
	}
	if c.Index.TierWeights == nil {
		c.Index.TierWeights = kvblock.DefaultTierWeights()
	}
	c.DataParallel.setDefaults()
	if c.Index.Backend == IndexRedis && c.Redis == (redis.Config{}) {
		c.Redis = redis.DefaultConfig()
	}
	if c.Events.Enabled == nil {
		on := true
		c.Events.Enabled = &on
	}
	if c.Events.Mode == "" {
		c.Events.Mode = EventsConnect
	}
	if c.Events.Port == 0 {
		c.Events.Port = DefaultEventsPort
	}
	if c.Events.TopicFilter == nil {
		f := "" // connect mode: the socket names the pod, any topic will do
		if c.Events.Mode == EventsBind {
			f = DefaultTopicFilter
		}
		c.Events.TopicFilter = &f
	}
	if c.Events.Workers == 0 {
		c.Events.Workers = DefaultEventWorkers
	}
	if c.Events.QueueSize == 0 {
		c.Events.QueueSize = DefaultEventQueueSize
	}
	c.Events.Limits = c.Events.Limits.withDefaults()
	if c.Tokenizer.CacheBytes == 0 {
		c.Tokenizer.CacheBytes = DefaultTokenCacheBytes
	}
	if c.Speculative.TTL == 0 {
		c.Speculative.TTL = DefaultSpeculativeTTL
	}
	if c.Metrics.Enabled == nil {
		on := true
		c.Metrics.Enabled = &on
	}
	return c
}

// FieldError is a configuration error: Field is the JSON path of the bad
// field ("hash.algorithm"), Err says what is wrong and what is valid.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "kvcache config: " + e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Validate reports every invalid field of c (after defaults are applied),
// joined with errors.Join; each is a *FieldError naming the field and the
// valid values.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	oneOf := func(field, got string, valid ...string) {
		if !slices.Contains(valid, got) {
			bad(field, "unknown value %q (valid: %s)", got, strings.Join(valid, ", "))
		}
	}

	oneOf("keyScheme", string(c.KeyScheme), string(KeySchemeVLLM), string(KeySchemeTokens))
	if c.KeyScheme == KeySchemeVLLM {
		if _, err := kvblock.ParseAlgorithm(c.Hash.Algorithm); err != nil {
			bad("hash.algorithm", "%s", strings.TrimPrefix(err.Error(), "kvblock: "))
		}
		if c.Hash.Seed == "" {
			bad("hash.seed", "required with keyScheme %q: set it to the engines' PYTHONHASHSEED "+
				"(without one vLLM's hashes are random per process; use keyScheme %q then)",
				KeySchemeVLLM, KeySchemeTokens)
		}
	}
	if c.Hash.BlockSize < 1 || c.Hash.BlockSize > maxBlockSize {
		bad("hash.blockSize", "%d out of range (valid: 1 to %d, the engines' --block-size)", c.Hash.BlockSize, maxBlockSize)
	}

	if c.Hash.KeyCacheBytes < -1 {
		bad("hash.keyCacheBytes", "%d out of range (valid: a positive number of bytes, or -1 to disable the cache)", c.Hash.KeyCacheBytes)
	}
	if c.Hash.ChainCacheBytes < -1 {
		bad("hash.chainCacheBytes", "%d out of range (valid: a positive number of bytes, or -1 to disable the cache)", c.Hash.ChainCacheBytes)
	}

	oneOf("index.backend", string(c.Index.Backend), string(IndexMemory), string(IndexRedis))
	if c.Index.Capacity < 0 || (c.Index.Capacity < c.Index.Shards) {
		bad("index.capacity", "%d invalid (valid: a number of entries no smaller than index.shards)", c.Index.Capacity)
	}
	if c.Index.Shards < 0 || c.Index.Shards > maxShards || c.Index.Shards&(c.Index.Shards-1) != 0 {
		bad("index.shards", "%d invalid (valid: 0 for automatic, or a power of two up to %d)", c.Index.Shards, maxShards)
	}
	for name, w := range c.Index.TierWeights {
		if name == "" {
			bad("index.tierWeights", "empty medium name (valid: GPU, CPU, STORAGE or another medium the engines report)")
		}
		if !(w >= 0 && w <= math.MaxFloat64) { // also catches NaN and +Inf
			bad("index.tierWeights."+name, "weight %v invalid (valid: a finite number >= 0)", w)
		}
	}

	if c.Index.Backend == IndexRedis {
		if err := c.Redis.Validate(); err != nil {
			errs = append(errs, err)
		}
	}

	oneOf("events.mode", string(c.Events.Mode), string(EventsConnect), string(EventsBind))
	if c.Events.Mode == EventsBind {
		if err := validZMQEndpoint(c.Events.Endpoint); err != nil {
			bad("events.endpoint", "%v (valid: a ZMQ endpoint to bind such as tcp://*:5557 or ipc:///run/kv.sock)", err)
		}
	}
	validPort := func(field string, p int, zeroOK bool) {
		if (p == 0 && !zeroOK) || p < 0 || p > 65535 {
			bad(field, "%d out of range (valid: 1 to 65535%s)", p, map[bool]string{true: ", or 0 to disable"}[zeroOK])
		}
	}
	validPort("events.port", c.Events.Port, false)
	validPort("events.replayPort", c.Events.ReplayPort, true)
	if c.Events.Workers < 1 || c.Events.Workers > maxEventWorkers {
		bad("events.workers", "%d out of range (valid: 1 to %d)", c.Events.Workers, maxEventWorkers)
	}
	if c.Events.QueueSize < 1 {
		bad("events.queueSize", "%d out of range (valid: a positive number of messages)", c.Events.QueueSize)
	}
	c.Events.Limits.validate(bad)

	if c.Tokenizer.Path != "" && c.Tokenizer.URL != "" {
		bad("tokenizer", "both path and url are set (valid: at most one)")
	}
	if c.Tokenizer.URL != "" {
		u, err := url.Parse(c.Tokenizer.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("tokenizer.url", "%q is not an http(s) URL (valid: the base URL of a vLLM server, e.g. http://10.0.0.7:8000)", c.Tokenizer.URL)
		}
	}
	if c.Tokenizer.CacheBytes < -1 {
		bad("tokenizer.cacheBytes", "%d out of range (valid: a positive number of bytes, or -1 to disable the cache)", c.Tokenizer.CacheBytes)
	}

	if ttl := time.Duration(c.Speculative.TTL); ttl <= 0 || ttl > maxSpeculativeTTL {
		bad("speculative.ttl", "%v out of range (valid: above 0 and at most %v)", ttl, maxSpeculativeTTL)
	}
	c.DataParallel.validate(bad)
	if c.Metrics.BeatInterval < 0 {
		bad("metrics.beatInterval", "%v is negative (valid: 0 to disable, or a period such as 30s)", time.Duration(c.Metrics.BeatInterval))
	}
	return errors.Join(errs...)
}

// validZMQEndpoint checks the shape transport://address of a bind endpoint.
func validZMQEndpoint(ep string) error {
	if ep == "" {
		return errors.New("required in bind mode")
	}
	transport, addr, ok := strings.Cut(ep, "://")
	if !ok || addr == "" {
		return fmt.Errorf("%q is not transport://address", ep)
	}
	switch transport {
	case "tcp":
		i := strings.LastIndexByte(addr, ':')
		if i < 0 {
			return fmt.Errorf("%q has no port", ep)
		}
		if p, err := strconv.Atoi(addr[i+1:]); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%q has an invalid port", ep)
		}
	case "ipc", "inproc":
	default:
		return fmt.Errorf("%q has unknown transport %q (tcp, ipc or inproc)", ep, transport)
	}
	return nil
}

func (l EventsLimits) withDefaults() EventsLimits {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxMessageBytes, kvevents.DefaultMaxMessageBytes)
	defInt(&l.MaxBlocksPerEvent, kvevents.DefaultMaxBlocksPerEvent)
	defInt(&l.MaxTokensPerEvent, kvevents.DefaultMaxTokensPerEvent)
	defInt(&l.MaxEventsPerBatch, kvevents.DefaultMaxEventsPerBatch)
	if l.EventsPerSecond == 0 {
		l.EventsPerSecond = kvevents.DefaultEventsPerSecond
	}
	defInt(&l.EventsBurst, kvevents.DefaultEventsBurst)
	def(&l.MaxQueuedBytes, kvevents.DefaultMaxQueuedBytes)
	def(&l.MaxReplayBytes, kvevents.DefaultMaxReplayBytes)
	return l
}

func (l EventsLimits) validate(bad func(field, format string, args ...any)) {
	positive := func(field string, v int64, unit string) {
		if v < 1 {
			bad("events.limits."+field, "%d out of range (valid: a positive number of %s)", v, unit)
		}
	}
	positive("maxMessageBytes", l.MaxMessageBytes, "bytes")
	positive("maxBlocksPerEvent", int64(l.MaxBlocksPerEvent), "block hashes")
	positive("maxTokensPerEvent", int64(l.MaxTokensPerEvent), "token ids")
	positive("maxEventsPerBatch", int64(l.MaxEventsPerBatch), "events")
	if r := l.EventsPerSecond; !(r > 0 && r <= math.MaxFloat64) && r != -1 {
		bad("events.limits.eventsPerSecond", "%v out of range (valid: a positive finite rate, or -1 for no limit)", r)
	}
	positive("eventsBurst", int64(l.EventsBurst), "events")
	positive("maxQueuedBytes", l.MaxQueuedBytes, "bytes")
	positive("maxReplayBytes", l.MaxReplayBytes, "bytes")
}
