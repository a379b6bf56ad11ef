// Package natspub publishes indexer events to a NATS JetStream stream:
// each event goes to the subject <prefix>.<database>.<table> (default
// prefix "idx.events") with the headers Content-Type (application/json
// or application/msgpack) and Nats-Msg-Id (the event's id; none with
// Config.NoMsgID), many at a time, each confirmed by the stream's PubAck.
//
// It keeps the contract of package publish: events are validated with the
// workers' rules before anything is sent; Publish returns once the stream
// acknowledged every message; transient failures — a stream electing a
// new leader (no responders, or PubAcks that do not come), a server
// restarting, JetStream temporarily unavailable — are retried with
// backoff, sending again only the messages not acknowledged, with the
// same Nats-Msg-Id, so that the stream stores each once (within its
// duplicate window).
//
// A writer needs permission to publish to its subjects and to receive
// the PubAcks on its inbox; see the README's writer permissions.
package natspub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/publish"
)

// DefaultSubjectPrefix is the prefix of the events subjects.
const DefaultSubjectPrefix = "idx.events"

// HeaderContentType is the header naming the encoding.
const HeaderContentType = "Content-Type"

// Config configures a Publisher. The zero value means the defaults.
type Config struct {
	publish.Options

	// SubjectPrefix: an event goes to SubjectPrefix.<database>.<table>.
	// Default "idx.events".
	SubjectPrefix string
	// MaxInFlight bounds the messages of one call sent and not yet
	// acknowledged. Default 4096.
	MaxInFlight int
	// AckTimeout is how long a call waits for the next PubAck before it
	// sends the unacknowledged messages again (a retry: see RetryFor).
	// Default 5 s.
	AckTimeout time.Duration
	// NoMsgID publishes events without the Nats-Msg-Id header, so the
	// stream does not de-duplicate them: nats-server saves its duplicate
	// check (about 6 % of its CPU per message when measured), and an event
	// published twice — a retry after a lost PubAck, or a writer sending
	// it again — is stored twice. The index is not affected (applying an
	// event again changes nothing); the workers just apply it twice.
	// Default false: every event carries its id as Nats-Msg-Id.
	NoMsgID bool
}

// Publisher publishes events to a JetStream stream. It is safe for
// concurrent use; see package publish for the contract.
type Publisher struct {
	js     jetstream.JetStream
	cfg    Config
	enc    *publish.Encoder
	closed atomic.Bool
}

var _ publish.Publisher = (*Publisher)(nil)

// New returns a Publisher that publishes through js's connection, which
// stays the caller's. It does not contact the server.
func New(js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("natspub: no JetStream context")
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	enc, err := cfg.NewEncoder()
	if err != nil {
		return nil, err
	}
	return &Publisher{js: js, cfg: cfg, enc: enc}, nil
}

// Subject is the subject an event of database.table is published to:
// TableSubject(Config.SubjectPrefix, database, table).
func (p *Publisher) Subject(database, table string) string {
	return TableSubject(p.cfg.SubjectPrefix, database, table)
}

// TableSubject is the subject events of database.table are published to,
// <prefix>.<database>.<table>; the workers check that an event's subject
// is this one. Names may contain '.', so a subject cannot be split back
// into database and table.
func TableSubject(prefix, database, table string) string {
	return prefix + "." + database + "." + table
}

// Publish validates and encodes events and publishes each to its table's
// subject with its id as Nats-Msg-Id (unless Config.NoMsgID), and returns once the stream
// acknowledged all of them (a duplicate counts: the stream has it). An
// invalid event fails the call before anything is sent, with a
// *publish.EventError; so does, after the others were sent, a message
// the server refuses for good (larger than its max_payload, say).
func (p *Publisher) Publish(ctx context.Context, events ...event.Event) error {
	if p.closed.Load() {
		return publish.ErrClosed
	}
	data, err := p.enc.Encode(events)
	if err != nil {
		return fmt.Errorf("natspub: %w", err)
	}
	ct := []string{p.enc.Format().ContentType()}
	var id [1]string
	return p.send(ctx, len(events), func(i int, m *nats.Msg) {
		e := &events[i]
		m.Subject, m.Data = p.Subject(e.Database, e.Table), data[i]
		m.Header[HeaderContentType] = ct
		if !p.cfg.NoMsgID {
			id[0] = e.ID
			m.Header[jetstream.MsgIDHeader] = id[:]
		}
	})
}

// PublishMsgs publishes msgs as they are (subject, data and headers; a
// Nats-Msg-Id header, if any, makes retries store each once), without
// validating them, with the retries of Publish: to forward messages
// already encoded, or to test how workers treat bad input. msgs are not
// modified.
func (p *Publisher) PublishMsgs(ctx context.Context, msgs []*nats.Msg) error {
	if p.closed.Load() {
		return publish.ErrClosed
	}
	return p.send(ctx, len(msgs), func(i int, m *nats.Msg) {
		m.Subject, m.Data = msgs[i].Subject, msgs[i].Data
		clear(m.Header)
		for k, v := range msgs[i].Header {
			m.Header[k] = v
		}
	})
}

// Close makes later calls fail with publish.ErrClosed. It does not close
// the NATS connection.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}

// status of a message within a call.
const (
	unconfirmed = iota // not sent yet, or sent and not acknowledged
	stored             // acknowledged
	retryable          // answered with a transient failure: send again
	refused            // answered with a permanent failure
)

// call is the state of one send: which messages the stream acknowledged.
// The PubAck handler updates it from the subscription's goroutine.
type call struct {
	mu          sync.Mutex
	status      []uint8
	errs        map[int]error // why a message was refused or is retryable
	noResponder map[int]bool  // retryable because nobody answered (503)
	outstanding int           // sent in this attempt and not answered
	inAttempt   []bool        // sent in the current attempt
	progress    chan struct{} // a PubAck came (capacity 1)
}

// send publishes n messages, built in turn by build into one reused
// nats.Msg (with a reused Header map: build sets every header), each with
// its own reply subject, keeping at most MaxInFlight unacknowledged, and
// retries those not acknowledged until all are or Retry gives up.
func (p *Publisher) send(ctx context.Context, n int, build func(i int, m *nats.Msg)) error {
	if n == 0 {
		return nil
	}
	nc := p.js.Conn()
	inbox := nc.NewInbox() + "."
	c := &call{status: make([]uint8, n), inAttempt: make([]bool, n), errs: map[int]error{},
		noResponder: map[int]bool{}, progress: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(inbox+"*", func(a *nats.Msg) {
		i, err := strconv.Atoi(strings.TrimPrefix(a.Subject, inbox))
		if err == nil && i >= 0 && i < n {
			c.answer(i, a)
		}
	})
	if err != nil {
		return fmt.Errorf("natspub: subscribe for PubAcks: %w", err)
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, -1) // a PubAck dropped as a slow consumer would cost a retry

	subjects := make([]string, n) // for errors and the stream check
	ids := make([]string, n)      // Nats-Msg-Ids, for errors
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	m := &nats.Msg{Header: nats.Header{}}
	var reply []byte
	err = publish.Retry(ctx, p.cfg.Options, func(ctx context.Context) error {
		c.begin(pending)
		var sendErr error
		for _, i := range pending {
			if err := c.await(ctx, p.cfg.MaxInFlight-1, p.cfg.AckTimeout); err != nil {
				sendErr = err
				break
			}
			build(i, m)
			subjects[i] = m.Subject
			if v := m.Header[jetstream.MsgIDHeader]; len(v) > 0 {
				ids[i] = v[0]
			}
			reply = strconv.AppendInt(append(reply[:0], inbox...), int64(i), 10)
			m.Reply = string(reply)
			c.sent(i)
			if err := nc.PublishMsg(m); err != nil {
				c.unsent(i)
				if errors.Is(err, nats.ErrMaxPayload) {
					return &publish.EventError{Index: i, ID: ids[i], Err: fmt.Errorf("publish to %s: %w", m.Subject, err)}
				}
				sendErr = fmt.Errorf("publish to %s: %w", m.Subject, err)
				break
			}
		}
		if sendErr == nil {
			sendErr = c.await(ctx, 0, p.cfg.AckTimeout)
		}
		var err error
		pending, err = p.settle(ctx, c, pending, subjects, ids, sendErr)
		return err
	})
	if err != nil {
		return fmt.Errorf("natspub: %d of %d messages not acknowledged: %w", len(pending), n, err)
	}
	return nil
}

// begin starts an attempt that sends pending.
func (c *call) begin(pending []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.inAttempt)
	c.outstanding = 0
	for _, i := range pending {
		c.status[i] = unconfirmed
		delete(c.errs, i)
		delete(c.noResponder, i)
	}
}

func (c *call) sent(i int) {
	c.mu.Lock()
	c.inAttempt[i] = true
	c.outstanding++
	c.mu.Unlock()
}

func (c *call) unsent(i int) {
	c.mu.Lock()
	if c.inAttempt[i] && c.status[i] == unconfirmed {
		c.outstanding--
	}
	c.inAttempt[i] = false
	c.mu.Unlock()
}

// answer records the reply to message i: a PubAck, a PubAck with an
// error, or a no-responders status. A late reply from an earlier attempt
// counts as well: it is about the same message.
func (c *call) answer(i int, a *nats.Msg) {
	st, err, none := pubAckStatus(a)
	c.mu.Lock()
	if c.status[i] != unconfirmed {
		c.mu.Unlock()
		return
	}
	c.status[i] = st
	if err != nil {
		c.errs[i] = err
	}
	if none {
		c.noResponder[i] = true
	}
	if c.inAttempt[i] {
		c.outstanding--
	}
	c.mu.Unlock()
	select {
	case c.progress <- struct{}{}:
	default:
	}
}

// await waits until at most target messages of the attempt are
// unanswered. It fails when no reply came for timeout, or ctx ended.
func (c *call) await(ctx context.Context, target int, timeout time.Duration) error {
	var t *time.Timer
	for {
		c.mu.Lock()
		out := c.outstanding
		c.mu.Unlock()
		if out <= target {
			if t != nil {
				t.Stop()
			}
			return nil
		}
		if t == nil {
			t = time.NewTimer(timeout)
		}
		select {
		case <-c.progress:
			t.Reset(timeout) // since Go 1.23, Reset also drops a pending expiry
		case <-t.C:
			return fmt.Errorf("no PubAck for %v with %d messages unacknowledged: %w", timeout, out, nats.ErrTimeout)
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// settle ends an attempt: it returns the messages to send again and the
// error the attempt failed with (nil when every message is stored). A
// message refused for good fails the call; messages nobody answered fail
// it with publish.ErrStreamMissing when no stream captures their subject,
// and are retried otherwise (a stream electing its leader).
func (p *Publisher) settle(ctx context.Context, c *call, pending []int, subjects, ids []string, sendErr error) ([]int, error) {
	c.mu.Lock()
	var again []int
	var refusedAt = -1
	var retryErr error
	var silent []string // subjects of messages nobody answered
	for _, i := range pending {
		switch c.status[i] {
		case stored:
		case refused:
			if refusedAt < 0 {
				refusedAt = i
			}
		case retryable:
			again = append(again, i)
			if c.noResponder[i] {
				silent = append(silent, subjects[i])
			} else if retryErr == nil {
				retryErr = c.errs[i]
			}
		default:
			again = append(again, i)
		}
	}
	var refusedErr error
	if refusedAt >= 0 {
		refusedErr = c.errs[refusedAt]
	}
	c.mu.Unlock()
	switch {
	case refusedAt >= 0:
		return again, &publish.EventError{Index: refusedAt, ID: ids[refusedAt], Err: fmt.Errorf("publish to %s: %w", subjects[refusedAt], refusedErr)}
	case len(again) == 0:
		return nil, nil
	case sendErr != nil && errors.Is(sendErr, nats.ErrTimeout):
		if err := p.permissionRefusal(subjects, again); err != nil {
			return again, err
		}
		return again, sendErr
	case sendErr != nil:
		return again, sendErr
	case len(silent) > 0:
		return again, p.noResponders(ctx, silent)
	default:
		return again, retryErr
	}
}

// permissionRefusal returns the server's refusal to let this connection
// publish to one of the subjects of the messages not acknowledged, if it
// sent one (an unauthorized publish is dropped with an asynchronous
// error: no PubAck ever comes).
func (p *Publisher) permissionRefusal(subjects []string, again []int) error {
	last := p.js.Conn().LastError()
	if last == nil || !errors.Is(last, nats.ErrPermissionViolation) {
		return nil
	}
	msg := last.Error()
	for _, i := range again {
		if strings.Contains(msg, `"`+subjects[i]+`"`) {
			return fmt.Errorf("publish to %s refused: %w", subjects[i], last)
		}
	}
	return nil
}

// noResponders tells why nobody answered publishes to subjects: no
// stream captures them (an error wrapping publish.ErrStreamMissing), or
// the stream has no leader right now (nats.ErrNoResponders, retried).
func (p *Publisher) noResponders(ctx context.Context, subjects []string) error {
	seen := map[string]bool{}
	for _, s := range subjects {
		if seen[s] || len(seen) >= 4 {
			continue
		}
		seen[s] = true
		lctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
		err := CheckStream(lctx, p.js, s)
		cancel()
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("no responders on %s (the stream may be electing a leader): %w", subjects[0], nats.ErrNoResponders)
}

// CheckStream tells why nobody answered a publish to subject: an error
// wrapping publish.ErrStreamMissing that says what to do when no stream
// captures the subject; nil when one does (it may be electing its leader)
// or the server could not tell now.
func CheckStream(ctx context.Context, js jetstream.JetStream, subject string) error {
	if _, err := js.StreamNameBySubject(ctx, subject); errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no stream captures subject %s: %w: run 'indexer setup --source nats' (or check the subject prefix)", subject, publish.ErrStreamMissing)
	}
	return nil
}

// pubAckStatus reads a reply: stored, retryable (a 5xx API error, or no
// responders: none) or refused, with the error.
func pubAckStatus(a *nats.Msg) (status uint8, err error, none bool) {
	if len(a.Data) == 0 && a.Header.Get("Status") != "" {
		if a.Header.Get("Status") == "503" {
			return retryable, nats.ErrNoResponders, true
		}
		return retryable, fmt.Errorf("status %s %s", a.Header.Get("Status"), a.Header.Get("Description")), false
	}
	if !bytes.Contains(a.Data, []byte(`"error"`)) {
		return stored, nil, false
	}
	var pa struct {
		Error *jetstream.APIError `json:"error,omitempty"`
	}
	if err := json.Unmarshal(a.Data, &pa); err != nil {
		return retryable, fmt.Errorf("unreadable PubAck %q: %w", a.Data, err), false
	}
	if pa.Error == nil {
		return stored, nil, false
	}
	if publish.Transient(pa.Error) {
		return retryable, pa.Error, false
	}
	return refused, pa.Error, false
}
