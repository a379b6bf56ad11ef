package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/telemetry"
)

// The second line of defence against the server dropping a message (the
// first is the consumer's MaxDeliver, see maxdeliver.go). When a consumer
// has delivered a message MaxDeliver times and it was not acknowledged,
// the server stops delivering it and publishes an advisory to
// $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer> with the
// message's stream sequence — and only if someone listens at that moment.
// Setup makes a stream listen (<Stream>_MAX_DELIVERIES), so the advisory is
// stored whether or not a worker is connected, and a durable consumer of
// the workers' name on it, which the workers share: each advisory is
// handed to one worker at a time and acknowledged after its message was
// dead-lettered. Advisories is that worker side.

// MaxDeliveriesSubject is where the server publishes the advisory that
// consumer of stream gave up on a message ("*" for any consumer).
func MaxDeliveriesSubject(stream, consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + consumer
}

// DefaultAdvisories is the name of the advisory stream Setup creates for
// the events stream: <stream>_MAX_DELIVERIES.
func DefaultAdvisories(stream string) string { return stream + "_MAX_DELIVERIES" }

// DeadLetterKindServer is the kind label (indexer_dead_letters_total) of
// the messages dead-lettered because the server gave up on them.
const DeadLetterKindServer = "server_max_deliver"

// stepAdvisories is the step label (indexer_failures_total) of failures to
// read the advisories.
const stepAdvisories = "advisories"

// MetricLabels returns the label values of the counters of a worker reading
// NATS, for telemetry.NewMetrics: the consume loop's
// (consumer.MetricLabels) and the advisories' dead-letter kind and failure
// step.
func MetricLabels() telemetry.Labels {
	l := consumer.MetricLabels()
	l.DeadLetterKinds = append(l.DeadLetterKinds, DeadLetterKindServer)
	l.FailureSteps = append(l.FailureSteps, stepAdvisories)
	return l
}

const (
	advisoryAckWait = 30 * time.Second
	advisoryPoll    = 10 * time.Second // one pull request waits this long
	advisoryBatch   = 64
)

// advisoryStream is the stream that stores the max-deliveries advisories
// of the events stream's consumers. It keeps them as long as the events
// stream keeps the messages they name.
func (c *SetupConfig) advisoryStream() natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              c.Advisories,
		Description:       "indexer: the server's max-deliveries advisories of " + c.Stream + "'s consumers; the workers dead-letter the messages they name",
		Subjects:          []string{MaxDeliveriesSubject(c.Stream, "*")},
		Retention:         natsjs.LimitsPolicy,
		Storage:           natsjs.FileStorage,
		Discard:           natsjs.DiscardOld,
		MaxAge:            c.MaxAge,
		MaxBytes:          -1,
		MaxMsgs:           -1,
		MaxMsgsPerSubject: -1,
		Duplicates:        c.Duplicates,
		Replicas:          c.Replicas,
	}
}

// advisoryConsumer is the workers' durable consumer of their own
// consumer's advisories.
func (c *SetupConfig) advisoryConsumer() natsjs.ConsumerConfig {
	return natsjs.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "indexer workers: dead-letter the messages consumer " + c.Consumer + " of " + c.Stream + " gave up on",
		DeliverPolicy: natsjs.DeliverAllPolicy,
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       advisoryAckWait,
		MaxDeliver:    -1, // an advisory is retried until its message is dead-lettered
		MaxAckPending: 1000,
		FilterSubject: MaxDeliveriesSubject(c.Stream, c.Consumer),
		ReplayPolicy:  natsjs.ReplayInstantPolicy,
		Replicas:      c.Replicas,
	}
}

// setupAdvisories creates what stores the workers' advisories: the stream
// that captures them (unless one does already, whatever its name) and the
// durable consumer on it. It reports whether it created anything.
func setupAdvisories(ctx context.Context, js natsjs.JetStream, cfg *SetupConfig) (bool, error) {
	want := cfg.advisoryConsumer()
	created := false
	name, err := js.StreamNameBySubject(ctx, want.FilterSubject)
	switch {
	case errors.Is(err, natsjs.ErrStreamNotFound):
		var have natsjs.StreamConfig
		if have, created, err = ensureStream(ctx, js, cfg.advisoryStream(), compareAdvisories); err != nil {
			return false, err
		}
		name = have.Name
	case err != nil:
		return false, fmt.Errorf("jetstream setup: find the stream of %s: %w", want.FilterSubject, err)
	}
	c, err := js.Consumer(ctx, name, want.Durable)
	if errors.Is(err, natsjs.ErrConsumerNotFound) {
		if _, err = js.CreateConsumer(ctx, name, want); err == nil {
			return true, nil
		}
		if errors.Is(err, natsjs.ErrConsumerExists) {
			c, err = js.Consumer(ctx, name, want.Durable)
		}
	}
	if err != nil {
		return false, fmt.Errorf("jetstream setup: consumer %q on stream %q: %w", want.Durable, name, err)
	}
	hc := c.CachedInfo().Config
	var d differ
	if hc.DeliverSubject != "" {
		d = append(d, FieldDiff{Field: "deliver_subject", Have: fmt.Sprintf("%q (a push consumer)", hc.DeliverSubject), Want: "none (a pull consumer)"})
	}
	d.add("ack_policy", hc.AckPolicy, want.AckPolicy)
	d.add("filter_subject", quoteOrNone(hc.FilterSubject+strings.Join(hc.FilterSubjects, ",")), quoteOrNone(want.FilterSubject))
	if len(d) > 0 {
		return false, &MismatchError{Kind: "consumer", Name: want.Durable, Stream: name, Diffs: d}
	}
	return created, nil
}

// compareAdvisories leaves the advisory stream's limits to the operator
// (discardWarnings reports them).
func compareAdvisories(have, want *natsjs.StreamConfig) []FieldDiff {
	var d differ
	compareCommon(&d, have, want)
	return d
}

// Advisories dead-letters the messages the server gave up on: it reads
// the max-deliveries advisories of the workers' consumer from the stream
// Setup made capture them, fetches each message named from the events
// stream by its sequence, and publishes it to the dead-letter subject with
// the reason "the server stopped delivering it after N deliveries"; then
// it acknowledges the advisory. Every worker runs one; they share one
// durable consumer, so each advisory is handled by one of them, and the
// dead letter's Nats-Msg-Id (dlq-<stream>-<seq>, as the loop's) makes the
// dead-letter stream store a message once within its duplicate window even
// if an advisory is handled twice (a worker stopped before its ack) or the
// loop dead-lettered the same message. Each dead letter the stream stored
// is counted (indexer_dead_letters_total{kind="server_max_deliver"}) and
// logged as an ALARM; a message no longer in the events stream is counted
// as lost (indexer_lost_messages_total), with an ALARM.
type Advisories struct {
	js      natsjs.JetStream
	cfg     Config
	log     *slog.Logger
	metrics *telemetry.Metrics
	events  natsjs.Stream
	cons    natsjs.Consumer
	stream  string // the advisory stream
}

// NewAdvisories looks up the stream that captures the max-deliveries
// advisories of cfg's consumer and the durable consumer of the same name
// on it ('indexer setup' creates both), and the events stream. A missing
// one is an error wrapping consumer.ErrStreamMissing or
// consumer.ErrGroupMissing that says to run 'indexer setup --source
// nats'. metrics may be nil. It starts nothing: Run does.
func NewAdvisories(ctx context.Context, js natsjs.JetStream, cfg Config, metrics *telemetry.Metrics) (*Advisories, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	subject := MaxDeliveriesSubject(cfg.Stream, cfg.Consumer)
	name, err := js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, fmt.Errorf("jetstream: no stream stores the advisories of %s, where the server says it gave up on a message: %w: run 'indexer setup --source nats' (it creates %s)",
			subject, consumer.ErrStreamMissing, DefaultAdvisories(cfg.Stream))
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: find the stream of %s: %w", subject, err)
	}
	cons, err := js.Consumer(ctx, name, cfg.Consumer)
	if err != nil {
		return nil, lookupError(&Config{Stream: name, Consumer: cfg.Consumer}, err)
	}
	events, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, streamError(cfg.Stream, err)
	}
	return &Advisories{js: js, cfg: cfg, metrics: metrics, events: events, cons: cons, stream: name,
		log: cfg.Logger.With("advisories", name)}, nil // the caller's logger names the stream and group
}

// Run handles advisories until ctx is done. Failures (the connection
// down, the dead-letter stream missing, the advisory stream or its
// consumer deleted) are logged and retried with backoff up to a minute:
// an advisory is acknowledged only once its message was dead-lettered (or
// found gone), so none is lost meanwhile as long as the advisory stream
// keeps it.
func (a *Advisories) Run(ctx context.Context) {
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Second), backoff.WithMaxInterval(time.Minute),
		backoff.WithMaxElapsedTime(0))
	for ctx.Err() == nil {
		err := a.poll(ctx)
		if err == nil {
			bo.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		class := consumer.Classify(err)
		a.metrics.Failure(stepAdvisories, class.String())
		wait := bo.NextBackOff()
		if class == consumer.Fatal {
			a.log.Error("ALARM: cannot read the server's max-deliveries advisories: a message the server gives up on is not dead-lettered until this is fixed",
				"err", err, "retry_in", wait)
		} else {
			a.log.Warn("reading the server's max-deliveries advisories failed; retrying", "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// poll sends one pull request and handles what it brings.
func (a *Advisories) poll(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, advisoryPoll)
	defer cancel()
	batch, err := a.cons.Fetch(advisoryBatch, natsjs.FetchContext(pctx))
	if err != nil {
		return a.fetchError(ctx, err)
	}
	var herr error
	for m := range batch.Messages() {
		if err := a.handle(ctx, m); err != nil && herr == nil {
			herr = err // the others are handled all the same
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return a.fetchError(ctx, err)
	}
	return herr
}

// fetchError explains a failed pull: the advisory consumer or stream
// deleted (fatal, with the fix), or something to retry.
func (a *Advisories) fetchError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	if _, lerr := a.js.Consumer(lctx, a.stream, a.cfg.Consumer); errors.Is(lerr, natsjs.ErrConsumerNotFound) || errors.Is(lerr, natsjs.ErrStreamNotFound) {
		return lookupError(&Config{Stream: a.stream, Consumer: a.cfg.Consumer}, lerr)
	}
	return fmt.Errorf("jetstream: pull advisories from %s/%s: %w", a.stream, a.cfg.Consumer, err)
}

// maxDeliveriesAdvisory is the part of the server's advisory
// (io.nats.jetstream.advisory.v1.max_deliver) Advisories reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// handle dead-letters the message an advisory names and acknowledges the
// advisory. An error leaves the advisory unacknowledged: it is delivered
// again after advisoryAckWait, to this worker or another.
func (a *Advisories) handle(ctx context.Context, m natsjs.Msg) error {
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(m.Data(), &adv); err != nil || adv.StreamSeq == 0 || adv.Stream != a.cfg.Stream || adv.Consumer != a.cfg.Consumer {
		a.log.Error("ALARM: ignored a message on the max-deliveries advisory subject that is not an advisory of this consumer",
			"subject", m.Subject(), "data", headerValue(string(m.Data())))
		return m.Term()
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	seq := strconv.FormatUint(adv.StreamSeq, 10)
	log := a.log.With("msg_id", seq, "deliveries", adv.Deliveries)
	raw, err := a.events.GetMsg(rctx, adv.StreamSeq)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		a.metrics.Lost(1)
		log.Error("ALARM: the server stopped delivering a message without its being acknowledged, and it is no longer in the stream (expired or deleted): its event is lost to the index; publish it again from the writer if it matters")
		return m.Ack()
	}
	if err != nil {
		return fmt.Errorf("jetstream: read message %s of %s, named by a max-deliveries advisory: %w", seq, a.cfg.Stream, err)
	}
	ct := raw.Header.Get(HeaderContentType)
	if ct == "" {
		ct = raw.Header.Get("content-type")
	}
	d := consumer.DeadLetter{
		Message: consumer.Message{ID: seq, Data: raw.Data, ContentType: ct, Subject: raw.Subject, Deliveries: int(adv.Deliveries), Time: raw.Time},
		Reason: fmt.Sprintf("the server stopped delivering it after %d deliveries without an acknowledgement (the consumer's max_deliver is below what the workers' --max-deliver needs, "+
			"or the worker holding its last delivery stopped); it may not have been applied: see the worker logs, fix the cause, then requeue it", adv.Deliveries),
	}
	out := &nats.Msg{Header: nats.Header{}}
	var h deadLetterHeaders
	h.build(out, &d, &a.cfg)
	ack, err := a.js.PublishMsg(rctx, out)
	if errors.Is(err, natsjs.ErrNoStreamResponse) {
		err = noStreamError(ctx, a.js, out.Subject)
	}
	if err != nil {
		return fmt.Errorf("jetstream: dead-letter message %s, named by a max-deliveries advisory: %w", seq, err)
	}
	if ack.Duplicate {
		log.Info("a message the server gave up on was dead-lettered already", "dead_letter", ack.Sequence)
		return m.Ack()
	}
	a.metrics.DeadLettered(DeadLetterKindServer, 1)
	log.Error("ALARM: the server stopped delivering a message before the worker dead-lettered it; dead-lettered it now: check that the consumer's max_deliver exceeds the workers' --max-deliver ('indexer setup' raises it)",
		"dead_letter", ack.Sequence, "subject", raw.Subject)
	return m.Ack()
}
