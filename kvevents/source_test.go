package kvevents

import (
	"strconv"
	"testing"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// TestDefaultModeAgreesWithKVCache: the pool and kvcache.Config default to
// the same mode, connect, which opens nothing until a pod is added; an
// endpoint alone asks for bind mode.
func TestDefaultModeAgreesWithKVCache(t *testing.T) {
	if got, want := (Config{}).withDefaults().Mode, Mode(kvcache.DefaultConfig().Events.Mode); got != want {
		t.Errorf("kvevents default mode %q, kvcache's %q", got, want)
	}
	if got := (Config{Endpoint: "tcp://127.0.0.1:5557"}).withDefaults().Mode; got != ModeBind {
		t.Errorf("mode with only an endpoint = %q, want bind", got)
	}
}

// TestPoolConfigCarriesEverySetting maps a kvcache configuration with every
// events setting away from its default onto the pool's.
func TestPoolConfigCarriesEverySetting(t *testing.T) {
	cfg, err := kvcache.ParseConfig([]byte(`
hash: {seed: 7, algorithm: xxhash, blockSize: 32}
keyScheme: vllm
events:
  mode: bind
  endpoint: tcp://127.0.0.1:6000
  dataParallelSize: 2
  replayPort: 6100
  workers: 3
  queueSize: 5
  maxHeld: 6
  replayTimeout: 7s
  receiveHWM: 8
  maxEngineKeys: 9
  resyncInterval: 10s
  limits: {maxBlocksPerEvent: 11}
  security: {allowAnySource: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	pc := PoolConfig(cfg).withDefaults()
	if pc.Mode != ModeBind || pc.Endpoint != "tcp://127.0.0.1:6000" || pc.DataParallelSize != 2 || pc.ReplayPort != 6100 ||
		pc.Workers != 3 || pc.QueueSize != 5 || pc.MaxHeld != 6 || pc.ReplayTimeout.Seconds() != 7 || pc.ReceiveHWM != 8 ||
		pc.MaxEngineKeys != 9 || pc.ResyncInterval.Seconds() != 10 || pc.Limits.MaxBlocksPerEvent != 11 || !pc.Security.AllowAnySource ||
		pc.Hash.Seed != "7" || pc.Hash.Algorithm != "xxhash" || pc.Hash.BlockSize != 32 {
		t.Errorf("PoolConfig = %+v", pc)
	}
}

// TestEventsSecurityReachesThePool: a bind-mode source refuses a pod it
// cannot admit by IP unless events.security.allowAnySource is set.
func TestEventsSecurityReachesThePool(t *testing.T) {
	for _, anySource := range []bool{false, true} {
		cfg := kvcache.Config{Hash: kvcache.HashConfig{Seed: "42"},
			Events: kvcache.EventsConfig{Mode: kvcache.EventsBind, Endpoint: "tcp://127.0.0.1:" + strconv.Itoa(testnet.FreePort(t)),
				Security: kvcache.EventsSecurity{AllowAnySource: anySource}}}
		src, err := Source(cfg.WithDefaults(), kvcache.SourceEnv{})
		if err != nil {
			t.Fatal(err)
		}
		err = src.AddPod(t.Context(), "vllm-0.vllm:8000")
		if (err == nil) != anySource {
			t.Errorf("allowAnySource %v: AddPod(hostname) = %v", anySource, err)
		}
	}
}

// TestPoolConfigMediaMatchTheIndex: the pool numbers media with the table
// kvcache builds its index with, from index.tierWeights.
func TestPoolConfigMediaMatchTheIndex(t *testing.T) {
	cfg := kvcache.Config{Hash: kvcache.HashConfig{Seed: "0"}}
	cfg.Index.TierWeights = map[string]float64{"GPU": 1, "NVME": 0.3}
	media := PoolConfig(cfg).Media
	want, _ := kvblock.TierWeights(cfg.Index.TierWeights).Media().Tier("NVME")
	if got, ok := media.Tier("NVME"); !ok || got != want {
		t.Errorf("pool's tier of NVME = %v, %v; want %v as the index numbers it", got, ok, want)
	}
	if got, ok := media.Tier("INVENTED"); ok || got != kvblock.TierOther {
		t.Errorf("pool's tier of an unconfigured medium = %v, %v; want TierOther", got, ok)
	}
}
