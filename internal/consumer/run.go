package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/failpoint"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/telemetry"
)

// Config configures a Runner. Zero fields mean the defaults.
type Config struct {
	// Source is the stream to read. Required.
	Source Source
	// Index applies events. Required.
	Index Applier
	// Decoder decodes and validates messages. Default: codec defaults.
	Decoder *event.Decoder
	// BatchSize is the most messages in one batch. Default 1000.
	BatchSize int
	// BatchBytes stops filling a batch once its payloads reach this many
	// bytes. Default 4 MiB.
	BatchBytes int
	// Linger is how long a batch waits for more messages after its first
	// one. Default 10 ms; negative: no lingering (a batch is what the
	// fetch that brought its first message returned).
	Linger time.Duration
	// PollWait is how long one fetch waits for a first message. Default 1 s.
	PollWait time.Duration
	// MaxDeliver: a message delivered more times than this goes to the
	// dead-letter destination. Default 5.
	MaxDeliver int
	// DeadLetterMaxBytes bounds the payload a dead letter keeps: a larger
	// one keeps its first DeadLetterMaxBytes bytes, with the whole
	// payload's size and SHA-256 digest. Default 64 KiB (the decoder's
	// default message limit, so every payload a worker could accept is
	// kept whole).
	DeadLetterMaxBytes int
	// ShutdownTimeout bounds finishing the in-flight batch once the
	// context is done. Default 30 s.
	ShutdownTimeout time.Duration
	// RetryInitial and RetryMax bound the exponential backoff of retried
	// failures. Defaults 100 ms and 10 s.
	RetryInitial, RetryMax time.Duration
	// LagEvery is how often the backlog gauges (lag, pending, dead
	// letters; see BacklogReporter) are refreshed and trimmed messages
	// counted (TrimCounter). Default 5 s.
	LagEvery time.Duration
	// Logger receives the loop's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives the loop's metrics and readiness.
	Metrics *telemetry.Metrics
	// Now is the clock used for event ages. Default time.Now.
	Now func() time.Time
	// AfterBatch, when set, is called after each batch is handled, with
	// the number of messages acknowledged. For progress reports and tests.
	AfterBatch func(acked int)
	// Replay says the loop re-reads messages the workers handled before:
	// invalid ones were dead-lettered then, so the Source's DeadLetter only
	// skips them, and they are logged and counted as skipped.
	Replay bool
}

// Steps of the loop, as indexer_failures_total{step} counts their
// failures.
const (
	stepFetch      = "fetch"
	stepApply      = "apply"
	stepAck        = "ack"
	stepDeadLetter = "dead_letter"
	stepBacklog    = "backlog" // reading the lag, pending and dead-letter counts
)

// Kinds of dead letters, as indexer_dead_letters_total{kind} counts them.
const (
	// KindInvalid: the message could not be decoded or failed validation.
	KindInvalid = "invalid"
	// KindMaxDeliver: the message was delivered more than MaxDeliver
	// times without being applied.
	KindMaxDeliver = "max_deliver"
)

// MetricLabels returns the label values of the loop's counters (every
// outcome, dead-letter kind, failure step and class), for
// telemetry.NewMetrics, so that each of their series exists from the start.
func MetricLabels() telemetry.Labels {
	l := telemetry.Labels{
		DeadLetterKinds: []string{KindInvalid, KindMaxDeliver},
		FailureSteps:    []string{stepFetch, stepApply, stepAck, stepDeadLetter, stepBacklog},
	}
	for _, o := range index.AllOutcomes {
		l.Outcomes = append(l.Outcomes, o.String())
	}
	for _, c := range []Class{Retry, Poison, Fatal} {
		l.FailureClasses = append(l.FailureClasses, c.String())
	}
	return l
}

// Runner runs the consume loop. Its constructor starts nothing; Run owns
// every goroutine it starts.
type Runner struct {
	cfg Config
	log *slog.Logger
	seq int64 // batches handled, for logs

	check Checker // the source's, if it has one

	// held are the batches fetched and not yet handled (the one being
	// applied and the one fetched meanwhile); their leases are renewed.
	mu   sync.Mutex
	held map[*Message][]Message

	// failures are the last errors of messages left for redelivery, for
	// their dead letter after MaxDeliver deliveries.
	failures failures

	// cut counts the messages the shutdown deadline left unacknowledged
	// (processor goroutine only).
	cut int

	// fetchFailing and stepFailing say whether the fetch goroutine, and
	// the processor (apply, ack, dead-letter), are retrying a failure: the
	// worker is ready only when neither is (see setReady).
	readyMu                   sync.Mutex
	fetchFailing, stepFailing bool
}

// New validates cfg and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Source == nil || cfg.Index == nil {
		return nil, errors.New("consumer: Source and Index are required")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.BatchSize, 1000)
	def(&cfg.BatchBytes, 4<<20)
	def(&cfg.MaxDeliver, 5)
	def(&cfg.DeadLetterMaxBytes, event.DefaultMaxMessageBytes)
	defDur(&cfg.Linger, 10*time.Millisecond)
	defDur(&cfg.PollWait, time.Second)
	defDur(&cfg.ShutdownTimeout, 30*time.Second)
	defDur(&cfg.RetryInitial, 100*time.Millisecond)
	defDur(&cfg.RetryMax, 10*time.Second)
	defDur(&cfg.LagEvery, 5*time.Second)
	if cfg.BatchSize < 1 || cfg.BatchBytes < 1 || cfg.MaxDeliver < 1 || cfg.DeadLetterMaxBytes < 1 || cfg.PollWait < 0 {
		return nil, fmt.Errorf("consumer: batch size, batch bytes, max deliver and dead-letter max bytes must be positive, poll wait not negative")
	}
	if cfg.Decoder == nil {
		cfg.Decoder, _ = event.NewDecoder(event.Config{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	check, _ := cfg.Source.(Checker)
	return &Runner{cfg: cfg, log: cfg.Logger, check: check}, nil
}

// Run consumes until ctx is done or a fatal error. On ctx done it stops
// fetching, finishes the batches already fetched (acknowledging what was
// applied) within ShutdownTimeout, and returns nil. If the deadline cuts a
// batch short, its messages stay unacknowledged — they will be delivered
// again, so nothing is lost — Run logs so and still returns nil; it returns
// within ShutdownTimeout if the Source and Index calls in flight return
// once their context is done (a program whose clients may not, closes them
// at the deadline: see AfterDone). A fatal error (see Classify) is
// returned.
//
// While a batch is applied, the next one is fetched.
func (r *Runner) Run(ctx context.Context) error {
	// Batches already fetched are finished under their own context, which
	// ends ShutdownTimeout after ctx does.
	pctx, cancel := AfterDone(ctx, r.cfg.ShutdownTimeout)
	defer cancel()

	fctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	batches := make(chan *sorted) // unbuffered: one batch ready while one is applied
	var fetchErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(batches)
		fetchErr = r.fetchLoop(fctx, batches)
	}()
	go func() {
		defer wg.Done()
		r.lagLoop(fctx)
	}()
	// Leases are renewed until the last batch is handled.
	lctx, stopLeases := context.WithCancel(pctx)
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		r.renewLeases(lctx)
	}()
	defer func() { stopLeases(); lwg.Wait() }()

	var err error
	for b := range batches {
		if err = r.process(pctx, b); err != nil {
			stopFetch()
			for range batches {
			}
			break
		}
	}
	stopFetch()
	wg.Wait()
	r.cfg.Metrics.SetReady(false)
	if err == nil {
		err = fetchErr
	}
	switch {
	case err != nil, pctx.Err() == nil:
	case r.cut > 0:
		r.log.Warn("the shutdown timeout passed with a batch in flight: its messages were not acknowledged and will be delivered again (nothing acknowledged was lost)",
			"shutdown_timeout", r.cfg.ShutdownTimeout, "unacknowledged", r.cut)
	default:
		r.log.Warn("the shutdown timeout passed while the worker waited on a server; no message was left unacknowledged",
			"shutdown_timeout", r.cfg.ShutdownTimeout)
	}
	return err
}

// fetchLoop fills batches and hands them to the processor until ctx is
// done (a batch gathered by then is still handed over) or a fatal error.
func (r *Runner) fetchLoop(ctx context.Context, out chan<- *sorted) error {
	bo := r.backoff()
	for ctx.Err() == nil {
		batch, err := r.fill(ctx)
		if len(batch) > 0 {
			r.hold(batch)
			out <- r.sort(batch) // the processor drains the channel until it closes
		}
		if err == nil {
			bo.Reset()
			r.setReady(&r.fetchFailing, false)
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		class := Classify(err)
		r.cfg.Metrics.Failure(stepFetch, class.String())
		if class == Fatal {
			return fmt.Errorf("fetch: %w", err)
		}
		r.setReady(&r.fetchFailing, true)
		wait := bo.NextBackOff()
		r.log.Warn("fetch failed; retrying", "err", err, "class", class.String(), "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

// fill gathers one batch: it waits up to PollWait for a first message,
// then fetches more until BatchSize messages or BatchBytes bytes, or until
// Linger has passed since the first message. It returns what it gathered,
// with the error that stopped it, if any.
func (r *Runner) fill(ctx context.Context) ([]Message, error) {
	var batch []Message
	size := 0
	var deadline time.Time
	for {
		wait := r.cfg.PollWait
		if len(batch) > 0 {
			if wait = time.Until(deadline); wait <= 0 {
				return batch, nil
			}
		}
		msgs, err := r.cfg.Source.Fetch(ctx, r.cfg.BatchSize-len(batch), wait)
		if len(msgs) > 0 && len(batch) == 0 {
			deadline = time.Now().Add(r.cfg.Linger)
		}
		batch = append(batch, msgs...)
		for i := range msgs {
			size += msgs[i].Size()
		}
		switch {
		case err != nil:
			return batch, err
		case len(batch) >= r.cfg.BatchSize || size >= r.cfg.BatchBytes:
			return batch, nil
		case ctx.Err() != nil:
			return batch, nil
		case len(msgs) == 0 && len(batch) == 0:
			return nil, nil // nothing came within PollWait; the caller loops
		}
		// Otherwise keep filling until the linger deadline (checked above).
	}
}

// sorted is a fetched batch sorted by what the loop will do with each
// message; the fetch goroutine builds it, so decoding overlaps the
// previous batch's apply.
type sorted struct {
	msgs         []Message // the whole batch, as fetched
	lost, valid  []Message
	dead         []DeadLetter
	events       []event.Event // one per valid message
	redelivered  int
	maxDelivered int
}

// sort decodes and validates a batch and sorts its messages. It decides
// nothing about acknowledgement.
func (r *Runner) sort(msgs []Message) *sorted {
	b := &sorted{msgs: msgs, valid: make([]Message, 0, len(msgs)), events: make([]event.Event, 0, len(msgs))}
	for i := range msgs {
		m := &msgs[i]
		if m.Deliveries > 1 {
			b.redelivered++
		}
		switch {
		case m.Lost:
			b.lost = append(b.lost, *m)
		case m.Malformed != "":
			b.dead = append(b.dead, r.deadLetter(m, m.Malformed))
		case m.Deliveries > r.cfg.MaxDeliver:
			b.maxDelivered++
			b.dead = append(b.dead, r.deadLetter(m, r.maxDeliverReason(m)))
		default:
			f, err := event.ParseFormat(m.ContentType)
			var e event.Event
			if err == nil {
				e, err = r.cfg.Decoder.Decode(f, m.Data)
			}
			if err == nil && r.check != nil {
				err = r.check.CheckEvent(m, &e)
			}
			if err != nil {
				b.dead = append(b.dead, r.deadLetter(m, err.Error()))
				continue
			}
			b.valid = append(b.valid, *m)
			b.events = append(b.events, e)
		}
	}
	return b
}

// process handles one batch. It returns only a fatal error; everything
// else leaves the affected messages unacknowledged for redelivery.
func (r *Runner) process(ctx context.Context, b *sorted) error {
	r.seq++
	log := r.log.With("batch", r.seq)
	start := time.Now()
	defer r.release(b.msgs)
	failpoint.Inject(failpoint.AfterFetch)
	msgs, lost, valid, dead, events := b.msgs, b.lost, b.valid, b.dead, b.events
	redelivered, maxDelivered := b.redelivered, b.maxDelivered
	r.cfg.Metrics.Redelivered(redelivered)

	if len(lost) > 0 {
		if err := r.retry(ctx, stepAck, func(ctx context.Context) error { return r.cfg.Source.Ack(ctx, lost) }); err != nil {
			return r.settle(ctx, log, "ack lost", err, lost)
		}
		r.cfg.Metrics.Lost(len(lost))
		ids := make([]string, len(lost))
		for i := range lost {
			ids[i] = lost[i].ID
		}
		log.Error("ALARM: pending messages were trimmed from the stream before they were applied; their events are lost: replay from the writers or raise the stream's MAXLEN",
			"lost", len(lost), "msg_ids", ids)
	}

	acked := len(lost)
	if len(dead) > 0 {
		err := r.retry(ctx, stepDeadLetter, func(ctx context.Context) error { return r.cfg.Source.DeadLetter(ctx, dead) })
		if err != nil {
			failed := make([]Message, len(dead))
			for i := range dead {
				failed[i] = dead[i].Message
			}
			if ferr := r.settle(ctx, log, "dead-letter", err, failed); ferr != nil {
				return ferr
			}
		} else {
			acked += len(dead)
			if r.cfg.Replay {
				for _, d := range dead {
					log.Info("skipped an invalid message (dead-lettered when first seen)", "msg_id", d.ID, "reason", d.Reason)
				}
			} else {
				r.cfg.Metrics.DeadLettered(KindMaxDeliver, maxDelivered)
				r.cfg.Metrics.DeadLettered(KindInvalid, len(dead)-maxDelivered)
				for _, d := range dead {
					log.Warn("dead-lettered", "msg_id", d.ID, "deliveries", d.Deliveries, "reason", d.Reason)
				}
			}
		}
	}

	if len(events) > 0 {
		applyStart := time.Now()
		failpoint.Inject(failpoint.BeforeApply)
		outcomes, err := r.apply(ctx, log, events, valid)
		if err != nil {
			return r.settle(ctx, log, "apply", err, valid)
		}
		failpoint.Inject(failpoint.AfterApply)
		applied := valid[:0:0]
		counts := map[index.Outcome]int{}
		now := r.cfg.Now()
		for i, o := range outcomes {
			if o == 0 {
				continue // refused; left for redelivery
			}
			applied = append(applied, valid[i])
			counts[o]++
			if index.OutsideHour(&events[i]) {
				r.cfg.Metrics.OutsideHour(1)
			}
			r.cfg.Metrics.EventAge(now.Sub(time.Unix(0, events[i].Time)))
		}
		if len(applied) > 0 {
			if err := r.retry(ctx, stepAck, func(ctx context.Context) error { return r.cfg.Source.Ack(ctx, applied) }); err != nil {
				return r.settle(ctx, log, "ack", err, applied)
			}
			r.failures.forget(applied)
		}
		for o, n := range counts {
			r.cfg.Metrics.Outcomes(o.String(), n)
		}
		r.cfg.Metrics.Acked(len(applied))
		r.cfg.Metrics.Batch(len(msgs), time.Since(applyStart), r.cfg.Now())
		acked += len(applied)
	}
	log.Debug("batch done", "messages", len(msgs), "acked", acked, "took", time.Since(start))
	if r.cfg.AfterBatch != nil {
		r.cfg.AfterBatch(acked)
	}
	return nil
}

// settle decides what a failed step means for the loop: fatal errors stop
// it; everything else (including the shutdown deadline) leaves the batch's
// messages unacknowledged and lets the loop go on, remembering err as the
// last failure of msgs, the messages the step left unacknowledged.
func (r *Runner) settle(ctx context.Context, log *slog.Logger, step string, err error, msgs []Message) error {
	if Classify(err) == Fatal {
		return fmt.Errorf("%s: %w", step, err)
	}
	if ctx.Err() != nil {
		r.cut += len(msgs)
	}
	r.failures.record(msgs, fmt.Errorf("%s: %w", step, err))
	log.Error(step+" failed; the batch's messages stay unacknowledged and will be delivered again", "err", err)
	return nil
}

// apply applies events. If the index refuses some of them (Poison), it
// splits the batch in halves around them, so the others still go through.
// The outcome of a refused event is 0; it is logged and left for
// redelivery (and, after MaxDeliver deliveries, the dead-letter
// destination).
func (r *Runner) apply(ctx context.Context, log *slog.Logger, events []event.Event, msgs []Message) ([]index.Outcome, error) {
	apply := func(ctx context.Context, events []event.Event) (res index.Result, err error) {
		err = r.retry(ctx, stepApply, func(ctx context.Context) (err error) {
			res, err = r.cfg.Index.Apply(ctx, events)
			return err
		})
		return res, err
	}
	return ApplyIsolating(ctx, events, apply, func(i int, err error) {
		log.Error("the index refused an event; it stays unacknowledged and will be retried, then dead-lettered",
			"msg_id", msgs[i].ID, "event_id", events[i].ID, "deliveries", msgs[i].Deliveries, "err", err)
		r.failures.record(msgs[i:i+1], fmt.Errorf("the index refused the event: %w", err))
	})
}

// retry runs fn until it succeeds, fails with a class other than Retry, or
// ctx is done, backing off exponentially. Readiness is false while it
// retries.
func (r *Runner) retry(ctx context.Context, step string, fn func(context.Context) error) error {
	bo := r.backoff()
	for {
		err := fn(ctx)
		if err == nil {
			r.setReady(&r.stepFailing, false)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		class := Classify(err)
		r.cfg.Metrics.Failure(step, class.String())
		if class != Retry {
			return err
		}
		r.setReady(&r.stepFailing, true)
		wait := bo.NextBackOff()
		r.log.Warn(step+" failed; retrying", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return err
		}
	}
}

// setReady records whether one side of the loop (fetching, or applying
// and acknowledging) is failing, and reports the worker ready only while
// neither is: a NATS worker still fetching while Redis refuses every
// batch is not ready.
func (r *Runner) setReady(side *bool, failing bool) {
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	*side = failing
	r.cfg.Metrics.SetReady(!r.fetchFailing && !r.stepFailing)
}

func (r *Runner) backoff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(r.cfg.RetryInitial),
		backoff.WithMaxInterval(r.cfg.RetryMax),
		backoff.WithMaxElapsedTime(0), // never give up: nothing is acknowledged meanwhile
	)
}

// hold registers a fetched batch for lease renewal until release.
func (r *Runner) hold(batch []Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = make(map[*Message][]Message)
	}
	r.held[&batch[0]] = batch
}

// release ends the lease renewal of a handled batch.
func (r *Runner) release(batch []Message) {
	if len(batch) == 0 {
		return
	}
	r.mu.Lock()
	delete(r.held, &batch[0])
	r.mu.Unlock()
}

// renewLeases renews, every ExtendEvery, the leases of all the batches the
// worker holds — the one being applied and the one fetched meanwhile — if
// the source has leases, so that a slow batch is not delivered to another
// worker while this one still works on it.
func (r *Runner) renewLeases(ctx context.Context) {
	ext, ok := r.cfg.Source.(Extender)
	if !ok || ext.ExtendEvery() <= 0 {
		return
	}
	t := time.NewTicker(ext.ExtendEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		var msgs []Message
		for _, b := range r.held {
			msgs = append(msgs, b...)
		}
		r.mu.Unlock()
		if len(msgs) == 0 {
			continue
		}
		if err := ext.Extend(ctx, msgs); err != nil && ctx.Err() == nil {
			r.log.Warn("lease renewal failed", "err", err)
		}
	}
}

// lagLoop refreshes the backlog gauges (lag, pending, dead letters), if
// the source can tell them, and counts the messages dropped from the
// stream before the group read them, if the source can tell that
// (TrimCounter).
func (r *Runner) lagLoop(ctx context.Context) {
	br, _ := r.cfg.Source.(BacklogReporter)
	tc, _ := r.cfg.Source.(TrimCounter)
	if r.cfg.Metrics == nil {
		br = nil
	}
	if r.cfg.Replay {
		tc = nil // a replay's temporary group: the workers' group counts
	}
	if br == nil && tc == nil {
		return
	}
	t := time.NewTicker(r.cfg.LagEvery)
	defer t.Stop()
	backlogOK := true
	for {
		if br != nil {
			backlogOK = r.refreshBacklog(ctx, br, backlogOK)
		}
		if tc != nil && !r.countTrimmed(ctx, tc) {
			tc = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshBacklog sets the backlog gauges from the source and reports
// whether it could. A missing stream or group is left to the fetch,
// which stops the worker with one line. Any other failure is counted (step backlog) and logged when
// the previous refresh had worked (wasOK), so that a lasting one is logged
// once; the gauges then keep their last values.
func (r *Runner) refreshBacklog(ctx context.Context, br BacklogReporter, wasOK bool) bool {
	b, err := br.Backlog(ctx)
	switch {
	case err == nil:
		r.cfg.Metrics.SetBacklog(b.Lag, b.Pending, b.DeadLetters)
		return true
	case ctx.Err() != nil:
		return wasOK
	case errors.Is(err, ErrGroupMissing), errors.Is(err, ErrStreamMissing):
		return wasOK // the fetch meets it too and stops the worker with one line
	}
	r.cfg.Metrics.Failure(stepBacklog, Classify(err).String())
	if wasOK {
		r.log.Warn("cannot read the group's lag, pending and dead-letter counts; their gauges keep their last values until it works again",
			"err", err)
	}
	return false
}

// countTrimmed counts the messages the source says were dropped before
// the group read them, and raises the alarm. It reports false when asking
// cannot work (Classify says Fatal: the worker's Redis user lacks a
// permission, say), after saying so once: the caller stops asking rather
// than log the same refusal every LagEvery.
func (r *Runner) countTrimmed(ctx context.Context, tc TrimCounter) bool {
	n, err := tc.Trimmed(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
	case errors.Is(err, ErrGroupMissing), errors.Is(err, ErrStreamMissing):
		return false // the fetch meets it too and stops the worker with one line
	case err != nil && Classify(err) == Fatal:
		r.log.Error("cannot count the messages trimmed from the stream before they were read; this worker stops counting them until it restarts (a refused command: grant its Redis user +xgroup|setid, see README, Security)",
			"err", err)
		return false
	case err != nil:
		r.log.Warn("counting the messages trimmed before they were read failed", "err", err)
	case n > 0:
		r.cfg.Metrics.Lost(int(n))
		r.log.Error("ALARM: messages were trimmed from the stream before any worker read them; their events are lost: replay from the writers or raise the stream's MAXLEN",
			"lost", n)
	}
	return true
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
