package index_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/redisconn"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// replicated starts a master and a replica, and returns a client of the
// master once the replica's link is up.
func replicated(tb testing.TB) (master, replica *testserver.RedisServer, c *redis.Client) {
	tb.Helper()
	master = testserver.Redis(tb)
	replica = testserver.Redis(tb, testserver.RedisConfig{Args: []string{"--replicaof", "127.0.0.1", strings.TrimPrefix(master.Addr(), "127.0.0.1:")}})
	c = master.Client(tb)
	deadline := time.Now().Add(30 * time.Second)
	for c.Wait(context.Background(), 1, 100*time.Millisecond).Val() < 1 {
		if time.Now().After(deadline) {
			tb.Fatal("the replica never came online")
		}
	}
	return master, replica, c
}

// TestApplyWaitReplicas: with Config.Wait, Apply succeeds once the
// replica has the batch, and fails with ErrNotReplicated while the replica
// is stopped — the batch is on the master, and applying it again once the
// replica is back succeeds (every event a duplicate) and is confirmed.
func TestApplyWaitReplicas(t *testing.T) {
	_, replica, c := replicated(t)
	ctx := t.Context()
	x, err := index.New(c, index.Config{Wait: redisconn.Wait{Replicas: 1, Timeout: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Load(ctx); err != nil {
		t.Fatal(err)
	}
	g := synth.New(synth.Config{})
	if _, err := x.Apply(ctx, g.Events(100)); err != nil {
		t.Fatal(err)
	}
	if err := replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	batch := g.Events(100)
	if _, err := x.Apply(ctx, batch); !errors.Is(err, redisconn.ErrNotReplicated) {
		t.Fatalf("Apply with the replica stopped: %v; want ErrNotReplicated", err)
	}
	if err := replica.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	res, err := x.Apply(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Count(index.Applied) + res.Count(index.Tombstoned); n != 0 {
		t.Errorf("applying the unconfirmed batch again changed %d events; want only duplicates", n)
	}
	if at := c.Get(ctx, x.Layout().WaitBarrier()).Val(); at == "" {
		t.Error("no barrier key written")
	}
	if _, err := index.New(struct{ index.Client }{c}, index.Config{Wait: redisconn.Wait{Replicas: 1}}); err == nil {
		t.Error("Config.Wait accepted a client without pipelines")
	}
}

// BenchmarkApplyWaitReplicas compares batches of 1,000 events applied
// without waiting and confirmed by WAIT on one replica (loopback): the
// cost of --redis-wait-replicas 1 per batch.
func BenchmarkApplyWaitReplicas(b *testing.B) {
	for _, n := range []int{0, 1} {
		b.Run("replicas="+strconv.Itoa(n), func(b *testing.B) {
			_, _, c := replicated(b)
			ctx := context.Background()
			x, err := index.New(c, index.Config{Wait: redisconn.Wait{Replicas: n, Timeout: 5 * time.Second}})
			if err != nil {
				b.Fatal(err)
			}
			if err := x.Load(ctx); err != nil {
				b.Fatal(err)
			}
			g := synth.New(synth.Config{Hours: 48})
			evs := g.Events(1000 * (b.N + 5))
			for i := 0; i < 5; i++ { // warm up
				if _, err := x.Apply(ctx, evs[i*1000:(i+1)*1000]); err != nil {
					b.Fatal(err)
				}
			}
			evs = evs[5000:]
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := x.Apply(ctx, evs[i*1000:(i+1)*1000]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
