package redis_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/internal/testredis"
	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/indextest"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// clusterIndex is an Index on a cluster, with its registry.
func clusterIndex(t *testing.T, c *testredis.Cluster, edit ...func(*redis.Config)) (*redis.Index, *prometheus.Registry) {
	t.Helper()
	ti := newIndexAt(t, c.Addr(), append([]func(*redis.Config){func(cfg *redis.Config) {
		cfg.Cluster.Enabled = true
		cfg.DialTimeout = time.Duration(300 * time.Millisecond)
	}}, edit...)...)
	return ti.Index, ti.reg
}

// TestClusterConformance runs the suite against a cluster of three masters,
// each with a replica, the blocks spread over the default number of groups:
// a Redis Cluster, and a Valkey one.
func TestClusterConformance(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			c := testredis.StartClusterOf(t, s.binary, 3, 1)
			var n atomic.Int64
			indextest.Run(t, func(t *testing.T) kvblock.Index {
				prefix := fmt.Sprintf("conformance%d:", n.Add(1))
				ix, _ := clusterIndex(t, c, func(cfg *redis.Config) { cfg.KeyPrefix = prefix })
				return ix
			})
		})
	}
}

// TestGroupsOnOneServerConform runs the suite with the blocks spread over
// several groups of one server: the cluster's code paths without a cluster.
func TestGroupsOnOneServerConform(t *testing.T) {
	srv := startServer(t)
	var n atomic.Int64
	indextest.Run(t, func(t *testing.T) kvblock.Index {
		prefix := fmt.Sprintf("groups%d:", n.Add(1))
		return newIndexOn(t, srv, func(c *redis.Config) { c.KeyPrefix, c.Cluster.Groups = prefix, 5 }).Index
	})
}

func TestClusterScoreIsOneRoundTripPerMaster(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	ix, reg := clusterIndex(t, c)
	ctx := context.Background()
	ks := keyRange(0, 512)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podB, kvblock.TierCPU, ks[:100])
	wantMatched(t, mustScore(t, ix, ks, podA, podB, podC), 512, 100, 0)
	for _, op := range []string{"score", "add"} {
		before := counterValue(reg, "kvtrack_redis_round_trips_total", op)
		var err error
		if op == "score" {
			_, err = ix.Score(ctx, ks, []kvblock.Pod{podA, podB}, nil)
		} else {
			err = ix.Add(ctx, podA, kvblock.TierGPU, ks)
		}
		if err != nil {
			t.Fatal(err)
		}
		// 48 groups over 3 masters: every master is involved, once.
		if got := counterValue(reg, "kvtrack_redis_round_trips_total", op) - before; got != 3 {
			t.Errorf("%s of 512 keys took %v round trips, want 3 (one per master, in parallel)", op, got)
		}
	}
}

// TestClusterReplicasShareOneCluster is TestReplicasShareOneServer on a
// cluster: two Index values route alike.
func TestClusterReplicasShareOneCluster(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	one, _ := clusterIndex(t, c)
	two, _ := clusterIndex(t, c)
	ks := keyRange(0, 64)
	mustAdd(t, one, podA, kvblock.TierGPU, ks)
	mustAdd(t, two, podB, kvblock.TierCPU, ks[:40])
	mustAdd(t, two, podC, kvblock.TierGPU, ks[:10])
	a := mustScore(t, one, ks, podA, podB, podC)
	b := mustScore(t, two, ks, podA, podB, podC)
	wantMatched(t, a, 64, 40, 10)
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("candidate %d: replica one scores %+v, replica two %+v", i, a[i], b[i])
		}
	}
}

// TestClusterFailoverDegradesThenRecovers kills the master holding the
// pod registry while scores and stores run: scores are errors with zero
// scores, or scores no higher than the truth, until the replica is
// promoted; then every score succeeds again, and after the pods are
// resynced (cleared and stored again, as a lost-writes recovery does)
// scores are exact.
func TestClusterFailoverDegradesThenRecovers(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) { testFailover(t, testredis.StartClusterOf(t, s.binary, 3, 1)) })
	}
}

func testFailover(t *testing.T, c *testredis.Cluster) {
	ix, _ := clusterIndex(t, c)
	ctx := context.Background()
	ks := keyRange(0, 256)
	mustAdd(t, ix, podA, kvblock.TierGPU, ks)
	mustAdd(t, ix, podB, kvblock.TierGPU, ks[:128])
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 256, 128)

	var (
		stop              = make(chan struct{})
		wg                sync.WaitGroup
		okScores, failed  atomic.Int64
		wrong             atomic.Value // first bad score seen
		writeErrs, writes atomic.Int64
	)
	wg.Add(2)
	go func() { // a reader scoring without pause
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := ix.Score(ctx, ks, []kvblock.Pod{podA, podB}, nil)
			switch {
			case err != nil:
				failed.Add(1)
				if got[0].Matched != 0 || got[1].Matched != 0 {
					wrong.CompareAndSwap(nil, fmt.Sprintf("failed score %+v is not zero", got))
				}
			case got[0].Matched > 256 || got[1].Matched > 128:
				wrong.CompareAndSwap(nil, fmt.Sprintf("score %+v is above the truth", got))
			default:
				okScores.Add(1)
			}
		}
	}()
	go func() { // a writer storing what is already there (references)
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			writes.Add(1)
			if err := ix.Add(ctx, podC, kvblock.TierGPU, ks[:8]); err != nil {
				writeErrs.Add(1)
			}
		}
	}()

	waitUntil(t, "scores before the failover", func() bool { return okScores.Load() > 5 })
	victim := c.MasterOf("kvtrack:{m}pods")
	victim.Kill()
	t0 := time.Now()
	waitUntil(t, "scores to fail while the master is down", func() bool { return failed.Load() > 0 })
	c.WaitHealthy()
	t.Logf("cluster healthy again %v after the kill", time.Since(t0))
	// The client learns the new topology from its errors; scores recover.
	recovered := okScores.Load()
	waitUntil(t, "scores to succeed after the promotion", func() bool { return okScores.Load() > recovered+5 })
	t.Logf("scores recovered %v after the kill (%d failed)", time.Since(t0), failed.Load())
	close(stop)
	wg.Wait()
	if w := wrong.Load(); w != nil {
		t.Fatal(w)
	}
	if writeErrs.Load() == 0 {
		t.Errorf("%d writes during the failover, none failed: a lost write must surface as an error", writes.Load())
	}

	// Resync: what the pods hold is stored again from scratch.
	for _, p := range []struct {
		pod kvblock.Pod
		ks  []kvblock.Key
	}{{podA, ks}, {podB, ks[:128]}} {
		if err := ix.ClearPod(ctx, p.pod); err != nil {
			t.Fatal(err)
		}
		mustAdd(t, ix, p.pod, kvblock.TierGPU, p.ks)
	}
	wantMatched(t, mustScore(t, ix, ks, podA, podB), 256, 128)
}

// waitUntil polls cond until the test binary's deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// TestTLSEndToEnd stores and scores over TLS with certificates made for the
// test, and shows that a server whose certificate another CA signed is
// refused; on Redis and on Valkey.
func TestTLSEndToEnd(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			testTLS(t, testredis.StartServer(t, testredis.Options{TLS: true, Binary: s.binary}))
		})
	}
}

func testTLS(t *testing.T, srv *server) {
	for _, tc := range []struct {
		name    string
		ca      string
		wantErr bool
	}{
		{"trusted CA", srv.Certs().CA, false},
		{"another CA", testredis.NewCerts(t, t.TempDir()).CA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := redis.DefaultConfig()
			cfg.Addr = srv.Addr()
			cfg.KeyPrefix = "tls" + fmt.Sprint(tc.wantErr) + ":"
			cfg.TLS = redis.TLSConfig{Enabled: true, CAFile: tc.ca}
			ix, err := redis.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			ctx := context.Background()
			ks := keyRange(0, 8)
			err = ix.Add(ctx, podA, kvblock.TierGPU, ks)
			if tc.wantErr {
				if err == nil {
					t.Fatal("Add through a server certificate from another CA succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantMatched(t, mustScore(t, ix, ks, podA, podB), 8, 0)
		})
	}
}
