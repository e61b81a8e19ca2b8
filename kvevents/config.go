package kvevents

import (
	"errors"
	"fmt"
	"strings"
	"time"

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
	// (kvblock.TokenHasher), for engines whose hashes cannot be reproduced.
	SchemeTokens KeyScheme = "tokens"
)

// Defaults applied by Config.withDefaults.
const (
	DefaultBindEndpoint  = "tcp://*:5557"
	DefaultTopicFilter   = "kv@"
	DefaultQueueSize     = 4096
	DefaultMaxHeld       = 10000
	DefaultReplayTimeout = 2 * time.Second
	DefaultReceiveHWM    = 100000
	DefaultMaxEngineKeys = 1 << 20
	defaultWorkers       = 4
)

// Config configures a Pool. The zero value is usable: bind tcp://*:5557,
// topics starting with kv@, the vllm key scheme, no hash check.
type Config struct {
	// Mode is "bind" (default) or "connect".
	Mode Mode `json:"mode,omitempty"`
	// Endpoint is the SUB endpoint to bind in bind mode (default
	// tcp://*:5557). Unused in connect mode, where AddPod names endpoints.
	Endpoint string `json:"endpoint,omitempty"`
	// DataParallelSize, in bind mode, binds Endpoint's port + r for every
	// DP rank r below it: vLLM's rank r publishes to port + r. Default 1.
	DataParallelSize int `json:"dataParallelSize,omitempty"`
	// ReplayPort, in bind mode, is the port of every pod's replay ROUTER
	// (vLLM's replay_endpoint; rank r on ReplayPort + r), reached at the
	// host of the pod's topic. 0: no replay unless AddPod names one, and
	// such pods are reported degraded.
	ReplayPort int `json:"replayPort,omitempty"`
	// TopicFilter is the SUB prefix filter. Default "kv@" in bind mode
	// (which needs the topic to name the pod) and "" (everything) in
	// connect mode.
	TopicFilter *string `json:"topicFilter,omitempty"`

	// Workers is the number of goroutines applying events; each pod is
	// served by one of them, in order. Default 4.
	Workers int `json:"workers,omitempty"`
	// QueueSize bounds each worker's queue, in messages (default 4096). A
	// message arriving at a full queue is dropped and counted; the
	// sequence gap it leaves is repaired by replay where possible.
	QueueSize int `json:"queueSize,omitempty"`
	// MaxHeld bounds the live messages held per (pod, rank) while a replay
	// is in flight (default 10000); beyond it they are dropped and counted.
	MaxHeld int `json:"maxHeld,omitempty"`
	// ReplayTimeout is how long a replay may wait for the next reply
	// before it is abandoned (default 2s).
	ReplayTimeout time.Duration `json:"replayTimeout,omitempty"`
	// ReceiveHWM is the SUB socket's receive high-water mark, in messages
	// (default 100000, vLLM's send HWM).
	ReceiveHWM int `json:"receiveHWM,omitempty"`

	// KeyScheme is "vllm" (default) or "tokens".
	KeyScheme KeyScheme `json:"keyScheme,omitempty"`
	// Hash is the engines' hashing configuration. In the vllm scheme, when
	// Hash.Seed or Hash.Algorithm is set, every BlockStored that starts at
	// the root and carries token_ids is re-hashed and compared; mismatches
	// are counted (kvtrack_hash_mismatch_total) and logged once per pod. In
	// the tokens scheme, Hash.BlockSize is the token-derived block size
	// (default: each event's own block_size).
	Hash kvblock.HashConfig `json:"hash"`
	// MaxEngineKeys bounds, per pod, the tokens scheme's map from engine
	// hash to key (default 1<<20 entries); past it the oldest mappings go,
	// and removes naming them are counted as unresolved.
	MaxEngineKeys int `json:"maxEngineKeys,omitempty"`
}

// hashCheck reports whether the vllm scheme should verify hashes.
func (c *Config) hashCheck() bool {
	return c.KeyScheme == SchemeVLLM && (c.Hash.Seed != "" || c.Hash.Algorithm != "")
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeBind
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
	if c.hashCheck() && c.Hash.Algorithm == "" {
		c.Hash.Algorithm = kvblock.SHA256 // vLLM's default
	}
	return c
}

// Validate reports every invalid field of c (after defaults), naming the
// field and its valid values.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("kvevents: "+format, args...)) }
	switch c.Mode {
	case ModeBind:
		if _, _, err := splitEndpoint(c.Endpoint); err != nil {
			bad("endpoint %q: %v", c.Endpoint, err)
		}
	case ModeConnect:
		if c.Endpoint != "" {
			bad("endpoint %q is for bind mode; in connect mode AddPod names each pod's endpoint", c.Endpoint)
		}
	default:
		bad("mode %q: valid modes are %q and %q", c.Mode, ModeBind, ModeConnect)
	}
	if c.DataParallelSize < 1 || c.DataParallelSize > 1024 {
		bad("dataParallelSize %d: must be 1..1024", c.DataParallelSize)
	}
	if c.DataParallelSize > 1 && c.Mode == ModeBind && !strings.HasPrefix(c.Endpoint, "tcp://") {
		bad("dataParallelSize %d needs a tcp:// endpoint (ranks publish to port + rank), got %q", c.DataParallelSize, c.Endpoint)
	}
	if c.ReplayPort < 0 || c.ReplayPort > 65535 {
		bad("replayPort %d: must be 0 (none) or a TCP port", c.ReplayPort)
	}
	if c.Workers < 1 || c.Workers > 1024 {
		bad("workers %d: must be 1..1024", c.Workers)
	}
	if c.QueueSize < 1 {
		bad("queueSize %d: must be positive", c.QueueSize)
	}
	if c.MaxHeld < 1 {
		bad("maxHeld %d: must be positive", c.MaxHeld)
	}
	if c.ReplayTimeout < 0 {
		bad("replayTimeout %v: must be positive", c.ReplayTimeout)
	}
	if c.ReceiveHWM < 0 {
		bad("receiveHWM %d: must be positive (0 means the default)", c.ReceiveHWM)
	}
	if c.MaxEngineKeys < 1 {
		bad("maxEngineKeys %d: must be positive", c.MaxEngineKeys)
	}
	switch c.KeyScheme {
	case SchemeVLLM:
		if c.hashCheck() {
			if _, err := kvblock.NewHasher(c.Hash); err != nil {
				bad("hash: %v", err)
			}
		}
	case SchemeTokens:
		if c.Hash.BlockSize < 0 {
			bad("hash.blockSize %d: must be positive, or 0 for each event's block_size", c.Hash.BlockSize)
		}
	default:
		bad("keyScheme %q: valid schemes are %q and %q", c.KeyScheme, SchemeVLLM, SchemeTokens)
	}
	return errors.Join(errs...)
}
