package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
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
	consumer        string
	batchSize       int
	batchBytes      int
	linger          time.Duration
	maxDeliver      int
	claimMinIdle    time.Duration
	shutdownTimeout time.Duration
	metricsAddr     string
}

func addWorkerFlags(fs *flag.FlagSet) *workerOptions {
	o := &workerOptions{}
	fs.StringVar(&o.consumer, "consumer", "", "this worker's consumer `name` in the group; default hostname-pid (unique per process)")
	fs.IntVar(&o.batchSize, "batch-size", 1000, "most `events` per batch (one atomic patch_index call per 1,000 events)")
	fs.IntVar(&o.batchBytes, "batch-bytes", 4<<20, "a batch stops filling at this many payload `bytes`")
	fs.DurationVar(&o.linger, "linger", 10*time.Millisecond, "how long a batch waits for more events after its first one")
	fs.IntVar(&o.maxDeliver, "max-deliver", 5, "a message delivered more than this many `times` goes to the dead-letter stream")
	fs.DurationVar(&o.claimMinIdle, "claim-min-idle", 60*time.Second,
		"redis: take over messages another worker held unacknowledged this long (a dead worker's batch)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, time allowed to finish and acknowledge the batch in flight")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9464",
		"`address` serving /metrics, /healthz and /readyz (127.0.0.1:0 picks a free port, empty disables)")
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
	lo := addLogFlags(fs)
	gco := addGCFlags(fs, true)
	ackWait := fs.Duration("ack-wait", 30*time.Second, "nats: AckWait of the consumer the embedded server's setup creates (--embedded-nats)")
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
		if no.embeddedDir != "" && so.source != sourceNATS {
			return usagef("--embedded-nats needs --source nats")
		}
		if wo.consumer == "" {
			wo.consumer = defaultConsumerName()
		}
		log, err := lo.logger(a)
		if err != nil {
			return err
		}
		dec, err := do.decoder(ro.layout)
		if err != nil {
			return err
		}
		log = log.With("source", so.source, "stream", so.stream, "group", so.group, "consumer", wo.consumer)

		ro.log = log
		x, rc, err := ro.openIndex(ctx, index.Config{MaxEventsPerCall: 1000})
		if err != nil {
			return err
		}
		defer rc.Close()
		defer startPublisher(ctx, qo, x, log)()

		metrics := telemetry.NewMetrics(so.source)
		var src consumer.Source
		var oldest func(context.Context) (time.Time, bool, error) // for tombstone collection
		switch so.source {
		case sourceRedis:
			src, err = redisstream.New(rc.Client, redisstream.Config{Stream: so.stream, Group: so.group, Consumer: wo.consumer,
				DeadLetterStream: so.deadLetter, ClaimMinIdle: wo.claimMinIdle, Logger: log})
			if err != nil {
				return usagef("%v", err)
			}
			oldest = func(ctx context.Context) (time.Time, bool, error) {
				return redisstream.Oldest(ctx, rc.Client, so.stream)
			}
		case sourceNATS:
			_, js, closeNATS, err := no.connect(log, "indexer "+wo.consumer)
			if err != nil {
				return err
			}
			// The embedded server is stopped only after the worker drained.
			defer closeNATS()
			if no.embeddedDir != "" {
				if err := embeddedSetup(ctx, js, so, wo, *ackWait, log); err != nil {
					return err
				}
			}
			jcfg := jetstream.Config{Stream: so.stream, Consumer: so.group, MaxDeliver: wo.maxDeliver, Logger: log}
			if src, err = jetstream.New(ctx, js, jcfg); err != nil {
				return err
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

		var wg sync.WaitGroup
		srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
		defer func() { stopSrv(); wg.Wait() }()
		if wo.metricsAddr != "" {
			srv, err := telemetry.Listen(wo.metricsAddr, metrics.Handler())
			if err != nil {
				return fmt.Errorf("--metrics-addr %s: %v (pick another address, or 127.0.0.1:0 for any free port)", wo.metricsAddr, err)
			}
			log.Info("serving /metrics, /healthz, /readyz", "addr", srv.Addr())
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := srv.Serve(srvCtx, log); err != nil {
					log.Error("metrics server", "err", err)
				}
			}()
		}

		src, applier := faultHooks(src, x, rc.Client, log) // unchanged unless built with the failpoints tag
		r, err := consumer.New(consumer.Config{Source: src, Index: applier, Decoder: dec, BatchSize: wo.batchSize, BatchBytes: wo.batchBytes,
			Linger: wo.linger, MaxDeliver: wo.maxDeliver, ShutdownTimeout: wo.shutdownTimeout, Logger: log, Metrics: metrics})
		if err != nil {
			return usagef("%v", err)
		}
		log.Info("worker started", "batch_size", wo.batchSize, "linger", wo.linger, "max_deliver", wo.maxDeliver,
			"redis", redactURL(ro.url), "redis_wait_replicas", ro.wait.Replicas)
		err = r.Run(ctx)
		if err != nil {
			log.Error("worker stopped", "err", err)
			return explainRun(err, so)
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

// explainRun adds the fix to fatal loop errors.
func explainRun(err error, so *streamOptions) error {
	switch {
	case errors.Is(err, consumer.ErrGroupMissing), errors.Is(err, consumer.ErrStreamMissing):
		return fmt.Errorf("%v\nThe worker never creates it itself (that could skip events). Create it with: indexer setup --source %s --stream %s --group %s",
			err, so.source, so.stream, so.group)
	}
	return err
}
