package redispub_test

import (
	"context"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
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

// BenchmarkPublishRawRedis appends b.N events already encoded through
// PublishRaw (pipelined XADD, 1000 per call), as the bench's producer
// does, and reports the CPU this process spent per event: the client's
// cost alone (redis-server is another process).
//
//	go test -run '^$' -bench PublishRawRedis -benchtime 200000x ./publish/redispub
func BenchmarkPublishRawRedis(b *testing.B) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer c.Close()
	c.Del(ctx, "bench:raw")
	defer c.Del(ctx, "bench:raw")
	p, err := redispub.New(c, redispub.Config{Stream: "bench:raw"})
	if err != nil {
		b.Fatal(err)
	}
	ev := events(b.N, 9)
	msgs := make([]redispub.Message, len(ev))
	for i := range ev {
		data, err := event.Encode(event.JSON, &ev[i])
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = redispub.Message{Data: data, CT: "json"}
	}
	b.ReportAllocs()
	cpu0 := cpuMicros()
	b.ResetTimer()
	for i := 0; i < len(msgs); i += 1000 {
		if _, err := p.PublishRaw(ctx, msgs[i:min(i+1000, len(msgs))]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((cpuMicros()-cpu0)/float64(b.N), "cpu-µs/event")
}

// cpuMicros is the CPU time (user + system) this process used so far.
func cpuMicros() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}
