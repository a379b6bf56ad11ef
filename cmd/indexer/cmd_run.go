package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/redisconn"
	"github.com/streamindex/indexer/internal/telemetry"
)

func init() {
	register(&command{
		name: "run",
		summary: "the long-running worker: read events in batches, apply each batch atomically, acknowledge after it applied; " +
			"SIGINT/SIGTERM finish the batch in flight and exit 0",
		setup: setupRun,
	})
}

// workerOptions are the tuning flags of the consume loop.
type workerOptions struct {
	consumer         string
	batchSize        int
	batchBytes       int
	linger           time.Duration
	maxDeliver       int
	claimMinIdle     time.Duration
	shutdownTimeout  time.Duration
	metricsAddr      string
	deadLetterBytes  int
	deadLetterMaxLen int64
	pprofAddr        string
	pprofRemote      bool
}

func addWorkerFlags(fs *flag.FlagSet) *workerOptions {
	o := &workerOptions{}
	fs.StringVar(&o.consumer, "consumer", "", "this worker's consumer `name` in the group; default hostname-pid (unique per process)")
	intVar(fs, &o.batchSize, "batch-size", 1000, 1, "most `events` per batch (one atomic patch_index call per 1,000 events)")
	intVar(fs, &o.batchBytes, "batch-bytes", 4<<20, 1, "a batch stops filling at this many payload `bytes`")
	durationVar(fs, &o.linger, "linger", 10*time.Millisecond, "no lingering: a batch is what one fetch returns",
		"how long a batch waits for more events after its first one")
	intVar(fs, &o.maxDeliver, "max-deliver", 5, 1, "a message delivered more than this many `times` goes to the dead-letter stream")
	durationVar(fs, &o.claimMinIdle, "claim-min-idle", 60*time.Second, "",
		"redis: take over messages another worker held unacknowledged this long (a dead worker's batch)")
	durationVar(fs, &o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "",
		"on SIGINT/SIGTERM, time allowed to finish and acknowledge the batch in flight")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9464",
		"`address` serving /metrics, /healthz and /readyz (127.0.0.1:0 picks a free port, empty disables)")
	fs.IntVar(&o.deadLetterBytes, "dead-letter-max-bytes", 0,
		"a dead letter keeps at most this many `bytes` of its payload, with the whole payload's size and SHA-256 (such a dead letter cannot be requeued); default --max-message-bytes")
	addDeadLetterMaxLen(fs, &o.deadLetterMaxLen)
	fs.StringVar(&o.pprofAddr, "pprof", "",
		"serve Go's profiles under /debug/pprof/ on this `address` (default off; a loopback address unless --pprof-remote; /debug/pprof/cmdline is never served)")
	fs.BoolVar(&o.pprofRemote, "pprof-remote", false,
		"allow --pprof on an address other than loopback (profiles show the program's internals: expose them only to a trusted network)")
	return o
}

func setupRun(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	so := addStreamFlags(fs, true)
	no := addNATSFlags(fs, true)
	do := addDecoderFlags(fs)
	qo := addQueueFlags(fs, ro, do, true)
	addWaitFlags(fs, ro, "each batch's index write")
	wo := addWorkerFlags(fs)
	mo := addMemoryFlags(fs)
	lo := addLogFlags(fs)
	gco := addGCFlags(fs, true)
	var ackWait time.Duration
	durationVar(fs, &ackWait, "ack-wait", 30*time.Second, "", "nats: AckWait of the consumer the embedded server's setup creates (--embedded-nats)")
	return func(ctx context.Context, args []string) (err error) {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if err := so.validate(); err != nil {
			return err
		}
		if err := checkStreamSlot(so.source, ro.url, so.stream, so.deadLetter); err != nil {
			return err
		}
		if err := ro.validate(); err != nil {
			return err
		}
		if no.embeddedDir != "" && so.source != sourceNATS {
			return usagef("--embedded-nats needs --source nats")
		}
		if wo.consumer == "" {
			wo.consumer = defaultConsumerName()
		}
		if wo.pprofAddr != "" && !wo.pprofRemote {
			if err := telemetry.CheckLoopback(wo.pprofAddr); err != nil {
				return usagef("--pprof %s: %v; profiles are served on loopback only, unless --pprof-remote", wo.pprofAddr, err)
			}
		}
		log, err := lo.logger(a)
		if err != nil {
			return err
		}
		defer func() {
			// From here on the worker speaks through its log: a fatal
			// error is one log line, not a log line and a plain one.
			var ue usageError
			if err != nil && !errors.As(err, &ue) {
				log.Error("worker stopped", "err", oneLine(explainRun(err, so)))
				err = errSilentFailure
			}
		}()
		dec, err := do.decoder(ro.layout)
		if err != nil {
			return err
		}
		log = log.With("source", so.source, "stream", so.stream, "group", so.group, "consumer", wo.consumer)
		memory, err := mo.apply(wo.batchBytes, log)
		if err != nil {
			return err
		}

		// --shutdown-timeout bounds the whole shutdown, from SIGINT/SIGTERM
		// to exit: at that deadline the connections are closed, which ends
		// any call still waiting on a server (go-redis does not give up a
		// blocked read when its context is cancelled).
		deadline, stopDeadline := consumer.AfterDone(ctx, wo.shutdownTimeout)
		defer stopDeadline()
		defer exitAfter(deadline, shutdownMargin, log)()

		// /healthz answers from the start, /readyz once batches flow.
		metrics := telemetry.NewMetrics(so.source, metricLabels(so.source))
		stopMetrics, err := serveHTTP("metrics-addr", wo.metricsAddr, metrics.Handler(), "serving /metrics, /healthz, /readyz", deadline, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
		stopPprof, err := serveHTTP("pprof", wo.pprofAddr, telemetry.PprofHandler(), "serving Go profiles under /debug/pprof/", deadline, log)
		if err != nil {
			return err
		}
		defer stopPprof()

		// The servers may not be up yet (an orchestrator starts everything
		// at once): wait for them, not ready meanwhile.
		await := consumer.AwaitConfig{Logger: log, Retryable: retryableAtStart}
		var x *index.Index
		var rc *redisconn.Conn
		ro.log = log
		err = consumer.Await(ctx, await, "Redis at "+redactURL(ro.url), func(ctx context.Context) (err error) {
			x, rc, err = ro.openIndex(ctx, index.Config{MaxEventsPerCall: 1000, Decoded: true}) // the loop's Decoder validated every event
			return err
		})
		if err != nil {
			return stoppedEarly(ctx, err, log)
		}
		defer rc.Close()
		context.AfterFunc(deadline, func() { rc.Close() })
		defer startPublisher(ctx, qo, x, log)()

		var src consumer.Source
		var oldest func(context.Context) (time.Time, bool, error) // for tombstone collection
		switch so.source {
		case sourceRedis:
			src, err = redisstream.New(rc.Client, redisstream.Config{Stream: so.stream, Group: so.group, Consumer: wo.consumer,
				DeadLetterStream: so.deadLetter, DeadLetterMaxLen: wo.deadLetterMaxLen, ClaimMinIdle: wo.claimMinIdle, Logger: log})
			if err != nil {
				return usagef("%v", err)
			}
			if err := redisstream.LoadScripts(ctx, rc.Client); err != nil {
				return rc.Explain(err)
			}
			oldest = func(ctx context.Context) (time.Time, bool, error) {
				return redisstream.Oldest(ctx, rc.Client, so.stream)
			}
		case sourceNATS:
			var nc *nats.Conn
			var js natsjs.JetStream
			var closeNATS func()
			connect := func(context.Context) (err error) {
				nc, js, closeNATS, err = no.connect(log, "indexer "+wo.consumer)
				return err
			}
			if no.embeddedDir != "" {
				err = connect(ctx) // this process's own server
			} else {
				err = consumer.Await(ctx, await, "NATS at "+jetstream.RedactURL(no.url), connect)
			}
			if err != nil {
				return stoppedEarly(ctx, err, log)
			}
			// The embedded server is stopped only after the worker drained.
			defer closeNATS()
			context.AfterFunc(deadline, nc.Close)
			if no.embeddedDir != "" {
				if err := embeddedSetup(ctx, js, so, wo, ackWait, log); err != nil {
					return err
				}
			}
			jcfg := jetstream.Config{Stream: so.stream, Consumer: so.group, MaxDeliver: wo.maxDeliver, DeadLetterStream: so.deadLetter, Logger: log}
			err = consumer.Await(ctx, await, "NATS consumer "+so.group+" of stream "+so.stream, func(ctx context.Context) (err error) {
				src, err = jetstream.New(ctx, js, jcfg)
				return err
			})
			if err != nil {
				return stoppedEarly(ctx, explainRun(err, so), log)
			}
			// Messages the server gives up on are dead-lettered all the same.
			adv, err := jetstream.NewAdvisories(ctx, js, jcfg, metrics)
			if err != nil {
				src.Close()
				return err
			}
			defer background(ctx, adv.Run)()
			oldest = func(ctx context.Context) (time.Time, bool, error) { return jetstream.Oldest(ctx, js, so.stream) }
		}
		defer src.Close()
		defer startGC(ctx, gco, x, rc.Client, oldest, log)()

		src, applier := faultHooks(src, x, rc.Client, log) // unchanged unless built with the failpoints tag
		linger := wo.linger
		if linger == 0 {
			linger = -1 // consumer.Config's "no lingering"
		}
		if wo.deadLetterBytes == 0 {
			wo.deadLetterBytes = do.maxBytes
		}
		r, err := consumer.New(consumer.Config{Source: src, Index: applier, Decoder: dec, BatchSize: wo.batchSize, BatchBytes: wo.batchBytes,
			Linger: linger, MaxDeliver: wo.maxDeliver, DeadLetterMaxBytes: wo.deadLetterBytes, ShutdownTimeout: wo.shutdownTimeout,
			Logger: log, Metrics: metrics})
		if err != nil {
			return usagef("%v", err)
		}
		log.Info("worker started", "batch_size", wo.batchSize, "linger", wo.linger, "max_deliver", wo.maxDeliver, "memory", memory,
			"redis", redactURL(ro.url), "redis_wait_replicas", ro.wait.Replicas)
		if err := r.Run(ctx); err != nil {
			return err
		}
		log.Info("worker stopped cleanly")
		return nil
	}
}

// background runs fn in a goroutine until the returned stop is called
// (or ctx is done); stop waits for fn to return.
func background(ctx context.Context, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ctx)
	}()
	return func() { cancel(); <-done }
}

// explainRun turns a missing stream or group into one line that names it
// and gives the exact setup command; other errors are returned as they
// are.
func explainRun(err error, so *streamOptions) error {
	var what string
	switch {
	case errors.Is(err, consumer.ErrStreamMissing):
		what = fmt.Sprintf("stream %q does not exist", so.stream)
	case errors.Is(err, consumer.ErrGroupMissing) && so.source == sourceRedis:
		what = fmt.Sprintf("consumer group %q of stream %q does not exist (NOGROUP)", so.group, so.stream)
	case errors.Is(err, consumer.ErrGroupMissing):
		what = fmt.Sprintf("durable consumer %q of stream %q does not exist", so.group, so.stream)
	default:
		return err
	}
	return fmt.Errorf("%s: create it with 'indexer setup --source %s --stream %s --group %s' (workers never create it themselves: that could skip events)",
		what, so.source, so.stream, so.group)
}

// metricLabels are the label values the worker's counters start with (at
// 0): the consume loop's, and with NATS the advisories' too.
func metricLabels(source string) telemetry.Labels {
	if source == sourceNATS {
		return jetstream.MetricLabels()
	}
	return consumer.MetricLabels()
}
