package redisstream

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish/redispub"
)

// BenchmarkFetchAck measures the source's share of the pipeline: fetch
// batches of 1000 and acknowledge them, one XREADGROUP and one XACK each.
func BenchmarkFetchAck(b *testing.B) {
	ctx := context.Background()
	c := server.Client(b)
	n := testSeq.Add(1)
	stream := "bench" + time.Now().Format("150405.000") + string(rune('a'+n%26))
	if _, _, err := Setup(ctx, c, stream, "g", "0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Del(ctx, stream) })
	data := []byte(`{"v":1,"id":"01J0000000000000000000000","type":"file.created","time":1718000000000000000,"database":"demo","table":"events","layer":"default","writer_id":"","path":"date=2024-06-10/hour=06/abcdefgh.1.parquet","size_bytes":123456,"row_count":1000,"chunk_time":1718000000000000000,"min_time":1718000000000000000,"max_time":1718000003600000000}`)
	msgs := make([]redispub.Message, 1000)
	for i := range msgs {
		msgs[i] = redispub.Message{Data: data, CT: "json"}
	}
	for left := b.N; left > 0; left -= len(msgs) {
		publishRaw(b, c, stream, msgs[:min(left, len(msgs))]...)
	}
	s, err := New(c, Config{Stream: stream, Group: "g", Consumer: "a"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	got := 0
	var batch []consumer.Message
	for got < b.N {
		batch, err = s.Fetch(ctx, 1000, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Ack(ctx, batch); err != nil {
			b.Fatal(err)
		}
		got += len(batch)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPipeline measures the whole pipeline end to end on one
// redis-server: events published to the stream, consumed by the loop
// (consumer.Runner) through this source, decoded and applied to the index,
// then acknowledged. It reports events/s.
func BenchmarkPipeline(b *testing.B) {
	ctx := context.Background()
	srv := testserver.Redis(b)
	c := srv.Client(b)
	x, err := index.New(c, index.Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := x.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if _, _, err := Setup(ctx, c, "", "", "0"); err != nil {
		b.Fatal(err)
	}
	events := synth.New(synth.Config{Hours: 48}).Events(b.N)
	p, err := redispub.New(c, redispub.Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Publish(ctx, events...); err != nil {
		b.Fatal(err)
	}
	src, err := New(c, Config{Consumer: "bench", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	var acked atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, err := consumer.New(consumer.Config{Source: src, Index: x, Logger: slog.New(slog.DiscardHandler),
		AfterBatch: func(n int) {
			if acked.Add(int64(n)) >= int64(b.N) {
				cancel()
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if err := r.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n := acked.Load(); n != int64(b.N) {
		b.Fatalf("acknowledged %d of %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
