package consumer

import "time"

// The types below describe a source for operators ('indexer status',
// 'indexer dlq list'). Both sources fill them, so one printer serves both.

// Position is one message of a stream: its id (a Redis stream entry id, or
// a JetStream stream sequence in decimal) and when the source stored it.
type Position struct {
	ID   string
	Time time.Time
}

// StreamStatus describes a stream, the consumer group the workers share
// and its dead letters.
type StreamStatus struct {
	// Stream is the stream's name.
	Stream string
	// Length is how many messages the stream holds; Bytes their size
	// (NATS only, else 0).
	Length, Bytes int64
	// First and Last are the oldest and newest messages it holds; nil when
	// it is empty.
	First, Last *Position
	// Group is the workers' group (Redis) or durable consumer (NATS).
	Group GroupStatus
	// DeadLetters describes the dead-letter destination.
	DeadLetters DeadLetterStatus
	// OtherGroups names the stream's other groups or consumers: leftover
	// replay groups, say, or other applications'.
	OtherGroups []string
}

// GroupStatus describes a consumer group (Redis) or durable consumer (NATS).
type GroupStatus struct {
	Name string
	// Missing: the group does not exist (run 'indexer setup'); the other
	// fields are zero.
	Missing bool
	// LastDelivered is the last message delivered to the group: a Redis
	// entry id, or a stream sequence; "0-0" or "0" before any.
	LastDelivered string
	// Lag counts the stream's messages not yet delivered to the group.
	Lag int64
	// LagEstimated: the source could not tell the lag exactly (Redis,
	// after entries were deleted from the middle of the stream or the
	// group was set to an arbitrary id); Lag is then an upper bound.
	LagEstimated bool
	// Pending counts messages delivered and not yet acknowledged.
	Pending int64
	// OldestPending is the oldest of them; nil if none.
	OldestPending *Pending
	// Redelivered counts pending messages delivered more than once (NATS
	// only).
	Redelivered int64
	// Consumers are the group's consumers: for Redis each worker (by its
	// --consumer name); for NATS the durable consumer itself, since
	// JetStream does not tell its clients apart.
	Consumers []ConsumerStatus
}

// Pending is a message delivered and not yet acknowledged.
type Pending struct {
	Position
	// Idle is how long ago it was last delivered (Redis only).
	Idle time.Duration
	// Deliveries counts its deliveries (Redis only).
	Deliveries int64
	// Consumer holds it (Redis only).
	Consumer string
}

// ConsumerStatus describes one consumer of a group.
type ConsumerStatus struct {
	Name string
	// Pending counts the messages it holds unacknowledged.
	Pending int64
	// Idle is how long ago it last read (Redis) or was last delivered a
	// message (NATS); -1 if never.
	Idle time.Duration
	// Waiting counts pull requests waiting for messages (NATS only): about
	// one per idle worker.
	Waiting int
}

// DeadLetterStatus describes the dead-letter destination.
type DeadLetterStatus struct {
	// Name is the dead-letter stream.
	Name string
	// Count is how many dead letters it holds.
	Count int64
	// Oldest is the oldest of them; nil when there is none.
	Oldest *Position
}

// StoredDeadLetter is one message in the dead-letter destination.
type StoredDeadLetter struct {
	// ID is its id in the dead-letter stream (a Redis entry id or a
	// JetStream sequence).
	ID string
	// Time is when it was dead-lettered.
	Time time.Time
	// Reason says why.
	Reason string
	// Deliveries counts its deliveries before it was dead-lettered.
	Deliveries int
	// OriginalID is its id in the events stream.
	OriginalID string
	// Subject is where it was published (NATS only).
	Subject string
	// ContentType is its declared encoding.
	ContentType string
	// Data is the payload, verbatim, or its first bytes if it was larger
	// than the worker's --dead-letter-max-bytes (see Truncated).
	Data []byte
	// Size is the whole payload's size and SHA256 its hex SHA-256 digest,
	// as the worker recorded them (0 and "" for a dead letter written by
	// an older version: Data is then the whole payload).
	Size   int
	SHA256 string
}

// Truncated reports whether Data holds only the first bytes of the
// payload: such a dead letter cannot be requeued.
func (d *StoredDeadLetter) Truncated() bool { return d.Size > len(d.Data) }
