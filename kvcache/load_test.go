package kvcache

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestParseConfig is the loader's specification: each case is a document
// a user writes, and what they get back.
func TestParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, c Config)
		field string // the FieldError's path, when the document is refused
		says  string // and what the error must say
	}{
		{name: "unquoted seed", doc: "hash: {seed: 42}",
			check: func(t *testing.T, c Config) {
				if c.Hash.Seed != "42" {
					t.Errorf("seed = %q, want \"42\"", c.Hash.Seed)
				}
			}},
		{name: "quoted seed", doc: `{"hash": {"seed": "0"}}`,
			check: func(t *testing.T, c Config) {
				if c.Hash.Seed != "0" {
					t.Errorf("seed = %q, want \"0\"", c.Hash.Seed)
				}
			}},
		{name: "fractional seed", doc: "hash: {seed: 1.5}", field: "hash.seed", says: "integer from 0 to 4294967295"},
		{name: "negative seed", doc: "hash: {seed: -1}", field: "hash.seed", says: "integer from 0 to 4294967295"},
		{name: "typo names the field and the likely one", doc: "hash: {seed: 42, blockSzie: 16}",
			field: "hash.blockSzie", says: `did you mean "blockSize"`},
		{name: "unknown top-level field lists the valid ones", doc: "hash: {seed: 42}\nevent: {}",
			field: "event", says: "events"},
		{name: "wrong type names its path", doc: "hash: {seed: 42, blockSize: sixteen}", field: "hash.blockSize", says: "an integer"},
		{name: "redis section in YAML", doc: "hash: {seed: 42}\nindex: {backend: redis}\nredis: {addr: '10.0.0.9:6379', keyPrefix: 'a:', ttl: 30m}",
			check: func(t *testing.T, c Config) {
				if c.Redis.Addr != "10.0.0.9:6379" || c.Redis.KeyPrefix != "a:" || time.Duration(c.Redis.TTL) != 30*time.Minute {
					t.Errorf("redis = %+v", c.Redis)
				}
			}},
		{name: "partial redis section keeps the other defaults", doc: "hash: {seed: 42}\nindex: {backend: redis}\nredis: {addr: 'r:6379'}",
			check: func(t *testing.T, c Config) {
				if c.Redis.TTL != DefaultRedisTTL || c.Redis.KeyPrefix != DefaultRedisKeyPrefix || c.Redis.ReadTimeout != DefaultRedisReadTimeout {
					t.Errorf("redis = %+v, want the default ttl, keyPrefix and timeouts", c.Redis)
				}
			}},
		{name: "negative ttl disables expiry", doc: "hash: {seed: 42}\nindex: {backend: redis}\nredis: {ttl: -1s}",
			check: func(t *testing.T, c Config) {
				if o := c.Redis.options(); o.TTL != 0 {
					t.Errorf("redis ttl -1s gives backend ttl %v, want 0 (no expiry)", o.TTL)
				}
			}},
		{name: "bad duration", doc: "hash: {seed: 42}\nredis: {ttl: 30q}", field: "redis.ttl", says: `"30q" is not a duration`},
		{name: "endpoint in connect mode", doc: "hash: {seed: 42}\nevents: {endpoint: 'tcp://*:5557'}",
			field: "events.endpoint", says: "events.mode: bind"},
		{name: "event settings of the pool are reachable", doc: "hash: {seed: 42}\nevents: {dataParallelSize: 2, maxHeld: 7, replayTimeout: 3s, receiveHWM: 9, maxEngineKeys: 11}",
			check: func(t *testing.T, c Config) {
				e := c.Events
				if e.DataParallelSize != 2 || e.MaxHeld != 7 || time.Duration(e.ReplayTimeout) != 3*time.Second || e.ReceiveHWM != 9 || e.MaxEngineKeys != 11 {
					t.Errorf("events = %+v", e)
				}
			}},
		{name: "speculative peers as scorer/README writes them", doc: "hash: {seed: 42}\nspeculative:\n  enabled: true\n  peers: {listen: ':5558', endpoints: ['kvtrack-epp-peers:5558']}",
			check: func(t *testing.T, c Config) {
				p := c.Speculative.Peers
				if p.Listen != ":5558" || !slices.Equal(p.Endpoints, []string{"kvtrack-epp-peers:5558"}) ||
					p.ResolveInterval != DefaultPeersResolveInterval || p.QueueSize != DefaultPeersQueueSize {
					t.Errorf("peers = %+v, want the listen and endpoints given and the defaults", p)
				}
			}},
		{name: "peers endpoint typo names the field", doc: "hash: {seed: 42}\nspeculative: {enabled: true, peers: {listen: ':5558', endpoint: ['a:1']}}",
			field: "speculative.peers.endpoint", says: `did you mean "endpoints"`},
		{name: "peers endpoint without a port", doc: "hash: {seed: 42}\nspeculative: {enabled: true, peers: {listen: ':5558', endpoints: ['kvtrack-epp-peers']}}",
			field: "speculative.peers.endpoints[0]", says: "host:port"},
		{name: "empty document takes the defaults and needs a seed", doc: "", field: "hash.seed", says: "PYTHONHASHSEED"},
		{name: "two documents", doc: "hash: {seed: 42}\n---\nhash: {seed: 1}\n", says: "trailing data after the document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.doc))
			if tt.check != nil {
				if err != nil {
					t.Fatalf("ParseConfig = %v", err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("ParseConfig = nil error, want one saying %q", tt.says)
			}
			if tt.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("ParseConfig = %v, want a FieldError for %q", err, tt.field)
				}
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("ParseConfig = %q, want it to say %q", err, tt.says)
			}
		})
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvtrack.yaml")
	if err := os.WriteFile(path, []byte("hash: {seed: 42, algo: sha256}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "hash.algo") {
		t.Errorf("LoadConfig = %v, want an error naming %s and hash.algo", err, path)
	}
}

// TestDecodeStrictInAnEnclosingFile is a program's own file with the
// configuration under a key, as examples/router has it.
func TestDecodeStrictInAnEnclosingFile(t *testing.T) {
	var file struct {
		Listen  string `json:"listen"`
		KVCache Config `json:"kvcache"`
	}
	err := DecodeStrict([]byte("listen: ':8080'\nkvcache: {hash: {seed: 42, blockSzie: 16}}"), &file)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "kvcache.hash.blockSzie" {
		t.Errorf("DecodeStrict = %v, want a FieldError for kvcache.hash.blockSzie", err)
	}
}

// TestFailedNewReleasesMetrics: a New that fails after registering some
// metrics (the tokenizer is built after the index) leaves the registry as
// it was, so a corrected configuration can register on it.
func TestFailedNewReleasesMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	off := false
	bad := Config{Hash: HashConfig{Seed: "42"}, Events: EventsConfig{Enabled: &off},
		Tokenizer: TokenizerConfig{Path: filepath.Join(t.TempDir(), "missing.json")}}
	if _, err := New(bad, WithRegisterer(reg)); err == nil {
		t.Fatal("New with a missing tokenizer = nil error")
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Errorf("a failed New left %d metric families registered, e.g. %s", len(mfs), mfs[0].GetName())
	}
	good := bad
	good.Tokenizer = TokenizerConfig{}
	ix, err := New(good, WithRegisterer(reg))
	if err != nil {
		t.Fatalf("New after a failed New on the same registry: %v", err)
	}
	ix.Close()
}

// TestNewWithoutEventSourceSaysHow: events are on by default, and a
// program that has not linked an event source is told what to pass.
func TestNewWithoutEventSourceSaysHow(t *testing.T) {
	_, err := New(Config{Hash: HashConfig{Seed: "42"}})
	if err == nil || !strings.Contains(err.Error(), "WithEventSource(kvevents.Source)") {
		t.Errorf("New without an event source = %v, want the option to pass", err)
	}
}
