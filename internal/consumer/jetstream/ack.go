package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/failpoint"
)

var (
	ackPayload      = []byte("+ACK")
	termPayload     = []byte("+TERM")
	progressPayload = []byte("+WPI")
)

// Ack acknowledges each message individually (never AckAll: the
// consumer is shared). It does not wait for the server: the last ack of
// each call asks for a confirmation, which the server sends once it
// processed every ack before it (it processes one connection's acks in
// order); Flush and Close wait for it. So Ack costs no round trip, and
// the server records a batch's acks while the loop applies the next one.
// A lost ack (the connection dropped) only means the message is delivered
// again after AckWait, which the idempotent index absorbs. A confirmation
// that came back as "no consumer" fails the next Ack with an error
// wrapping consumer.ErrGroupMissing or consumer.ErrStreamMissing.
func (s *Source) Ack(ctx context.Context, msgs []consumer.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if err := s.takeConfirmations(ctx); err != nil {
		return err
	}
	last := len(msgs) - 1
	if err := s.publishReplies(msgs[:last], ackPayload, "ack"); err != nil {
		return err
	}
	h, ok := msgs[last].Handle.(msgHandle)
	if !ok {
		return fmt.Errorf("ack %s: %w", msgs[last].ID, errNotOurs)
	}
	s.ackSent++
	if err := s.nc.PublishRequest(h.m.Reply, s.ackInbox+strconv.FormatUint(s.ackSent, 10), ackPayload); err != nil {
		return fmt.Errorf("jetstream: ack %s: %w", msgs[last].ID, err)
	}
	return nil
}

// Flush waits until the server confirmed every ack sent before, or ctx
// ends, or RequestTimeout passes (an error wrapping nats.ErrTimeout: the
// unconfirmed messages may be delivered again).
// After Close it returns ErrClosed (Close waited already).
func (s *Source) Flush(ctx context.Context) error {
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	return s.flush(ctx)
}

func (s *Source) flush(ctx context.Context) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if err := s.takeConfirmations(ctx); err != nil {
		return err
	}
	if s.ackConfirmed >= s.ackSent {
		return nil
	}
	timer := time.NewTimer(s.cfg.RequestTimeout)
	defer timer.Stop()
	for s.ackConfirmed < s.ackSent {
		select {
		case m := <-s.ackReplies:
			if err := s.confirmation(ctx, m); err != nil {
				return err
			}
		case <-timer.C:
			return fmt.Errorf("jetstream: acks not confirmed within %v (those messages may be delivered again): %w", s.cfg.RequestTimeout, nats.ErrTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// takeConfirmations handles the confirmations that have arrived.
func (s *Source) takeConfirmations(ctx context.Context) error {
	for {
		select {
		case m := <-s.ackReplies:
			if err := s.confirmation(ctx, m); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// confirmation handles the server's answer to the last ack of an Ack call.
func (s *Source) confirmation(ctx context.Context, m *nats.Msg) error {
	n, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, s.ackInbox), 10, 64)
	if err != nil {
		return nil // not ours
	}
	if m.Header.Get("Status") == "503" {
		return s.missing(ctx, nats.ErrNoResponders)
	}
	s.ackConfirmed = max(s.ackConfirmed, n)
	return nil
}

// publishReplies sends payload to each message's ack subject.
func (s *Source) publishReplies(msgs []consumer.Message, payload []byte, what string) error {
	for i := range msgs {
		h, ok := msgs[i].Handle.(msgHandle)
		if !ok {
			return fmt.Errorf("%s %s: %w", what, msgs[i].ID, errNotOurs)
		}
		if err := s.nc.Publish(h.m.Reply, payload); err != nil {
			return fmt.Errorf("jetstream: %s %s: %w", what, msgs[i].ID, err)
		}
	}
	return nil
}

// settle sends payload for every message, the last as a request, and
// waits for the server's answer: it comes once the server processed them
// all.
func (s *Source) settle(ctx context.Context, msgs []consumer.Message, payload []byte, what string) error {
	if len(msgs) == 0 {
		return nil
	}
	last := len(msgs) - 1
	if err := s.publishReplies(msgs[:last], payload, what); err != nil {
		return err
	}
	h, ok := msgs[last].Handle.(msgHandle)
	if !ok {
		return fmt.Errorf("%s %s: %w", what, msgs[last].ID, errNotOurs)
	}
	rctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if _, err := s.nc.RequestWithContext(rctx, h.m.Reply, payload); err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return s.missing(ctx, err)
		}
		return fmt.Errorf("jetstream: %s of %d messages not confirmed (sending it again is safe): %w", what, len(msgs), err)
	}
	return nil
}

// Extend renews the AckWait of each message (InProgress). It does not
// wait for the server.
func (s *Source) Extend(ctx context.Context, msgs []consumer.Message) error {
	return s.publishReplies(msgs, progressPayload, "extend")
}

// DeadLetter publishes each message to <DeadLetterPrefix>.<database>.<table>
// (from its subject; <DeadLetterPrefix>._unknown._unknown when the subject
// does not have that shape) with its data and the headers Indexer-Reason,
// Indexer-Original-Seq, Indexer-Original-Subject, Indexer-Deliveries,
// Content-Type and Nats-Msg-Id "dlq-<stream>-<seq>" (so a retried call
// stores each once; see deadLetterHeaders), waits for every PubAck, and then terminates the originals (Term:
// never delivered again) and waits for the server to record that. A
// missing dead-letter stream is an error wrapping consumer.ErrStreamMissing.
func (s *Source) DeadLetter(ctx context.Context, msgs []consumer.DeadLetter) error {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]*nats.Msg, len(msgs))
	hs := make([]deadLetterHeaders, len(msgs))
	for i := range msgs {
		d := &msgs[i]
		if _, ok := d.Handle.(msgHandle); !ok {
			return fmt.Errorf("dead-letter %s: %w", d.ID, errNotOurs)
		}
		out[i] = &nats.Msg{Header: nats.Header{}}
		hs[i].build(out[i], d, &s.cfg)
	}
	pctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := s.dlq.PublishMsgs(pctx, out); err != nil {
		return fmt.Errorf("jetstream: dead-letter %d messages: %w", len(msgs), err)
	}
	// A crash here leaves the dead letters published and the originals
	// pending: they are delivered again and dead-lettered again, and the
	// Nats-Msg-Id above makes the server store each dead letter once.
	failpoint.Inject(failpoint.MidDeadLetter)
	originals := make([]consumer.Message, len(msgs))
	for i := range msgs {
		originals[i] = msgs[i].Message
	}
	return s.settle(ctx, originals, termPayload, "terminate")
}

// deadLetterHeaders holds the header values of one dead letter; reused
// from one message to the next, it keeps building them cheap.
type deadLetterHeaders struct {
	reason, seq, subject, deliveries, ct, msgID, size, sha [1]string
}

// build makes m the dead letter of d: published to
// <DeadLetterPrefix>.<database>.<table> (from d's subject), with d's data
// and the headers Indexer-Reason, Indexer-Original-Seq,
// Indexer-Original-Subject, Indexer-Deliveries, Content-Type and
// Nats-Msg-Id "dlq-<stream>-<seq>": whoever dead-letters a message (the
// loop, or Advisories after the server gave up on it), and however often,
// the dead-letter stream stores it once within its duplicate window. m's
// header map is reused; m must not be retained past the next build.
func (h *deadLetterHeaders) build(m *nats.Msg, d *consumer.DeadLetter, cfg *Config) {
	m.Subject = deadLetterSubject(d.Subject, cfg.SubjectPrefix, cfg.DeadLetterPrefix)
	m.Data = d.Data
	h.reason[0], h.seq[0], h.subject[0] = headerValue(d.Reason), d.ID, headerValue(d.Subject)
	h.deliveries[0], h.msgID[0] = strconv.Itoa(d.Deliveries), "dlq-"+cfg.Stream+"-"+d.ID
	m.Header[HeaderReason], m.Header[HeaderOriginalSeq], m.Header[HeaderOriginalSubject] = h.reason[:], h.seq[:], h.subject[:]
	m.Header[HeaderDeliveries], m.Header[natsjs.MsgIDHeader] = h.deliveries[:], h.msgID[:]
	n, digest := d.Payload()
	h.size[0], h.sha[0] = strconv.Itoa(n), digest
	m.Header[HeaderDataSize], m.Header[HeaderDataSHA256] = h.size[:], h.sha[:]
	if d.ContentType != "" {
		h.ct[0] = headerValue(d.ContentType)
		m.Header[HeaderContentType] = h.ct[:]
	} else {
		delete(m.Header, HeaderContentType)
	}
}
