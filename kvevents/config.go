package kvevents

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Mode is how the pool meets the publishers.
type Mode string

const (
	// ModeBind binds one SUB endpoint that every engine's PUB connects to
	// (vLLM connects when its endpoint names a host, as llm-d deploys it).
	// The pod is read from the message topic, kv@<pod-ip:port>@<model>.
	ModeBind Mode = "bind"
	// ModeConnect opens one SUB socket per pod, connected to the endpoint
	// the engine binds (vLLM's default tcp://*:5557). The pod is the one
	// AddPod named with that endpoint.
	ModeConnect Mode = "connect"
)

// KeyScheme is how events become index keys.
type KeyScheme string

const (
	// SchemeVLLM indexes the hashes vLLM publishes as they are.
	SchemeVLLM KeyScheme = "vllm"
	// SchemeTokens indexes keys derived from each BlockStored's token ids
	// (blockhash.TokenHasher), for engines whose hashes cannot be reproduced.
	SchemeTokens KeyScheme = "tokens"
)

// Defaults applied by Config.withDefaults: kvcache's, written once there.
const (
	DefaultBindEndpoint  = "tcp://*:5557"
	DefaultTopicFilter   = kvcache.DefaultTopicFilter
	DefaultQueueSize     = kvcache.DefaultEventQueueSize
	DefaultMaxHeld       = kvcache.DefaultMaxHeld
	DefaultReplayTimeout = time.Duration(kvcache.DefaultReplayTimeout)
	DefaultReceiveHWM    = kvcache.DefaultReceiveHWM
	DefaultMaxEngineKeys = kvcache.DefaultMaxEngineKeys
	defaultWorkers       = kvcache.DefaultEventWorkers

	DefaultMaxMessageBytes   = kvcache.DefaultMaxMessageBytes
	DefaultMaxBlocksPerEvent = kvcache.DefaultMaxBlocksPerEvent
	DefaultMaxTokensPerEvent = kvcache.DefaultMaxTokensPerEvent
	DefaultMaxEventsPerBatch = kvcache.DefaultMaxEventsPerBatch
	DefaultEventsPerSecond   = kvcache.DefaultEventsPerSecond
	DefaultEventsBurst       = kvcache.DefaultEventsBurst
	DefaultMaxQueuedBytes    = kvcache.DefaultMaxQueuedBytes
	DefaultMaxReplayBytes    = kvcache.DefaultMaxReplayBytes
)

// Limits bound what one publisher can make the pool hold and do. A message
// over a limit is rejected whole and counted
// (kvtrack_events_rejected_total{reason}, and per known pod
// kvtrack_events_pod_rejected_total), with at most one log line per reason
// per second; its sequence number is consumed, so the stream goes on.
// Zero fields take the defaults.
type Limits struct {
	// MaxMessageBytes is libzmq's ZMQ_MAXMSGSIZE on every SUB and replay
	// socket (default 16 MiB): libzmq drops the connection of a peer that
	// sends a larger frame before buffering it (counted in
	// kvtrack_events_disconnects_total); the publisher reconnects and the
	// gap is replayed where possible.
	MaxMessageBytes int64
	// MaxBlocksPerEvent bounds the block hashes of one BlockStored or
	// BlockRemoved (default 65536).
	MaxBlocksPerEvent int
	// MaxTokensPerEvent bounds the token ids of one BlockStored (default
	// 1048576).
	MaxTokensPerEvent int
	// MaxEventsPerBatch bounds the events of one message (default 65536).
	MaxEventsPerBatch int
	// EventsPerSecond is the rate of events each (pod, rank) may have
	// applied, replays included (a token bucket; default 100000). -1
	// disables the limit.
	EventsPerSecond float64
	// EventsBurst is the token bucket's depth (default 1000000): the
	// events a pod may have applied at once, e.g. by a replay. A message
	// with more events than the bucket holds is rejected.
	EventsBurst int
	// MaxQueuedBytes bounds the payload bytes received and not yet applied
	// (queued for the workers or held during a replay), over all pods
	// (default 256 MiB); a message that would exceed it is dropped and
	// counted (kvtrack_events_dropped_total{reason="queue_full"}).
	MaxQueuedBytes int64
	// MaxReplayBytes bounds the payload bytes one replay collects (default
	// 256 MiB); a larger replay is abandoned and its messages counted lost.
	MaxReplayBytes int64
}

// Security says who may publish in bind mode.
type Security struct {
	// AllowAnySource turns off the bind-mode source checks, for
	// development only. By default the bound socket accepts connections
	// only from the IP addresses of pods added with AddPod (a ZAP handler
	// holds the others' handshakes until their pod is added), and a message is applied
	// only if its sender's IP is still such an address and is the IP of
	// the pod its topic names. With AllowAnySource, anyone who can reach
	// the port can publish events for any pod: steer requests with forged
	// BlockStored events, or hide a pod's cache with forged removes.
	AllowAnySource bool
}

// Config configures a Pool. It is the pool's side of kvcache.Config's
// events section (PoolConfig translates one into the other), which is the
// schema users write; the defaults are kvcache's. The zero value is usable:
// connect mode (bind mode when Endpoint is set), the vllm key scheme, no
// hash check.
type Config struct {
	// Mode is "connect" (default) or "bind" (the default when Endpoint is set).
	Mode Mode
	// Endpoint is the SUB endpoint to bind in bind mode (default
	// tcp://*:5557). Unused in connect mode, where AddPod names endpoints.
	Endpoint string
	// DataParallelSize, in bind mode, binds Endpoint's port + r for every
	// DP rank r below it: vLLM's rank r publishes to port + r. Default 1.
	DataParallelSize int
	// ReplayPort, in bind mode, is the port of every pod's replay ROUTER
	// (vLLM's replay_endpoint; rank r on ReplayPort + r), reached at the
	// host of the pod's topic. 0: no replay unless AddPod names one, and
	// such pods are reported degraded.
	ReplayPort int
	// TopicFilter is the SUB prefix filter. Default "kv@" in bind mode
	// (which needs the topic to name the pod) and "" (everything) in
	// connect mode.
	TopicFilter *string

	// Workers is the number of goroutines applying events; each pod is
	// served by one of them, in order. Default 4.
	Workers int
	// QueueSize bounds each worker's queue, in messages (default 4096). A
	// message arriving at a full queue is dropped and counted; the
	// sequence gap it leaves is repaired by replay where possible.
	QueueSize int
	// MaxHeld bounds the live messages held per (pod, rank) while a replay
	// is in flight (default 10000); beyond it they are dropped and counted.
	MaxHeld int
	// ReplayTimeout is how long a replay may wait for the next reply
	// before it is abandoned (default 2s).
	ReplayTimeout time.Duration
	// ReceiveHWM is the SUB socket's receive high-water mark, in messages
	// (default 100000, vLLM's send HWM).
	ReceiveHWM int

	// KeyScheme is "vllm" (default) or "tokens".
	KeyScheme KeyScheme
	// Hash is the engines' hashing configuration. In the vllm scheme, when
	// Hash.Seed or Hash.Algorithm is set, every BlockStored that starts at
	// the root and carries token_ids is re-hashed and compared; mismatches
	// are counted (kvtrack_events_hash_mismatches_total) and logged once per pod. In
	// the tokens scheme, Hash.BlockSize is the token-derived block size
	// (default: each event's own block_size).
	Hash blockhash.HashConfig
	// MaxEngineKeys bounds, per pod, the tokens scheme's map from engine
	// hash to key (default 1<<20 entries); past it the oldest mappings go,
	// and removes naming them are counted as unresolved.
	MaxEngineKeys int

	// Media numbers the media events name as the index's tiers; give it
	// the table the index was built with (kvblock.TierWeights.Media of its
	// weights). Nil: the built-in media only. A medium the table does not
	// name is applied as kvblock.TierOther and counted
	// (kvtrack_events_unknown_media_total).
	Media *kvblock.Media

	// Limits bound message sizes, event sizes, rates and queued bytes.
	Limits Limits
	// Security says who may publish in bind mode.
	Security Security

	// ResyncInterval is how often a pod whose index writes failed is
	// retried: its blocks cleared, then replayed from its replay endpoint
	// or left to fill again (default 1s). See resync.go.
	ResyncInterval time.Duration
}

// hashCheck reports whether the vllm scheme should verify hashes.
func (c *Config) hashCheck() bool {
	return c.KeyScheme == SchemeVLLM && (c.Hash.Seed != "" || c.Hash.Algorithm != "")
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		// kvcache's default, connect, unless an endpoint to bind is given.
		c.Mode = ModeConnect
		if c.Endpoint != "" {
			c.Mode = ModeBind
		}
	}
	if c.Mode == ModeBind && c.Endpoint == "" {
		c.Endpoint = DefaultBindEndpoint
	}
	if c.DataParallelSize == 0 {
		c.DataParallelSize = 1
	}
	if c.TopicFilter == nil {
		f := ""
		if c.Mode == ModeBind {
			f = DefaultTopicFilter
		}
		c.TopicFilter = &f
	}
	if c.Workers == 0 {
		c.Workers = defaultWorkers
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxHeld == 0 {
		c.MaxHeld = DefaultMaxHeld
	}
	if c.ReplayTimeout == 0 {
		c.ReplayTimeout = DefaultReplayTimeout
	}
	if c.ReceiveHWM == 0 {
		c.ReceiveHWM = DefaultReceiveHWM
	}
	if c.KeyScheme == "" {
		c.KeyScheme = SchemeVLLM
	}
	if c.MaxEngineKeys == 0 {
		c.MaxEngineKeys = DefaultMaxEngineKeys
	}
	c.Limits = c.Limits.withDefaults()
	c.resyncDefaults()
	if c.hashCheck() && c.Hash.Algorithm == "" {
		c.Hash.Algorithm = blockhash.SHA256 // vLLM's default
	}
	return c
}

// Validate reports every invalid field of c (after defaults), joined with
// errors.Join. Each is a *kvcache.FieldError naming the field by its path
// in kvcache.Config, the schema these options come from: Workers is
// "events.workers", Limits.MaxQueuedBytes "events.limits.maxQueuedBytes",
// KeyScheme "keyScheme". The checks shared with kvcache are kvcache's
// (kvcache.EventsConfig.Validate); the pool adds only what it alone knows.
func (c Config) Validate() error {
	c = c.withDefaults()
	errs := []error{c.eventsConfig().Validate()}
	bad := func(field, format string, args ...any) {
		errs = append(errs, &kvcache.FieldError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	// The key scheme and the hash check: kvcache requires a seed and an
	// algorithm; the pool checks hashes only when one is set.
	switch c.KeyScheme {
	case SchemeVLLM:
		if c.hashCheck() {
			if _, err := blockhash.NewHasher(c.Hash); err != nil {
				bad("hash", "%v (valid: an algorithm, seed and block size vLLM uses)", err)
			}
		}
	case SchemeTokens:
		if c.Hash.BlockSize < 0 {
			bad("hash.blockSize", "%d is negative (valid: a number of tokens, or 0 for each event's block_size)", c.Hash.BlockSize)
		}
	default:
		bad("keyScheme", "unknown value %q (valid: %s, %s)", c.KeyScheme, SchemeVLLM, SchemeTokens)
	}
	return errors.Join(errs...)
}

// eventsConfig is c in kvcache's schema, PoolConfig's inverse, for
// validation. kvcache's events.port (the port connect mode dials) has no
// counterpart here: AddPod names each pod's endpoint.
func (c Config) eventsConfig() kvcache.EventsConfig {
	return kvcache.EventsConfig{
		Mode:             kvcache.EventsMode(c.Mode),
		Endpoint:         c.Endpoint,
		Port:             kvcache.DefaultConfig().Events.Port,
		TopicFilter:      c.TopicFilter,
		ReplayPort:       c.ReplayPort,
		DataParallelSize: c.DataParallelSize,
		Workers:          c.Workers,
		QueueSize:        c.QueueSize,
		MaxHeld:          c.MaxHeld,
		ReplayTimeout:    kvcache.Duration(c.ReplayTimeout),
		ReceiveHWM:       c.ReceiveHWM,
		MaxEngineKeys:    c.MaxEngineKeys,
		ResyncInterval:   kvcache.Duration(c.ResyncInterval),
		Limits:           kvcache.EventsLimits(c.Limits),
		Security:         kvcache.EventsSecurity(c.Security),
	}
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxBlocksPerEvent == 0 {
		l.MaxBlocksPerEvent = DefaultMaxBlocksPerEvent
	}
	if l.MaxTokensPerEvent == 0 {
		l.MaxTokensPerEvent = DefaultMaxTokensPerEvent
	}
	if l.MaxEventsPerBatch == 0 {
		l.MaxEventsPerBatch = DefaultMaxEventsPerBatch
	}
	if l.EventsPerSecond == 0 {
		l.EventsPerSecond = DefaultEventsPerSecond
	}
	if l.EventsBurst == 0 {
		l.EventsBurst = DefaultEventsBurst
	}
	if l.MaxQueuedBytes == 0 {
		l.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if l.MaxReplayBytes == 0 {
		l.MaxReplayBytes = DefaultMaxReplayBytes
	}
	return l
}

// Settings added for issue 14 (resync after an index backend outage); the
// unified configuration should carry them.

// DefaultResyncInterval is how often a worker retries a pod whose index
// writes failed (Config.ResyncInterval).
const DefaultResyncInterval = time.Duration(kvcache.DefaultResyncInterval)

// resyncDefaults sets the issue-14 fields' defaults.
func (c *Config) resyncDefaults() {
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
}
