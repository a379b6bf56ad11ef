package jetstream

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// benchEvents returns n encoded synthetic events, ready to publish.
func benchEvents(b *testing.B, n int) []Outgoing {
	b.Helper()
	events := synth.New(synth.Config{Seed: 1}).Events(n)
	out := make([]Outgoing, n)
	for i := range events {
		data, err := event.Encode(event.JSON, &events[i])
		if err != nil {
			b.Fatal(err)
		}
		out[i] = Outgoing{Event: &events[i], Data: data, Format: event.JSON}
	}
	return out
}

// BenchmarkPublish measures the Publisher against an in-process server
// (which shares the CPU), in batches of 1000 events.
func BenchmarkPublish(b *testing.B) {
	srv := testserver.NATS(b)
	_, js := testConn(b, srv.ClientURL(), "bench")
	cfg := testNames(1)
	if _, _, err := Setup(context.Background(), js, cfg); err != nil {
		b.Fatal(err)
	}
	pub := newTestPublisher(js, cfg.SubjectPrefix)
	msgs := benchEvents(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		setMsgIDs(msgs, i)
		if err := pub.Publish(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/time.Since(start).Seconds(), "events/s")
}

// BenchmarkFetchAck measures Fetch and Ack of batches of 1000 stored
// events, without applying them.
func BenchmarkFetchAck(b *testing.B) {
	srv := testserver.NATS(b)
	_, js := testConn(b, srv.ClientURL(), "bench")
	cfg := testNames(1)
	cfg.MaxAckPending = 100000
	if _, _, err := Setup(context.Background(), js, cfg); err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	msgs := benchEvents(b, batch)
	pub := newTestPublisher(js, cfg.SubjectPrefix)
	for i := 0; i < b.N; i++ {
		setMsgIDs(msgs, i)
		if err := pub.Publish(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	_, cjs := testConn(b, srv.ClientURL(), "worker")
	src, err := New(context.Background(), cjs, Config{Stream: cfg.Stream, Consumer: cfg.Consumer, SubjectPrefix: cfg.SubjectPrefix, DeadLetterPrefix: cfg.DeadLetterPrefix})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	got := 0
	for got < b.N*batch {
		var ms []consumer.Message
		for len(ms) < batch && got+len(ms) < b.N*batch {
			m, err := src.Fetch(context.Background(), batch-len(ms), time.Second)
			if err != nil {
				b.Fatal(err)
			}
			ms = append(ms, m...)
		}
		if err := src.Ack(context.Background(), ms); err != nil {
			b.Fatal(err)
		}
		got += len(ms)
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "events/s")
}

// setMsgIDs makes the ids of round i unique, so publishing the same events
// again is not de-duplicated.
func setMsgIDs(msgs []Outgoing, round int) {
	for j := range msgs {
		msgs[j].MsgID = strconv.Itoa(round) + "-" + msgs[j].Event.ID
	}
}

// BenchmarkEndToEnd runs workers (consumer.Runner, batches of 1000, each
// with its own connection) applying events of a realistic history to a
// real Redis index, with nats-server in-process and Redis on this machine:
// "backlog" consumes events published before, "live" while a publisher
// publishes them. The events/s metric is the figure to watch.
func BenchmarkEndToEnd(b *testing.B) {
	const n = 200_000
	srv := testserver.NATS(b)
	rc := testserver.Redis(b).Client(b)
	events := synth.New(synth.Config{Seed: 7, Hours: 48}).Events(n)
	out := make([]Outgoing, n)
	for i := range events {
		data, err := event.Encode(event.JSON, &events[i])
		if err != nil {
			b.Fatal(err)
		}
		out[i] = Outgoing{Event: &events[i], Data: data, Format: event.JSON}
	}
	var round atomic.Int64
	for _, mode := range []string{"backlog", "live"} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", mode, workers), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.ReportMetric(endToEnd(b, srv.ClientURL(), rc, out, round.Add(1), mode == "live", workers), "events/s")
				}
			})
		}
	}
}

func endToEnd(b *testing.B, url string, rc *redis.Client, out []Outgoing, round int64, live bool, workers int) float64 {
	ctx := context.Background()
	n := len(out)
	if err := rc.FlushAll(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	x, err := index.New(rc, index.Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := x.Load(ctx); err != nil {
		b.Fatal(err)
	}
	_, js := testConn(b, url, "bench")
	cfg := testNames(round)
	if _, _, err := Setup(ctx, js, cfg); err != nil {
		b.Fatal(err)
	}
	publish := func() error {
		pub := newTestPublisher(js, cfg.SubjectPrefix)
		for i := 0; i < n; i += 5000 {
			if err := pub.Publish(ctx, out[i:min(i+5000, n)]); err != nil {
				return err
			}
		}
		return nil
	}
	pubDone := make(chan error, 1)
	if !live {
		pubDone <- publish()
	}
	runners := make([]*consumer.Runner, workers)
	var acked atomic.Int64
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := range runners {
		_, wjs := testConn(b, url, "worker")
		src, err := New(ctx, wjs, Config{Stream: cfg.Stream, Consumer: cfg.Consumer, SubjectPrefix: cfg.SubjectPrefix, DeadLetterPrefix: cfg.DeadLetterPrefix})
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		runners[w], err = consumer.New(consumer.Config{Source: src, Index: x, Logger: slog.New(slog.DiscardHandler),
			AfterBatch: func(k int) {
				if acked.Add(int64(k)) >= int64(n) {
					cancel()
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	if live {
		go func() { pubDone <- publish() }()
	}
	errs := make(chan error, workers)
	for _, r := range runners {
		go func() { errs <- r.Run(rctx) }()
	}
	for range runners {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	if err := <-pubDone; err != nil {
		b.Fatal(err)
	}
	return float64(n) / took.Seconds()
}
