package redis

import (
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ClusterConfig is the "redis.cluster" section.
type ClusterConfig struct {
	// Enabled talks Redis Cluster protocol: keys are routed by hash slot and
	// MOVED/ASK redirections are followed. Addr names a seed node (a
	// Service in front of the nodes does); the client learns the others
	// from it.
	Enabled bool
	// Groups is the number of hash-tagged groups the blocks are spread over:
	// each group is one hash slot, so one script updates it atomically, and
	// a score sends one MGET per group, pipelined per node. Default 1
	// standalone (the whole index in one call), DefaultClusterGroups with
	// Enabled. More groups spread a cluster's load more evenly.
	Groups int
}

// DefaultClusterGroups is Groups' default in a cluster: enough that three
// to a dozen masters each hold several groups.
const DefaultClusterGroups = 48

// maxGroups bounds Groups: every group costs a script call per Add that
// touches it.
const maxGroups = 4096

func (c ClusterConfig) validate(db int, bad func(field, format string, args ...any)) {
	if c.Enabled && db != 0 {
		bad("db", "%d with cluster.enabled (valid: 0, Redis Cluster's only database)", db)
	}
	if c.Groups < 0 || c.Groups > maxGroups {
		bad("cluster.groups", "%d out of range (valid: 0 for the default, up to %d)", c.Groups, maxGroups)
	}
}

func (c ClusterConfig) groups() int {
	switch {
	case c.Groups > 0:
		return c.Groups
	case c.Enabled:
		return DefaultClusterGroups
	}
	return 1
}

// newClient returns a standalone or a cluster client for a validated,
// defaulted Config. Neither retries a command after a network error (the
// write scripts are not idempotent); the cluster client still follows
// redirections, which are safe because the redirected command did not run.
func (c Config) newClient() (goredis.UniversalClient, error) {
	o, err := c.clientOptions()
	if err != nil {
		return nil, err
	}
	if !c.Cluster.Enabled {
		return goredis.NewClient(o), nil
	}
	return goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:                 []string{c.Addr},
		Username:              o.Username,
		Password:              o.Password,
		PoolSize:              o.PoolSize,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		MaxRedirects:          3,
		// A failover takes seconds: do not hammer a node that is down.
		MinRetryBackoff: 8 * time.Millisecond,
		DisableIdentity: true,
		TLSConfig:       o.TLSConfig,
	}), nil
}
