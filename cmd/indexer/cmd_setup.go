package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
)

func init() {
	register(&command{
		name:    "setup",
		summary: "create the stream and consumer group (redis) or the streams and durable consumer (nats); safe to run again",
		setup:   setupSetup,
	})
}

// natsSetupOptions are the stream and consumer settings of a NATS setup.
type natsSetupOptions struct {
	ackWait       time.Duration
	maxAckPending int
	maxAge        time.Duration
	maxBytes      int64
	duplicates    time.Duration
	replicas      int
}

func addNATSSetupFlags(fs *flag.FlagSet) *natsSetupOptions {
	o := &natsSetupOptions{}
	fs.DurationVar(&o.ackWait, "ack-wait", 30*time.Second, "nats: how long a delivered message may stay unacknowledged before it is delivered again")
	fs.IntVar(&o.maxAckPending, "max-ack-pending", 0, "nats: most unacknowledged `messages` across all workers; default workers × batch size × 2")
	fs.DurationVar(&o.maxAge, "max-age", 7*24*time.Hour, "nats: stream retention; older messages are discarded even if unconsumed (keep it above any replay window)")
	fs.Int64Var(&o.maxBytes, "max-bytes", -1, "nats: stream size limit in `bytes` (-1: none); at the limit the OLDEST messages are discarded, consumed or not")
	fs.DurationVar(&o.duplicates, "duplicate-window", 2*time.Minute, "nats: publishes with the same Nats-Msg-Id within this window are stored once")
	fs.IntVar(&o.replicas, "replicas", 1, "nats: stream replicas (clustered servers)")
	return o
}

func (o *natsSetupOptions) config(so *streamOptions, maxDeliver, workers, batch int) jetstream.SetupConfig {
	pending := o.maxAckPending
	if pending == 0 {
		pending = workers * batch * 2
	}
	return jetstream.SetupConfig{Stream: so.stream, DeadLetters: so.deadLetter, Consumer: so.group, AckWait: o.ackWait,
		MaxDeliver: maxDeliver, MaxAckPending: pending, MaxAge: o.maxAge, MaxBytes: o.maxBytes, Duplicates: o.duplicates, Replicas: o.replicas}
}

func setupSetup(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addRedisFlags(fs)
	so := addStreamFlags(fs, true)
	no := addNATSFlags(fs, false)
	nso := addNATSSetupFlags(fs)
	from := fs.String("from", "0", "redis: where a new group starts: 0 (the stream's first entry) or an entry `ID`; an existing group is never moved (see 'indexer group reset')")
	maxDeliver := fs.Int("max-deliver", 5, "nats: the workers' --max-deliver: the consumer lets the server deliver a message this many times plus one (a lower limit of an existing consumer is raised)")
	workers := fs.Int("workers", 3, "nats: expected worker `count`, to size max-ack-pending")
	batch := fs.Int("batch-size", 1000, "nats: the workers' --batch-size, to size max-ack-pending")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if err := so.validate(); err != nil {
			return err
		}
		if err := checkStreamSlot(so.source, ro.url, so.stream, so.deadLetter); err != nil {
			return err
		}
		switch so.source {
		case sourceRedis:
			c, err := ro.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			created, info, err := redisstream.Setup(ctx, c.Client, so.stream, so.group, *from)
			if err != nil {
				return c.Explain(err)
			}
			if created {
				fmt.Fprintf(a.stdout, "created group %q on stream %q at %s\n", so.group, so.stream, *from)
			} else {
				fmt.Fprintf(a.stdout, "group %q on stream %q exists (last delivered %s, lag %d, pending %d, %d consumers); left unchanged\n",
					so.group, so.stream, info.LastDeliveredID, info.Lag, info.Pending, info.Consumers)
			}
			return nil
		default:
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			_, js, closeNATS, err := no.connect(log, "indexer setup")
			if err != nil {
				return err
			}
			defer closeNATS()
			return natsSetup(ctx, a, js, nso.config(so, *maxDeliver, *workers, *batch))
		}
	}
}

func natsSetup(ctx context.Context, a *app, js natsjs.JetStream, cfg jetstream.SetupConfig) error {
	created, warnings, err := jetstream.Setup(ctx, js, cfg)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(a.stderr, "warning: %s\n", w)
	}
	if created {
		fmt.Fprintf(a.stdout, "created stream %q (subjects idx.events.>), dead-letter stream %q, durable consumer %q and the stream of its max-deliveries advisories (%q unless one existed)\n",
			cfg.Stream, cfg.DeadLetters, cfg.Consumer, jetstream.DefaultAdvisories(cfg.Stream))
	} else {
		fmt.Fprintf(a.stdout, "stream %q and consumer %q exist with a compatible configuration; left unchanged\n", cfg.Stream, cfg.Consumer)
	}
	return nil
}

// embeddedSetup creates the stream and consumer on the embedded server,
// which this process owns: created fresh, they start at the beginning, so
// nothing is skipped.
func embeddedSetup(ctx context.Context, js natsjs.JetStream, so *streamOptions, wo *workerOptions, ackWait time.Duration, log *slog.Logger) error {
	nso := &natsSetupOptions{ackWait: ackWait, maxAge: 7 * 24 * time.Hour, maxBytes: -1, duplicates: 2 * time.Minute, replicas: 1}
	cfg := nso.config(so, wo.maxDeliver, 3, wo.batchSize)
	created, warnings, err := jetstream.Setup(ctx, js, cfg)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	if created {
		log.Info("created stream and consumer on the embedded server", "ack_wait", ackWait)
	}
	return nil
}
