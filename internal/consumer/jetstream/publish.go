package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
)

// Header names this package writes and reads. Dead letters carry the
// Indexer-* headers.
const (
	HeaderContentType     = "Content-Type"
	HeaderReason          = "Indexer-Reason"           // why, in words an operator can act on
	HeaderOriginalSeq     = "Indexer-Original-Seq"     // the stream sequence in the events stream
	HeaderOriginalSubject = "Indexer-Original-Subject" // where the event was published
	HeaderDeliveries      = "Indexer-Deliveries"       // deliveries before it was dead-lettered
	HeaderDataSize        = "Indexer-Data-Size"        // the whole payload's size (the data may be its first bytes)
	HeaderDataSHA256      = "Indexer-Data-SHA256"      // the whole payload's hex SHA-256 digest
)

const (
	defaultMaxInFlight     = 4096
	defaultPubAckTimeout   = 10 * time.Second
	maxReasonHeaderLength  = 2048
	unknownDeadLetterTable = "_unknown._unknown"
)

// PublisherConfig configures a Publisher. Zero fields mean the defaults.
type PublisherConfig struct {
	// SubjectPrefix: an event goes to SubjectPrefix.<database>.<table>.
	// Default "idx.events".
	SubjectPrefix string
	// MaxInFlight bounds the messages published and not yet confirmed by
	// a PubAck. Default 4096.
	MaxInFlight int
	// AckTimeout is how long Publish waits for the next PubAck before it
	// gives up. Default 10 s.
	AckTimeout time.Duration
}

// Outgoing is one message to publish.
type Outgoing struct {
	// Event gives the subject (SubjectPrefix.<database>.<table>) and the
	// Nats-Msg-Id (its id). It may be nil (raw or invalid payloads in
	// tests and tools); then Subject is required.
	Event *event.Event
	// Data is the encoded event.
	Data []byte
	// Format is Data's encoding; it sets the Content-Type header.
	Format event.Format
	// ContentType, when set, is sent instead of Format's MIME type (to
	// test how workers treat an unknown type).
	ContentType string
	// Subject and MsgID, when set, are used instead of those derived from
	// Event. An empty MsgID (with no Event) sends no Nats-Msg-Id: the
	// message is never de-duplicated.
	Subject, MsgID string
}

// Publisher publishes events to the events stream asynchronously, with a
// bounded number of messages awaiting their PubAck. It is safe for
// concurrent use; each Publish call waits for its own PubAcks.
type Publisher struct {
	js  natsjs.JetStream
	cfg PublisherConfig
}

// NewPublisher returns a Publisher that publishes through js's connection.
func NewPublisher(js natsjs.JetStream, cfg PublisherConfig) *Publisher {
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = defaultMaxInFlight
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = defaultPubAckTimeout
	}
	return &Publisher{js: js, cfg: cfg}
}

// Publish publishes msgs in order and returns once the stream confirmed
// every one of them (a duplicate Nats-Msg-Id within the window counts as
// confirmed: it was stored before). The first failed PubAck, a PubAck that
// does not come within AckTimeout, or ctx ending fails the call; messages
// may then have been stored or not, and publishing them again is safe
// when they carry a Nats-Msg-Id. A subject no stream captures fails with
// an error wrapping consumer.ErrStreamMissing.
//
// Each call costs one subscription; publish many messages per call.
func (p *Publisher) Publish(ctx context.Context, msgs []Outgoing) error {
	var ctv, idv [1]string
	return publishAll(ctx, p.js, len(msgs), p.cfg.MaxInFlight, p.cfg.AckTimeout,
		func(i int, m *nats.Msg) error {
			o := &msgs[i]
			m.Subject, m.Data = o.Subject, o.Data
			id := o.MsgID
			if o.Event != nil {
				if m.Subject == "" {
					m.Subject = p.cfg.SubjectPrefix + "." + o.Event.Database + "." + o.Event.Table
				}
				if id == "" {
					id = o.Event.ID
				}
			}
			if m.Subject == "" {
				return fmt.Errorf("jetstream publish: message %d has neither an Event nor a Subject", i)
			}
			ctv[0] = o.ContentType
			if ctv[0] == "" {
				ctv[0] = o.Format.ContentType()
			}
			m.Header[HeaderContentType] = ctv[:]
			if id != "" {
				idv[0] = id
				m.Header[natsjs.MsgIDHeader] = idv[:]
			} else {
				delete(m.Header, natsjs.MsgIDHeader)
			}
			return nil
		})
}

// pubAck is the part of a JetStream PubAck this package reads.
type pubAck struct {
	Error *natsjs.APIError `json:"error,omitempty"`
}

// publishAll publishes n messages, built in turn by build into one reused
// nats.Msg (its Header map is reused too: build sets every header it
// needs), each with its own reply subject, keeping at most maxInFlight
// unconfirmed, and waits for every PubAck.
func publishAll(ctx context.Context, js natsjs.JetStream, n, maxInFlight int, ackTimeout time.Duration,
	build func(i int, m *nats.Msg) error) error {
	if n == 0 {
		return nil
	}
	nc := js.Conn()
	inbox := nc.NewInbox() + "."
	acks := make(chan *nats.Msg, min(n, maxInFlight)+64)
	sub, err := nc.ChanSubscribe(inbox+"*", acks)
	if err != nil {
		return fmt.Errorf("jetstream publish: subscribe for PubAcks: %w", err)
	}
	defer sub.Unsubscribe()

	subjects := make([]string, n) // for errors, and to tell confirmed messages apart
	confirmed := make([]bool, n)
	inFlight := 0
	timer := time.NewTimer(ackTimeout)
	defer timer.Stop()

	// await receives PubAcks until at most target messages are unconfirmed.
	await := func(target int) error {
		if inFlight <= target {
			return nil
		}
		timer.Reset(ackTimeout)
		for inFlight > target {
			select {
			case a := <-acks:
				i, err := strconv.Atoi(strings.TrimPrefix(a.Subject, inbox))
				if err != nil || i < 0 || i >= n || confirmed[i] || subjects[i] == "" {
					continue // not ours, or a repeat
				}
				confirmed[i] = true
				inFlight--
				if err := checkPubAck(ctx, js, a, subjects[i]); err != nil {
					return err
				}
				timer.Reset(ackTimeout)
			case <-timer.C:
				return fmt.Errorf("jetstream publish: no PubAck for %v with %d messages unconfirmed (is the stream's server reachable? publishing them again is safe): %w",
					ackTimeout, inFlight, nats.ErrTimeout)
			case <-ctx.Done():
				return fmt.Errorf("jetstream publish: %d messages unconfirmed: %w", inFlight, ctx.Err())
			}
		}
		return nil
	}

	m := &nats.Msg{Header: nats.Header{}}
	var reply []byte
	for i := 0; i < n; i++ {
		if err := build(i, m); err != nil {
			return err
		}
		reply = strconv.AppendInt(append(reply[:0], inbox...), int64(i), 10)
		m.Reply = string(reply)
		subjects[i] = m.Subject
		if err := nc.PublishMsg(m); err != nil {
			return fmt.Errorf("jetstream publish to %s: %w", m.Subject, err)
		}
		inFlight++
		if err := await(maxInFlight - 1); err != nil {
			return err
		}
	}
	return await(0)
}

// checkPubAck returns the error a PubAck (or a no-responders status)
// carries, if any.
func checkPubAck(ctx context.Context, js natsjs.JetStream, a *nats.Msg, subject string) error {
	if len(a.Data) == 0 && a.Header.Get("Status") == "503" {
		return noStreamError(ctx, js, subject)
	}
	if !bytes.Contains(a.Data, []byte(`"error"`)) {
		return nil
	}
	var pa pubAck
	if err := json.Unmarshal(a.Data, &pa); err != nil {
		return fmt.Errorf("jetstream publish to %s: unreadable PubAck %q: %w", subject, a.Data, err)
	}
	if pa.Error != nil {
		return fmt.Errorf("jetstream publish to %s: %w", subject, pa.Error)
	}
	return nil
}

// noStreamError explains a publish nobody answered: no stream captures
// the subject (an error wrapping consumer.ErrStreamMissing), or the server
// could not answer now (an error the loop retries).
func noStreamError(ctx context.Context, js natsjs.JetStream, subject string) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := js.StreamNameBySubject(lctx, subject)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return fmt.Errorf("jetstream publish: no stream captures subject %s: %w: run 'indexer setup --source nats' (or check the subject prefix)", subject, consumer.ErrStreamMissing)
	}
	return fmt.Errorf("jetstream publish to %s: %w", subject, nats.ErrNoResponders)
}

// deadLetterSubject maps an events subject <prefix>.<database>.<table> to
// <dlqPrefix>.<database>.<table>, and anything else to
// <dlqPrefix>._unknown._unknown.
func deadLetterSubject(subject, prefix, dlqPrefix string) string {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok || strings.Count(rest, ".") < 1 || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
		return dlqPrefix + "." + unknownDeadLetterTable
	}
	return dlqPrefix + "." + rest
}

// headerValue makes s safe as a header value: one line, bounded length.
func headerValue(s string) string {
	if len(s) > maxReasonHeaderLength {
		s = strings.ToValidUTF8(s[:maxReasonHeaderLength], "") + "…" // drops a cut rune
	}
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(s)
	}
	return s
}
