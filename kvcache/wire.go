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
func indexWeights(cfg Config) kvblock.TierWeights {
	w := maps.Clone(cfg.Index.TierWeights)
	if _, ok := w[speculativeMediumName]; !ok {
		w[speculativeMediumName] = defaultSpeculativeTier
	}
	return w
}

func newIndex(cfg Config, o options) (kvblock.Index, error) {
	switch cfg.Index.Backend {
	case IndexRedis:
		var ropts []redis.Option
		ropts = append(ropts, redis.WithTierWeights(indexWeights(cfg)))
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
		KeyPrefix: r.KeyPrefix, PoolSize: r.PoolSize,
		Cluster: redis.ClusterConfig{Enabled: r.Cluster.Enabled, Groups: r.Cluster.Groups},
		TTL:     time.Duration(ttl), DialTimeout: time.Duration(r.DialTimeout),
		ReadTimeout: time.Duration(r.ReadTimeout), WriteTimeout: time.Duration(r.WriteTimeout),
	}
}
