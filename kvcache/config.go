package kvcache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvtrack/kvtrack/internal/fielderr"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
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
	KeyScheme KeyScheme `json:"keyScheme,omitempty"`
	// Hash must match the engines' --prefix-caching-hash-algo,
	// PYTHONHASHSEED and --block-size (the block size matters for both
	// schemes).
	Hash HashConfig `json:"hash"`
	// Index configures where the (block, pod) entries live.
	Index IndexConfig `json:"index"`
	// Redis is the server of the redis index backend; used only with
	// index.backend "redis". Every field left zero takes its default on its
	// own (a section that sets only addr keeps the one-hour ttl).
	Redis RedisConfig `json:"redis,omitzero"`
	// Events configures the ZMQ subscription to the engines' KV events.
	Events EventsConfig `json:"events"`
	// Tokenizer turns prompts into token IDs. It may be left empty when
	// every request carries token IDs.
	Tokenizer TokenizerConfig `json:"tokenizer"`
	// Speculative configures the short-lived entries recorded for a routing
	// decision before the engine's events confirm it.
	Speculative SpeculativeConfig `json:"speculative"`
	// Metrics configures instrumentation.
	Metrics MetricsConfig `json:"metrics"`
	// LoRA names the LoRA adapters and base models the engines serve (see
	// config_lora.go); adapters are also learned from the engines' events.
	LoRA LoRAConfig `json:"lora,omitzero"`

	// DataParallel says how endpoints map to the data-parallel ranks of
	// engines run with vLLM data parallelism (events.dataParallelSize
	// ranks; dataparallel.go).
	DataParallel DataParallelConfig `json:"dataParallel,omitzero"`
}

// HashConfig is how the engines hash their blocks.
type HashConfig struct {
	// Algorithm is vLLM's --prefix-caching-hash-algo: sha256 (vLLM's
	// default), sha256_cbor, xxhash, xxhash_cbor or the legacy
	// sha256_cbor_64bit. Default sha256. Unused by the tokens scheme.
	Algorithm string `json:"algorithm,omitempty"`
	// Seed is the engines' PYTHONHASHSEED string. vLLM seeds randomly when
	// it is unset, and then its hashes cannot be reproduced: use the tokens
	// scheme. Required by the vllm scheme.
	Seed string `json:"seed,omitempty"`
	// BlockSize is the engines' --block-size in tokens. Default 16.
	BlockSize int `json:"blockSize,omitempty"`
	// KeyCacheBytes bounds kvtrack's cache of recent requests' block keys
	// (8 bytes per block plus about 64 per request), which lets a request
	// seen again skip tokenization and hashing. Default 16 MiB, about 4,000
	// prompts of 32k characters; -1 disables the cache.
	KeyCacheBytes int `json:"keyCacheBytes,omitempty"`
	// ChainCacheBytes bounds the vllm scheme's cache of recently hashed
	// prompt prefixes (56 bytes per block), which lets a new prompt that
	// shares a prefix with earlier ones (a system prompt, a chat's earlier
	// turns) hash only the blocks after it. Default 16 MiB, about 300,000
	// blocks; -1 disables the cache. Unused by the tokens scheme.
	ChainCacheBytes int `json:"chainCacheBytes,omitempty"`
}

// UnmarshalJSON decodes the hash section strictly, reading seed quoted or
// unquoted: PYTHONHASHSEED is an integer, and `seed: 42` is the natural way
// to write it in YAML.
func (h *HashConfig) UnmarshalJSON(b []byte) error {
	type plain HashConfig // without this method
	var aux struct {
		plain
		Seed json.RawMessage `json:"seed,omitempty"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&aux); err != nil {
		return err
	}
	*h = HashConfig(aux.plain)
	seed, err := parseSeed(aux.Seed)
	if err != nil {
		return &FieldError{Field: "hash.seed", Err: err}
	}
	h.Seed = seed
	return nil
}

// parseSeed reads a JSON string, or an integer written without quotes,
// as the PYTHONHASHSEED string.
func parseSeed(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	if _, err := strconv.ParseUint(string(raw), 10, 32); err != nil {
		return "", fmt.Errorf("%s is not a PYTHONHASHSEED (valid: an integer from 0 to 4294967295, quoted or not, e.g. seed: \"42\")", raw)
	}
	return string(raw), nil
}

// IndexConfig configures the block index.
type IndexConfig struct {
	// Backend is "memory" (default) or "redis".
	Backend IndexBackend `json:"backend,omitempty"`
	// Capacity bounds the number of (block, pod, tier) entries the memory
	// index holds; past it the least recently stored or scored keys are
	// evicted. Default 16M (100 pods of 160k blocks, about 0.5 GiB).
	Capacity int `json:"capacity,omitempty"`
	// Shards is the number of independently locked shards of the memory
	// index, a power of two. Default 0 lets the index choose (256).
	Shards int `json:"shards,omitempty"`
	// TierWeights is the weight of a block held on each medium in the
	// weighted score (finite, >= 0). Default GPU 1, CPU 0.8, STORAGE 0.5.
	// Speculative entries weigh SPECULATIVE, 1 unless set here. The media
	// named here (at most kvblock.MaxMedia besides GPU, CPU, STORAGE and
	// SPECULATIVE) are the ones the index tells apart; events naming any
	// other medium count as cached there with weight 0
	// (kvtrack_events_unknown_media_total).
	TierWeights kvblock.TierWeights `json:"tierWeights,omitempty"`
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
	Enabled *bool `json:"enabled,omitempty"`
	// Mode is "connect" (default) or "bind". In connect mode nothing is
	// opened until AddPod, which dials that pod's publisher at
	// <pod address>:Port; New and Run alone open no socket. In bind mode Run
	// binds Endpoint, and engines connect to it.
	Mode EventsMode `json:"mode,omitempty"`
	// Endpoint is the ZMQ endpoint the bind mode binds, e.g.
	// "tcp://*:5557". Required in bind mode, unused in connect mode.
	Endpoint string `json:"endpoint,omitempty"`
	// Port is the port of each pod's publisher in connect mode (vLLM's
	// kv-events endpoint, default 5557). DP rank r publishes on Port+r.
	Port int `json:"port,omitempty"`
	// TopicFilter is the ZMQ subscription prefix; "" takes every topic.
	// Default "kv@" in bind mode, where the topic must name the pod, and ""
	// in connect mode, where the socket does (vLLM's default topic is "").
	TopicFilter *string `json:"topicFilter,omitempty"`
	// ReplayPort is the port of each pod's replay (ROUTER) endpoint, used to
	// fill sequence gaps. 0 (default) disables replay.
	ReplayPort int `json:"replayPort,omitempty"`
	// DataParallelSize is the number of data-parallel ranks of every pod
	// (vLLM's --data-parallel-size on one server). vLLM offsets each rank's
	// KV-event endpoints by the rank: in connect mode rank r's publisher is
	// dialled at Port+r (and ReplayPort+r); in bind mode one socket is bound
	// per rank, on Endpoint's port + r. Default 1.
	DataParallelSize int `json:"dataParallelSize,omitempty"`
	// Workers is the number of goroutines applying events to the index;
	// events of one pod always go to the same worker. Default 4.
	Workers int `json:"workers,omitempty"`
	// QueueSize is the number of messages each worker queues before new
	// ones are dropped (and counted). Default 4096.
	QueueSize int `json:"queueSize,omitempty"`
	// MaxHeld bounds the live messages held per (pod, rank) while a replay
	// is in flight; beyond it they are dropped and counted. Default 10000.
	MaxHeld int `json:"maxHeld,omitempty"`
	// ReplayTimeout is how long a replay may wait for the engine's next
	// reply before it is abandoned. Default 2s.
	ReplayTimeout Duration `json:"replayTimeout,omitempty"`
	// ReceiveHWM is the SUB socket's receive high-water mark in messages.
	// Default 100000 (vLLM's send high-water mark).
	ReceiveHWM int `json:"receiveHWM,omitempty"`
	// MaxEngineKeys bounds, per pod, the tokens scheme's map from engine
	// block hash to kvtrack key; past it the oldest mappings go and removes
	// naming them are counted as unresolved. Default 1048576.
	MaxEngineKeys int `json:"maxEngineKeys,omitempty"`
	// ResyncInterval is how often a pod whose index writes failed (a Redis
	// outage) is retried: once the index answers, the pod is cleared and
	// replayed from its replay endpoint, or left cleared to refill from new
	// events. Default 1s.
	ResyncInterval Duration `json:"resyncInterval,omitempty"`
	// Limits bound what one publisher can make kvtrack hold and do.
	Limits EventsLimits `json:"limits,omitzero"`
	// Security says who may publish in bind mode.
	Security EventsSecurity `json:"security,omitzero"`
}

// EventsLimits bound the event stream (kvevents.Limits). A message over a
// limit is rejected whole and counted in kvtrack_events_rejected_total;
// the rest of the stream keeps flowing. Zero fields take the defaults.
type EventsLimits struct {
	// MaxMessageBytes is libzmq's ZMQ_MAXMSGSIZE: a peer sending a larger
	// frame is disconnected before it is buffered. Default 16 MiB.
	MaxMessageBytes int64 `json:"maxMessageBytes,omitempty"`
	// MaxBlocksPerEvent bounds the block hashes of one event. Default 65536.
	MaxBlocksPerEvent int `json:"maxBlocksPerEvent,omitempty"`
	// MaxTokensPerEvent bounds the token ids of one event. Default 1048576.
	MaxTokensPerEvent int `json:"maxTokensPerEvent,omitempty"`
	// MaxEventsPerBatch bounds the events of one message. Default 65536.
	MaxEventsPerBatch int `json:"maxEventsPerBatch,omitempty"`
	// EventsPerSecond is the rate of events each pod may have applied.
	// Default 100000; -1 disables the limit.
	EventsPerSecond float64 `json:"eventsPerSecond,omitempty"`
	// EventsBurst is the depth of each pod's rate bucket. Default 1000000.
	EventsBurst int `json:"eventsBurst,omitempty"`
	// MaxQueuedBytes bounds the payload bytes received and not yet
	// applied, over all pods. Default 256 MiB.
	MaxQueuedBytes int64 `json:"maxQueuedBytes,omitempty"`
	// MaxReplayBytes bounds the bytes one replay collects. Default 256 MiB.
	MaxReplayBytes int64 `json:"maxReplayBytes,omitempty"`
}

// EventsSecurity says who may publish in bind mode (kvevents.Security).
type EventsSecurity struct {
	// AllowAnySource accepts events from any address, for any pod. For
	// development only: by default the bound socket accepts only the IPs
	// of the pods the Indexer follows, and a message only for the pod at
	// its sender's IP.
	AllowAnySource bool `json:"allowAnySource,omitempty"`
}

// RedisConfig is the server of the redis index backend (Redis or Valkey).
// Every zero field takes its default.
type RedisConfig struct {
	// Addr is the server's host:port. Default "localhost:6379".
	Addr string `json:"addr,omitempty"`
	// DB is the logical database number. Default 0.
	DB int `json:"db,omitempty"`
	// Username and Password authenticate with AUTH (an ACL user, or the
	// legacy requirepass when Username is empty).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// TLS configures an encrypted connection.
	TLS RedisTLSConfig `json:"tls,omitzero"`
	// KeyPrefix starts every key the index writes, so several indexes can
	// share one database. Default "kvtrack:".
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// PoolSize is the maximum number of connections. Default 0: 10 per CPU.
	PoolSize int `json:"poolSize,omitempty"`
	// Buckets is the number of Redis strings the blocks are packed into,
	// so that Redis's per-key overhead is shared: size it at about the
	// blocks the index holds divided by 16 (fewer make a score read more
	// bytes, more cost memory per block). Every replica sharing the index
	// must use the same value. Default 65536.
	Buckets int `json:"buckets,omitempty"`
	// Cluster selects Redis Cluster, addr then naming a seed node.
	Cluster RedisClusterConfig `json:"cluster,omitzero"`
	// TTL drops an entry that has not been stored again for this long: a
	// safety net for removals that never arrived. Expiry is coarse and runs
	// on writes: an entry goes between TTL and 1.25 x TTL after its last
	// store, at the next write to its group by any replica. Default
	// 1h; a negative value ("-1s") disables expiry, and the per-pod logs
	// then grow until the pod is cleared.
	TTL Duration `json:"ttl,omitempty"`
	// DialTimeout bounds connecting. Default 1s.
	DialTimeout Duration `json:"dialTimeout,omitempty"`
	// ReadTimeout and WriteTimeout bound each socket read and write; an
	// earlier context deadline wins. Default 500ms each.
	ReadTimeout  Duration `json:"readTimeout,omitempty"`
	WriteTimeout Duration `json:"writeTimeout,omitempty"`
}

// RedisClusterConfig is the redis.cluster section.
type RedisClusterConfig struct {
	// Enabled talks the Redis Cluster protocol: keys are routed by hash
	// slot, MOVED/ASK redirections followed, and the other nodes learned
	// from the seed node addr names.
	Enabled bool `json:"enabled,omitempty"`
	// Groups is the number of hash-tagged groups the blocks are spread
	// over, each one hash slot. Default 1 standalone, 48 in a cluster.
	Groups int `json:"groups,omitempty"`
}

// RedisTLSConfig configures TLS to the Redis server.
type RedisTLSConfig struct {
	// Enabled turns TLS on; the other fields require it.
	Enabled bool `json:"enabled,omitempty"`
	// CAFile is a PEM bundle of CAs to verify the server with, instead of
	// the system pool.
	CAFile string `json:"caFile,omitempty"`
	// ServerName overrides the name verified in the server's certificate
	// (default: the host part of addr).
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// TokenizerConfig says where token IDs come from. At most one of Path and
// URL may be set; with neither, requests must carry token IDs.
type TokenizerConfig struct {
	// Path is a local tokenizer.json, or a directory holding it and
	// tokenizer_config.json (for the chat template).
	Path string `json:"path,omitempty"`
	// URL is a vLLM server (http://host:port) whose /tokenize endpoint
	// tokenizes and renders chat for us.
	URL string `json:"url,omitempty"`
	// Model is the model name sent to the remote tokenizer. Default: the
	// request's model.
	Model string `json:"model,omitempty"`
	// CacheBytes bounds the cache of whole prompts and their tokens (prompt
	// bytes plus 4 per token). Default 64 MiB; -1 disables the cache.
	CacheBytes int `json:"cacheBytes,omitempty"`
}

// SpeculativeConfig configures speculative entries: when a request is
// routed, its blocks are recorded on the chosen pod, so that a burst of
// requests sharing a prefix follows the first one before the engine's
// events arrive. Those come only once the engine has computed the blocks,
// after the request's wait in the engine's queue and its prefill, which
// under load take seconds. An entry belongs to its request and ends when
// the engine's BlockStored shows the request scheduled on that pod (its
// last block, or for a prompt ending in a partial block the block after
// it; the index's own entries then tell the truth, evictions included) or
// after TTL, which thus bounds only requests that never ran.
type SpeculativeConfig struct {
	// Enabled turns speculative recording on. Default false.
	Enabled bool `json:"enabled,omitempty"`
	// TTL is how long an unconfirmed speculative entry lives: longer than a
	// request's queueing and prefill. Default 10s; at most 1m. The redis
	// backend also expires speculative entries on this TTL in Redis
	// (coarsely, as redis.ttl), so that those of a replica that dies go
	// too; replicas sharing an index must agree on it.
	TTL Duration `json:"ttl,omitempty"`
	// Peers shares this replica's speculative entries with the other
	// replicas of an EPP that each keep their own memory index (see
	// PeersConfig). Without it, a request one replica routed is invisible
	// to the others until its engine schedules it, which under load is the
	// whole queue wait.
	Peers PeersConfig `json:"peers,omitzero"`
}

// PeersConfig connects the replicas of a replicated EPP so that each
// records the others' routing decisions as speculative entries, as if it
// had routed the requests itself. Each replica listens on Listen and dials
// every address Endpoints resolve to; a headless Service's name resolves
// to every replica, this one included, which it recognises and skips, so
// all replicas share one configuration. A replica backed by the redis
// index already shares its speculative entries through Redis and takes
// no peers.
type PeersConfig struct {
	// Listen is the TCP address this replica accepts its peers on, such as
	// ":5558". Empty (the default) turns peers off.
	Listen string `json:"listen,omitempty"`
	// Endpoints are the peers' listen addresses, host:port; a host that
	// resolves to several addresses (a headless Service) names a peer at
	// each. Resolved again every ResolveInterval.
	Endpoints []string `json:"endpoints,omitempty"`
	// ResolveInterval is how often Endpoints are resolved again, for
	// replicas that come and go. Default 10s.
	ResolveInterval Duration `json:"resolveInterval,omitempty"`
	// QueueSize bounds the routing decisions waiting to be sent to each
	// peer; past it, and while a peer is unreachable, decisions are
	// dropped and counted. Default 4096.
	QueueSize int `json:"queueSize,omitempty"`
	// AllowAnySource accepts peers connecting from any address. By
	// default only the addresses Endpoints resolve to may connect.
	AllowAnySource bool `json:"allowAnySource,omitempty"`
}

// MetricsConfig configures instrumentation.
type MetricsConfig struct {
	// Enabled registers kvtrack's metrics on the Registerer given to New.
	// Default true; it has no effect without a Registerer.
	Enabled *bool `json:"enabled,omitempty"`
	// BeatInterval is the period of the one-line summary log. 0 (default)
	// disables it.
	BeatInterval Duration `json:"beatInterval,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("2s",
// "500ms", "30m") in JSON and YAML. It is the one duration type of the
// configuration.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (valid: a number with a unit, such as \"500ms\", \"2s\" or \"30m\")", b)
	}
	*d = Duration(v)
	return nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Defaults. Each default of the configuration is written here once; the
// packages below kvcache take what Config gives them.
const (
	DefaultAlgorithm       = "sha256"
	DefaultBlockSize       = 16
	DefaultIndexCapacity   = 1 << 24
	DefaultEventsPort      = 5557
	DefaultTopicFilter     = "kv@" // in bind mode
	DefaultEventWorkers    = 4
	DefaultEventQueueSize  = 4096
	DefaultMaxHeld         = 10000
	DefaultReplayTimeout   = Duration(2 * time.Second)
	DefaultReceiveHWM      = 100000
	DefaultResyncInterval  = Duration(time.Second)
	DefaultMaxEngineKeys   = 1 << 20
	DefaultTokenCacheBytes = 64 << 20
	DefaultKeyCacheBytes   = 16 << 20
	DefaultChainCacheBytes = 16 << 20
	DefaultSpeculativeTTL  = Duration(10 * time.Second)
	// DefaultPeersResolveInterval and DefaultPeersQueueSize are
	// speculative.peers' defaults.
	DefaultPeersResolveInterval = Duration(10 * time.Second)
	DefaultPeersQueueSize       = 4096

	DefaultMaxMessageBytes   = 16 << 20
	DefaultMaxBlocksPerEvent = 1 << 16
	DefaultMaxTokensPerEvent = 1 << 20
	DefaultMaxEventsPerBatch = 1 << 16
	DefaultEventsPerSecond   = 100000
	DefaultEventsBurst       = 1000000
	DefaultMaxQueuedBytes    = 256 << 20
	DefaultMaxReplayBytes    = 256 << 20

	DefaultRedisAddr         = "localhost:6379"
	DefaultRedisKeyPrefix    = "kvtrack:"
	DefaultRedisTTL          = Duration(time.Hour)
	DefaultRedisBuckets      = 1 << 16
	DefaultRedisDialTimeout  = Duration(time.Second)
	DefaultRedisReadTimeout  = Duration(500 * time.Millisecond)
	DefaultRedisWriteTimeout = Duration(500 * time.Millisecond)

	maxSpeculativeTTL      = time.Minute
	maxBlockSize           = 1 << 16
	maxEventWorkers        = 1024
	maxDataParallelSize    = 1024
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

// WithDefaults returns c with every zero field set to its default, field by
// field: a section that sets some fields keeps the defaults of the others.
func (c Config) WithDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *Duration, d Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.KeyScheme == "" {
		c.KeyScheme = KeySchemeVLLM
	}
	if c.Hash.Algorithm == "" {
		c.Hash.Algorithm = DefaultAlgorithm
	}
	def(&c.Hash.BlockSize, DefaultBlockSize)
	def(&c.Hash.KeyCacheBytes, DefaultKeyCacheBytes)
	def(&c.Hash.ChainCacheBytes, DefaultChainCacheBytes)
	if c.Index.Backend == "" {
		c.Index.Backend = IndexMemory
	}
	def(&c.Index.Capacity, DefaultIndexCapacity)
	if c.Index.TierWeights == nil {
		c.Index.TierWeights = kvblock.DefaultTierWeights()
	}

	if c.Redis.Addr == "" {
		c.Redis.Addr = DefaultRedisAddr
	}
	if c.Redis.KeyPrefix == "" {
		c.Redis.KeyPrefix = DefaultRedisKeyPrefix
	}
	def(&c.Redis.Buckets, DefaultRedisBuckets)
	defDur(&c.Redis.TTL, DefaultRedisTTL)
	defDur(&c.Redis.DialTimeout, DefaultRedisDialTimeout)
	defDur(&c.Redis.ReadTimeout, DefaultRedisReadTimeout)
	defDur(&c.Redis.WriteTimeout, DefaultRedisWriteTimeout)

	if c.Events.Enabled == nil {
		on := true
		c.Events.Enabled = &on
	}
	if c.Events.Mode == "" {
		c.Events.Mode = EventsConnect
	}
	def(&c.Events.Port, DefaultEventsPort)
	if c.Events.TopicFilter == nil {
		f := "" // connect mode: the socket names the pod, any topic will do
		if c.Events.Mode == EventsBind {
			f = DefaultTopicFilter
		}
		c.Events.TopicFilter = &f
	}
	def(&c.Events.DataParallelSize, 1)
	c.DataParallel.setDefaults(c.Events.DataParallelSize)
	def(&c.Events.Workers, DefaultEventWorkers)
	def(&c.Events.QueueSize, DefaultEventQueueSize)
	def(&c.Events.MaxHeld, DefaultMaxHeld)
	defDur(&c.Events.ReplayTimeout, DefaultReplayTimeout)
	def(&c.Events.ReceiveHWM, DefaultReceiveHWM)
	def(&c.Events.MaxEngineKeys, DefaultMaxEngineKeys)
	defDur(&c.Events.ResyncInterval, DefaultResyncInterval)
	c.Events.Limits = c.Events.Limits.withDefaults()
	def(&c.Tokenizer.CacheBytes, DefaultTokenCacheBytes)
	defDur(&c.Speculative.TTL, DefaultSpeculativeTTL)
	if c.Speculative.Peers.Listen != "" {
		defDur(&c.Speculative.Peers.ResolveInterval, DefaultPeersResolveInterval)
		def(&c.Speculative.Peers.QueueSize, DefaultPeersQueueSize)
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
		if _, err := blockhash.ParseAlgorithm(c.Hash.Algorithm); err != nil {
			bad("hash.algorithm", "%s", strings.TrimPrefix(err.Error(), "blockhash: "))
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
	if err := c.Index.TierWeights.Validate(); err != nil {
		bad("index.tierWeights", "%v (valid: GPU, CPU, STORAGE, SPECULATIVE and up to %d other media)", err, kvblock.MaxMedia)
	}

	if c.Index.Backend == IndexRedis {
		c.Redis.validate(bad, func(err error) { errs = append(errs, err) })
	}

	c.Events.validate(bad)

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
	c.Speculative.Peers.validate(c, bad)
	c.LoRA.validate(bad) // branch scoring
	c.DataParallel.validate(bad)
	if c.Metrics.BeatInterval < 0 {
		bad("metrics.beatInterval", "%v is negative (valid: 0 to disable, or a period such as 30s)", time.Duration(c.Metrics.BeatInterval))
	}
	return errors.Join(errs...)
}

// Validate reports every invalid field of the events section as given (no
// defaults are applied), joined with errors.Join; each is a *FieldError
// whose path starts with "events.". Config.Validate includes it; the event
// pool (kvevents) reports its own options through it, so both speak alike.
func (e EventsConfig) Validate() error {
	var errs []error
	e.validate(func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
	})
	return errors.Join(errs...)
}

// validate checks the events section (after defaults), reporting through bad.
func (e EventsConfig) validate(bad func(field, format string, args ...any)) {
	if e.Mode != EventsConnect && e.Mode != EventsBind {
		bad("events.mode", "unknown value %q (valid: %s, %s)", e.Mode, EventsConnect, EventsBind)
	}
	switch e.Mode {
	case EventsBind:
		if err := validZMQEndpoint(e.Endpoint); err != nil {
			bad("events.endpoint", "%v (valid: a ZMQ endpoint to bind such as tcp://*:5557 or ipc:///run/kv.sock)", err)
		}
		if e.DataParallelSize > 1 && !strings.HasPrefix(e.Endpoint, "tcp://") {
			bad("events.endpoint", "%q with events.dataParallelSize %d (valid: a tcp:// endpoint, since rank r binds its port + r)", e.Endpoint, e.DataParallelSize)
		}
	case EventsConnect:
		if e.Endpoint != "" {
			bad("events.endpoint", "%q is set in connect mode, which dials each pod at <pod address>:events.port instead (valid: leave it empty, or set events.mode: bind to bind it)", e.Endpoint)
		}
	}
	if n := e.DataParallelSize; n < 1 || n > maxDataParallelSize {
		bad("events.dataParallelSize", "%d out of range (valid: 1 to %d, the engines' --data-parallel-size)", n, maxDataParallelSize)
	}
	if e.MaxHeld < 1 {
		bad("events.maxHeld", "%d out of range (valid: a positive number of messages)", e.MaxHeld)
	}
	if e.ReplayTimeout <= 0 {
		bad("events.replayTimeout", "%v out of range (valid: a positive duration such as 2s)", e.ReplayTimeout)
	}
	if e.ReceiveHWM < 1 {
		bad("events.receiveHWM", "%d out of range (valid: a positive number of messages)", e.ReceiveHWM)
	}
	if e.ResyncInterval <= 0 {
		bad("events.resyncInterval", "%v out of range (valid: a positive duration such as 1s)", e.ResyncInterval)
	}
	if e.MaxEngineKeys < 1 {
		bad("events.maxEngineKeys", "%d out of range (valid: a positive number of entries)", e.MaxEngineKeys)
	}
	validPort := func(field string, p int, zeroOK bool) {
		if (p == 0 && !zeroOK) || p < 0 || p > 65535 {
			bad(field, "%d out of range (valid: 1 to 65535%s)", p, map[bool]string{true: ", or 0 to disable"}[zeroOK])
		}
	}
	validPort("events.port", e.Port, false)
	validPort("events.replayPort", e.ReplayPort, true)
	if e.DataParallelSize > 1 && e.Mode == EventsConnect {
		if top := e.Port + e.DataParallelSize - 1; top > 65535 {
			bad("events.port", "%d + %d ranks reaches port %d (valid: a port that leaves room for every rank)", e.Port, e.DataParallelSize, top)
		}
	}
	if e.Workers < 1 || e.Workers > maxEventWorkers {
		bad("events.workers", "%d out of range (valid: 1 to %d)", e.Workers, maxEventWorkers)
	}
	if e.QueueSize < 1 {
		bad("events.queueSize", "%d out of range (valid: a positive number of messages)", e.QueueSize)
	}
	e.Limits.validate(bad)
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
	def(&l.MaxMessageBytes, DefaultMaxMessageBytes)
	defInt(&l.MaxBlocksPerEvent, DefaultMaxBlocksPerEvent)
	defInt(&l.MaxTokensPerEvent, DefaultMaxTokensPerEvent)
	defInt(&l.MaxEventsPerBatch, DefaultMaxEventsPerBatch)
	if l.EventsPerSecond == 0 {
		l.EventsPerSecond = DefaultEventsPerSecond
	}
	defInt(&l.EventsBurst, DefaultEventsBurst)
	def(&l.MaxQueuedBytes, DefaultMaxQueuedBytes)
	def(&l.MaxReplayBytes, DefaultMaxReplayBytes)
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

// validate checks the redis section (after defaults), reporting through
// report. The backend validates its own options; kvcache adds the section's
// path. Only ttl is kvcache's: a negative value here disables expiry, which
// the backend spells 0.
func (r RedisConfig) validate(bad func(field, format string, args ...any), report func(error)) {
	if r.TTL > 0 && time.Duration(r.TTL) < time.Millisecond {
		bad("redis.ttl", "%v is below expiry's 1ms resolution (valid: 1ms or more, or a negative value such as -1s to disable expiry)", r.TTL)
	}
	o := r.options()
	o.TTL = 0
	fielderr.Each(o.Validate(), func(field string, err error) {
		report(&FieldError{Field: strings.TrimSuffix("redis."+field, "."), Err: err})
	})
}
