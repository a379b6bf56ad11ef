package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/progress"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/natspub"
	"github.com/streamindex/indexer/publish/redispub"
)

func init() {
	register(&command{
		name:    "publish",
		summary: "publish events to the stream, from NDJSON (--file or stdin) or --generate N synthetic ones; prints a summary",
		setup:   setupPublish,
	})
}

// publishBatch is the number of events sent per Publish call.
const publishBatch = 1000

// publisher sends one batch to one transport: events through the
// library's Publish (validated, encoded), or --raw lines as they are.
type publisher interface {
	publish(ctx context.Context, events []event.Event) error
	raw(ctx context.Context, lines [][]byte, f event.Format) error
}

type redisPublisher struct{ p *redispub.Publisher }

func (r redisPublisher) publish(ctx context.Context, events []event.Event) error {
	return r.p.Publish(ctx, events...)
}

func (r redisPublisher) raw(ctx context.Context, lines [][]byte, f event.Format) error {
	msgs := make([]redispub.Message, len(lines))
	for i := range lines {
		msgs[i] = redispub.Message{Data: lines[i], CT: redispub.CT(f)}
	}
	_, err := r.p.PublishRaw(ctx, msgs)
	return err
}

type natsPublisher struct {
	p       *natspub.Publisher
	subject string // for --raw lines
}

func (n natsPublisher) publish(ctx context.Context, events []event.Event) error {
	return n.p.Publish(ctx, events...)
}

// raw publishes lines to the --database/--table subject, each with a
// Nats-Msg-Id of its own, so that a retry stores it once.
func (n natsPublisher) raw(ctx context.Context, lines [][]byte, f event.Format) error {
	msgs := make([]*nats.Msg, len(lines))
	prefix := fmt.Sprintf("raw-%d-", time.Now().UnixNano())
	for i := range lines {
		msgs[i] = &nats.Msg{Subject: n.subject, Data: lines[i], Header: nats.Header{
			natspub.HeaderContentType: {f.ContentType()}, natsjs.MsgIDHeader: {prefix + strconv.Itoa(i)}}}
	}
	return n.p.PublishMsgs(ctx, msgs)
}

// openPublisher opens the writer library's publisher for the source:
// the one way indexer's commands publish events. rawDatabase and rawTable
// name the NATS subject of --raw lines; maxLen trims a Redis stream (0:
// never); noMsgID publishes NATS events without Nats-Msg-Id
// (natspub.Config.NoMsgID). The returned function closes what it opened.
func openPublisher(ctx context.Context, ro *redisOptions, so *streamOptions, no *natsOptions, opts publish.Options,
	log *slog.Logger, name, rawDatabase, rawTable string, maxLen int64, noMsgID bool) (publisher, func(), error) {
	switch so.source {
	case sourceRedis:
		c, err := ro.connect(ctx)
		if err != nil {
			return nil, nil, err
		}
		p, err := redispub.New(c.Client, redispub.Config{Options: opts, Stream: so.stream, MaxLen: max(maxLen, 0), Pipeline: publishBatch,
			WaitReplicas: ro.wait.Replicas, WaitTimeout: ro.wait.Timeout})
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		return redisPublisher{p}, func() { c.Close() }, nil
	default:
		_, js, closeNATS, err := no.connect(log, name)
		if err != nil {
			return nil, nil, err
		}
		p, err := natspub.New(js, natspub.Config{Options: opts, NoMsgID: noMsgID})
		if err != nil {
			closeNATS()
			return nil, nil, err
		}
		return natsPublisher{p: p, subject: p.Subject(rawDatabase, rawTable)}, closeNATS, nil
	}
}

func setupPublish(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addRedisFlags(fs)
	addWaitFlags(fs, ro, "the published events (--source redis)")
	so := addStreamFlags(fs, false)
	no := addNATSFlags(fs, false)
	do := addDecoderFlags(fs) // the workers' rules: what they would dead-letter is refused here
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
	noMsgID := fs.Bool("no-msg-id", false, "nats: publish events without Nats-Msg-Id, so the stream does not de-duplicate them: "+
		"less work for nats-server, but an event published twice (a retry) is stored and applied twice, which leaves the index unchanged")
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
		rules, err := do.rules(ro.layout) // the cluster layout also refuses files.replaced events over several dates
		if err != nil {
			return err
		}
		dec, err := event.NewDecoder(rules)
		if err != nil {
			return usagef("%v", err)
		}

		// Retries (a failover, a stream leader change) are logged as
		// warnings; the library gives up after a minute of failures.
		log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		opts := publish.Options{Format: format, Logger: log, Rules: rules}
		pub, closePub, err := openPublisher(ctx, ro, so, no, opts, log, "indexer publish", *database, *table, *maxLen, *noMsgID)
		if err != nil {
			return err
		}
		defer closePub()

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
		var events []event.Event // or, with --raw, lines
		var lines [][]byte
		flush := func() error {
			n := len(events) + len(lines)
			if n == 0 {
				return nil
			}
			limiter.wait(ctx, n)
			var err error
			if *raw {
				err = pub.raw(ctx, lines, format)
			} else {
				err = pub.publish(ctx, events)
			}
			if err != nil {
				return fmt.Errorf("publish after %d messages: %w", sent, err)
			}
			sent += n
			events, lines = events[:0], lines[:0]
			return nil
		}
		add := func(e event.Event, dup bool) error {
			if !dup {
				bar.Add(1)
			}
			events = append(events, e)
			if len(events) >= batchN {
				return flush()
			}
			return nil
		}

		if *generate > 0 {
			g := synth.New(synth.Config{Seed: *seed, Database: *database, Table: *table, DeleteRatio: *deleteRatio})
			rng := rand.New(rand.NewPCG(*seed, 99))
			for i := 0; i < *generate && ctx.Err() == nil; i++ {
				e := g.Next()
				if err := add(e, false); err != nil {
					return err
				}
				if *duplicateRatio > 0 && rng.Float64() < *duplicateRatio {
					dups++
					if err := add(e, true); err != nil {
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
					bar.Add(1)
					lines = append(lines, append([]byte(nil), line...))
					if len(lines) >= batchN {
						return flush()
					}
					return nil
				}
				e, err := dec.Decode(event.JSON, line)
				if err != nil {
					invalid++
					if invalid <= maxReported {
						fmt.Fprintf(a.stderr, "line %d: %v (not published; --raw publishes lines as they are)\n", n, err)
					}
					return nil
				}
				return add(e, false)
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
