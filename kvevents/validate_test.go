package kvevents

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
)

// TestValidateSpeaksKVCache: the pool's options are validated by the same
// rules, and reported in the same words, as the events section of
// kvcache.Config they come from: each error is a *kvcache.FieldError
// naming the field by its path there.
func TestValidateSpeaksKVCache(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
		says  string
	}{
		{"mode", Config{Mode: "listen"}, "events.mode", `unknown value "listen" (valid: connect, bind)`},
		{"endpoint in connect mode", Config{Mode: ModeConnect, Endpoint: "tcp://*:5557"}, "events.endpoint", "is set in connect mode"},
		{"bind endpoint", Config{Mode: ModeBind, Endpoint: "udp://*:1"}, "events.endpoint", `unknown transport "udp"`},
		{"ranks on ipc", Config{Mode: ModeBind, Endpoint: "ipc:///run/kv.sock", DataParallelSize: 2}, "events.endpoint", "(valid: a tcp:// endpoint, since rank r binds its port + r)"},
		{"data parallel size", Config{DataParallelSize: 5000}, "events.dataParallelSize", "5000 out of range (valid: 1 to 1024"},
		{"workers", Config{Workers: 2000}, "events.workers", "2000 out of range (valid: 1 to 1024)"},
		{"replay port", Config{ReplayPort: 70000}, "events.replayPort", "(valid: 1 to 65535, or 0 to disable)"},
		{"replay timeout", Config{ReplayTimeout: -time.Second}, "events.replayTimeout", "(valid: a positive duration such as 2s)"},
		{"resync interval", Config{ResyncInterval: -time.Second}, "events.resyncInterval", "(valid: a positive duration such as 1s)"},
		{"queue size", Config{QueueSize: -1}, "events.queueSize", "(valid: a positive number of messages)"},
		{"queued bytes", Config{Limits: Limits{MaxQueuedBytes: -1}}, "events.limits.maxQueuedBytes", "-1 out of range (valid: a positive number of bytes)"},
		{"rate", Config{Limits: Limits{EventsPerSecond: math.Inf(1)}}, "events.limits.eventsPerSecond", "(valid: a positive finite rate, or -1 for no limit)"},
		{"key scheme", Config{KeyScheme: "sglang"}, "keyScheme", `unknown value "sglang" (valid: vllm, tokens)`},
		{"tokens block size", Config{KeyScheme: SchemeTokens, Hash: blockhash.HashConfig{BlockSize: -1}}, "hash.blockSize", "(valid: a number of tokens, or 0 for each event's block_size)"},
		{"hash algorithm", Config{Hash: blockhash.HashConfig{Algorithm: "md5", Seed: "0"}}, "hash", "md5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var fe *kvcache.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Err.Error(), tt.says) {
				t.Fatalf("Validate() = %v, want a kvcache.FieldError for %s saying %q", err, tt.field, tt.says)
			}
			if _, nerr := NewPool(tt.cfg, nil); !errors.As(nerr, &fe) {
				t.Errorf("NewPool = %v, want the FieldError Validate reports", nerr)
			}
		})
	}
}

// TestValidateAcceptsWhatKVCacheAccepts: a valid kvcache configuration
// gives the pool valid options, in either mode.
func TestValidateAcceptsWhatKVCacheAccepts(t *testing.T) {
	for _, events := range []kvcache.EventsConfig{
		{Mode: kvcache.EventsConnect},
		{Mode: kvcache.EventsBind, Endpoint: "tcp://*:5557", DataParallelSize: 4},
	} {
		mode := events.Mode
		cfg := kvcache.Config{Hash: kvcache.HashConfig{Seed: "42"}, Events: events}.WithDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: kvcache Validate() = %v", mode, err)
		}
		if err := PoolConfig(cfg).Validate(); err != nil {
			t.Errorf("%s: pool Validate() = %v, want nil for a configuration kvcache accepts", mode, err)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: Validate() = %v, want nil (defaults apply)", err)
	}
}
