// Package publish is the writer's side of indexer: a small Publisher
// interface with two implementations, publish/redispub (Redis Streams)
// and publish/natspub (NATS JetStream), and what they share — the options,
// the validation and encoding of events with the workers' own rules, the
// classification of transient failures, the retry policy, and Batcher,
// which gathers events added one at a time into batches.
//
// The contract every Publisher keeps:
//
//   - Publish validates every event with the code the workers' Decoder
//     runs (event.Decoder.Encode, with Options.Rules); if one is invalid,
//     nothing of the call is sent and the error is an *EventError naming
//     the event and wrapping the *event.ValidationError that names the
//     field. A writer is thus told before it publishes anything the
//     workers would dead-letter.
//   - Publish returns nil only once the stream has stored every event
//     (Redis: XADD replied; NATS: the stream's PubAck came).
//   - Transient failures (connection loss, Redis LOADING, READONLY,
//     MASTERDOWN, a NATS leader election, no responders while a stream
//     has no leader, a PubAck timeout) are retried with exponential
//     backoff for Options.RetryFor, sending again only what was not
//     confirmed. Retrying never duplicates an effect: NATS stores a
//     message whose Nats-Msg-Id it already has once (within the stream's
//     duplicate window, default 2 min, which RetryFor must stay below),
//     and an event stored twice in a Redis stream is applied once, since
//     every event is idempotent. Messages sent again may be stored after
//     later ones; events commute, so the order does not matter.
//   - Publish is safe for concurrent use, honours ctx (a call whose
//     context ends returns ctx's error; its events may then be stored or
//     not, and publishing them again is safe), and keeps no goroutine
//     running after it returns.
//   - Close makes later calls fail with ErrClosed. It does not close the
//     Redis or NATS client, which belongs to the caller.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/streamindex/indexer/event"
)

// Publisher publishes events to indexer's events stream.
type Publisher interface {
	// Publish validates events, publishes them and returns once the
	// stream stored every one (see the package documentation). It does
	// not retain events.
	Publish(ctx context.Context, events ...event.Event) error
	// Close makes later calls fail with ErrClosed. Calls in progress go
	// on until they return. It does not close the client given to the
	// constructor.
	Close() error
}

// ErrClosed is returned by calls on a closed Publisher or Batcher.
var ErrClosed = errors.New("publish: publisher closed")

// ErrStreamMissing means no stream takes the events: the Redis key holds
// no stream when the workers expect one, or no JetStream stream captures
// the subject. Run 'indexer setup'.
var ErrStreamMissing = errors.New("stream does not exist")

// EventError is a failure of one event (or, for the raw methods, one
// message) of a call: invalid (Err wraps an *event.ValidationError) or
// refused by the server for good (too large, say).
type EventError struct {
	// Index is the event's position in the call.
	Index int
	// ID is the event's id (for a raw NATS message, its Nats-Msg-Id).
	ID string
	// Err is the reason.
	Err error
}

func (e *EventError) Error() string {
	return fmt.Sprintf("event %d (id %q): %v", e.Index, e.ID, e.Err)
}

// Unwrap returns the reason.
func (e *EventError) Unwrap() error { return e.Err }

// DefaultRetryFor is the default of Options.RetryFor.
const DefaultRetryFor = time.Minute

// Options are the settings both publishers share. The zero value means
// the defaults.
type Options struct {
	// Format is the encoding of the messages. Default event.JSON.
	Format event.Format
	// Rules are the rules events are validated with: give the workers'
	// (their --layers and --max-message-bytes) so that what Publish
	// accepts, they accept. Default: schema v1 with any well-formed layer
	// and 64 KiB messages, the workers' defaults.
	Rules event.Config
	// RetryFor bounds how long one call retries transient failures.
	// With NATS, keep RetryFor plus the publisher's AckTimeout below the
	// stream's duplicate window (default 2 min), or a message retried
	// after it may be stored twice (harmless to the index, but counted
	// twice in the stream). Negative: no retries. Default 1 min.
	RetryFor time.Duration
	// Logger receives a warning for each retry (with the error).
	// Default: none.
	Logger *slog.Logger
}

// Encoder validates and encodes events with Options' rules and format.
// The publishers use it; it is safe for concurrent use.
type Encoder struct {
	dec    *event.Decoder
	format event.Format
}

// NewEncoder returns the Encoder of o, or an error if o.Rules is invalid.
func (o Options) NewEncoder() (*Encoder, error) {
	if o.Format != event.JSON && o.Format != event.MsgPack {
		return nil, fmt.Errorf("publish: unknown format %d", o.Format)
	}
	dec, err := event.NewDecoder(o.Rules)
	if err != nil {
		return nil, fmt.Errorf("publish: rules: %w", err)
	}
	return &Encoder{dec: dec, format: o.Format}, nil
}

// Format is the encoding the Encoder writes.
func (c *Encoder) Format() event.Format { return c.format }

// Encode validates and encodes every event, in order. On the first
// invalid one it returns an *EventError and no data.
func (c *Encoder) Encode(events []event.Event) ([][]byte, error) {
	out := make([][]byte, len(events))
	for i := range events {
		b, err := c.dec.Encode(c.format, &events[i])
		if err != nil {
			return nil, &EventError{Index: i, ID: events[i].ID, Err: err}
		}
		out[i] = b
	}
	return out, nil
}

// Retry calls attempt until it returns nil, an error that is not
// Transient, or ctx ends, waiting with exponential backoff (50 ms
// doubling to 2 s, jittered) between attempts, for at most o.RetryFor in
// all. It returns attempt's last error. The publishers retry with it;
// attempt must resend only what was not confirmed.
func Retry(ctx context.Context, o Options, attempt func(ctx context.Context) error) error {
	retryFor := o.RetryFor
	if retryFor == 0 {
		retryFor = DefaultRetryFor
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = max(retryFor, 0)
	b.Reset()
	for n := 1; ; n++ {
		err := attempt(ctx)
		if err == nil || !Transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctxErr(ctx, err)
		}
		wait := b.NextBackOff()
		if retryFor < 0 || wait == backoff.Stop {
			if retryFor < 0 {
				return err
			}
			return fmt.Errorf("%w (still failing after %d attempts in %v)", err, n, retryFor)
		}
		if o.Logger != nil {
			o.Logger.Warn("publish failed; retrying", "attempt", n, "in", wait, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctxErr(ctx, err)
		}
	}
}

// ctxErr is the error of a call whose context ended while it failed with
// err: it matches both.
func ctxErr(ctx context.Context, err error) error {
	if errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w (while retrying: %w)", ctx.Err(), err)
}
