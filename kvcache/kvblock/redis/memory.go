package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Memory reports the memory the server (every master of a cluster) uses,
// INFO memory's used_memory, and that divided by the index's entries, which
// it also sets as the kvtrack_redis_bytes_per_entry gauge. The server's own
// baseline (about a megabyte) and any other data in it count too, so the
// figure is only meaningful for a server holding a sizeable index.
func (ix *Index) Memory(ctx context.Context) (used int64, perEntry float64, err error) {
	start := time.Now()
	used, perEntry, err = ix.memory(ctx)
	ix.done(opStats, start, err)
	if err != nil {
		return 0, 0, fmt.Errorf("redis index: memory: %w", err)
	}
	return used, perEntry, nil
}

func (ix *Index) memory(ctx context.Context) (int64, float64, error) {
	st, err := ix.readStats(ctx)
	if err != nil {
		return 0, 0, err
	}
	var (
		mu   sync.Mutex
		used int64
	)
	read := func(ctx context.Context, c *goredis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		n, err := usedMemory(info)
		mu.Lock()
		used += n
		mu.Unlock()
		return err
	}
	ix.m.roundTrips[opStats].Inc()
	if ix.cluster != nil {
		err = ix.cluster.ForEachMaster(ctx, read)
	} else {
		err = read(ctx, ix.client.(*goredis.Client))
	}
	if err != nil {
		return 0, 0, err
	}
	var per float64
	if st.Entries > 0 {
		per = float64(used) / float64(st.Entries)
	}
	ix.m.bytesPerEntry.Set(per)
	return used, per, nil
}

// usedMemory reads used_memory from an INFO memory reply.
func usedMemory(info string) (int64, error) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO memory has no used_memory")
}
