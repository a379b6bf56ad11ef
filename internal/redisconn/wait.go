package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated means WAIT did not confirm a write on enough replicas
// in time. The write happened on the master and may still reach the
// replicas, or be lost in a failover: the caller must not report it as
// done (not acknowledge the messages it came from), and may retry it.
var ErrNotReplicated = errors.New("the write was not confirmed by enough replicas")

// NotReplicatedError is the error Wait.Check returns when too few
// replicas confirmed. errors.Is(err, ErrNotReplicated) reports it.
type NotReplicatedError struct {
	Want, Got int
	Timeout   time.Duration
}

func (e *NotReplicatedError) Error() string {
	return fmt.Sprintf("redis WAIT: %d of %d replicas confirmed the write within %s (replicas down or lagging?); not acknowledged, it will be written again",
		e.Got, e.Want, e.Timeout)
}

// Is makes errors.Is(err, ErrNotReplicated) true.
func (e *NotReplicatedError) Is(target error) bool { return target == ErrNotReplicated }

// Wait confirms writes with Redis's WAIT: a write is done only once
// Replicas replicas have received it. WAIT counts the replication offset
// of the connection it runs on, so it must follow the writes on the same
// connection: Queue adds it to the writes' pipeline (one pipeline is one
// connection, also with the Sentinel failover client), and Scripter does
// so for script calls. The zero value waits for nothing.
//
// WAIT makes a write survive the loss of the master when a replica that
// received it is promoted; it is not consensus: Sentinel promotes the
// best-placed replica, which has the write when Replicas is the number of
// replicas (or when the others are not eligible), and a master cut off
// from its sentinels goes on accepting writes until it is demoted (WAIT
// then fails, so they are not acknowledged).
type Wait struct {
	// Replicas is how many replicas must confirm each write; 0 waits for
	// none. Default 0.
	Replicas int
	// Timeout bounds one WAIT; fewer confirmations by then is a failure
	// (ErrNotReplicated). Default 1 s.
	Timeout time.Duration
}

// Enabled reports whether writes wait for replicas.
func (w Wait) Enabled() bool { return w.Replicas > 0 }

func (w Wait) timeout() time.Duration {
	if w.Timeout <= 0 {
		return time.Second
	}
	return w.Timeout
}

// ReadTimeout is the read timeout a client running these WAITs needs: at
// least 5 s (go-redis's default), and 2 s more than Timeout.
func (w Wait) ReadTimeout() time.Duration { return max(5*time.Second, w.timeout()+2*time.Second) }

// Queue appends WAIT to pipe, after the writes it confirms. Check its
// result with Check once pipe ran.
func (w Wait) Queue(ctx context.Context, pipe redis.Pipeliner) *redis.IntCmd {
	cmd := redis.NewIntCmd(ctx, "wait", w.Replicas, w.timeout().Milliseconds())
	pipe.Process(ctx, cmd)
	return cmd
}

// Check returns nil if cmd, a WAIT queued by Queue, confirmed enough
// replicas; otherwise cmd's error or a *NotReplicatedError.
func (w Wait) Check(cmd *redis.IntCmd) error {
	n, err := cmd.Result()
	if err != nil {
		return fmt.Errorf("redis WAIT: %w", err)
	}
	if int(n) < w.Replicas {
		return &NotReplicatedError{Want: w.Replicas, Got: int(n), Timeout: w.timeout()}
	}
	return nil
}

// Pipeliner is a client Scripter can wrap: *redis.Client (also the
// Sentinel failover client) is.
type Pipeliner interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// Scripter returns a redis.Scripter over c whose Eval and EvalSha are
// each confirmed by WAIT: they run in one pipeline, [script, SET barrier,
// WAIT], on one connection, and a call WAIT does not confirm fails with
// ErrNotReplicated. The other methods (read-only scripts, script loading)
// go to c unchanged.
//
// The barrier is a small write to the key barrier after the script: a
// script that wrote nothing (every event a duplicate of what another
// connection wrote) would leave WAIT nothing of its own to count on Redis
// versions that advance a connection's offset only when it writes, and
// then confirm at once a state that may not have reached any replica.
// After the barrier, WAIT covers everything the master executed before
// it. The key must be one the caller may SET (indexer's own prefix).
func (w Wait) Scripter(c Pipeliner, barrier string) redis.Scripter {
	return &waitScripter{Pipeliner: c, w: w, barrier: barrier}
}

type waitScripter struct {
	Pipeliner
	w       Wait
	barrier string
}

func (s *waitScripter) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.Eval(ctx, script, keys, args...) })
}

func (s *waitScripter) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	return s.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.EvalSha(ctx, sha, keys, args...) })
}

func (s *waitScripter) run(ctx context.Context, call func(redis.Pipeliner) *redis.Cmd) *redis.Cmd {
	pipe := s.Pipeline()
	cmd := call(pipe)
	set := pipe.Set(ctx, s.barrier, strconv.FormatInt(time.Now().UnixMilli(), 10), 0)
	wait := s.w.Queue(ctx, pipe)
	pipe.Exec(ctx) // each command carries its own error
	if cmd.Err() != nil {
		return cmd // NOSCRIPT included: redis.Script falls back to Eval
	}
	if err := set.Err(); err != nil {
		cmd.SetErr(fmt.Errorf("redis WAIT barrier (SET %s): %w", s.barrier, err))
	} else if err := s.w.Check(wait); err != nil {
		cmd.SetErr(err)
	}
	return cmd
}
