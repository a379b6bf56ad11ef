package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelConfig configures StartSentinels. The zero value gives a master,
// one replica and three sentinels (quorum 2) monitoring it as "mymaster",
// with failover detection after 2 s.
type SentinelConfig struct {
	// MasterName is the name the sentinels monitor the master under.
	// Default "mymaster".
	MasterName string
	// Replicas is the number of replicas of the master. Default 1.
	Replicas int
	// Sentinels is the number of sentinels; the quorum is a majority.
	// Default 3.
	Sentinels int
	// DownAfter is the sentinels' down-after-milliseconds: how long the
	// master may not answer before a failover starts. Default 2 s (short
	// for tests, not so short that a loaded machine fails over by itself).
	DownAfter time.Duration
	// FailoverTimeout is the sentinels' failover-timeout. Default 10 s.
	FailoverTimeout time.Duration
	// Node is the configuration of each data server (master and
	// replicas); Port and Dir must be zero. Default: RedisConfig{}.
	Node RedisConfig
}

// SentinelGroup is a master, its replicas and the sentinels that monitor
// them: real redis-server processes from the same binary, on loopback.
// Its methods may be called from any goroutine.
type SentinelGroup struct {
	cfg SentinelConfig
	// Nodes are the data servers; Nodes[0] was the master at start.
	Nodes []*RedisServer
	// Sentinels are the sentinel processes.
	Sentinels []*RedisServer
}

// StartSentinels starts the master, its replicas (each waited for until
// its link to the master is up), then the sentinels, and waits until every
// sentinel knows the master, its replicas and the other sentinels, so that
// a failover can happen. The caller must call Stop.
func StartSentinels(ctx context.Context, cfg SentinelConfig) (*SentinelGroup, error) {
	if cfg.MasterName == "" {
		cfg.MasterName = "mymaster"
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Sentinels == 0 {
		cfg.Sentinels = 3
	}
	if cfg.DownAfter == 0 {
		cfg.DownAfter = 2 * time.Second
	}
	if cfg.FailoverTimeout == 0 {
		cfg.FailoverTimeout = 10 * time.Second
	}
	if cfg.Node.Port != 0 || cfg.Node.Dir != "" {
		return nil, errors.New("testserver: SentinelConfig.Node must not set Port or Dir")
	}
	g := &SentinelGroup{cfg: cfg}
	master, err := StartRedis(ctx, cfg.Node)
	if err != nil {
		return nil, err
	}
	g.Nodes = append(g.Nodes, master)
	for i := 0; i < cfg.Replicas; i++ {
		rc := cfg.Node
		rc.Args = append(append([]string(nil), rc.Args...), "--replicaof", "127.0.0.1", strconv.Itoa(master.cfg.Port))
		r, err := StartRedis(ctx, rc)
		if err != nil {
			g.Stop()
			return nil, err
		}
		g.Nodes = append(g.Nodes, r)
	}
	if err := g.WaitReplicas(ctx, cfg.Replicas); err != nil {
		g.Stop()
		return nil, err
	}
	quorum := cfg.Sentinels/2 + 1
	for i := 0; i < cfg.Sentinels; i++ {
		s, err := StartRedis(ctx, RedisConfig{Binary: cfg.Node.Binary, Sentinel: []string{
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", cfg.MasterName, master.cfg.Port, quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", cfg.MasterName, cfg.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", cfg.MasterName, cfg.FailoverTimeout.Milliseconds()),
		}})
		if err != nil {
			g.Stop()
			return nil, err
		}
		g.Sentinels = append(g.Sentinels, s)
	}
	if err := g.waitSentinels(ctx, master.Addr()); err != nil {
		g.Stop()
		return nil, err
	}
	return g, nil
}

// Sentinels starts a group for a test with StartSentinels (using the
// first cfg, if any) and stops it at t.Cleanup. A missing redis-server is
// a fatal error, never a skip.
func Sentinels(t testing.TB, cfg ...SentinelConfig) *SentinelGroup {
	t.Helper()
	var c SentinelConfig
	if len(cfg) > 0 {
		c = cfg[0]
	}
	if c.Node.Binary == "" {
		requireRedis(t)
	}
	g, err := StartSentinels(t.Context(), c)
	if err != nil {
		t.Fatalf("start a Sentinel group: %v", err)
	}
	t.Cleanup(func() { g.Stop() })
	return g
}

// Stop stops every process of the group and removes their directories.
func (g *SentinelGroup) Stop() error {
	var errs []error
	for _, s := range append(append([]*RedisServer(nil), g.Sentinels...), g.Nodes...) {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// MasterName is the name the sentinels monitor the master under.
func (g *SentinelGroup) MasterName() string { return g.cfg.MasterName }

// SentinelAddrs are the sentinels' addresses.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		out[i] = s.Addr()
	}
	return out
}

// URL is the group's redis+sentinel:// URL for database 0.
func (g *SentinelGroup) URL() string {
	return "redis+sentinel://" + strings.Join(g.SentinelAddrs(), ",") + "/" + g.cfg.MasterName + "/0"
}

// Client returns a go-redis failover client for the group (database 0),
// closed at t.Cleanup.
func (g *SentinelGroup) Client(t testing.TB) *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: g.cfg.MasterName, SentinelAddrs: g.SentinelAddrs()})
	t.Cleanup(func() { c.Close() })
	return c
}

// node returns the data server listening on addr.
func (g *SentinelGroup) node(addr string) *RedisServer {
	for _, n := range g.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// MasterAddr asks the sentinels, in turn, for the master's address.
func (g *SentinelGroup) MasterAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range g.Sentinels {
		addr, err := sentinelMaster(ctx, s, g.cfg.MasterName)
		if err == nil {
			return addr, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("testserver: no sentinel names the master: %w", errors.Join(errs...))
}

// Master returns the data server the sentinels name as master.
func (g *SentinelGroup) Master(ctx context.Context) (*RedisServer, error) {
	addr, err := g.MasterAddr(ctx)
	if err != nil {
		return nil, err
	}
	if n := g.node(addr); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("testserver: the sentinels name %s, not a node of the group", addr)
}

// Failover runs SENTINEL FAILOVER (a graceful failover, which the
// sentinels do not have to agree on) and waits until every sentinel names
// another master and the old master replicates from it. It returns the old
// and the new master.
func (g *SentinelGroup) Failover(ctx context.Context) (old, cur *RedisServer, err error) {
	if old, err = g.Master(ctx); err != nil {
		return nil, nil, err
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: g.Sentinels[0].Addr()})
	defer c.Close()
	if err := c.Failover(ctx, g.cfg.MasterName).Err(); err != nil {
		return nil, nil, fmt.Errorf("testserver: SENTINEL FAILOVER: %w", err)
	}
	if cur, err = g.WaitFailover(ctx, old); err != nil {
		return nil, nil, err
	}
	if err := g.WaitReplicas(ctx, g.cfg.Replicas); err != nil {
		return nil, nil, err
	}
	return old, cur, nil
}

// KillMaster SIGKILLs the current master (see RedisServer.Kill) and returns
// it. Wait for the failover with WaitFailover before restarting it: a master
// without persistence restarted before the failover comes back empty, and
// its replicas would copy that.
func (g *SentinelGroup) KillMaster(ctx context.Context) (*RedisServer, error) {
	m, err := g.Master(ctx)
	if err != nil {
		return nil, err
	}
	return m, m.Kill()
}

// WaitFailover waits (at most the context's deadline, or a minute) until
// every running sentinel names a master other than old and that server
// says it is a master; it returns the new master.
func (g *SentinelGroup) WaitFailover(ctx context.Context, old *RedisServer) (*RedisServer, error) {
	var cur *RedisServer
	err := g.poll(ctx, "a new master", func(ctx context.Context) error {
		var addr string
		for _, s := range g.Sentinels {
			a, err := sentinelMaster(ctx, s, g.cfg.MasterName)
			if err != nil {
				return err
			}
			if a == old.Addr() || addr != "" && a != addr {
				return fmt.Errorf("sentinel %s names %s", s.Addr(), a)
			}
			addr = a
		}
		if cur = g.node(addr); cur == nil {
			return fmt.Errorf("the sentinels name %s, not a node of the group", addr)
		}
		role, err := nodeRole(ctx, cur)
		if err != nil || role != "master" {
			return fmt.Errorf("%s is %q (%v)", addr, role, err)
		}
		return nil
	})
	return cur, err
}

// WaitReplicas waits until the master the sentinels name (or Nodes[0]
// before the sentinels exist) has n replicas online.
func (g *SentinelGroup) WaitReplicas(ctx context.Context, n int) error {
	return g.poll(ctx, fmt.Sprintf("%d replicas online", n), func(ctx context.Context) error {
		m := g.Nodes[0]
		if len(g.Sentinels) > 0 {
			var err error
			if m, err = g.Master(ctx); err != nil {
				return err
			}
		}
		c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		online := strings.Count(info, ",state=online,")
		if online < n {
			return fmt.Errorf("%s has %d replicas online", m.Addr(), online)
		}
		return nil
	})
}

// waitSentinels waits until every sentinel names master, knows all
// replicas and all other sentinels.
func (g *SentinelGroup) waitSentinels(ctx context.Context, master string) error {
	return g.poll(ctx, "the sentinels to know each other", func(ctx context.Context) error {
		for _, s := range g.Sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
			m, err := c.Master(ctx, g.cfg.MasterName).Result()
			c.Close()
			if err != nil {
				return err
			}
			if addr := net.JoinHostPort(m["ip"], m["port"]); addr != master || m["flags"] != "master" ||
				m["num-slaves"] != strconv.Itoa(g.cfg.Replicas) || m["num-other-sentinels"] != strconv.Itoa(len(g.Sentinels)-1) {
				return fmt.Errorf("sentinel %s: master %s flags %s, %s replicas, %s other sentinels",
					s.Addr(), addr, m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
}

// poll calls check every 100 ms until it returns nil, the context ends, or
// a minute passed (sentinels take a few seconds to discover each other and
// to fail over); the error names what was awaited and the last failure.
func (g *SentinelGroup) poll(ctx context.Context, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testserver: waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sentinelMaster(ctx context.Context, s *RedisServer, name string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	a, err := c.GetMasterAddrByName(ctx, name).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", s.Addr(), err)
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

func nodeRole(ctx context.Context, n *RedisServer) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "role:"); ok {
			return v, nil
		}
	}
	return "", errors.New("no role in INFO replication")
}
