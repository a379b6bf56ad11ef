package redispub_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/publish/redispub"
)

// BenchmarkPublishRedis publishes b.N synthetic events to a redis-server
// on loopback through Publish (validate, encode, XADD pipelined), 1000
// per call, and reports events/s.
func BenchmarkPublishRedis(b *testing.B) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer c.Close()
	c.Del(ctx, "bench:events")
	defer c.Del(ctx, "bench:events")
	p, err := redispub.New(c, redispub.Config{Stream: "bench:events"})
	if err != nil {
		b.Fatal(err)
	}
	ev := events(b.N, 9) // distinct events, as a writer publishes
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < len(ev); i += 1000 {
		if err := p.Publish(ctx, ev[i:min(i+1000, len(ev))]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
