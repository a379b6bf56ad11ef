package redisconn

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// masterWatch logs where the Sentinel failover client's connections go:
// the master it finds at first, and every change after (a failover). The
// failover client asks the sentinels for the master's address on every
// new connection, so the address a new connection reaches is the master
// Sentinel names.
type masterWatch struct {
	log  *slog.Logger
	name string

	mu   sync.Mutex
	addr string
}

var _ redis.Hook = (*masterWatch)(nil)

func (m *masterWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil {
			m.seen(conn.RemoteAddr().String())
		}
		return conn, err
	}
}

func (m *masterWatch) seen(addr string) {
	m.mu.Lock()
	prev := m.addr
	m.addr = addr
	m.mu.Unlock()
	switch {
	case prev == "":
		m.log.Info("Redis master found through Sentinel", "master_name", m.name, "addr", addr)
	case prev != addr:
		m.log.Warn("Redis master changed (Sentinel failover): new connections go to the new master", "master_name", m.name, "from", prev, "to", addr)
	}
}

func (m *masterWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (m *masterWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// readOnlyHint logs, at most once a minute, that a standalone server
// answers READONLY: it was demoted to a replica (a failover, or a manual
// REPLICAOF). The caller retries; a redis:// URL cannot follow the master
// elsewhere, and the log says what can.
type readOnlyHint struct {
	log   *slog.Logger
	where string

	mu   sync.Mutex
	last time.Time
}

var _ redis.Hook = (*readOnlyHint)(nil)

func (h *readOnlyHint) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *readOnlyHint) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h *readOnlyHint) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.check(c.Err())
		}
		return err
	}
}

func (h *readOnlyHint) check(err error) {
	if !redis.HasErrorPrefix(err, "READONLY") {
		return
	}
	h.mu.Lock()
	due := time.Since(h.last) >= time.Minute
	if due {
		h.last = time.Now()
	}
	h.mu.Unlock()
	if due {
		h.log.Warn(h.where+" answers READONLY: it is a replica now (failed over?); writes are retried until it is a master again. "+
			"To follow failovers, point --redis-url at the sentinels: redis+sentinel://host:port[,host:port…]/<master-name>", "err", err)
	}
}
