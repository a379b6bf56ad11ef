package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/natspub"
)

// Config configures New. Zero fields mean the defaults.
type Config struct {
	// Stream is the events stream. Default "IDX_EVENTS".
	Stream string
	// Consumer is the durable pull consumer ('indexer setup' creates it).
	// Default "indexer".
	Consumer string
	// SubjectPrefix is where events are published, <prefix>.<database>.<table>;
	// dead letters keep the <database>.<table> part. Default "idx.events".
	SubjectPrefix string
	// DeadLetterPrefix: a dead letter is published to
	// <prefix>.<database>.<table>. Default "idx.dlq".
	DeadLetterPrefix string
	// MaxDeliver is the worker's delivery limit, the loop's
	// consumer.Config.MaxDeliver (--max-deliver): the loop dead-letters a
	// message on delivery MaxDeliver+1, so the consumer must allow that
	// many. New raises a lower consumer MaxDeliver to MaxDeliver+1, or
	// fails if it cannot. Default 5 (the loop's default).
	MaxDeliver int
	// DeadLetterStream is the stream that stores the dead letters, counted
	// by Backlog. Default "": not counted.
	DeadLetterStream string
	// RequestTimeout bounds each wait for the server (the confirmation of
	// an Ack or DeadLetter, a PubAck, a lookup) when the caller's context
	// has no earlier deadline. Default 10 s.
	RequestTimeout time.Duration
	// Logger receives the source's logs. The source adds no attributes:
	// the caller's logger names the stream and consumer once
	// (Logger.With), so no log line repeats a key. Default slog.Default().
	Logger *slog.Logger
}

// ErrClosed is returned by Fetch once the Source is closed.
var ErrClosed = errors.New("jetstream: source closed")

// fetchBuffer is the capacity of the channel pull requests deliver into:
// more than the messages any pull requests still open can bring.
const fetchBuffer = 1 << 16

// Source reads a JetStream durable pull consumer. It implements
// consumer.Source, consumer.Extender (InProgress renews a message's
// AckWait), consumer.BacklogReporter (the consumer's NumPending and
// NumAckPending, and the dead letters) and consumer.Checker (an event must
// come on its table's subject).
//
// As consumer.Source says, Fetch is called from one goroutine, and Ack,
// DeadLetter, Extend, Backlog and Lag from others, concurrently with it. Close may
// be called at any time, also while Fetch waits; it does not close the
// NATS connection, which the caller owns.
type Source struct {
	js          natsjs.JetStream
	nc          *nats.Conn
	cons        natsjs.Consumer
	cfg         Config
	log         *slog.Logger
	nextSubject string // $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
	inbox       string // "<inbox>.": pull request n replies to <inbox>.<n>
	sub         *nats.Subscription
	msgs        chan *nats.Msg
	status      chan nats.Status
	ackWait     time.Duration
	dlq         *natspub.Publisher // dead letters; the loop retries, so it does not

	closeOnce sync.Once
	done      chan struct{}

	fetchMu sync.Mutex // one Fetch at a time; guards the fields below
	reqID   uint64
	reqBody []byte
	scratch []consumer.Message

	ackMu        sync.Mutex // guards the fields below
	ackInbox     string     // "<inbox>.": confirmation n of Ack replies to <inbox>.<n>
	ackSub       *nats.Subscription
	ackReplies   chan *nats.Msg
	ackSent      uint64 // confirmations asked for
	ackConfirmed uint64 // highest confirmation received; the ones before are implied
}

var (
	_ consumer.Source          = (*Source)(nil)
	_ consumer.Extender        = (*Source)(nil)
	_ consumer.BacklogReporter = (*Source)(nil)
	_ consumer.Checker         = (*Source)(nil)
)

// New looks up the durable consumer and returns a Source reading it. It
// creates neither the stream nor the consumer: a missing one is an error
// wrapping consumer.ErrStreamMissing or consumer.ErrGroupMissing that says
// to run 'indexer setup --source nats'. The consumer must be a pull
// consumer with explicit acks. If it delivers a message fewer than
// MaxDeliver+1 times, New raises its MaxDeliver (see maxdeliver.go) and
// logs it, or, if the server refuses, fails with one line naming both
// limits and the fix. ExtendEvery is a third of its AckWait.
func New(ctx context.Context, js natsjs.JetStream, cfg Config) (*Source, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if errors.Is(err, natsjs.ErrNotPullConsumer) {
		return nil, fmt.Errorf("jetstream: consumer %q on stream %q is a push consumer; the indexer needs a pull consumer: delete it with 'nats consumer rm %s %s' and run 'indexer setup --source nats'",
			cfg.Consumer, cfg.Stream, cfg.Stream, cfg.Consumer)
	}
	if err != nil {
		return nil, lookupError(&cfg, err)
	}
	cc := cons.CachedInfo().Config
	if cc.AckPolicy != natsjs.AckExplicitPolicy {
		return nil, fmt.Errorf("jetstream: consumer %q on stream %q has ack policy %s; the indexer needs explicit acks: delete it with 'nats consumer rm %s %s' and run 'indexer setup --source nats'",
			cfg.Consumer, cfg.Stream, cc.AckPolicy, cfg.Stream, cfg.Consumer)
	}
	if need := serverMaxDeliver(cfg.MaxDeliver); !allowsDeliveries(cc.MaxDeliver, need) {
		if err := raiseMaxDeliver(ctx, js, cfg.Stream, cc, need); err != nil {
			return nil, maxDeliverError(&cfg, cc.MaxDeliver, err)
		}
		cfg.Logger.Warn("raised the consumer's max_deliver so that the server delivers a message as often as the worker needs (see README, NATS JetStream)",
			"stream", cfg.Stream, "consumer", cfg.Consumer, "from", cc.MaxDeliver, "to", need, "max_deliver", cfg.MaxDeliver)
	}
	dlq, err := natspub.New(js, natspub.Config{AckTimeout: cfg.RequestTimeout, Options: publish.Options{RetryFor: -1}})
	if err != nil {
		return nil, err
	}
	nc := js.Conn()
	s := &Source{
		dlq:         dlq,
		js:          js,
		nc:          nc,
		cons:        cons,
		cfg:         cfg,
		log:         cfg.Logger,
		nextSubject: apiPrefix(js.Options()) + "CONSUMER.MSG.NEXT." + cfg.Stream + "." + cfg.Consumer,
		inbox:       nc.NewInbox() + ".",
		msgs:        make(chan *nats.Msg, fetchBuffer),
		ackWait:     cc.AckWait,
		done:        make(chan struct{}),
	}
	if s.sub, err = nc.ChanSubscribe(s.inbox+"*", s.msgs); err != nil {
		return nil, fmt.Errorf("jetstream: subscribe for pulled messages: %w", err)
	}
	s.ackInbox = nc.NewInbox() + "."
	s.ackReplies = make(chan *nats.Msg, 1024)
	if s.ackSub, err = nc.ChanSubscribe(s.ackInbox+"*", s.ackReplies); err != nil {
		s.sub.Unsubscribe()
		return nil, fmt.Errorf("jetstream: subscribe for ack confirmations: %w", err)
	}
	s.status = nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	return s, nil
}

func (cfg *Config) setDefaults() error {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Consumer == "" {
		cfg.Consumer = DefaultConsumer
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.DeadLetterPrefix == "" {
		cfg.DeadLetterPrefix = DefaultDeadLetterPrefix
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.MaxDeliver < 1 {
		return fmt.Errorf("jetstream: MaxDeliver %d: want at least 1", cfg.MaxDeliver)
	}
	return nil
}

func apiPrefix(o natsjs.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return natsjs.DefaultAPIPrefix
}

// lookupError maps a failed consumer lookup to the consumer package's
// sentinels, with what to do.
func lookupError(cfg *Config, err error) error {
	switch {
	case errors.Is(err, natsjs.ErrStreamNotFound):
		return fmt.Errorf("jetstream: stream %q does not exist: %w (%w): run 'indexer setup --source nats'",
			cfg.Stream, consumer.ErrStreamMissing, err)
	case errors.Is(err, natsjs.ErrConsumerNotFound):
		return fmt.Errorf("jetstream: consumer %q on stream %q does not exist: %w (%w): run 'indexer setup --source nats'",
			cfg.Consumer, cfg.Stream, consumer.ErrGroupMissing, err)
	}
	return fmt.Errorf("jetstream: look up consumer %q on stream %q: %w", cfg.Consumer, cfg.Stream, err)
}

// ExtendEvery is a third of the consumer's AckWait.
func (s *Source) ExtendEvery() time.Duration { return s.ackWait / 3 }

// Fetch returns up to max messages, waiting at most wait for the first
// one (see the package comment). Messages brought by an earlier pull
// request that Fetch stopped waiting for (ctx ended) are returned first.
// It fails with an error the loop retries (wrapping nats.ErrDisconnected)
// while the connection is down, and with one wrapping
// consumer.ErrGroupMissing or consumer.ErrStreamMissing once the consumer
// or stream is deleted. It returns promptly when ctx is done or the
// Source is closed. The returned slice is the caller's.
func (s *Source) Fetch(ctx context.Context, max int, wait time.Duration) ([]consumer.Message, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	select {
	case <-s.done:
		return nil, ErrClosed
	default:
	}
	if max <= 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := s.scratch[:0]
	defer func() { clear(out); s.scratch = out[:0] }()

	// Messages already here first: no request.
	for len(out) < max {
		var m *nats.Msg
		select {
		case m = <-s.msgs:
		default:
		}
		if m == nil {
			break
		}
		var err error
		if out, _, err = s.receive(ctx, m, out, 0); err != nil {
			return s.result(out), err
		}
	}
	if len(out) > 0 {
		return s.result(out), nil
	}
	if err := s.connected(); err != nil {
		return nil, err
	}

	deadline := time.Now().Add(wait)
	id, err := s.request(max, wait)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(wait + wait/10 + 100*time.Millisecond) // the server ends the request at wait
	defer timer.Stop()
	for {
		select {
		case m := <-s.msgs:
			var state reqState
			if out, state, err = s.receive(ctx, m, out, id); err != nil {
				return s.result(out), err
			}
			switch {
			case len(out) >= max || state == reqDone:
				return s.result(out), nil
			case state == reqBusy:
				// Other pull requests wait for the messages there are: ask
				// again shortly, within wait.
				left := time.Until(deadline)
				if left < time.Millisecond || !s.pause(ctx, min(left, 5*time.Millisecond)) {
					return s.result(out), ctx.Err()
				}
				if id, err = s.request(max-len(out), time.Until(deadline)); err != nil {
					return s.result(out), err
				}
			}
		case st, ok := <-s.status:
			if !ok { // Close removed the listener
				return s.result(out), ErrClosed
			}
			return s.result(out), fmt.Errorf("jetstream: fetch from %s/%s: connection %s: %w", s.cfg.Stream, s.cfg.Consumer, st, nats.ErrDisconnected)
		case <-timer.C:
			return s.result(out), nil
		case <-ctx.Done():
			return s.result(out), ctx.Err()
		case <-s.done:
			return s.result(out), ErrClosed
		}
	}
}

// result copies the gathered messages out of the reused scratch slice.
func (s *Source) result(out []consumer.Message) []consumer.Message {
	if len(out) == 0 {
		return nil
	}
	return append([]consumer.Message(nil), out...)
}

// pause sleeps d unless ctx ends or the Source closes first.
func (s *Source) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.done:
	}
	return false
}

// connected drops stale connection events and fails unless the
// connection is up now.
func (s *Source) connected() error {
	for drained := false; !drained; {
		select {
		case _, ok := <-s.status:
			if !ok {
				return ErrClosed
			}
		default:
			drained = true
		}
	}
	switch st := s.nc.Status(); st {
	case nats.CONNECTED:
		return nil
	case nats.CLOSED:
		return fmt.Errorf("jetstream: fetch from %s/%s: %w", s.cfg.Stream, s.cfg.Consumer, nats.ErrConnectionClosed)
	default:
		return fmt.Errorf("jetstream: fetch from %s/%s: connection %s: %w", s.cfg.Stream, s.cfg.Consumer, st, nats.ErrDisconnected)
	}
}

// request sends pull request number s.reqID+1: at most batch messages,
// ending as soon as some were delivered, or after wait.
func (s *Source) request(batch int, wait time.Duration) (uint64, error) {
	s.reqID++
	b := append(s.reqBody[:0], `{"batch":`...)
	b = strconv.AppendInt(b, int64(batch), 10)
	if wait > 0 {
		b = append(b, `,"expires":`...)
		b = strconv.AppendInt(b, int64(wait), 10)
	}
	b = append(b, `,"no_wait":true}`...)
	s.reqBody = b
	if err := s.nc.PublishRequest(s.nextSubject, s.inbox+strconv.FormatUint(s.reqID, 10), b); err != nil {
		return 0, fmt.Errorf("jetstream: pull from %s/%s: %w", s.cfg.Stream, s.cfg.Consumer, err)
	}
	return s.reqID, nil
}

type reqState int

const (
	reqOpen reqState = iota // the request may bring more
	reqDone                 // the server ended the request
	reqBusy                 // refused for now: other requests wait for the pending messages
)

// receive handles one message from the pull inbox: a delivery is appended
// to out; a status ends request id, or reports a failure.
func (s *Source) receive(ctx context.Context, m *nats.Msg, out []consumer.Message, id uint64) ([]consumer.Message, reqState, error) {
	if a, ok := parseAckSubject(m.Reply); ok {
		ct := m.Header.Get(HeaderContentType)
		if ct == "" && m.Header != nil {
			ct = m.Header.Get("content-type")
		}
		return append(out, consumer.Message{
			ID:          a.seq,
			Data:        m.Data,
			ContentType: ct,
			Subject:     m.Subject,
			Deliveries:  int(a.delivered),
			Time:        time.Unix(0, a.time),
			Handle:      msgHandle{m},
		}), reqOpen, nil
	}
	code, desc := m.Header.Get("Status"), m.Header.Get("Description")
	mine := id != 0 && strings.TrimPrefix(m.Subject, s.inbox) == strconv.FormatUint(id, 10)
	switch {
	case code == "100": // heartbeat
	case code == "503": // nobody serves the consumer's pull subject
		return out, reqDone, s.missing(ctx, nats.ErrNoResponders)
	case code == "409" && strings.Contains(desc, "Consumer Deleted"):
		return out, reqDone, s.missing(ctx, natsjs.ErrConsumerDeleted)
	case !mine: // the end of a request Fetch stopped waiting for
	case code == "408" && strings.Contains(desc, "Requests Pending"):
		return out, reqBusy, nil
	case code == "404", code == "408", code == "409" && strings.Contains(desc, "Leadership Change"):
		return out, reqDone, nil
	case code == "":
		s.log.Warn("unexpected message on the pull inbox; ignored", "subject", m.Subject)
	default:
		return out, reqDone, fmt.Errorf("jetstream: pull from %s/%s refused: %s %s", s.cfg.Stream, s.cfg.Consumer, code, desc)
	}
	return out, reqOpen, nil
}

// missing tells why the server did not serve the consumer: it or its
// stream is gone (an error wrapping consumer.ErrGroupMissing or
// consumer.ErrStreamMissing, which stops the loop), or it exists and the
// failure is retried.
//
// The lookup waits at most 2 s: a server shutting down also stops serving
// its consumers, and a lookup sent to it is lost with the connection.
func (s *Source) missing(ctx context.Context, cause error) error {
	lctx, cancel := context.WithTimeout(ctx, min(s.cfg.RequestTimeout, 2*time.Second))
	defer cancel()
	_, err := s.js.Consumer(lctx, s.cfg.Stream, s.cfg.Consumer)
	switch {
	case err == nil:
		return fmt.Errorf("jetstream: consumer %q on stream %q: %w (it exists; retrying)", s.cfg.Consumer, s.cfg.Stream, cause)
	case errors.Is(err, natsjs.ErrStreamNotFound), errors.Is(err, natsjs.ErrConsumerNotFound):
		return lookupError(&s.cfg, err) // the caller reports it, once
	}
	return fmt.Errorf("jetstream: consumer %q on stream %q: %w; looking it up: %v", s.cfg.Consumer, s.cfg.Stream, cause, err)
}

// withTimeout bounds ctx by RequestTimeout, unless it ends sooner.
func (s *Source) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.cfg.RequestTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// CheckEvent checks that m was published on the subject of e's table,
// <SubjectPrefix>.<database>.<table>: with subject permissions
// (publish allowed on idx.events.<db>.<table> only), a writer can then
// write only its own tables, whatever its events say. The loop
// dead-letters a message that fails, with the error as its reason.
func (s *Source) CheckEvent(m *consumer.Message, e *event.Event) error {
	if onTableSubject(m.Subject, s.cfg.SubjectPrefix, e.Database, e.Table) {
		return nil
	}
	return fmt.Errorf("subject mismatch: the event is for database %q, table %q, whose events are published to %s, but it was published to %s: a writer may publish only to its tables' subjects",
		e.Database, e.Table, TableSubject(s.cfg.SubjectPrefix, e.Database, e.Table), m.Subject)
}

// Lag is the consumer's NumPending: messages of the stream it has not
// delivered yet (Backlog's Lag).
func (s *Source) Lag(ctx context.Context) (int64, error) {
	b, err := s.Backlog(ctx)
	return b.Lag, err
}

// Backlog returns the consumer's NumPending (lag) and NumAckPending
// (pending), and the number of messages in DeadLetterStream (-1 without
// one): one or two requests.
func (s *Source) Backlog(ctx context.Context) (consumer.Backlog, error) {
	b := consumer.Backlog{DeadLetters: -1}
	info, err := s.cons.Info(ctx)
	if err != nil {
		if errors.Is(err, natsjs.ErrStreamNotFound) || errors.Is(err, natsjs.ErrConsumerNotFound) {
			return b, lookupError(&s.cfg, err)
		}
		return b, fmt.Errorf("jetstream: consumer info: %w", err)
	}
	b.Lag, b.Pending = int64(info.NumPending), int64(info.NumAckPending)
	if s.cfg.DeadLetterStream != "" {
		st, err := streamState(ctx, s.js, s.cfg.DeadLetterStream)
		if err != nil {
			return b, err
		}
		b.DeadLetters = int64(st.Msgs)
	}
	return b, nil
}

// closeFlushTimeout bounds how long Close waits for ack confirmations.
const closeFlushTimeout = 2 * time.Second

// Close stops the Source: a Fetch waiting returns ErrClosed; the pull
// inbox is unsubscribed, so open pull requests deliver nothing more; Close
// waits (at most 2 s) for the server to confirm the acks sent before;
// messages fetched and not acknowledged are delivered again after AckWait.
// It is idempotent and does not close the NATS connection.
func (s *Source) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.nc.RemoveStatusListener(s.status)
		if uerr := s.sub.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrConnectionClosed) && !errors.Is(uerr, nats.ErrBadSubscription) {
			err = fmt.Errorf("jetstream: close: %w", uerr)
		}
		if !s.nc.IsClosed() {
			ctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
			if ferr := s.flush(ctx); ferr != nil {
				s.log.Warn("close: acks not confirmed; their messages may be delivered again", "err", ferr)
			}
			cancel()
		}
		s.ackSub.Unsubscribe()
	})
	return err
}
