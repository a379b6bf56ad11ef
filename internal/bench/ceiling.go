package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
)

const (
	hsetValueBytes = 300  // the ceiling's values: about an index entry's size
	hsetPipeline   = 1000 // HSETs per round trip
	hsetClients    = 2    // connections pipelining at once, so Redis never waits for the client
	hsetKeys       = 8    // hashes the fields spread over, like a table's date keys
)

// hsetCeiling writes n fields of 300 bytes with pipelined HSET from
// hsetClients connections and returns the writes per second and Redis's
// CPU microseconds per HSET (INFO commandstats).
func (e *env) hsetCeiling(ctx context.Context, n int) (perS, usPerCmd float64, err error) {
	if err := e.flush(ctx); err != nil {
		return 0, 0, err
	}
	value := strings.Repeat("v", hsetValueBytes)
	bar := e.bar("HSET", n)
	defer bar.Stop()
	var wg sync.WaitGroup
	errs := make([]error, hsetClients)
	start := time.Now()
	for c := range hsetClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := c * hsetPipeline; lo < n; lo += hsetClients * hsetPipeline {
				pipe := e.rc.Pipeline()
				for i := lo; i < min(lo+hsetPipeline, n); i++ {
					pipe.HSet(ctx, "ceiling:"+strconv.Itoa(i%hsetKeys), "f"+strconv.Itoa(i), value)
				}
				cmds, err := pipe.Exec(ctx)
				if err != nil {
					errs[c] = fmt.Errorf("bench: HSET ceiling: %w", err)
					return
				}
				bar.Add(int64(len(cmds)))
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, 0, err
		}
	}
	st, err := e.commandStats(ctx)
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / took.Seconds(), st.usec("hset") / float64(n), nil
}

// transportCeiling moves n events through s without applying them: a
// producer publishes them while one consumer fetches batches of 1,000
// and acknowledges them, both in this process. It returns the events per
// second from the first publish to the last acknowledgement.
func (e *env) transportCeiling(ctx context.Context, s stream, n int) (float64, error) {
	if err := e.flush(ctx); err != nil {
		return 0, err
	}
	if err := s.reset(ctx); err != nil {
		return 0, err
	}
	events, err := e.pool.take(n)
	if err != nil {
		return 0, err
	}
	src, err := s.source(ctx, "bench-ceiling")
	if err != nil {
		return 0, err
	}
	defer src.Close()
	bar := e.bar(s.name()+" transport", n)
	defer bar.Stop()

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pubErr := make(chan error, 1)
	start := time.Now()
	go func() { pubErr <- s.publish(pctx, events) }()
	consumeErr := consume(ctx, src, n, 1000, func(msgs []consumer.Message) error {
		if err := src.Ack(ctx, msgs); err != nil {
			return err
		}
		bar.Add(int64(len(msgs)))
		return nil
	})
	if f, ok := src.(interface{ Flush(context.Context) error }); ok && consumeErr == nil {
		consumeErr = f.Flush(ctx) // NATS acks are confirmed asynchronously
	}
	took := time.Since(start)
	cancel()
	if err := <-pubErr; err != nil && consumeErr == nil {
		return 0, fmt.Errorf("bench: %s transport: publish: %w", s.name(), err)
	}
	if consumeErr != nil {
		return 0, fmt.Errorf("bench: %s transport: %w", s.name(), consumeErr)
	}
	return float64(n) / took.Seconds(), nil
}

// consume fetches batches of up to max messages from src and hands each
// to handle until n messages were handled. It fails if nothing arrives
// for 30 s.
func consume(ctx context.Context, src consumer.Source, n, max int, handle func([]consumer.Message) error) error {
	const idle = 30 * time.Second
	last := time.Now()
	for done := 0; done < n; {
		msgs, err := src.Fetch(ctx, min(max, n-done), 100*time.Millisecond)
		if err != nil {
			return fmt.Errorf("fetch after %d of %d messages: %w", done, n, err)
		}
		if len(msgs) == 0 {
			if time.Since(last) > idle {
				return fmt.Errorf("no message for %v after %d of %d", idle, done, n)
			}
			continue
		}
		last = time.Now()
		if err := handle(msgs); err != nil {
			return err
		}
		done += len(msgs)
	}
	return nil
}
