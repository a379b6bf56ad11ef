package index_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/codec"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// scriptUsec returns the total CPU microseconds Redis spent in EVAL and
// EVALSHA, from INFO commandstats.
func scriptUsec(b *testing.B, c *redis.Client) float64 {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		for _, kv := range strings.Split(strings.TrimSpace(line[strings.IndexByte(line, ':')+1:]), ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return total
}

// BenchmarkApply applies batches of 1,000 events of a realistic history
// (30% deletes, 5% replaces, 5-column stats) and reports the Redis CPU
// time patch_index spends per event: the figure that bounds throughput.
func BenchmarkApply(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			srv := testserver.Redis(b)
			c := srv.Client(b)
			x, err := index.New(c, index.Config{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := x.Load(ctx); err != nil {
				b.Fatal(err)
			}
			g := synth.New(synth.Config{Hours: 48})
			// Warm up so the index holds files and deletes hit live paths.
			for i := 0; i < 20; i++ {
				if _, err := x.Apply(ctx, g.Events(batch)); err != nil {
					b.Fatal(err)
				}
			}
			batches := make([][]codec.Event, b.N)
			for i := range batches {
				batches[i] = g.Events(batch)
			}
			start := scriptUsec(b, c)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := x.Apply(ctx, batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			usec := scriptUsec(b, c) - start
			b.ReportMetric(usec/float64(b.N*batch), "redis-µs/event")
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
