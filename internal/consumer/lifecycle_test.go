package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
)

// TestAfterDone: the context ends d after its parent, not before.
func TestAfterDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		late, stop := consumer.AfterDone(ctx, 2*time.Second)
		defer stop()
		time.Sleep(time.Hour)
		if late.Err() != nil {
			t.Fatal("done before its parent")
		}
		cancel()
		time.Sleep(time.Second)
		synctest.Wait()
		if late.Err() != nil {
			t.Fatal("done 1s after its parent, want 2s")
		}
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		if late.Err() == nil {
			t.Fatal("not done 2s after its parent")
		}
	})
}

// TestAwait: transient failures are retried with growing waits, one log
// line each, until open succeeds; a fatal failure and a cancelled context
// end it at once.
func TestAwait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		var at []time.Time
		err := consumer.Await(context.Background(), consumer.AwaitConfig{Initial: 100 * time.Millisecond, Max: time.Second, Logger: log}, "redis",
			func(context.Context) error {
				at = append(at, time.Now())
				if len(at) < 8 {
					return syscall.ECONNREFUSED
				}
				return nil
			})
		if err != nil || len(at) != 8 {
			t.Fatalf("Await = %v after %d attempts", err, len(at))
		}
		if n := strings.Count(logs.String(), "redis: not reachable yet; retrying"); n != 7 {
			t.Errorf("%d retry lines, want 7:\n%s", n, logs.String())
		}
		if first, last := at[1].Sub(at[0]), at[7].Sub(at[6]); last <= first || last > time.Second+time.Second/2 {
			t.Errorf("waits %v then %v: want growing, at most about the 1s max", first, last)
		}

		fatal := errors.New("x: " + "boom")
		err = consumer.Await(context.Background(), consumer.AwaitConfig{Logger: log}, "redis", func(context.Context) error {
			return errors.Join(fatal, consumer.ErrGroupMissing)
		})
		if !errors.Is(err, consumer.ErrGroupMissing) {
			t.Errorf("a fatal failure: %v, want it returned", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = consumer.Await(ctx, consumer.AwaitConfig{Logger: log}, "redis", func(context.Context) error { return syscall.ECONNREFUSED })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a cancelled wait: %v", err)
		}
	})
}
