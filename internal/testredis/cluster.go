package testredis

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster on loopback owned by one test: masters with
// replicas, created with redis-cli --cluster create.
type Cluster struct {
	t     testing.TB
	Nodes []*Server // masters first, as created
}

// StartCluster starts masters*(1+replicas) cluster-enabled servers, joins
// them into a cluster and waits until every node reports the cluster ok and
// every master has its replicas attached. A node that misses a peer for a
// second is considered failing, so a failover takes seconds.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	return StartClusterOf(t, "redis-server", masters, replicas)
}

// StartClusterOf is StartCluster of another server program, such as
// valkey-server (whose nodes redis-cli joins as it joins Redis's).
func StartClusterOf(t testing.TB, binary string, masters, replicas int) *Cluster {
	t.Helper()
	cli := Binary(t, "redis-cli")
	c := &Cluster{t: t}
	n := masters * (1 + replicas)
	for range n {
		// Two ports: clients', and the cluster bus's.
		s := StartServer(t, Options{Binary: binary, nports: 2, ports: func(p []int) []string {
			return []string{"--port", strconv.Itoa(p[0]), "--cluster-port", strconv.Itoa(p[1]),
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes-" + strconv.Itoa(p[0]) + ".conf",
				"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"}
		}})
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.Nodes {
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	c.waitFor("every master to have its replicas", func() bool {
		for _, s := range c.Nodes[:masters] {
			info, err := command(s.Addr(), "INFO replication")
			if err != nil || !strings.Contains(info, "connected_slaves:"+strconv.Itoa(replicas)) {
				return false
			}
		}
		return true
	})
	return c
}

// Addr is a node to reach the cluster through.
func (c *Cluster) Addr() string { return c.Nodes[0].Addr() }

// Alive are the nodes not killed.
func (c *Cluster) Alive() []*Server {
	var out []*Server
	for _, s := range c.Nodes {
		if s.cmd != nil {
			out = append(out, s)
		}
	}
	return out
}

// MasterOf returns the node serving key's slot now.
func (c *Cluster) MasterOf(key string) *Server {
	c.t.Helper()
	for _, s := range c.Alive() {
		slot, err := command(s.Addr(), "CLUSTER KEYSLOT "+key)
		if err != nil {
			continue
		}
		slot = strings.TrimPrefix(slot, ":")
		nodes, err := command(s.Addr(), "CLUSTER NODES")
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(slot)
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, _ := strings.Cut(r, "-")
				a, err1 := strconv.Atoi(lo)
				b := a
				if hi != "" {
					b, _ = strconv.Atoi(hi)
				}
				if err1 == nil && n >= a && n <= b {
					addr, _, _ := strings.Cut(f[1], "@")
					for _, x := range c.Nodes {
						if x.Addr() == addr {
							return x
						}
					}
				}
			}
		}
	}
	c.t.Fatalf("no live master serves %q", key)
	return nil
}

// WaitHealthy waits until every live node reports cluster_state:ok with
// all 16384 slots served.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	c.waitFor("cluster state ok on every live node", func() bool {
		for _, s := range c.Alive() {
			info, err := command(s.Addr(), "CLUSTER INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds. The bound only turns a cluster that
// never converges into a failure instead of a hung test.
func (c *Cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			var logs strings.Builder
			for i, s := range c.Nodes {
				fmt.Fprintf(&logs, "--- node %d (%s)\n%s", i, s.Addr(), tail(s.Log(), 15))
			}
			c.t.Fatalf("waiting for %s: gave up\n%s", what, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
