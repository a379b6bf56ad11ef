package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// AfterDone returns a context that is done d after ctx is done (at once if
// d <= 0), carrying none of ctx's cancellation before that: the deadline of
// a shutdown that starts when ctx ends. Run finishes the batches in flight
// under such a context; a program bounds the rest of its shutdown (closing
// connections, stopping servers) by the same one. cancel releases it.
func AfterDone(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var mu sync.Mutex
	var timer *time.Timer
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if out.Err() == nil {
			timer = time.AfterFunc(max(d, 0), cancel)
		}
	})
	return out, func() {
		stop()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// AwaitConfig shapes Await's retries. Zero fields mean the defaults.
type AwaitConfig struct {
	// Initial and Max bound the exponential backoff between attempts.
	// Defaults 250 ms and 10 s.
	Initial, Max time.Duration
	// Logger receives one line per failed attempt. Default slog.Default().
	Logger *slog.Logger
	// Retryable says which failures are waited out. Default: those
	// Classify calls Retry.
	Retryable func(error) bool
}

// Await calls open until it succeeds, ctx is done, or it fails with an
// error that is not Retryable (by default, one Classify does not call
// Retry: a refused password, a missing group, a certificate not trusted),
// which it returns. While open fails with a
// transient error (the server is not up yet: connection refused, loading,
// a timeout), Await logs one warning per attempt, naming what it waits for
// and when it tries again, and backs off exponentially (each wait about
// twice the one before, ±10%, up to Max). When ctx is done it
// returns ctx's error. It is how a worker started before its servers waits
// for them instead of exiting.
func Await(ctx context.Context, cfg AwaitConfig, what string, open func(context.Context) error) error {
	if cfg.Initial <= 0 {
		cfg.Initial = 250 * time.Millisecond
	}
	if cfg.Max <= 0 {
		cfg.Max = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Retryable == nil {
		cfg.Retryable = func(err error) bool { return Classify(err) == Retry }
	}
	// Doubling with little jitter: each wait is longer than the one before
	// until Max, so the log shows the worker backing off.
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(cfg.Initial), backoff.WithMaxInterval(cfg.Max),
		backoff.WithMultiplier(2), backoff.WithRandomizationFactor(0.1), backoff.WithMaxElapsedTime(0))
	for attempt := 1; ; attempt++ {
		err := open(ctx)
		switch {
		case err == nil:
			if attempt > 1 {
				cfg.Logger.Info(what+": ready", "attempts", attempt)
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !cfg.Retryable(err):
			return err
		}
		wait := bo.NextBackOff()
		cfg.Logger.Warn(what+": not reachable yet; retrying", "err", err, "attempt", attempt, "retry_in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}
