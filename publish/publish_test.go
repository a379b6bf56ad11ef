package publish_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/publish"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// redisErr is a server error reply, as go-redis returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

var _ redis.Error = redisErr("")

func TestTransient(t *testing.T) {
	ve := &event.ValidationError{Field: "path", Reason: "bad"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.EOF, true},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{syscall.ECONNREFUSED, true},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{redisErr("LOADING Redis is loading the dataset in memory"), true},
		{redisErr("READONLY You can't write against a read only replica."), true},
		{redisErr("MASTERDOWN Link with MASTER is down"), true},
		{redisErr("BUSY Redis is busy running a script"), true},
		{redisErr("OOM command not allowed"), true},
		{redisErr("NOPERM this user has no permissions"), false},
		{redisErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{redisErr("ERR unknown command"), false},
		{redis.ErrClosed, true},
		{nats.ErrTimeout, true},
		{nats.ErrNoResponders, true},
		{nats.ErrConnectionReconnecting, true},
		{nats.ErrReconnectBufExceeded, true},
		{nats.ErrConnectionClosed, false},
		{nats.ErrPermissionViolation, false},
		{nats.ErrMaxPayload, false},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}, false},
		{jetstream.ErrStreamNotFound, false},
		{publish.ErrStreamMissing, false},
		{publish.ErrClosed, false},
		{ve, false},
		{&publish.EventError{Index: 1, ID: "x", Err: ve}, false},
		{errors.New("something else"), false},
	} {
		if got := publish.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	n := 0
	err := publish.Retry(ctx, publish.Options{}, func(context.Context) error {
		if n++; n < 3 {
			return nats.ErrNoResponders
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("two transient failures then success: %v after %d attempts", err, n)
	}
	n = 0
	perm := redisErr("NOPERM no")
	if err := publish.Retry(ctx, publish.Options{}, func(context.Context) error { n++; return perm }); !errors.Is(err, perm) || n != 1 {
		t.Errorf("a permanent failure: %v after %d attempts, want it after 1", err, n)
	}
	n = 0
	if err := publish.Retry(ctx, publish.Options{RetryFor: -1}, func(context.Context) error { n++; return io.EOF }); !errors.Is(err, io.EOF) || n != 1 {
		t.Errorf("RetryFor < 0: %v after %d attempts, want one attempt", err, n)
	}
	n = 0
	err = publish.Retry(ctx, publish.Options{RetryFor: time.Nanosecond}, func(context.Context) error { n++; return io.EOF })
	if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "still failing after") {
		t.Errorf("RetryFor elapsed: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	err = publish.Retry(cctx, publish.Options{}, func(context.Context) error { cancel(); return io.EOF })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("context cancelled: %v", err)
	}
}

// memPublisher is a Publisher that keeps what it was given, refuses the
// events whose id starts with "bad", and blocks while gate is set.
type memPublisher struct {
	mu      sync.Mutex
	batches [][]event.Event
	gate    chan struct{} // when not nil, Publish waits for it or ctx
	calls   atomic.Int64
	fail    error // when set, every call fails with it
}

func (m *memPublisher) Publish(ctx context.Context, events ...event.Event) error {
	m.calls.Add(1)
	m.mu.Lock()
	gate, fail := m.gate, m.fail
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	for i, e := range events {
		if strings.HasPrefix(e.ID, "bad") {
			return &publish.EventError{Index: i, ID: e.ID, Err: &event.ValidationError{Field: "id", Reason: "refused by the test"}}
		}
	}
	m.mu.Lock()
	m.batches = append(m.batches, append([]event.Event(nil), events...))
	m.mu.Unlock()
	return nil
}

func (m *memPublisher) Close() error { return nil }

func (m *memPublisher) ids() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, b := range m.batches {
		for _, e := range b {
			out[e.ID]++
		}
	}
	return out
}

func ev(id string) event.Event { return event.Event{ID: id} }

// TestBatcher: events added one at a time by many goroutines are
// published once each, in batches of at most MaxBatch; an event the
// publisher refuses fails alone, reported by Flush and OnError.
func TestBatcher(t *testing.T) {
	ctx := context.Background()
	m := &memPublisher{}
	var onErr []string
	b := publish.NewBatcher(m, publish.BatcherConfig{MaxBatch: 50, Linger: time.Millisecond, MaxBuffered: 60,
		OnError: func(events []event.Event, err error) {
			for _, e := range events {
				onErr = append(onErr, e.ID)
			}
		}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := fmt.Sprintf("g%d-%d", g, i)
				if g == 3 && i == 100 {
					id = "bad-1"
				}
				if err := b.Add(ctx, ev(id)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	err := b.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), `"bad-1"`) {
		t.Errorf("Flush: %v, want the refused event", err)
	}
	var ve *event.ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("Flush error %v does not wrap the ValidationError", err)
	}
	ids := m.ids()
	if len(ids) != 8*200-1 {
		t.Errorf("%d distinct events published, want %d", len(ids), 8*200-1)
	}
	for id, n := range ids {
		if n != 1 || id == "bad-1" {
			t.Errorf("%s published %d times", id, n)
		}
	}
	for _, batch := range m.batches {
		if len(batch) > 50 {
			t.Errorf("a batch of %d events, MaxBatch 50", len(batch))
		}
	}
	if len(onErr) != 1 || onErr[0] != "bad-1" {
		t.Errorf("OnError got %v, want [bad-1]", onErr)
	}
	if err := b.Flush(ctx); err != nil {
		t.Errorf("second Flush: %v, want nil (failures are reported once)", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := b.Add(ctx, ev("late")); !errors.Is(err, publish.ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestBatcherBackpressure: Add blocks while the buffer is full, and gives
// up when its context ends.
func TestBatcherBackpressure(t *testing.T) {
	gate := make(chan struct{})
	m := &memPublisher{gate: gate}
	b := publish.NewBatcher(m, publish.BatcherConfig{MaxBatch: 2, MaxBuffered: 4})
	ctx := context.Background()
	// 2 in the blocked batch, 4 buffered: the buffer is full.
	if err := b.Add(ctx, ev("a"), ev("b")); err != nil {
		t.Fatal(err)
	}
	for m.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := b.Add(ctx, ev("c"), ev("d"), ev("e"), ev("f")); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Add(cctx, ev("g")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add to a full buffer with a cancelled context: %v", err)
	}
	done := make(chan error)
	go func() { done <- b.Add(ctx, ev("g")) }()
	close(gate) // the publisher goes on: room comes
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := m.ids(); len(ids) != 7 {
		t.Errorf("published %v, want a to g", ids)
	}
}

// TestBatcherCloseGivesUp: Close whose context ends aborts the publish in
// progress, reports the events not published, and leaves no goroutine
// (goleak checks at the end of the package's tests). A failure is
// returned once, by the next Flush or Close: here either the Flush that
// waits during Close (its events are among them) or Close itself, which
// ever takes it first.
func TestBatcherCloseGivesUp(t *testing.T) {
	m := &memPublisher{gate: make(chan struct{})} // never opens
	var lost atomic.Int64
	b := publish.NewBatcher(m, publish.BatcherConfig{MaxBatch: 3,
		OnError: func(events []event.Event, err error) { lost.Add(int64(len(events))) }})
	ctx := context.Background()
	if err := b.Add(ctx, ev("a"), ev("b"), ev("c"), ev("d"), ev("e")); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error)
	go func() { flushed <- b.Flush(ctx) }()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	closeErr := b.Close(cctx)
	flushErr := <-flushed
	for what, err := range map[string]error{"Close": closeErr, "a Flush waiting during Close": flushErr} {
		if err != nil && !strings.Contains(err.Error(), "not published") {
			t.Errorf("%s: %v, want nil or the events not published", what, err)
		}
	}
	if closeErr == nil && flushErr == nil {
		t.Error("neither Close nor the Flush waiting during it reported the events not published")
	}
	if got := lost.Load(); got != 5 {
		t.Errorf("OnError saw %d events, want 5", got)
	}
}

// TestBatcherPublisherFails: a batch the publisher cannot publish fails
// whole, once.
func TestBatcherPublisherFails(t *testing.T) {
	m := &memPublisher{fail: fmt.Errorf("gave up: %w", nats.ErrTimeout)}
	b := publish.NewBatcher(m, publish.BatcherConfig{})
	ctx := context.Background()
	if err := b.Add(ctx, ev("a"), ev("b")); err != nil {
		t.Fatal(err)
	}
	err := b.Flush(ctx)
	if !errors.Is(err, nats.ErrTimeout) || !strings.Contains(err.Error(), "2 events not published") {
		t.Errorf("Flush: %v", err)
	}
	if n := m.calls.Load(); n != 1 {
		t.Errorf("%d Publish calls, want 1 (the publisher retries, not the batcher)", n)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}
