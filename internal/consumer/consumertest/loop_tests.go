package consumertest

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
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

// newIndex starts a redis-server for the index under test.
func newIndex(t *testing.T) (*index.Index, *redis.Client) {
	t.Helper()
	c := testserver.Redis(t).Client(t)
	x, err := index.New(c, index.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return x, c
}

// history returns n valid events as raw messages, half JSON and half
// msgpack, every fifth one twice, and the model of the index they give.
func history(t *testing.T, n int) ([]Raw, *synth.Model) {
	t.Helper()
	g := synth.New(synth.Config{Seed: 42, Hours: 30})
	events := g.Events(n)
	m := synth.NewModel()
	m.Apply(events...)
	var raws []Raw
	for i := range events {
		f, ct := event.JSON, "json"
		if i%2 == 1 {
			f, ct = event.MsgPack, "msgpack"
		}
		data, err := event.Encode(f, &events[i])
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, Raw{Data: data, ContentType: ct})
		if i%5 == 0 {
			raws = append(raws, Raw{Data: data, ContentType: ct})
		}
	}
	return raws, m
}

// poison returns invalid messages of several kinds.
func poison() []Raw {
	good := `{"v":1,"id":"p","type":"file.created","time":1,"database":"demo","table":"events","layer":"default","path":"date=2024-01-15/hour=01/p.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":2}`
	return []Raw{
		{Data: []byte(`{not json`), ContentType: "json"},
		{Data: []byte{0x81, 0xa1}, ContentType: "msgpack"},
		{Data: []byte(`{"v":2}`), ContentType: "json"},
		{Data: []byte(good[:len(good)-1] + `,"extra":1}`), ContentType: "json"},
		{Data: []byte(`{"v":1,"id":"x","type":"file.deleted","time":1,"database":"../etc","table":"t","layer":"default","path":"date=2024-01-15/hour=01/p.1.parquet"}`), ContentType: "json"},
		{Data: []byte(good), ContentType: "text/plain"},
	}
}

// checkIndex compares the index with the model.
func checkIndex(t *testing.T, x *index.Index, m *synth.Model) {
	t.Helper()
	ctx := context.Background()
	files, bytes, rows := m.Totals("demo", "events")
	st, err := x.Stats(ctx, "demo", "events")
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != files || st.Bytes != bytes || st.Rows != rows {
		t.Errorf("index stats %d files %d bytes %d rows; model %d %d %d", st.Files, st.Bytes, st.Rows, files, bytes, rows)
	}
	live := m.Live["demo:events"]
	n := 0
	for e, err := range x.Query(ctx, index.Query{Database: "demo", Table: "events"}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if _, ok := live[e.Path]; !ok {
			t.Errorf("indexed %s, which the model does not have live", e.Path)
		}
	}
	if n != len(live) {
		t.Errorf("%d files indexed, model %d", n, len(live))
	}
	if rep, err := x.Check(ctx, nil); err != nil || len(rep.Drifts) > 0 {
		t.Errorf("check: %v %v", rep.Drifts, err)
	}
}

// runUntil runs the loop until want messages were acknowledged (or the
// deadline), then stops it and returns Run's error.
func runUntil(t *testing.T, cfg consumer.Config, want int, within time.Duration) (int, error) {
	t.Helper()
	var acked atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	cfg.AfterBatch = func(n int) {
		if acked.Add(int64(n)) >= int64(want) {
			cancel()
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(within, cancel)
	defer timer.Stop()
	err = r.Run(ctx)
	return int(acked.Load()), err
}

func testLoopEndToEnd(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: 2 * time.Second, MaxDeliver: 5})
	x, _ := newIndex(t)
	raws, model := history(t, 600)
	bad := poison()
	all := append(append([]Raw{}, raws[:300]...), bad...)
	all = append(all, raws[300:]...)
	env.Publish(t, all...)
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	acked, err := runUntil(t, consumer.Config{Source: src, Index: x, BatchSize: 97}, len(all), 60*time.Second)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if acked != len(all) {
		t.Fatalf("acknowledged %d of %d messages", acked, len(all))
	}
	checkIndex(t, x, model)
	dl := env.DeadLetters(t)
	if len(dl) != len(bad) {
		t.Fatalf("%d dead letters, want exactly the %d invalid messages: %+v", len(dl), len(bad), dl)
	}
	for _, d := range dl {
		if d.Reason == "" {
			t.Errorf("dead letter %s has no reason", d.OriginalID)
		}
	}
	if n := env.Pending(t); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

// crashingSource fails every Ack as a crash between apply and ack would.
type crashingSource struct {
	consumer.Source
}

var errCrash = errors.New("crashed before the ack")

func (c *crashingSource) Ack(ctx context.Context, msgs []consumer.Message) error {
	return &fatalErr{errCrash}
}

// fatalErr makes Classify stop the loop, as a crash does.
type fatalErr struct{ error }

func (e *fatalErr) Unwrap() error { return consumer.ErrGroupMissing }

func testLoopCrashAfterApply(t *testing.T, h Harness) {
	claim := time.Second
	env := h.Setup(t, Options{ClaimAfter: claim, MaxDeliver: 5})
	x, c := newIndex(t)
	raws, model := history(t, 200)
	env.Publish(t, raws...)

	// Worker a applies its first batch and dies before acknowledging it.
	a := &crashingSource{Source: env.NewSource(t, "a")}
	_, err := runUntil(t, consumer.Config{Source: a, Index: x, BatchSize: 1000}, len(raws), 30*time.Second)
	if !errors.Is(err, consumer.ErrGroupMissing) {
		t.Fatalf("crashing worker: %v", err)
	}
	applied := c.DBSize(context.Background()).Val()
	if applied == 0 {
		t.Fatal("the crashing worker applied nothing")
	}
	// Worker b gets everything again; re-applying changes nothing.
	b := env.NewSource(t, "b")
	defer closeSource(t, b)
	acked, err := runUntil(t, consumer.Config{Source: b, Index: x}, len(raws), 10*claim+30*time.Second)
	if err != nil || acked != len(raws) {
		t.Fatalf("worker b acknowledged %d of %d: %v", acked, len(raws), err)
	}
	checkIndex(t, x, model)
	if n := env.Pending(t); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
	a.Source.Close()
}

// slowIndex delays every apply, so a shutdown finds a batch in flight.
type slowIndex struct {
	consumer.Applier
	delay   time.Duration
	started chan struct{}
	once    sync.Once
}

func (s *slowIndex) Apply(ctx context.Context, events []event.Event) (index.Result, error) {
	s.once.Do(func() { close(s.started) })
	time.Sleep(s.delay)
	return s.Applier.Apply(ctx, events)
}

func testLoopShutdown(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: 10 * time.Second, MaxDeliver: 5})
	x, _ := newIndex(t)
	raws, _ := history(t, 50)
	env.Publish(t, raws...)
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	slow := &slowIndex{Applier: x, delay: 500 * time.Millisecond, started: make(chan struct{})}
	var acked atomic.Int64
	r, err := consumer.New(consumer.Config{Source: src, Index: slow, BatchSize: 1000, Linger: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), AfterBatch: func(n int) { acked.Add(int64(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-slow.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch started")
	}
	cancel() // SIGTERM with a batch in flight
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
	if acked.Load() == 0 {
		t.Fatal("the in-flight batch was not finished and acknowledged")
	}
	if p := env.Pending(t); p != 0 {
		t.Errorf("pending = %d after a clean shutdown, want 0 (in-flight batch acknowledged: %s)", p, strconv.FormatInt(acked.Load(), 10))
	}
}
