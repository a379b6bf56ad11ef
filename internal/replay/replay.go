// Package replay re-applies a range of a stream to the index through the
// consume loop (consumer.Run) reading a temporary group or consumer, so the
// workers' own group is never touched. It stops once every message of the
// range was settled, and sums up what applying them did.
//
// Since every patch is idempotent, a replay never changes a correct index
// (every outcome is a duplicate or ignored) and repairs a damaged one.
// Messages that cannot be applied are counted and reported, never
// dead-lettered again: their originals went to the dead-letter destination
// when the workers read them.
package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
)

// Range is a temporary group or consumer reading a range of a stream:
// redisstream.Replay and jetstream.Replay.
type Range interface {
	// Source reads the range (and possibly beyond its end).
	Source() consumer.Source
	// Past reports whether a message lies after the range's end.
	Past(m *consumer.Message) bool
	// Done reports whether every message of the range has been delivered
	// and acknowledged.
	Done(ctx context.Context) (bool, error)
}

// Config configures Run. Zero fields mean the defaults.
type Config struct {
	// Range is what to replay. Required.
	Range Range
	// Index applies the events. Required.
	Index consumer.Applier
	// Decoder decodes and validates messages. Default: codec defaults.
	Decoder *event.Decoder
	// BatchSize, BatchBytes and Linger shape batches as for workers.
	// Defaults 1000, 4 MiB, 10 ms.
	BatchSize, BatchBytes int
	Linger                time.Duration
	// MaxDeliver: a message delivered more often than this without being
	// applied is given up (counted as refused). Default 5.
	MaxDeliver int
	// PollWait bounds how long the loop waits for messages before the
	// replay checks whether it is done. Default 250 ms.
	PollWait time.Duration
	// Logger receives the loop's logs. Default slog.Default().
	Logger *slog.Logger
	// Progress, when set, is called after each batch with the number of
	// messages of the range settled so far.
	Progress func(settled int64)
	// Samples bounds the invalid or refused messages kept for the report.
	// Default 10.
	Samples int
}

// Summary is what a replay did.
type Summary struct {
	// Messages counts the messages of the range settled: applied (with
	// any outcome), invalid, refused or lost.
	Messages int64
	// Outcomes counts the applied events per outcome. A message delivered
	// again within the replay (after a failed batch) counts again.
	Outcomes map[index.Outcome]int64
	// Invalid counts messages that do not decode or validate; they were
	// dead-lettered when the workers read them, and are not again.
	Invalid int64
	// Refused counts messages the index refused more than MaxDeliver
	// times (e.g. a key of the wrong type): not applied.
	Refused int64
	// Lost counts entries whose payload was gone (trimmed) before the
	// replay read them.
	Lost int64
	// Samples are some of the invalid and refused messages, with why.
	Samples []Sample
	// Complete: every message of the range was settled. False when the
	// replay was interrupted (ctx done) or failed.
	Complete bool
}

// Sample is a message that was not applied, and why.
type Sample struct {
	ID     string
	Reason string
}

// Run replays cfg.Range: it runs the consume loop over the range's source
// until every message up to the range's end was settled, then returns the
// summary. Messages past the end are acknowledged in the temporary group
// and left alone. When ctx is done, the batch in flight is finished and
// Run returns the summary so far with Complete false and no error. The
// caller removes the range (group or consumer) afterwards.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if cfg.Range == nil || cfg.Index == nil {
		return Summary{}, errors.New("replay: Range and Index are required")
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = 250 * time.Millisecond
	}
	if cfg.Samples == 0 {
		cfg.Samples = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	b := newBounded(cfg.Range, &cfg, stop)
	ap := &counter{Applier: cfg.Index}
	r, err := consumer.New(consumer.Config{Source: b, Index: ap, Decoder: cfg.Decoder,
		BatchSize: cfg.BatchSize, BatchBytes: cfg.BatchBytes, Linger: cfg.Linger, MaxDeliver: cfg.MaxDeliver,
		PollWait: cfg.PollWait, ShutdownTimeout: time.Minute, Logger: cfg.Logger, Replay: true,
		AfterBatch: func(int) {
			if cfg.Progress != nil {
				cfg.Progress(b.settled.Load())
			}
		}})
	if err != nil {
		return Summary{}, err
	}
	err = r.Run(rctx)
	sum := Summary{Outcomes: map[index.Outcome]int64{}}
	for _, o := range index.AllOutcomes {
		sum.Outcomes[o] = ap.counts[o].Load()
	}
	b.mu.Lock()
	sum.Messages, sum.Invalid, sum.Refused, sum.Lost = b.settled.Load(), b.invalid, b.refused, b.lost
	sum.Samples = b.sampled
	sum.Complete = b.complete && err == nil
	b.mu.Unlock()
	return sum, err
}

// counter counts the outcomes of applied events.
type counter struct {
	consumer.Applier
	counts [256]atomic.Int64 // by outcome
}

func (c *counter) Apply(ctx context.Context, events []event.Event) (index.Result, error) {
	res, err := c.Applier.Apply(ctx, events)
	if err == nil {
		for _, o := range res.Outcomes {
			c.counts[o].Add(1)
		}
	}
	return res, err
}

// bounded is the range's source as the loop sees it: messages past the
// range's end are acknowledged and not handed out; dead letters are
// acknowledged and counted, not moved; once every message of the range was
// settled it ends the loop.
type bounded struct {
	consumer.Source
	rng        Range
	maxDeliver int
	samples    int
	log        *slog.Logger
	done       context.CancelFunc

	settled atomic.Int64

	mu   sync.Mutex
	held map[string]int // handed out, not settled: id -> times handed out
	// recent remembers the last ids settled (a ring of maxRemembered): a
	// message delivered again after it was settled (its lease ran out
	// while it was applied) is acknowledged, not handed out nor counted
	// again.
	recent   map[string]bool
	ring     []string
	next     int
	invalid  int64
	refused  int64
	lost     int64
	sampled  []Sample
	complete bool
}

// maxRemembered bounds the settled ids a replay remembers.
const maxRemembered = 1 << 16

func newBounded(rng Range, cfg *Config, done context.CancelFunc) *bounded {
	return &bounded{Source: rng.Source(), rng: rng, maxDeliver: cfg.MaxDeliver, samples: cfg.Samples, log: cfg.Logger, done: done,
		held: make(map[string]int), recent: make(map[string]bool)}
}

// Fetch hands out the range's messages. When nothing of the range came
// and nothing is in flight, it asks the range whether it is done, and if
// so ends the loop.
func (b *bounded) Fetch(ctx context.Context, max int, wait time.Duration) ([]consumer.Message, error) {
	msgs, err := b.Source.Fetch(ctx, max, wait)
	var kept, again []consumer.Message
	b.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		if b.rng.Past(m) || b.recent[m.ID] {
			again = append(again, *m)
			continue
		}
		b.held[m.ID]++
		kept = append(kept, *m)
	}
	idle := len(b.held) == 0
	b.mu.Unlock()
	if len(again) > 0 {
		if aerr := b.Source.Ack(ctx, again); aerr != nil && err == nil {
			err = aerr // delivered again later, and acknowledged then
		}
	}
	if len(kept) == 0 && idle && err == nil && ctx.Err() == nil {
		done, derr := b.rng.Done(ctx)
		switch {
		case derr != nil && ctx.Err() == nil:
			b.log.Warn("replay: checking whether the replay is done failed; retrying", "err", derr)
		case done:
			b.mu.Lock()
			b.complete = true
			b.mu.Unlock()
			b.done()
		}
	}
	return kept, err
}

// CheckEvent applies the range source's check (consumer.Checker), if it
// has one: a replay rejects what the workers rejected.
func (b *bounded) CheckEvent(m *consumer.Message, e *event.Event) error {
	if c, ok := b.Source.(consumer.Checker); ok {
		return c.CheckEvent(m, e)
	}
	return nil
}

// Ack acknowledges msgs in the temporary group.
func (b *bounded) Ack(ctx context.Context, msgs []consumer.Message) error {
	if err := b.Source.Ack(ctx, msgs); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range msgs {
		if b.settle(msgs[i].ID) && msgs[i].Lost {
			b.lost++
		}
	}
	return nil
}

// DeadLetter acknowledges msgs in the temporary group and counts them:
// the workers dead-lettered their originals already.
func (b *bounded) DeadLetter(ctx context.Context, dead []consumer.DeadLetter) error {
	msgs := make([]consumer.Message, len(dead))
	for i := range dead {
		msgs[i] = dead[i].Message
	}
	if err := b.Source.Ack(ctx, msgs); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range dead {
		if !b.settle(d.ID) {
			continue
		}
		if d.Deliveries > b.maxDeliver {
			b.refused++
		} else {
			b.invalid++
		}
		if len(b.sampled) < b.samples {
			b.sampled = append(b.sampled, Sample{ID: d.ID, Reason: d.Reason})
		}
	}
	return nil
}

// settle marks a message settled and reports whether it was in flight
// (and so counts). b.mu is held.
func (b *bounded) settle(id string) bool {
	if _, ok := b.held[id]; !ok {
		return false
	}
	delete(b.held, id)
	if len(b.ring) < maxRemembered {
		b.ring = append(b.ring, id)
	} else {
		delete(b.recent, b.ring[b.next])
		b.ring[b.next] = id
		b.next = (b.next + 1) % maxRemembered
	}
	b.recent[id] = true
	b.settled.Add(1)
	return true
}

// String describes a summary in one line.
func (s Summary) String() string {
	return fmt.Sprintf("%d messages: %d applied, %d tombstoned, %d duplicate, %d ignored, %d invalid, %d refused, %d lost",
		s.Messages, s.Outcomes[index.Applied], s.Outcomes[index.Tombstoned], s.Outcomes[index.Duplicate],
		s.Outcomes[index.Ignored], s.Invalid, s.Refused, s.Lost)
}
