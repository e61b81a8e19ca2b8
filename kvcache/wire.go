package kvcache

import (
	"fmt"
	"maps"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// indexWeights returns the configured tier weights with the speculative
// medium's weight filled in (1, a block about to be computed on GPU) unless
// the configuration sets it.
//
// The GPU tier wins every tie: a medium other than GPU (and the
// speculative one, a GPU block about to be computed) configured to weigh
// as much as GPU or more counts one part in 2^20 less, so that the same
// prefix held on GPU always ranks above it held only on CPU or storage.
func indexWeights(cfg Config) kvblock.TierWeights {
	w := maps.Clone(cfg.Index.TierWeights)
	if _, ok := w[speculativeMediumName]; !ok {
		w[speculativeMediumName] = defaultSpeculativeTier
	}
	if gpu := w["GPU"]; gpu > 0 {
		below := gpu * (1 - 1.0/(1<<20))
		for medium, v := range w {
			if medium != "GPU" && medium != speculativeMediumName && v > below {
				w[medium] = below
			}
		}
	}
	return w
}

// scoreScale is the weight of a block held on GPU: Score divides the
// weighted match by it, so a prefix held entirely on GPU scores 1 and
// one held on a lighter tier scores its share. With a GPU weight of 0
// (GPU blocks do not count) it is the heaviest tier's.
func scoreScale(cfg Config) float64 {
	w := indexWeights(cfg)
	top := w["GPU"]
	if top <= 0 {
		for _, v := range w {
			top = max(top, v)
		}
	}
	if top <= 0 {
		return 1
	}
	return top
}

func newIndex(cfg Config, o options) (kvblock.Index, error) {
	switch cfg.Index.Backend {
	case IndexRedis:
		var ropts []redis.Option
		ropts = append(ropts, redis.WithTierWeights(indexWeights(cfg)))
		// Speculative entries expire in Redis on their own TTL, so that a
		// replica that dies before removing them does not leave them for
		// the index's hour. Set whether or not this replica speculates:
		// every replica sharing the index must agree on it.
		ropts = append(ropts, redis.WithTierTTL(speculativeMediumName, time.Duration(cfg.Speculative.TTL)))
		if o.reg != nil && *cfg.Metrics.Enabled {
			ropts = append(ropts, redis.WithRegisterer(o.reg))
		}
		idx, err := redis.New(cfg.Redis.options(), ropts...)
		if err != nil {
			return nil, fmt.Errorf("kvcache: redis index: %w", err)
		}
		return idx, nil
	default:
		return newMemIndex(cfg, o)
	}
}

func newMemIndex(cfg Config, o options) (kvblock.Index, error) {
	idx, err := kvblock.NewMemIndex(kvblock.MemIndexConfig{
		Capacity:    cfg.Index.Capacity,
		Shards:      cfg.Index.Shards,
		TierWeights: indexWeights(cfg),
		BlockSize:   cfg.Hash.BlockSize,
	})
	if err != nil {
		return nil, fmt.Errorf("kvcache: memory index: %w", err)
	}
	if o.reg == nil || !*cfg.Metrics.Enabled {
		return idx, nil
	}
	m, err := kvblock.NewMeteredIndex(idx, o.reg)
	if err != nil {
		return nil, fmt.Errorf("kvcache: memory index metrics: %w", err)
	}
	return m, nil
}

// options translates the (defaulted) redis section into the backend's
// options; a negative ttl disables expiry.
func (r RedisConfig) options() redis.Config {
	ttl := r.TTL
	if ttl < 0 {
		ttl = 0
	}
	return redis.Config{
		Addr: r.Addr, DB: r.DB, Username: r.Username, Password: r.Password,
		TLS: redis.TLSConfig{
			Enabled: r.TLS.Enabled, CAFile: r.TLS.CAFile,
			ServerName: r.TLS.ServerName, InsecureSkipVerify: r.TLS.InsecureSkipVerify,
		},
		KeyPrefix: r.KeyPrefix, PoolSize: r.PoolSize, Buckets: r.Buckets,
		Cluster: redis.ClusterConfig{Enabled: r.Cluster.Enabled, Groups: r.Cluster.Groups},
		TTL:     time.Duration(ttl), DialTimeout: time.Duration(r.DialTimeout),
		ReadTimeout: time.Duration(r.ReadTimeout), WriteTimeout: time.Duration(r.WriteTimeout),
	}
}
