package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
)

// Status describes the events stream, the durable consumer the workers
// share and the dead-letter stream deadLetters, for operators ('indexer
// status'). It only reads. A missing consumer is reported
// (GroupStatus.Missing), not an error; a missing events stream is an error
// wrapping consumer.ErrStreamMissing. JetStream does not tell a consumer's
// clients apart: the consumer itself is the one entry of
// GroupStatus.Consumers, with its pull requests waiting.
func Status(ctx context.Context, js natsjs.JetStream, stream, durable, deadLetters string) (consumer.StreamStatus, error) {
	st := consumer.StreamStatus{Stream: stream, Group: consumer.GroupStatus{Name: durable}}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return st, streamError(stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return st, streamError(stream, err)
	}
	state := info.State
	st.Length, st.Bytes = int64(state.Msgs), int64(state.Bytes)
	if state.Msgs > 0 {
		st.First = &consumer.Position{ID: strconv.FormatUint(state.FirstSeq, 10), Time: state.FirstTime}
		st.Last = &consumer.Position{ID: strconv.FormatUint(state.LastSeq, 10), Time: state.LastTime}
	}

	names := s.ConsumerNames(ctx)
	for n := range names.Name() {
		if n != durable {
			st.OtherGroups = append(st.OtherGroups, n)
		}
	}
	if err := names.Err(); err != nil {
		return st, fmt.Errorf("jetstream: list the consumers of %s: %w", stream, err)
	}

	ci, err := lookupConsumer(ctx, js, stream, durable)
	switch {
	case errors.Is(err, consumer.ErrGroupMissing):
		st.Group.Missing = true
	case err != nil:
		return st, err
	default:
		g := &st.Group
		g.LastDelivered = strconv.FormatUint(ci.Delivered.Stream, 10)
		g.Lag, g.Pending, g.Redelivered = int64(ci.NumPending), int64(ci.NumAckPending), int64(ci.NumRedelivered)
		if ci.NumAckPending > 0 {
			// The first message after the ack floor is the oldest pending
			// one (or deleted since).
			m, err := s.GetMsg(ctx, ci.AckFloor.Stream+1, natsjs.WithGetMsgSubject(">"))
			if err == nil {
				g.OldestPending = &consumer.Pending{Position: consumer.Position{ID: strconv.FormatUint(m.Sequence, 10), Time: m.Time}}
			} else if !errors.Is(err, natsjs.ErrMsgNotFound) {
				return st, fmt.Errorf("jetstream: oldest pending message of %s: %w", durable, err)
			}
		}
		cs := consumer.ConsumerStatus{Name: durable, Pending: int64(ci.NumAckPending), Idle: -1, Waiting: ci.NumWaiting}
		if ci.Delivered.Last != nil {
			cs.Idle = ci.TimeStamp.Sub(*ci.Delivered.Last)
		}
		g.Consumers = []consumer.ConsumerStatus{cs}
	}

	st.DeadLetters.Name = deadLetters
	if deadLetters != "" {
		dstate, err := streamState(ctx, js, deadLetters)
		if err != nil {
			return st, err
		}
		st.DeadLetters.Count = int64(dstate.Msgs)
		if dstate.Msgs > 0 {
			st.DeadLetters.Oldest = &consumer.Position{ID: strconv.FormatUint(dstate.FirstSeq, 10), Time: dstate.FirstTime}
		}
	}
	return st, nil
}

// lookupConsumer returns a consumer's info, or an error wrapping
// consumer.ErrGroupMissing or consumer.ErrStreamMissing.
func lookupConsumer(ctx context.Context, js natsjs.JetStream, stream, name string) (*natsjs.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		cfg := Config{Stream: stream, Consumer: name}
		return nil, lookupError(&cfg, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		cfg := Config{Stream: stream, Consumer: name}
		return nil, lookupError(&cfg, err)
	}
	return info, nil
}
