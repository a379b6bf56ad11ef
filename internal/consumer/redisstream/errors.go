package redisstream

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

// setupHint is how an operator creates the stream and the group.
const setupHint = "create it with 'indexer setup --source redis'"

// GroupMissingError means the consumer group, or its stream, does not
// exist (Redis NOGROUP). It wraps consumer.ErrGroupMissing, so
// consumer.Classify treats it as fatal: workers never create the group
// themselves, since creating it at the stream's end would skip events.
type GroupMissingError struct {
	Stream, Group string
	// Err is the Redis error, if any.
	Err error
}

// Error tells the operator what is missing and how to create it.
func (e *GroupMissingError) Error() string {
	return fmt.Sprintf("consumer group %q of stream %q does not exist (NOGROUP): %s", e.Group, e.Stream, setupHint)
}

// Unwrap returns consumer.ErrGroupMissing and the Redis error.
func (e *GroupMissingError) Unwrap() []error {
	if e.Err == nil {
		return []error{consumer.ErrGroupMissing}
	}
	return []error{consumer.ErrGroupMissing, e.Err}
}

// StreamMissingError means the stream does not exist. It wraps
// consumer.ErrStreamMissing, which consumer.Classify treats as fatal.
type StreamMissingError struct {
	Stream string
	// Err is the Redis error, if any.
	Err error
}

// Error tells the operator what is missing and how to create it.
func (e *StreamMissingError) Error() string {
	return fmt.Sprintf("stream %q does not exist: %s", e.Stream, setupHint)
}

// Unwrap returns consumer.ErrStreamMissing and the Redis error.
func (e *StreamMissingError) Unwrap() []error {
	if e.Err == nil {
		return []error{consumer.ErrStreamMissing}
	}
	return []error{consumer.ErrStreamMissing, e.Err}
}

// wrap adds context (op and the stream, unless op is "") to an error,
// turning NOGROUP and a missing stream into their typed errors. Other
// errors keep their chain, so consumer.Classify sees connection errors and
// Redis error codes.
func (s *Source) wrap(op string, err error) error {
	return wrapErr(op, s.cfg.Stream, s.cfg.Group, err)
}

func wrapErr(op, stream, group string, err error) error {
	var gm *GroupMissingError
	var sm *StreamMissingError
	switch {
	case errors.As(err, &gm), errors.As(err, &sm):
		return err
	case redis.HasErrorPrefix(err, "NOGROUP"):
		return &GroupMissingError{Stream: stream, Group: group, Err: err}
	case redis.HasErrorPrefix(err, "no such key"): // XINFO on a missing stream
		return &StreamMissingError{Stream: stream, Err: err}
	}
	if op == "" { // the script wrappers name the script and the stream
		return fmt.Errorf("redisstream: %w", err)
	}
	return fmt.Errorf("redisstream: %s %s: %w", op, stream, err)
}
