package bench

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

// naiveApply is the per-event baseline's script. It lives here, not in
// internal/lua, because it is not indexer code: it models the design the
// indexer replaces (see naive_apply.lua).
//
//go:embed naive_apply.lua
var naiveApplySrc string

var naiveApply = redis.NewScript(naiveApplySrc)

// naive runs the per-event baseline over n events of the history: a
// producer publishes them to the Redis Stream while one consumer in this
// process reads batches of 100 and, for each event, calls naive_apply.lua
// (one EVALSHA round trip) and acknowledges it (one XACK round trip). It
// returns the events per second from the first publish to the last
// acknowledgement and the Redis CPU microseconds per event of the script
// (commandstats, corrected for preemption).
func (e *env) naive(ctx context.Context, s *redisStream, n int) (perS, scriptUs float64, err error) {
	if err := e.flush(ctx); err != nil {
		return 0, 0, err
	}
	if err := s.reset(ctx); err != nil {
		return 0, 0, err
	}
	if err := naiveApply.Load(ctx, e.rc).Err(); err != nil {
		return 0, 0, fmt.Errorf("bench: load naive_apply.lua: %w", err)
	}
	events, err := e.pool.take(n)
	if err != nil {
		return 0, 0, err
	}
	src, err := s.source(ctx, "bench-naive")
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	bar := e.bar("naive", n)
	defer bar.Stop()
	cpu0, err := e.redisCPUMicros(ctx)
	if err != nil {
		return 0, 0, err
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pubErr := make(chan error, 1)
	start := time.Now()
	go func() { pubErr <- s.publish(pctx, events) }()
	err = consume(ctx, src, n, 100, func(msgs []consumer.Message) error {
		for i := range msgs {
			if err := naiveApply.Run(ctx, e.rc, nil, msgs[i].Data).Err(); err != nil {
				return fmt.Errorf("naive_apply.lua: %w", err)
			}
			if err := src.Ack(ctx, msgs[i:i+1]); err != nil {
				return err
			}
			bar.Add(1)
		}
		return nil
	})
	took := time.Since(start)
	cancel()
	if perr := <-pubErr; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("bench: naive baseline: %w", err)
	}
	cpu1, err := e.redisCPUMicros(ctx)
	if err != nil {
		return 0, 0, err
	}
	st, err := e.commandStats(ctx)
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / took.Seconds(), st.perEvent(cpu1-cpu0, n, "evalsha", "eval"), nil
}
