package publish

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamindex/indexer/event"
)

// BatcherConfig configures a Batcher. The zero value means the defaults.
type BatcherConfig struct {
	// MaxBatch is the most events sent in one Publish call. Default 1000.
	MaxBatch int
	// Linger is how long the first event added to an empty buffer waits
	// for others before its batch is sent. Default 5 ms.
	Linger time.Duration
	// MaxBuffered is how many events may wait to be sent; Add blocks
	// while the buffer is full. Default 10 × MaxBatch.
	MaxBuffered int
	// OnError, if set, is called with the events of each batch (or the
	// one event) that could not be published, and why, from the
	// Batcher's goroutine: it must not call the Batcher. The same
	// failures are also returned by the next Flush or Close.
	OnError func(events []event.Event, err error)
}

// Batcher gathers events added one or a few at a time into batches and
// publishes them through a Publisher in the background: the way to get
// a batch's throughput from a writer that produces one event at a time.
// Add returns as soon as the event is buffered; Flush waits until what
// was added is stored and reports what failed. It is safe for concurrent
// use.
//
// An event the Publisher refuses (an *EventError: invalid, or refused by
// the server for good) fails alone: the rest of its batch is published
// again without it. Any other failure (the Publisher's retries gave up)
// fails its whole batch. Failed events are not retried further; Flush,
// Close and OnError report them.
//
// The Batcher starts its goroutine on the first Add and stops it in
// Close: call Close once done, or the goroutine stays.
type Batcher struct {
	p   Publisher
	cfg BatcherConfig

	mu      sync.Mutex
	buf     []event.Event
	firstAt time.Time // when the oldest buffered event was added
	added   uint64    // events ever added
	settled uint64    // events published or failed, in the order added
	urgent  bool      // a Flush or Close waits: send without lingering
	closed  bool      // Close was called: Add fails
	failed  []error   // failures since the last Flush
	changed chan struct{}
	wake    chan struct{}

	started bool
	cancel  context.CancelFunc // aborts the publish in progress (Close's ctx ended)
	exited  chan struct{}
}

// NewBatcher returns a Batcher publishing through p. It starts no
// goroutine.
func NewBatcher(p Publisher, cfg BatcherConfig) *Batcher {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.MaxBuffered < cfg.MaxBatch {
		cfg.MaxBuffered = 10 * cfg.MaxBatch
	}
	return &Batcher{p: p, cfg: cfg, changed: make(chan struct{}), wake: make(chan struct{}, 1), exited: make(chan struct{})}
}

// Add buffers events for publishing and returns. It blocks while the
// buffer is full, until there is room or ctx ends (then it returns ctx's
// error and buffers none of the events left). It fails with ErrClosed
// after Close. Add copies the events but not the slices and Stats they
// refer to, which must not change until they are published.
func (b *Batcher) Add(ctx context.Context, events ...event.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(events) > 0 {
		if b.closed {
			return ErrClosed
		}
		room := b.cfg.MaxBuffered - len(b.buf)
		if room <= 0 {
			if err := b.waitLocked(ctx); err != nil {
				return err
			}
			continue
		}
		n := min(room, len(events))
		if len(b.buf) == 0 {
			b.firstAt = time.Now()
		}
		b.buf = append(b.buf, events[:n]...)
		b.added += uint64(n)
		events = events[n:]
		b.startLocked()
		b.signal()
	}
	return nil
}

// Flush sends what is buffered without lingering, waits until every
// event added before the call was published or failed, and returns the
// failures since the previous Flush (of anyone's events), joined, or
// nil. If ctx ends first, it returns ctx's error; the events stay
// buffered and the failures are kept for the next Flush.
func (b *Batcher) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	target := b.added
	b.urgent = true
	b.signal()
	for b.settled < target {
		if err := b.waitLocked(ctx); err != nil {
			return err
		}
	}
	err := errors.Join(b.failed...)
	b.failed = nil
	return err
}

// Close stops accepting events, publishes what is buffered, stops the
// Batcher's goroutine and returns the failures since the last Flush, as
// Flush does. If ctx ends first, the publish in progress is aborted, the
// events not published are reported as failed (and to OnError), and
// Close still returns only after the goroutine stopped. Calling Close
// again returns nil. It does not close the Publisher.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed, b.urgent = true, true
	started := b.started
	b.signal()
	b.mu.Unlock()
	if started {
		select {
		case <-b.exited:
		case <-ctx.Done():
			b.cancel()
			<-b.exited
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.buf); n > 0 { // only when ctx ended
		err := fmt.Errorf("publish: batcher closed with %d events not published: %w", n, ctx.Err())
		rest := b.buf
		b.buf = nil
		b.settled += uint64(n)
		b.broadcastLocked()
		b.failLocked(rest, err)
	}
	err := errors.Join(b.failed...)
	b.failed = nil
	return err
}

// startLocked starts the sender goroutine once.
func (b *Batcher) startLocked() {
	if b.started {
		return
	}
	b.started = true
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.run(ctx)
}

// signal wakes the sender (b.mu held).
func (b *Batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// waitLocked releases b.mu until the state changes or ctx ends.
func (b *Batcher) waitLocked(ctx context.Context) error {
	ch := b.changed
	b.mu.Unlock()
	defer b.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// broadcastLocked wakes every waiter (b.mu held).
func (b *Batcher) broadcastLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// failLocked records a failure of events (b.mu held).
func (b *Batcher) failLocked(events []event.Event, err error) {
	b.failed = append(b.failed, err)
	if b.cfg.OnError != nil {
		b.mu.Unlock()
		b.cfg.OnError(events, err)
		b.mu.Lock()
	}
}

// run sends batches until Close, then what is left, and exits.
func (b *Batcher) run(ctx context.Context) {
	defer close(b.exited)
	defer b.cancel()
	for {
		b.mu.Lock()
		if len(b.buf) == 0 {
			b.urgent = false
			closed := b.closed
			b.mu.Unlock()
			if closed {
				return
			}
			<-b.wake
			continue
		}
		if wait := b.cfg.Linger - time.Since(b.firstAt); wait > 0 && len(b.buf) < b.cfg.MaxBatch && !b.urgent {
			b.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-b.wake:
			}
			t.Stop()
			continue
		}
		n := min(len(b.buf), b.cfg.MaxBatch)
		batch := make([]event.Event, n)
		copy(batch, b.buf)
		b.buf = append(b.buf[:0], b.buf[n:]...)
		b.firstAt = time.Now()
		b.broadcastLocked() // room for blocked Adds
		b.mu.Unlock()

		b.send(ctx, batch)

		b.mu.Lock()
		b.settled += uint64(n)
		b.broadcastLocked()
		if ctx.Err() != nil && len(b.buf) > 0 { // Close gave up: Close reports the rest
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// send publishes one batch, dropping the events refused one by one.
func (b *Batcher) send(ctx context.Context, batch []event.Event) {
	for len(batch) > 0 {
		err := b.p.Publish(ctx, batch...)
		if err == nil {
			return
		}
		var ee *EventError
		if errors.As(err, &ee) && ee.Index >= 0 && ee.Index < len(batch) {
			b.mu.Lock()
			b.failLocked(batch[ee.Index:ee.Index+1:ee.Index+1], err)
			b.mu.Unlock()
			batch = append(batch[:ee.Index:ee.Index], batch[ee.Index+1:]...)
			continue
		}
		b.mu.Lock()
		b.failLocked(batch, fmt.Errorf("publish: %d events not published: %w", len(batch), err))
		b.mu.Unlock()
		return
	}
}
