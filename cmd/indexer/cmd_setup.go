package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
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
	dlMaxAge      time.Duration
	dlMaxLen      int64
	persistMode   string
}

func addNATSSetupFlags(fs *flag.FlagSet) *natsSetupOptions {
	o := &natsSetupOptions{}
	durationVar(fs, &o.ackWait, "ack-wait", 30*time.Second, "", "nats: how long a delivered message may stay unacknowledged before it is delivered again")
	intVar(fs, &o.maxAckPending, "max-ack-pending", 0, 0, "nats: most unacknowledged `messages` across all workers; 0: workers × batch size × 2")
	durationVar(fs, &o.maxAge, "max-age", 7*24*time.Hour, "no age limit",
		"nats: stream retention age; older messages are discarded even if unconsumed (keep it above any replay window)")
	fs.Int64Var(&o.maxBytes, "max-bytes", -1, "nats: stream size limit in `bytes` (-1 or 0: none); at the limit the OLDEST messages are discarded, consumed or not")
	durationVar(fs, &o.duplicates, "duplicate-window", 2*time.Minute, "",
		"nats: publishes with the same Nats-Msg-Id within this window are stored once")
	fs.StringVar(&o.persistMode, "persist-mode", "default", "nats: persistence of a new events stream, `mode`: default (a publish is acknowledged once written) "+
		"or async (acknowledged before it is written: faster, but a crash of nats-server loses the last milliseconds of acknowledged publishes, one replica only)")
	intVar(fs, &o.replicas, "replicas", 0, 0, "nats: stream and consumer `replicas`; 0 picks 3 on a cluster of 3 or more servers and 1 on a single server (an existing stream keeps its own); 1 on a cluster is warned about")
	fs.DurationVar(&o.dlMaxAge, "dead-letter-max-age", jetstream.DefaultDeadLetterMaxAge,
		"nats: a new dead-letter stream discards dead letters older than this (negative: never)")
	addDeadLetterMaxLen(fs, &o.dlMaxLen)
	return o
}

// addDeadLetterMaxLen adds --dead-letter-max-len, the dead-letter stream's
// retention by count, to run (redis: the workers trim it) and setup (nats:
// a new dead-letter stream's max_msgs; redis: setup reports it).
func addDeadLetterMaxLen(fs *flag.FlagSet, v *int64) {
	fs.Int64Var(v, "dead-letter-max-len", redisstream.DefaultDeadLetterMaxLen,
		"the dead-letter stream keeps about the newest `N` dead letters, discarding older ones (redis: XADD MAXLEN ~ by the workers; nats: max_msgs of a new IDX_DLQ); -1: no limit")
}

func (o *natsSetupOptions) config(so *streamOptions, maxDeliver, workers, batch int) (jetstream.SetupConfig, error) {
	if o.persistMode != "default" && o.persistMode != "async" {
		return jetstream.SetupConfig{}, usagef("--persist-mode %q: use default or async", o.persistMode)
	}
	pending := o.maxAckPending
	if pending == 0 {
		pending = workers * batch * 2
	}
	maxAge := o.maxAge
	if maxAge == 0 {
		maxAge = -1 // SetupConfig's "keep forever"
	}
	return jetstream.SetupConfig{Stream: so.stream, DeadLetters: so.deadLetter, Consumer: so.group, AckWait: o.ackWait,
		MaxDeliver: maxDeliver, MaxAckPending: pending, MaxAge: maxAge, MaxBytes: o.maxBytes, Duplicates: o.duplicates, Replicas: o.replicas,
		DeadLetterMaxAge: o.dlMaxAge, DeadLetterMaxMsgs: o.dlMaxLen, PersistAsync: o.persistMode == "async"}, nil
}

func setupSetup(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addRedisFlags(fs)
	so := addStreamFlags(fs, true)
	no := addNATSFlags(fs, false)
	nso := addNATSSetupFlags(fs)
	from := fs.String("from", "0", "redis: where a new group starts: 0 (the stream's first entry) or an entry `ID`; an existing group is never moved (see 'indexer group reset')")
	var maxDeliver, workers, batch int
	intVar(fs, &maxDeliver, "max-deliver", 5, 1, "nats: the workers' --max-deliver: the consumer lets the server deliver a message this many times plus one (a lower limit of an existing consumer is raised)")
	intVar(fs, &workers, "workers", 3, 1, "nats: expected worker `count`, to size max-ack-pending")
	intVar(fs, &batch, "batch-size", 1000, 1, "nats: the workers' --batch-size, to size max-ack-pending")
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
			if nso.dlMaxLen > 0 {
				fmt.Fprintf(a.stdout, "dead letters go to %q; workers with --dead-letter-max-len %d keep about the newest %d there, discarding older ones\n",
					so.deadLetter, nso.dlMaxLen, nso.dlMaxLen)
			} else {
				fmt.Fprintf(a.stdout, "dead letters go to %q; workers with --dead-letter-max-len %d keep them all (purge them with 'indexer dlq purge')\n",
					so.deadLetter, nso.dlMaxLen)
			}
			return nil
		default:
			cfg, err := nso.config(so, maxDeliver, workers, batch)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			_, js, closeNATS, err := no.connect(log, "indexer setup")
			if err != nil {
				return err
			}
			defer closeNATS()
			return natsSetup(ctx, a, js, cfg)
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
	fmt.Fprintln(a.stdout, setupReport(cfg, created))
	return nil
}

// setupReport says in one line what a NATS setup created and what it
// found in place.
func setupReport(cfg jetstream.SetupConfig, c jetstream.Created) string {
	var made, kept []string
	for _, o := range []struct {
		created bool
		what    string
	}{
		{c.Stream, fmt.Sprintf("stream %q (subjects %s.>)", cfg.Stream, jetstream.DefaultSubjectPrefix)},
		{c.DeadLetters, fmt.Sprintf("dead-letter stream %q (subjects %s.>)", cfg.DeadLetters, jetstream.DefaultDeadLetterPrefix)},
		{c.Consumer, fmt.Sprintf("durable consumer %q", cfg.Consumer)},
		{c.Advisories, "the stream of its max-deliveries advisories"},
	} {
		if o.created {
			made = append(made, o.what)
		} else {
			kept = append(kept, o.what)
		}
	}
	var b strings.Builder
	if len(made) > 0 {
		b.WriteString("created " + listAnd(made))
	}
	if len(kept) > 0 {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		verb := " exist"
		if len(kept) == 1 {
			verb = " exists"
		}
		b.WriteString(listAnd(kept) + verb + " with a compatible configuration, left unchanged")
	}
	return b.String()
}

// listAnd joins "a", "b" and "c" as "a, b and c".
func listAnd(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

// embeddedSetup creates the stream and consumer on the embedded server,
// which this process owns: created fresh, they start at the beginning, so
// nothing is skipped.
func embeddedSetup(ctx context.Context, js natsjs.JetStream, so *streamOptions, wo *workerOptions, ackWait time.Duration, log *slog.Logger) error {
	nso := &natsSetupOptions{ackWait: ackWait, maxAge: 7 * 24 * time.Hour, maxBytes: -1, duplicates: 2 * time.Minute, replicas: 1,
		dlMaxAge: jetstream.DefaultDeadLetterMaxAge, dlMaxLen: wo.deadLetterMaxLen, persistMode: "default"}
	cfg, err := nso.config(so, wo.maxDeliver, 3, wo.batchSize)
	if err != nil {
		return err
	}
	created, warnings, err := jetstream.Setup(ctx, js, cfg)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	if created.Any() {
		log.Info("embedded server: "+setupReport(cfg, created), "ack_wait", ackWait)
	}
	return nil
}
