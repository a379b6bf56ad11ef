package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/progress"
	"github.com/streamindex/indexer/internal/synth"
)

func init() {
	register(&command{
		name:    "publish",
		summary: "publish events to the stream, from NDJSON (--file or stdin) or --generate N synthetic ones; prints a summary",
		setup:   setupPublish,
	})
}

// publishBatch is the number of events sent per round trip.
const publishBatch = 1000

// publisher sends encoded events to one transport.
type publisher interface {
	send(ctx context.Context, events []event.Event, data [][]byte, f event.Format) error
}

type redisPublisher struct{ p *redisstream.Publisher }

func (r redisPublisher) send(ctx context.Context, _ []event.Event, data [][]byte, f event.Format) error {
	out := make([]redisstream.Outgoing, len(data))
	for i := range data {
		out[i] = redisstream.Outgoing{Data: data[i], Format: f}
	}
	_, err := r.p.Publish(ctx, out)
	return err
}

type natsPublisher struct {
	p              *jetstream.Publisher
	subject, msgID string // for --raw lines
}

func (n natsPublisher) send(ctx context.Context, events []event.Event, data [][]byte, f event.Format) error {
	out := make([]jetstream.Outgoing, len(data))
	for i := range data {
		out[i] = jetstream.Outgoing{Data: data[i], Format: f}
		if events != nil {
			out[i].Event = &events[i]
		} else {
			out[i].Subject = n.subject
			out[i].MsgID = fmt.Sprintf("%s-%d-%d", n.msgID, time.Now().UnixNano(), i)
		}
	}
	return n.p.Publish(ctx, out)
}

func setupPublish(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addRedisFlags(fs)
	addWaitFlags(fs, ro, "the published events (--source redis)")
	so := addStreamFlags(fs, false)
	no := addNATSFlags(fs, false)
	file := fs.String("file", "-", "NDJSON `file` of events to publish, one per line; - reads stdin (ignored with --generate)")
	generate := fs.Int("generate", 0, "publish this many synthetic `events` instead of reading NDJSON")
	database := fs.String("database", "demo", "--generate: `database` of the synthetic events")
	table := fs.String("table", "events", "--generate: `table` of the synthetic events")
	deleteRatio := fs.Float64("delete-ratio", 0.3, "--generate: fraction of events that delete a file created earlier")
	duplicateRatio := fs.Float64("duplicate-ratio", 0, "--generate: fraction of events published a second time (as a writer retrying would)")
	seed := fs.Uint64("seed", 1, "--generate: random `seed`; the same seed gives the same history")
	rate := fs.Float64("rate", 0, "most `events` per second (0: as fast as possible)")
	codecName := fs.String("codec", "json", "message encoding: json or msgpack")
	raw := fs.Bool("raw", false, "publish each input line as it is, without validating it (for testing dead-lettering)")
	maxLen := fs.Int64("maxlen", 0, "redis: trim the stream to about this many entries while publishing (0: never)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if err := so.validate(); err != nil {
			return err
		}
		format, err := event.ParseFormat(*codecName)
		if err != nil || *codecName == "" {
			return usagef("--codec %q: use json or msgpack", *codecName)
		}
		if *deleteRatio < 0 || *deleteRatio >= 1 || *duplicateRatio < 0 || *duplicateRatio > 1 {
			return usagef("--delete-ratio must be in [0, 1) and --duplicate-ratio in [0, 1]")
		}
		if *generate < 0 || *rate < 0 {
			return usagef("--generate and --rate must not be negative")
		}

		var pub publisher
		switch so.source {
		case sourceRedis:
			c, err := ro.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			pub = redisPublisher{redisstream.NewPublisher(c.Client, redisstream.PublisherConfig{Stream: so.stream, MaxLen: *maxLen,
				Pipeline: publishBatch, Wait: ro.wait})}
		case sourceNATS:
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			_, js, closeNATS, err := no.connect(log, "indexer publish")
			if err != nil {
				return err
			}
			defer closeNATS()
			pub = natsPublisher{p: jetstream.NewPublisher(js, jetstream.PublisherConfig{}),
				subject: "idx.events." + *database + "." + *table, msgID: "raw"}
		}

		// The bar counts events; duplicates are extra messages.
		bar := progress.New(a.stderr, a.stderrTTY && !*quiet, "events published", int64(*generate))
		if !*quiet {
			bar.Start()
		}
		limiter := newPacer(*rate)
		batchN := publishBatch
		if *rate > 0 {
			batchN = min(publishBatch, max(1, int(*rate/20))) // ~20 sends a second keep the pace smooth
		}
		start := time.Now()
		var sent, dups, invalid int
		var events []event.Event
		var data [][]byte
		flush := func() error {
			if len(data) == 0 {
				return nil
			}
			limiter.wait(ctx, len(data))
			evs := events
			if *raw {
				evs = nil
			}
			if err := pub.send(ctx, evs, data, format); err != nil {
				return fmt.Errorf("publish after %d events: %w", sent, err)
			}
			sent += len(data)
			events, data = events[:0], data[:0]
			return nil
		}
		add := func(e event.Event, d []byte, dup bool) error {
			if !dup {
				bar.Add(1)
			}
			events = append(events, e)
			data = append(data, d)
			if len(data) >= batchN {
				return flush()
			}
			return nil
		}

		if *generate > 0 {
			g := synth.New(synth.Config{Seed: *seed, Database: *database, Table: *table, DeleteRatio: *deleteRatio})
			rng := rand.New(rand.NewPCG(*seed, 99))
			for i := 0; i < *generate && ctx.Err() == nil; i++ {
				e := g.Next()
				d, err := event.Encode(format, &e)
				if err != nil {
					return err
				}
				if err := add(e, d, false); err != nil {
					return err
				}
				if *duplicateRatio > 0 && rng.Float64() < *duplicateRatio {
					dups++
					if err := add(e, d, true); err != nil {
						return err
					}
				}
			}
		} else {
			in, closeIn, err := openInput(a, *file)
			if err != nil {
				return err
			}
			defer closeIn()
			err = readLines(in, 1<<30, func(n int, line []byte, _ bool) error {
				if *raw {
					return add(event.Event{}, append([]byte(nil), line...), false)
				}
				e, err := event.Decode(event.JSON, line)
				if err != nil {
					invalid++
					if invalid <= maxReported {
						fmt.Fprintf(a.stderr, "line %d: %v (not published; --raw publishes lines as they are)\n", n, err)
					}
					return nil
				}
				d, err := event.Encode(format, &e)
				if err != nil {
					return err
				}
				return add(e, d, false)
			})
			if err != nil {
				return err
			}
		}
		err = flush()
		if !*quiet {
			bar.Stop()
		}
		took := time.Since(start)
		fmt.Fprintf(a.stdout, "published %d messages (%d duplicates) to %s %s in %s (%.0f/s)\n",
			sent, dups, so.source, so.stream, took.Round(time.Millisecond), float64(sent)/took.Seconds())
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d messages", sent)
		}
		if invalid > 0 {
			return fmt.Errorf("%d invalid lines were not published", invalid)
		}
		return nil
	}
}

// pacer spreads publishing to a rate (events per second); 0 is unlimited.
type pacer struct {
	rate  float64
	start time.Time
	sent  int
}

func newPacer(rate float64) *pacer { return &pacer{rate: rate, start: time.Now()} }

// wait blocks until n more events may be sent.
func (p *pacer) wait(ctx context.Context, n int) {
	if p.rate <= 0 {
		return
	}
	p.sent += n
	due := p.start.Add(time.Duration(float64(p.sent-n) / p.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}
