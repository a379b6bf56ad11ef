package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/natsserver"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// fixture is one server with the streams and consumer of testNames(1).
type fixture struct {
	srv *natsserver.Server
	cfg SetupConfig
	js  natsjs.JetStream
	pub *testPublisher
	n   atomic.Int64
}

func newFixture(t *testing.T, cfg SetupConfig) *fixture {
	t.Helper()
	srv := testserver.NATS(t)
	_, js := testConn(t, srv.ClientURL(), "fixture")
	if _, _, err := Setup(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, cfg: cfg, js: js, pub: newTestPublisher(js, cfg.SubjectPrefix)}
}

func (f *fixture) source(t *testing.T) *Source {
	t.Helper()
	_, js := testConn(t, f.srv.ClientURL(), "worker")
	src, err := New(context.Background(), js, f.sourceConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func (f *fixture) sourceConfig() Config {
	return Config{Stream: f.cfg.Stream, Consumer: f.cfg.Consumer, SubjectPrefix: f.cfg.SubjectPrefix,
		DeadLetterPrefix: f.cfg.DeadLetterPrefix, MaxDeliver: f.cfg.MaxDeliver, Logger: slog.New(slog.DiscardHandler)}
}

// publish publishes n opaque messages to <prefix>.db.tbl.
func (f *fixture) publish(t *testing.T, n int) {
	t.Helper()
	out := make([]Outgoing, n)
	for i := range out {
		k := f.n.Add(1)
		out[i] = Outgoing{Subject: f.cfg.SubjectPrefix + ".db.tbl", MsgID: "x" + strconv.FormatInt(k, 10), Data: []byte(fmt.Sprintf(`{"n":%d}`, k))}
	}
	if err := f.pub.Publish(context.Background(), out); err != nil {
		t.Fatal(err)
	}
}

func fetchAll(t *testing.T, src *Source, n int, within time.Duration) []consumer.Message {
	t.Helper()
	var got []consumer.Message
	for end := time.Now().Add(within); len(got) < n && time.Now().Before(end); {
		msgs, err := src.Fetch(context.Background(), n-len(got), 200*time.Millisecond)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		got = append(got, msgs...)
	}
	if len(got) != n {
		t.Fatalf("fetched %d messages, want %d", len(got), n)
	}
	return got
}

func TestNewWithoutSetup(t *testing.T) {
	srv := testserver.NATS(t)
	_, js := testConn(t, srv.ClientURL(), "w")
	ctx := context.Background()
	cfg := testNames(1)
	_, err := New(ctx, js, Config{Stream: cfg.Stream, Consumer: cfg.Consumer})
	if !errors.Is(err, consumer.ErrStreamMissing) || consumer.Classify(err) != consumer.Fatal ||
		!strings.Contains(err.Error(), "run 'indexer setup --source nats'") {
		t.Errorf("New without a stream: %v", err)
	}
	if _, _, err := Setup(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, cfg.Stream, cfg.Consumer); err != nil {
		t.Fatal(err)
	}
	_, err = New(ctx, js, Config{Stream: cfg.Stream, Consumer: cfg.Consumer})
	if !errors.Is(err, consumer.ErrGroupMissing) || consumer.Classify(err) != consumer.Fatal ||
		!strings.Contains(err.Error(), "run 'indexer setup --source nats'") {
		t.Errorf("New without a consumer: %v", err)
	}
	if _, err := js.CreateConsumer(ctx, cfg.Stream, natsjs.ConsumerConfig{Durable: "push", DeliverSubject: "x.y", AckPolicy: natsjs.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err = New(ctx, js, Config{Stream: cfg.Stream, Consumer: "push"}); err == nil || !strings.Contains(err.Error(), "push consumer") {
		t.Errorf("New on a push consumer: %v", err)
	}
}

// TestDeletedWhileRunning: deleting the consumer (or the stream) under a
// waiting Fetch fails it at once with a fatal error, and so does every
// Fetch after.
func TestDeletedWhileRunning(t *testing.T) {
	for _, what := range []string{"consumer", "stream"} {
		t.Run(what, func(t *testing.T) {
			f := newFixture(t, testNames(1))
			src := f.source(t)
			want := consumer.ErrGroupMissing
			done := make(chan error, 1)
			go func() {
				_, err := src.Fetch(context.Background(), 10, 30*time.Second)
				done <- err
			}()
			time.Sleep(200 * time.Millisecond)
			ctx := context.Background()
			if what == "consumer" {
				if err := f.js.DeleteConsumer(ctx, f.cfg.Stream, f.cfg.Consumer); err != nil {
					t.Fatal(err)
				}
			} else {
				want = consumer.ErrStreamMissing
				if err := f.js.DeleteStream(ctx, f.cfg.Stream); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			for i := 0; i < 2; i++ { // the waiting Fetch, then a new one
				var err error
				if i == 0 {
					select {
					case err = <-done:
					case <-time.After(5 * time.Second):
						t.Fatal("Fetch went on waiting after its consumer was deleted")
					}
				} else {
					_, err = src.Fetch(ctx, 10, 5*time.Second)
				}
				if !errors.Is(err, want) || consumer.Classify(err) != consumer.Fatal {
					t.Fatalf("fetch %d after the %s was deleted: %v, want a fatal %v", i, what, err, want)
				}
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("fetches took %v to fail", took)
			}
			if _, err := src.Lag(ctx); !errors.Is(err, want) {
				t.Errorf("Lag: %v", err)
			}
		})
	}
}

// TestDeletedConsumerStopsTheLoop: the consume loop returns a fatal error
// within seconds when its consumer is deleted mid-run.
func TestDeletedConsumerStopsTheLoop(t *testing.T) {
	f := newFixture(t, testNames(1))
	x := newTestIndex(t)
	src := f.source(t)
	f.publishEvents(t, synth.New(synth.Config{Seed: 1}).Events(100))
	var acked atomic.Int64
	r, err := consumer.New(consumer.Config{Source: src, Index: x, Logger: slog.New(slog.DiscardHandler),
		RetryInitial: 10 * time.Millisecond, AfterBatch: func(n int) { acked.Add(int64(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if !waitFor(10*time.Second, func() bool { return acked.Load() == 100 }) {
		t.Fatalf("acknowledged %d of 100", acked.Load())
	}
	if err := f.js.DeleteConsumer(ctx, f.cfg.Stream, f.cfg.Consumer); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, consumer.ErrGroupMissing) {
			t.Fatalf("Run returned %v, want an error wrapping ErrGroupMissing", err)
		}
		t.Logf("Run stopped after %v: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run went on after its consumer was deleted")
	}
}

// publishEvents publishes valid events, JSON-encoded.
func (f *fixture) publishEvents(t *testing.T, events []event.Event) {
	t.Helper()
	if err := f.tryPublishEvents(events); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) tryPublishEvents(events []event.Event) error {
	out := make([]Outgoing, len(events))
	for i := range events {
		data, err := event.Encode(event.JSON, &events[i])
		if err != nil {
			return err
		}
		out[i] = Outgoing{Event: &events[i], Data: data}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.pub.Publish(ctx, out)
}

func newTestIndex(t *testing.T) *index.Index {
	t.Helper()
	x, err := index.New(testserver.Redis(t).Client(t), index.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return x
}

// TestServerRestart: while the server is down, Fetch fails promptly with
// errors the loop retries; once it is back (same store), messages flow
// and what was acknowledged before is not delivered again.
func TestServerRestart(t *testing.T) {
	f := newFixture(t, testNames(1))
	src := f.source(t)
	ctx := context.Background()
	f.publish(t, 10)
	if err := src.Ack(ctx, fetchAll(t, src, 10, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	f.srv.Shutdown()
	for i := 0; i < 3; i++ {
		start := time.Now()
		msgs, err := src.Fetch(ctx, 10, 2*time.Second)
		if err == nil || consumer.Classify(err) != consumer.Retry || len(msgs) != 0 {
			t.Fatalf("Fetch with the server down: %d messages, %v; want an error classified retry", len(msgs), err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Fetch with the server down took %v", took)
		}
	}
	if err := src.Ack(ctx, nil); err != nil {
		t.Fatal(err)
	}

	f.srv = testserver.RestartNATS(t, f.srv)
	var got []consumer.Message
	published := false
	for end := time.Now().Add(15 * time.Second); len(got) < 5 && time.Now().Before(end); {
		msgs, err := src.Fetch(ctx, 10, 200*time.Millisecond)
		if err != nil {
			if consumer.Classify(err) != consumer.Retry {
				t.Fatalf("Fetch after the restart: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !published {
			f.publish(t, 5) // the publisher's connection is back too
			published = true
		}
		got = append(got, msgs...)
	}
	if len(got) != 5 {
		t.Fatalf("after the restart fetched %d messages, want the 5 new ones", len(got))
	}
	for _, m := range got {
		if n, _ := strconv.Atoi(m.ID); n <= 10 || m.Deliveries != 1 {
			t.Errorf("after the restart got %s (deliveries %d): acknowledged before, or redelivered", m.ID, m.Deliveries)
		}
	}
	if err := src.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLoopAcrossRestart: the consume loop rides out a server restart and
// indexes every event, as the model says.
func TestLoopAcrossRestart(t *testing.T) {
	f := newFixture(t, testNames(1))
	x := newTestIndex(t)
	src := f.source(t)
	events := synth.New(synth.Config{Seed: 3, Hours: 10}).Events(600)
	model := synth.NewModel()
	model.Apply(events...)
	f.publishEvents(t, events[:300])
	var acked atomic.Int64
	r, err := consumer.New(consumer.Config{Source: src, Index: x, Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil)), BatchSize: 50,
		RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, AfterBatch: func(n int) { acked.Add(int64(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if !waitFor(10*time.Second, func() bool { return acked.Load() > 0 }) {
		t.Fatal("nothing acknowledged")
	}
	f.srv = testserver.RestartNATS(t, f.srv)
	if !waitFor(10*time.Second, func() bool { return f.tryPublishEvents(events[300:]) == nil }) {
		t.Fatal("could not publish after the restart")
	}
	if !waitFor(30*time.Second, func() bool { return acked.Load() >= 600 }) {
		t.Fatalf("acknowledged %d of at least 600", acked.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	files, bytes, rows := model.Totals("demo", "events")
	st, err := x.Stats(context.Background(), "demo", "events")
	if err != nil || st.Files != files || st.Bytes != bytes || st.Rows != rows {
		t.Errorf("index stats %+v (%v), model %d files %d bytes %d rows", st, err, files, bytes, rows)
	}
}

// tWriter writes logs to the test log (only shown when the test fails or
// with -v).
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestAckAfterConsumerDeleted: acks are not waited for, but the server's
// "no consumer" answer surfaces from Flush (and the next Ack) as fatal.
func TestAckAfterConsumerDeleted(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 2)
	src := f.source(t)
	got := fetchAll(t, src, 2, 5*time.Second)
	if err := f.js.DeleteConsumer(ctx, f.cfg.Stream, f.cfg.Consumer); err != nil {
		t.Fatal(err)
	}
	if err := src.Ack(ctx, got[:1]); err != nil {
		t.Fatalf("Ack (not waited for): %v", err)
	}
	if err := src.Flush(ctx); !errors.Is(err, consumer.ErrGroupMissing) || consumer.Classify(err) != consumer.Fatal {
		t.Fatalf("Flush: %v, want a fatal ErrGroupMissing", err)
	}
	if err := src.Ack(ctx, got[1:]); err != nil {
		t.Fatalf("next Ack: %v", err)
	}
	if !waitFor(5*time.Second, func() bool {
		err := src.Ack(ctx, got[1:])
		return errors.Is(err, consumer.ErrGroupMissing)
	}) {
		t.Fatal("Ack never reported the deleted consumer")
	}
}
