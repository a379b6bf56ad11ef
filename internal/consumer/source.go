// Package consumer turns a stream of event messages into index patches,
// at least once: Run is the only place that decides when a message is
// acknowledged, and it acknowledges a message only after the message was
// applied to the index (or moved to the dead-letter destination, in the
// same step as its ack). Since every patch is idempotent, redelivery is
// always safe, and at-least-once delivery gives exactly-once effect.
//
// Sources (redisstream, jetstream) implement Source; consumertest holds the
// conformance suite every source must pass.
package consumer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/publish"
)

// Message is one message pulled from a source.
type Message struct {
	// ID identifies the message in its source: a Redis stream entry id, or
	// a JetStream stream sequence.
	ID string
	// Data is the encoded event. The loop does not retain it after the
	// batch is done.
	Data []byte
	// ContentType is the declared encoding ("json", "msgpack" or a MIME
	// type); "" means JSON.
	ContentType string
	// Subject is where the message was published, when the source has
	// subjects (NATS); dead letters keep it.
	Subject string
	// Deliveries counts deliveries of this message, this one included.
	Deliveries int
	// Time is when the source stored the message.
	Time time.Time
	// Lost marks an entry whose payload is gone (trimmed from a Redis
	// stream while pending): it cannot be applied; the loop acknowledges
	// it, counts it and raises an alarm.
	Lost bool
	// Malformed, when not empty, says why the message as the source holds
	// it cannot carry an event (a Redis entry without a data field, or
	// with one twice): the loop dead-letters it with this reason, without
	// decoding it.
	Malformed string
	// Handle is the source's own reference to the message (a NATS
	// jetstream.Msg); only the source that produced it reads it.
	Handle any
}

// Size is the message's share of a batch's byte budget.
func (m *Message) Size() int { return len(m.Data) }

// DeadLetter is a message to move to the dead-letter destination.
type DeadLetter struct {
	Message
	// Reason says why, in words an operator can act on.
	Reason string
	// Size is the size of the whole payload, and SHA256 its hex SHA-256
	// digest; Data may hold only its first bytes (see
	// Config.DeadLetterMaxBytes). Zero values mean Data is the whole
	// payload: see Payload.
	Size   int
	SHA256 string
}

// Payload returns the size and hex SHA-256 digest of the whole payload,
// computing them from Data when the loop did not set them.
func (d *DeadLetter) Payload() (size int, sha string) {
	if d.SHA256 == "" {
		return len(d.Data), digest(d.Data)
	}
	return d.Size, d.SHA256
}

// digest is the hex SHA-256 digest of b.
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Source is a stream of messages read by one consumer of a group. The
// loop calls Fetch from one goroutine, and Ack, DeadLetter and Extend from
// another, concurrently with Fetch; Close after both stopped.
type Source interface {
	// Fetch returns up to max messages, waiting at most wait for the first
	// one; it returns no messages and no error when none came in time.
	// Messages delivered before and not acknowledged (a crashed consumer's,
	// or this consumer's own after a restart) come back with their
	// delivery count. It returns promptly when ctx is done.
	Fetch(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Ack acknowledges messages: the group will not deliver them again.
	Ack(ctx context.Context, msgs []Message) error
	// DeadLetter moves messages to the dead-letter destination, each with
	// its reason, original id and delivery count, and acknowledges them:
	// atomically where the source allows, else publish first, then ack.
	DeadLetter(ctx context.Context, msgs []DeadLetter) error
	// Close releases the source. Messages fetched and not acknowledged are
	// delivered again later (to this group).
	Close() error
}

// Extender is implemented by sources that redeliver a message held longer
// than a lease. While a batch is being applied, the loop calls Extend for
// its messages every ExtendEvery.
type Extender interface {
	ExtendEvery() time.Duration
	Extend(ctx context.Context, msgs []Message) error
}

// Checker is implemented by sources whose messages say more about their
// event than the payload does: a NATS message's subject names the
// database and table its event may be for, so that subject permissions
// confine a writer to its tables. The loop calls CheckEvent for each event
// that decoded and validated; an error is permanent, like a validation
// error: the message is dead-lettered with the error as its reason and
// never reaches the index. A source wrapping another forwards it.
type Checker interface {
	CheckEvent(m *Message, e *event.Event) error
}

// Backlog is how far a group is behind, as its source reports it.
type Backlog struct {
	// Lag counts the stream's messages not yet delivered to the group.
	Lag int64
	// Pending counts the messages delivered to the group and not yet
	// acknowledged.
	Pending int64
	// DeadLetters counts the messages in the dead-letter destination; -1
	// when the source was not told where that is.
	DeadLetters int64
}

// BacklogReporter is implemented by sources that can tell their group's
// backlog cheaply (a request or two). The loop asks every LagEvery and
// sets the gauges of the metrics; a scrape of the metrics asks nothing.
type BacklogReporter interface {
	Backlog(ctx context.Context) (Backlog, error)
}

// TrimCounter is implemented by sources whose stream can drop messages
// before the group read them (Redis: trimmed by MAXLEN while the workers
// lag), where the source can tell how many. Trimmed returns how many were
// dropped since any worker of the group last asked: each is counted once.
// The loop asks every LagEvery, counts them as lost and raises the alarm.
type TrimCounter interface {
	Trimmed(ctx context.Context) (int64, error)
}

// ErrGroupMissing means the consumer group (Redis) or durable consumer
// (NATS) does not exist: run 'indexer setup'. Workers never create it
// themselves, since creating it at the stream's end would skip events.
var ErrGroupMissing = errors.New("consumer group does not exist")

// ErrStreamMissing means the stream does not exist: run 'indexer setup'.
// It is publish.ErrStreamMissing, so a publisher's error matches too.
var ErrStreamMissing = publish.ErrStreamMissing

// Applier applies valid events to the index; *index.Index implements it.
type Applier interface {
	Apply(ctx context.Context, events []event.Event) (index.Result, error)
}
