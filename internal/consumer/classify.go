package consumer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/redisconn"
	"github.com/streamindex/indexer/publish"
)

// Class is how the loop treats a failure.
type Class int

const (
	// Retry: a transient failure (connection lost, server loading, busy,
	// failing over, timeout). The loop retries the same step with
	// exponential backoff, reports itself not ready meanwhile, and never
	// gives up on its own.
	Retry Class = iota
	// Poison: these events cannot be applied now (the index holds a key of
	// the wrong type, a corrupt counter, or the events are invalid). The
	// loop leaves them unacknowledged and goes on with other messages; the
	// source delivers them again later, and after max-deliver deliveries
	// they go to the dead-letter destination with the reason.
	Poison
	// Fatal: the worker cannot go on (the group or stream is missing,
	// credentials or permissions are refused). Run returns the error.
	Fatal
)

func (c Class) String() string {
	switch c {
	case Retry:
		return "retry"
	case Poison:
		return "poison"
	default:
		return "fatal"
	}
}

// fatalPrefixes are Redis error codes an operator must act on (CROSSSLOT:
// the keys of one call lie in several slots, the gigapi layout on a
// cluster). The codes that pass on their own (LOADING, READONLY, MOVED,
// ASK, …) are publish.Transient's.
var fatalPrefixes = []string{"NOGROUP", "NOAUTH", "WRONGPASS", "NOPERM", "CROSSSLOT"}

// scriptRefused is how Redis 7.0 words an ACL refusal of a command a
// script calls ("ERR The user executing the script can't run this command
// or subcommand"; later versions say NOPERM): Fatal like NOPERM, not a
// script error about the batch, or a worker with a too narrow ACL would
// dead-letter every event.
const scriptRefused = "can't run this command"

// poisonPrefixes are Redis error codes about the data a batch touches.
var poisonPrefixes = []string{"WRONGTYPE", "CORRUPT"}

// Classify says how the loop treats err. It is the one place failures are
// classified.
func Classify(err error) Class {
	var ve *event.ValidationError
	var rerr redis.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return Retry
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		// A server certificate we do not trust: configuration, not an
		// outage.
		return Fatal
	case errors.Is(err, ErrGroupMissing), errors.Is(err, ErrStreamMissing),
		errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, redisconn.ErrUnsupported),
		errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrPermissionViolation),
		// The connection reconnects forever; closed means closed for good.
		errors.Is(err, nats.ErrConnectionClosed):
		return Fatal
	case errors.As(err, &ve):
		return Poison
	case errors.Is(err, redisconn.ErrNotReplicated):
		// Applied on the master, not yet confirmed by enough replicas
		// (--redis-wait-replicas): not acknowledged; applying it again
		// is harmless, and the replicas may be back by then.
		return Retry
	case errors.As(err, &rerr):
		for _, p := range fatalPrefixes {
			if redis.HasErrorPrefix(err, p) {
				return Fatal
			}
		}
		if strings.Contains(rerr.Error(), scriptRefused) {
			return Fatal
		}
		if publish.Transient(err) { // LOADING, BUSY, READONLY, …
			return Retry
		}
		for _, p := range poisonPrefixes {
			if redis.HasErrorPrefix(err, p) {
				return Poison
			}
		}
		// Any other server error (a script error, say) is about this
		// batch: leave it for redelivery and the dead-letter destination
		// rather than block the stream retrying.
		return Poison
	}
	// Transient failures (publish.Transient: connection loss, timeouts,
	// no responders, …) and unknown errors are retried: nothing is
	// acknowledged meanwhile, so retrying is always safe.
	return Retry
}
