package publish

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/redisconn"
)

// transientPrefixes are the Redis error codes of conditions that pass on
// their own: a server loading its data set, busy with a script, a replica
// (READONLY) that a failover is about to replace, a cluster or master
// unavailable for a moment, memory that eviction or consumers free. On a
// Redis Cluster, a slot migration answers ASK, and TRYAGAIN to a call
// whose keys are split between two nodes for a moment; a failover or a
// migration answers MOVED. The cluster client follows them itself; one
// that still reaches the caller (after MaxRedirects tries) passes too.
var transientPrefixes = []string{"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "OOM", "NOREPLICAS",
	"MOVED", "ASK"}

// Transient reports whether err is a failure that passes on its own, so
// that the same request may succeed later: connection loss or refusal,
// timeouts, the Redis codes LOADING, BUSY, TRYAGAIN, MASTERDOWN,
// READONLY, CLUSTERDOWN, OOM, NOREPLICAS, MOVED and ASK, a NATS connection that is
// reconnecting, no responders (a JetStream stream electing its leader),
// and JetStream API errors with a 5xx code ("JetStream system temporarily
// unavailable"). Invalid events, ErrStreamMissing, ErrClosed, refused
// credentials or permissions, a closed NATS connection and any other
// server error are not. It is the one classification of transient
// failures: the publishers retry on it, and the workers' loop
// (internal/consumer.Classify) builds on it.
func Transient(err error) bool {
	var ve *event.ValidationError
	var apiErr *jetstream.APIError
	var rerr redis.Error
	var netErr net.Error
	switch {
	case err == nil, errors.As(err, &ve), errors.Is(err, ErrStreamMissing), errors.Is(err, ErrClosed),
		errors.Is(err, context.Canceled),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrAuthorization),
		errors.Is(err, nats.ErrPermissionViolation), errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, jetstream.ErrStreamNotFound):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrStaleConnection),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, redisconn.ErrNotReplicated): // WAIT: replicas down or lagging
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code >= 500
	case errors.As(err, &rerr):
		for _, p := range transientPrefixes {
			if redis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false
	case errors.As(err, &netErr):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}
