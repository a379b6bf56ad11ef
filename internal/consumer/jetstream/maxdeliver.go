package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The worker and the server each have a delivery limit. The loop
// (consumer.Config.MaxDeliver, --max-deliver N) dead-letters a message on
// delivery N+1; the server (the consumer's MaxDeliver) stops delivering a
// message after MaxDeliver deliveries and only publishes an advisory. So
// the consumer must allow at least N+1 deliveries (or be unlimited), else
// a message the index keeps refusing is dropped by the server before the
// worker dead-letters it. Setup creates the consumer with N+1, and New and
// Setup raise a lower MaxDeliver of an existing consumer to N+1: it is
// one of the settings nats-server lets an existing consumer change in
// place (with ack wait, max ack pending, description, backoff…; not the
// deliver or ack policy nor the start position), and the change keeps the
// consumer's position, pending messages and delivery counts. A higher
// MaxDeliver is left alone: the loop dead-letters at its own limit, and
// lowering it could cut short the deliveries a worker with a higher
// --max-deliver needs. Advisories handles whatever the server still gives
// up on (a worker that stopped holding a message's last delivery, a
// consumer edited while the workers run).

// serverMaxDeliver is the consumer MaxDeliver a worker with delivery limit
// n needs: the loop dead-letters on delivery n+1, which the server must
// still make.
func serverMaxDeliver(n int) int { return n + 1 }

// allowsDeliveries reports whether a consumer with MaxDeliver have
// delivers a message need times (-1 or 0: unlimited).
func allowsDeliveries(have, need int) bool { return have <= 0 || have >= need }

// raiseMaxDeliver updates the consumer of stream whose configuration is cc
// to MaxDeliver need, changing nothing else.
func raiseMaxDeliver(ctx context.Context, js natsjs.JetStream, stream string, cc natsjs.ConsumerConfig, need int) error {
	cc.MaxDeliver = need
	_, err := js.UpdateConsumer(ctx, stream, cc)
	if err == nil {
		return nil
	}
	// A refused publish is reported asynchronously; the request only
	// times out. Say why when the connection was told.
	if le := js.Conn().LastError(); errors.Is(le, nats.ErrPermissionViolation) && strings.Contains(le.Error(), ".CONSUMER.") {
		err = fmt.Errorf("%w; %w", le, err)
	}
	return fmt.Errorf("update consumer %q on stream %q to max_deliver %d: %w", cc.Durable, stream, need, err)
}

// maxDeliverError is New's refusal when the consumer allows fewer
// deliveries than the worker needs and raising its MaxDeliver failed:
// one line naming both values and the ways out.
func maxDeliverError(cfg *Config, have int, err error) error {
	need := serverMaxDeliver(cfg.MaxDeliver)
	lower := ""
	if have >= 2 {
		lower = fmt.Sprintf(", or start the workers with --max-deliver %d", have-1)
	}
	return fmt.Errorf("jetstream: consumer %q on stream %q delivers a message at most %d times (max_deliver %d), but the worker dead-letters it on delivery %d (--max-deliver %d), and raising max_deliver to %d failed (%w): "+
		"run 'indexer setup --source nats --max-deliver %d' as a user allowed to update the consumer (or 'nats consumer edit %s %s --max-deliver %d')%s",
		cfg.Consumer, cfg.Stream, have, have, need, cfg.MaxDeliver, need, err,
		cfg.MaxDeliver, cfg.Stream, cfg.Consumer, need, lower)
}
