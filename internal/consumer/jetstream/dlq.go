package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/publish/natspub"
)

// DeadLetters returns up to limit dead letters of the dead-letter stream,
// oldest first, starting after the sequence after (0 for the first).
func DeadLetters(ctx context.Context, js natsjs.JetStream, deadLetters string, after uint64, limit int) ([]consumer.StoredDeadLetter, error) {
	s, err := js.Stream(ctx, deadLetters)
	if err != nil {
		return nil, streamError(deadLetters, err)
	}
	var out []consumer.StoredDeadLetter
	for seq := after + 1; len(out) < limit; {
		m, err := s.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(">"))
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("jetstream: read dead letter %d of %s: %w", seq, deadLetters, err)
		}
		out = append(out, storedDeadLetter(m))
		seq = m.Sequence + 1
	}
	return out, nil
}

func storedDeadLetter(m *natsjs.RawStreamMsg) consumer.StoredDeadLetter {
	d := consumer.StoredDeadLetter{
		ID:          strconv.FormatUint(m.Sequence, 10),
		Time:        m.Time,
		Reason:      m.Header.Get(HeaderReason),
		OriginalID:  m.Header.Get(HeaderOriginalSeq),
		Subject:     m.Header.Get(HeaderOriginalSubject),
		ContentType: m.Header.Get(HeaderContentType),
		Data:        m.Data,
	}
	d.Deliveries, _ = strconv.Atoi(m.Header.Get(HeaderDeliveries))
	d.Size, _ = strconv.Atoi(m.Header.Get(HeaderDataSize))
	d.SHA256 = m.Header.Get(HeaderDataSHA256)
	return d
}

// RequeueConfig says where Requeue publishes dead letters.
type RequeueConfig struct {
	// DeadLetters is the dead-letter stream. Default "IDX_DLQ".
	DeadLetters string
	// SubjectPrefix and DeadLetterPrefix map a dead letter without an
	// Indexer-Original-Subject header from <DeadLetterPrefix>.<db>.<table>
	// back to <SubjectPrefix>.<db>.<table>. Defaults "idx.events" and
	// "idx.dlq".
	SubjectPrefix, DeadLetterPrefix string
}

// Requeued is one dead letter Requeue moved back to the events stream.
type Requeued struct {
	DeadLetterSeq uint64 // its sequence in the dead-letter stream (now deleted)
	Subject       string // where it was published again
}

// Requeue publishes the dead letters with sequences seqs back to the events
// stream, to the subject they were first published to, with their data
// and Content-Type and a new Nats-Msg-Id ("requeue-<dead-letter
// stream>-<seq>-<stored ns>": the event's own id would be dropped by the
// stream's de-duplication window, while a retried requeue of the same dead
// letter is stored once), waits for every PubAck, and only then deletes
// each from the dead-letter stream. Sequences not in the dead-letter stream
// are skipped; truncated dead letters (only the first bytes of their
// payload were kept) are refused and stay. It returns the dead letters
// moved (on error, those before the failure) and the sequences refused.
func Requeue(ctx context.Context, js natsjs.JetStream, cfg RequeueConfig, seqs []uint64) (out []Requeued, truncated []uint64, err error) {
	if cfg.DeadLetters == "" {
		cfg.DeadLetters = DefaultDeadLetters
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.DeadLetterPrefix == "" {
		cfg.DeadLetterPrefix = DefaultDeadLetterPrefix
	}
	s, err := js.Stream(ctx, cfg.DeadLetters)
	if err != nil {
		return nil, nil, streamError(cfg.DeadLetters, err)
	}
	pub, err := natspub.New(js, natspub.Config{SubjectPrefix: cfg.SubjectPrefix})
	if err != nil {
		return nil, nil, err
	}
	for len(seqs) > 0 {
		n := min(len(seqs), 500)
		var msgs []*natsjs.RawStreamMsg
		for _, seq := range seqs[:n] {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, natsjs.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return out, truncated, fmt.Errorf("jetstream: read dead letter %d of %s: %w", seq, cfg.DeadLetters, err)
			}
			if d := storedDeadLetter(m); d.Truncated() {
				truncated = append(truncated, seq)
				continue
			}
			msgs = append(msgs, m)
		}
		seqs = seqs[n:]
		subjects := make([]string, len(msgs))
		for i, m := range msgs {
			if subjects[i] = originalSubject(m, cfg); subjects[i] == "" {
				return out, truncated, fmt.Errorf("jetstream: dead letter %d (subject %s) does not say where it was published (no %s header); publish its data again by hand",
					m.Sequence, m.Subject, HeaderOriginalSubject)
			}
		}
		again := make([]*nats.Msg, len(msgs))
		for i, m := range msgs {
			h := nats.Header{natsjs.MsgIDHeader: {"requeue-" + cfg.DeadLetters + "-" + strconv.FormatUint(m.Sequence, 10) + "-" + strconv.FormatInt(m.Time.UnixNano(), 10)}}
			if ct := m.Header.Get(HeaderContentType); ct != "" {
				h[HeaderContentType] = []string{ct}
			}
			again[i] = &nats.Msg{Subject: subjects[i], Data: m.Data, Header: h}
		}
		if err := pub.PublishMsgs(ctx, again); err != nil {
			return out, truncated, fmt.Errorf("jetstream: requeue: %w (nothing was deleted from %s; requeueing again is safe)", err, cfg.DeadLetters)
		}
		for i, m := range msgs {
			if err := s.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, natsjs.ErrMsgNotFound) {
				return out, truncated, fmt.Errorf("jetstream: requeue: dead letter %d was published again but not deleted from %s (delete it by hand: nats stream rmm %s %d): %w",
					m.Sequence, cfg.DeadLetters, cfg.DeadLetters, m.Sequence, err)
			}
			out = append(out, Requeued{DeadLetterSeq: m.Sequence, Subject: subjects[i]})
		}
	}
	return out, truncated, nil
}

// originalSubject is where a dead letter was first published.
func originalSubject(m *natsjs.RawStreamMsg, cfg RequeueConfig) string {
	if s := m.Header.Get(HeaderOriginalSubject); s != "" {
		return s
	}
	rest, ok := strings.CutPrefix(m.Subject, cfg.DeadLetterPrefix+".")
	if !ok || rest == unknownDeadLetterTable {
		return ""
	}
	return cfg.SubjectPrefix + "." + rest
}

// RequeueAll requeues (as Requeue) every dead letter that is in the
// dead-letter stream when it starts, calling progress with the number
// moved so far; it returns the sequences of the truncated dead letters it
// refused.
func RequeueAll(ctx context.Context, js natsjs.JetStream, cfg RequeueConfig, progress func(n int)) (total int, truncated []uint64, err error) {
	if cfg.DeadLetters == "" {
		cfg.DeadLetters = DefaultDeadLetters
	}
	st, err := streamState(ctx, js, cfg.DeadLetters)
	if err != nil || st.Msgs == 0 {
		return 0, nil, err
	}
	for after := st.FirstSeq - 1; after < st.LastSeq; {
		page, err := DeadLetters(ctx, js, cfg.DeadLetters, after, 500)
		if err != nil {
			return total, truncated, err
		}
		var seqs []uint64
		for _, d := range page {
			seq, _ := strconv.ParseUint(d.ID, 10, 64)
			if seq > st.LastSeq {
				break
			}
			seqs = append(seqs, seq)
		}
		if len(seqs) == 0 {
			break
		}
		moved, tr, err := Requeue(ctx, js, cfg, seqs)
		total, truncated = total+len(moved), append(truncated, tr...)
		if progress != nil {
			progress(total)
		}
		if err != nil {
			return total, truncated, err
		}
		after = seqs[len(seqs)-1]
	}
	return total, truncated, nil
}

// PurgeDeadLetters deletes every message of the dead-letter stream and
// returns how many there were.
func PurgeDeadLetters(ctx context.Context, js natsjs.JetStream, deadLetters string) (int64, error) {
	s, err := js.Stream(ctx, deadLetters)
	if err != nil {
		return 0, streamError(deadLetters, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, streamError(deadLetters, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, nil
	}
	// Up to the last message seen: a dead letter added meanwhile stays.
	if err := s.Purge(ctx, natsjs.WithPurgeSequence(last+1)); err != nil {
		return 0, fmt.Errorf("jetstream: purge %s: %w", deadLetters, err)
	}
	return int64(info.State.Msgs), nil
}
