package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/telemetry"
)

// The worker's start-up and shutdown around the consume loop: wait for
// the servers at start, bound the whole shutdown by --shutdown-timeout.

// shutdownMargin is how long after the --shutdown-timeout deadline the
// worker may take to close what is left before exitAfter ends it.
const shutdownMargin = 2 * time.Second

// exitAfter ends the process (exit 1) if it is still running margin after
// deadline is done: every blocking call of the worker is bounded by the
// deadline, so this is a last resort that says what it did. The returned
// function disarms it.
func exitAfter(deadline context.Context, margin time.Duration, log *slog.Logger) (disarm func()) {
	var timer *time.Timer
	armed := make(chan struct{})
	stop := context.AfterFunc(deadline, func() {
		timer = time.AfterFunc(margin, func() {
			log.Error("shutdown did not finish within --shutdown-timeout; exiting now (messages not acknowledged are delivered again)",
				"margin", margin)
			os.Exit(1)
		})
		close(armed)
	})
	return func() {
		if !stop() {
			<-armed
			timer.Stop()
		}
	}
}

// serveHTTP serves h on addr (nothing if addr is empty; flag names the
// address's flag in errors) from now on, logging msg; stop stops the
// server, waiting for it at most until deadline is done.
func serveHTTP(flag, addr string, h http.Handler, msg string, deadline context.Context, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	srv, err := telemetry.Listen(addr, h)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %v (pick another address, or 127.0.0.1:0 for any free port)", flag, addr, err)
	}
	log.Info(msg, "addr", srv.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, log); err != nil {
			log.Error("http server", "flag", flag, "err", err)
		}
	}()
	return func() {
		cancel()
		select {
		case <-done:
		case <-deadline.Done():
		}
	}, nil
}

// retryableAtStart says which start-up failures the worker waits out:
// the transient ones (see consumer.Classify), never a usage error.
func retryableAtStart(err error) bool {
	var ue usageError
	return !errors.As(err, &ue) && consumer.Classify(err) == consumer.Retry
}

// stoppedEarly is the outcome of a start-up that ended with err: a signal
// while waiting for the servers is a clean stop.
func stoppedEarly(ctx context.Context, err error, log *slog.Logger) error {
	if ctx.Err() != nil {
		log.Info("stopped before the servers were reachable")
		return nil
	}
	return err
}
