package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// ConsumerPosition is where a durable consumer stands in its stream.
type ConsumerPosition struct {
	// Delivered is the last stream sequence delivered (0 before any).
	Delivered uint64
	// AckFloor: every message up to this stream sequence is acknowledged.
	AckFloor uint64
	// Lag counts messages not yet delivered (NumPending).
	Lag uint64
	// Pending counts messages delivered and not yet acknowledged.
	Pending int
}

// Position returns the durable consumer's position. A missing consumer or
// stream is an error wrapping consumer.ErrGroupMissing or
// consumer.ErrStreamMissing.
func Position(ctx context.Context, js natsjs.JetStream, stream, durable string) (ConsumerPosition, error) {
	ci, err := lookupConsumer(ctx, js, stream, durable)
	if err != nil {
		return ConsumerPosition{}, err
	}
	return position(ci), nil
}

func position(ci *natsjs.ConsumerInfo) ConsumerPosition {
	return ConsumerPosition{Delivered: ci.Delivered.Stream, AckFloor: ci.AckFloor.Stream, Lag: ci.NumPending, Pending: ci.NumAckPending}
}

// ResetConsumer makes the durable consumer deliver next the message with
// stream sequence seq (or the first one after it), and returns its
// position before and after. Messages delivered and not acknowledged are
// forgotten by the server; their acknowledgements, when they come, are
// ignored.
//
// On servers that can reset a consumer in place (the consumer reset API,
// nats-server >= 2.14) workers running meanwhile go on from the new
// position undisturbed. Elsewhere the consumer is deleted and created again
// with the same configuration, starting at seq (recreated is then true): a
// worker that looks the consumer up in between stops with "consumer does
// not exist", so stop the workers first there.
func ResetConsumer(ctx context.Context, js natsjs.JetStream, stream, durable string, seq uint64) (before, after ConsumerPosition, recreated bool, err error) {
	ci, err := lookupConsumer(ctx, js, stream, durable)
	if err != nil {
		return before, after, false, err
	}
	before = position(ci)
	seq = max(seq, 1)
	resp, err := js.ResetConsumerToSequence(ctx, stream, durable, seq)
	switch {
	case err == nil:
		return before, position(resp.ConsumerInfo), false, nil
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, natsjs.ErrConsumerInvalidReset):
		// A server without the reset API, or a consumer whose start policy
		// forbids going below its start: recreate it.
	default:
		return before, after, false, fmt.Errorf("jetstream: reset consumer %q of stream %q to sequence %d: %w", durable, stream, seq, err)
	}
	cfg := ci.Config
	cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = natsjs.DeliverByStartSequencePolicy, seq, nil
	if err := js.DeleteConsumer(ctx, stream, durable); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
		return before, after, false, fmt.Errorf("jetstream: reset consumer %q: delete it: %w", durable, err)
	}
	c, err := js.CreateConsumer(ctx, stream, cfg)
	if err != nil {
		return before, after, true, fmt.Errorf("jetstream: reset consumer %q: it was deleted and could not be created again (run 'indexer setup --source nats', then 'indexer group reset' again): %w", durable, err)
	}
	return before, position(c.CachedInfo()), true, nil
}
