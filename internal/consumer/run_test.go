package consumer_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/telemetry"
)

// memSource is an in-memory Source for testing the loop's decisions; the
// sources themselves are tested against real servers by consumertest.
type memSource struct {
	mu       sync.Mutex
	queue    []consumer.Message
	arrived  chan struct{}
	acked    []string
	dead     []consumer.DeadLetter
	fetchErr []error // returned by the next fetches, in order
	fetches  int
}

func newMemSource() *memSource { return &memSource{arrived: make(chan struct{}, 1)} }

func (s *memSource) push(msgs ...consumer.Message) {
	s.mu.Lock()
	s.queue = append(s.queue, msgs...)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
}

func (s *memSource) Fetch(ctx context.Context, max int, wait time.Duration) ([]consumer.Message, error) {
	s.mu.Lock()
	s.fetches++
	if len(s.fetchErr) > 0 {
		err := s.fetchErr[0]
		s.fetchErr = s.fetchErr[1:]
		s.mu.Unlock()
		return nil, err
	}
	if len(s.queue) == 0 {
		s.mu.Unlock()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, nil
		case <-s.arrived:
		}
		s.mu.Lock()
		if len(s.queue) == 0 { // a stale wake-up
			s.mu.Unlock()
			return nil, nil
		}
	}
	n := min(max, len(s.queue))
	out := slices.Clone(s.queue[:n])
	s.queue = s.queue[n:]
	s.mu.Unlock()
	return out, nil
}

func (s *memSource) Ack(ctx context.Context, msgs []consumer.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.acked = append(s.acked, m.ID)
	}
	return nil
}

func (s *memSource) DeadLetter(ctx context.Context, msgs []consumer.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = append(s.dead, msgs...)
	return nil
}

func (s *memSource) Close() error { return nil }

func (s *memSource) state() (acked []string, dead []consumer.DeadLetter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acked), slices.Clone(s.dead)
}

// memIndex records the batches it is given and can fail them.
type memIndex struct {
	mu      sync.Mutex
	batches [][]string // event ids per call
	fail    func(events []event.Event) error
	delay   time.Duration
}

func (x *memIndex) Apply(ctx context.Context, events []event.Event) (index.Result, error) {
	if x.delay > 0 {
		time.Sleep(x.delay)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.fail != nil {
		if err := x.fail(events); err != nil {
			return index.Result{}, err
		}
	}
	var ids []string
	res := index.Result{}
	for _, e := range events {
		ids = append(ids, e.ID)
		res.Outcomes = append(res.Outcomes, index.Applied)
	}
	x.batches = append(x.batches, ids)
	return res, nil
}

func msg(id int) consumer.Message {
	e := event.Event{ID: fmt.Sprintf("e%d", id), Type: event.FileCreated, Time: 1, Database: "db", Table: "t",
		File: event.File{Layer: "default", Path: fmt.Sprintf("date=2024-01-15/hour=01/f%d.1.parquet", id), MaxTime: 1}}
	data, err := event.Encode(event.JSON, &e)
	if err != nil {
		panic(err)
	}
	return consumer.Message{ID: fmt.Sprintf("m%d", id), Data: data, ContentType: "json", Deliveries: 1}
}

func msgs(from, to int) []consumer.Message {
	var out []consumer.Message
	for i := from; i < to; i++ {
		out = append(out, msg(i))
	}
	return out
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runLoop starts Run in the bubble and returns a stop function that
// cancels it and returns its error.
func runLoop(t *testing.T, cfg consumer.Config) func() error {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestBatchFlushesOnCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), &memIndex{}
		stop := runLoop(t, consumer.Config{Source: src, Index: x, BatchSize: 10, Linger: time.Hour})
		src.push(msgs(0, 25)...)
		synctest.Wait()
		time.Sleep(time.Millisecond)
		synctest.Wait()
		// Two full batches went at once; the 5 left wait for the linger.
		if len(x.batches) != 2 || len(x.batches[0]) != 10 || len(x.batches[1]) != 10 {
			t.Fatalf("batches %v, want two of 10 before the linger", x.batches)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		// Shutdown finishes the partial batch already gathered.
		if acked, _ := src.state(); len(acked) != 25 {
			t.Fatalf("acked %d, want all 25 after shutdown", len(acked))
		}
	})
}

func TestBatchFlushesOnLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), &memIndex{}
		stop := runLoop(t, consumer.Config{Source: src, Index: x, BatchSize: 1000, Linger: 50 * time.Millisecond})
		defer stop()
		src.push(msgs(0, 3)...)
		time.Sleep(30 * time.Millisecond)
		src.push(msgs(3, 5)...)
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if len(x.batches) != 0 {
			t.Fatalf("batch applied before the linger passed: %v", x.batches)
		}
		time.Sleep(15 * time.Millisecond)
		synctest.Wait()
		if len(x.batches) != 1 || len(x.batches[0]) != 5 {
			t.Fatalf("batches %v, want one of 5 when the linger passed", x.batches)
		}
	})
}

// TestNoLinger: a negative Linger ('run --linger 0') applies what one
// fetch returned at once, without waiting for more.
func TestNoLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), &memIndex{}
		stop := runLoop(t, consumer.Config{Source: src, Index: x, BatchSize: 1000, Linger: -1})
		defer stop()
		src.push(msgs(0, 3)...)
		synctest.Wait()
		if len(x.batches) != 1 || len(x.batches[0]) != 3 {
			t.Fatalf("batches %v, want one of 3 at once, without lingering", x.batches)
		}
	})
}

func TestBatchFlushesOnBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), &memIndex{}
		m0 := msg(0)
		size := m0.Size()
		stop := runLoop(t, consumer.Config{Source: src, Index: x, BatchSize: 1000, BatchBytes: 3 * size, Linger: time.Hour})
		defer stop()
		for i := 0; i < 7; i++ {
			src.push(msg(i))
			synctest.Wait()
		}
		if len(x.batches) != 2 || len(x.batches[0]) != 3 {
			t.Fatalf("batches %v, want batches of 3 messages (the byte budget)", x.batches)
		}
	})
}

func TestInvalidAndOverDeliveredAreDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), &memIndex{}
		stop := runLoop(t, consumer.Config{Source: src, Index: x, MaxDeliver: 3})
		bad := consumer.Message{ID: "bad", Data: []byte("{"), Deliveries: 1}
		tired := msg(1)
		tired.Deliveries = 4
		badCT := msg(2)
		badCT.ContentType = "text/csv"
		lost := consumer.Message{ID: "lost", Lost: true, Deliveries: 2}
		malformed := msg(4) // a valid event in a malformed entry
		malformed.Malformed = "stream entry has fields other than one data and one ct"
		src.push(msg(0), bad, tired, badCT, lost, msg(3), malformed)
		time.Sleep(time.Second)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		acked, dead := src.state()
		slices.Sort(acked)
		if !slices.Equal(acked, []string{"lost", "m0", "m3"}) {
			t.Errorf("acked %v, want the applied m0, m3 and the lost entry", acked)
		}
		reasons := map[string]string{}
		for _, d := range dead {
			reasons[d.ID] = d.Reason
		}
		if len(dead) != 4 || reasons["bad"] == "" || reasons["m2"] == "" || reasons["m4"] != malformed.Malformed {
			t.Fatalf("dead letters %v", reasons)
		}
		if r := reasons["m1"]; r == "" || !strings.Contains(r, "delivered 4 times") {
			t.Errorf("over-delivered reason %q", r)
		}
		if len(x.batches) != 1 || !slices.Equal(x.batches[0], []string{"e0", "e3"}) {
			t.Errorf("applied %v, want only the valid events", x.batches)
		}
	})
}

// TestTransientErrorsAreRetried: a failing apply is retried with backoff,
// readiness drops meanwhile, nothing is acknowledged before it succeeds,
// and the worker does not exit.
func TestTransientErrorsAreRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		failures := 5
		x := &memIndex{fail: func([]event.Event) error {
			if failures > 0 {
				failures--
				return fmt.Errorf("patch_index: %w", syscall.ECONNREFUSED)
			}
			return nil
		}}
		m := telemetry.NewMetrics("test", consumer.MetricLabels())
		stop := runLoop(t, consumer.Config{Source: src, Index: x, Metrics: m, RetryInitial: 100 * time.Millisecond, RetryMax: time.Second})
		src.push(msgs(0, 3)...)
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		if acked, _ := src.state(); len(acked) != 0 {
			t.Fatalf("acked %v before the apply succeeded", acked)
		}
		if m.Ready() {
			t.Fatal("ready while the index cannot be reached")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if acked, _ := src.state(); len(acked) != 3 {
			t.Fatalf("acked %d after recovery, want 3", len(acked))
		}
		if !m.Ready() {
			t.Fatal("not ready after recovery")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPoisonEventIsIsolated: the index refuses one event (a key of the
// wrong type); the others of its batch are applied and acknowledged, it is
// not.
func TestPoisonEventIsIsolated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), refusing("e5")
		stop := runLoop(t, consumer.Config{Source: src, Index: x})
		src.push(msgs(0, 10)...)
		time.Sleep(time.Second)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		acked, _ := src.state()
		slices.Sort(acked)
		want := []string{"m0", "m1", "m2", "m3", "m4", "m6", "m7", "m8", "m9"}
		if !slices.Equal(acked, want) {
			t.Fatalf("acked %v, want all but m5", acked)
		}
	})
}

// refusing is an index that refuses every call holding the event id, as
// Redis does when the event's key has the wrong type.
func refusing(id string) *memIndex {
	return &memIndex{fail: func(events []event.Event) error {
		for _, e := range events {
			if e.ID == id {
				return redisError("WRONGTYPE patch_index: key files:db:t:date=2024-01-15 holds a string")
			}
		}
		return nil
	}}
}

// redisError is a server error reply as go-redis reports it: it
// satisfies redis.Error.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

var _ redis.Error = redisError("")

func TestFatalFetchErrorStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), &memIndex{}
		src.fetchErr = []error{fmt.Errorf("read: %w", consumer.ErrGroupMissing)}
		r, _ := consumer.New(consumer.Config{Source: src, Index: x, Logger: quiet})
		err := r.Run(context.Background())
		if !errors.Is(err, consumer.ErrGroupMissing) {
			t.Fatalf("run = %v, want the missing group", err)
		}
	})
}

func TestShutdownDeadlineLeavesBatchUnacked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		x := &memIndex{fail: func([]event.Event) error { return syscall.ECONNRESET }}
		stop := runLoop(t, consumer.Config{Source: src, Index: x, ShutdownTimeout: 2 * time.Second})
		src.push(msgs(0, 3)...)
		time.Sleep(time.Second)
		if err := stop(); err != nil {
			t.Fatalf("run = %v, want nil: an unacknowledged batch is delivered again, nothing is lost", err)
		}
		if acked, _ := src.state(); len(acked) != 0 {
			t.Fatalf("acked %v without applying", acked)
		}
	})
}

// leasedSource records lease renewals.
type leasedSource struct {
	*memSource
	mu       sync.Mutex
	extended map[string]int
}

func (s *leasedSource) ExtendEvery() time.Duration { return time.Second }

func (s *leasedSource) Extend(ctx context.Context, msgs []consumer.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.extended[m.ID]++
	}
	return nil
}

// TestLeasesCoverPrefetchedBatch: while a slow batch is applied, the
// leases of both it and the batch fetched meanwhile are renewed, so
// neither is delivered to another worker.
func TestLeasesCoverPrefetchedBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &leasedSource{memSource: newMemSource(), extended: map[string]int{}}
		x := &memIndex{delay: 10 * time.Second}
		stop := runLoop(t, consumer.Config{Source: src, Index: x, BatchSize: 5})
		src.push(msgs(0, 10)...)
		time.Sleep(5 * time.Second) // the first batch is being applied, the second waits
		synctest.Wait()
		src.mu.Lock()
		for _, id := range []string{"m0", "m4", "m5", "m9"} {
			if src.extended[id] < 3 {
				t.Errorf("%s extended %d times in 5s, want every second", id, src.extended[id])
			}
		}
		src.mu.Unlock()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDeadLetterCarriesLastError: a message the index refuses is
// redelivered until it passes MaxDeliver; its dead letter then says the
// last error this worker saw. A message whose earlier failures this worker
// never saw says so and names its id for the logs.
func TestDeadLetterCarriesLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), refusing("e1")
		stop := runLoop(t, consumer.Config{Source: src, Index: x, MaxDeliver: 2})
		for d := 1; d <= 3; d++ { // the source delivers m1 again, as a real one would
			m := msg(1)
			m.Deliveries = d
			src.push(m)
			time.Sleep(time.Second)
		}
		stranger := msg(2)
		stranger.Deliveries = 7
		src.push(stranger)
		dead := deadLetters(t, src, stop, 2)
		if r := dead[0].Reason; !strings.Contains(r, "delivered 3 times") || !strings.Contains(r, "last error: the index refused the event: WRONGTYPE patch_index: key files:db:t:date=2024-01-15 holds a string") {
			t.Errorf("reason %q, want the last error", r)
		}
		if r := dead[1].Reason; !strings.Contains(r, "this worker never failed it") || !strings.Contains(r, "msg_id m2") {
			t.Errorf("reason %q, want it to say the failures were elsewhere", r)
		}
	})
}

// deadLetters lets the loop run a second more, stops it and returns the
// n dead letters it made.
func deadLetters(t *testing.T, src *memSource, stop func() error, n int) []consumer.DeadLetter {
	t.Helper()
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, dead := src.state()
	if len(dead) != n {
		t.Fatalf("%d dead letters, want %d", len(dead), n)
	}
	return dead
}

// TestDeadLetterKeepsAPrefix: a dead letter keeps at most
// DeadLetterMaxBytes of its payload, with the whole payload's size and
// digest.
func TestDeadLetterKeepsAPrefix(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, x := newMemSource(), &memIndex{}
		stop := runLoop(t, consumer.Config{Source: src, Index: x, DeadLetterMaxBytes: 10})
		big := consumer.Message{ID: "big", Data: []byte(strings.Repeat("x", 100)), Deliveries: 1}
		small := consumer.Message{ID: "small", Data: []byte("{"), Deliveries: 1}
		src.push(big, small)
		dead := deadLetters(t, src, stop, 2)
		sum := sha256.Sum256(big.Data)
		if d := dead[0]; string(d.Data) != strings.Repeat("x", 10) || d.Size != 100 || d.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("big: data %q size %d sha %s, want its first 10 bytes, 100 and the digest of all", d.Data, d.Size, d.SHA256)
		}
		if d := dead[1]; string(d.Data) != "{" || d.Size != 1 {
			t.Errorf("small: data %q size %d, want it whole", d.Data, d.Size)
		}
	})
}

// TestNotReadyWhileApplyFails: the worker stays not ready while every
// apply fails, even though fetching from the source works meanwhile (a
// NATS worker whose Redis is busy).
func TestNotReadyWhileApplyFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		failing := true
		var mu sync.Mutex
		x := &memIndex{fail: func([]event.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return redisError("BUSY Redis is busy running a script")
			}
			return nil
		}}
		m := telemetry.NewMetrics("test", consumer.MetricLabels())
		stop := runLoop(t, consumer.Config{Source: src, Index: x, Metrics: m, PollWait: 100 * time.Millisecond})
		defer stop()
		src.push(msgs(0, 3)...)
		for range 50 { // many polls of the source, all fine
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			if m.Ready() {
				t.Fatal("ready while every apply fails")
			}
		}
		mu.Lock()
		failing = false
		mu.Unlock()
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if !m.Ready() {
			t.Fatal("not ready after the applies succeed again")
		}
	})
}
