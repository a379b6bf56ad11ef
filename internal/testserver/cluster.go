package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// ClusterConfig configures a Redis Cluster of redis-server processes. The
// zero value gives three masters without replicas.
type ClusterConfig struct {
	// Masters is the number of masters, which share the slots evenly.
	// Default 3.
	Masters int
	// Replicas is the number of replicas of each master. Default 0.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before its replica takes over. Default 2s.
	NodeTimeout time.Duration
	// Args are extra "--key value" arguments of every node.
	Args []string
	// Binary is the redis-server executable. Default "redis-server" from
	// PATH.
	Binary string
}

// RedisCluster is a running Redis Cluster: redis-server processes with
// cluster-enabled on free loopback ports (and their bus ports, +10000),
// each with its own directory, the slots assigned, every node known to
// every other.
type RedisCluster struct {
	// Nodes are the servers: first the masters, then the replicas
	// (master i's replicas are Nodes[Masters+i*Replicas : …+Replicas]).
	Nodes   []*RedisServer
	masters int
	ids     []string // node ids, as Nodes
}

// StartRedisCluster starts a cluster and waits until every node reports
// cluster_state:ok with all slots assigned, at most 60 s (less if ctx ends
// first). The caller must call Stop.
func StartRedisCluster(ctx context.Context, cfg ClusterConfig) (*RedisCluster, error) {
	if cfg.Masters == 0 {
		cfg.Masters = 3
	}
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 2 * time.Second
	}
	n := cfg.Masters * (1 + cfg.Replicas)
	rc := &RedisCluster{masters: cfg.Masters}
	fail := func(err error) (*RedisCluster, error) {
		rc.Stop()
		return nil, err
	}
	for range n {
		args := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(cfg.NodeTimeout.Milliseconds(), 10),
			"--cluster-require-full-coverage", "yes"}, cfg.Args...)
		var s *RedisServer
		var err error
		for attempt := 1; ; attempt++ {
			var port int
			if port, err = freeClusterPort(); err == nil {
				s, err = StartRedis(ctx, RedisConfig{Port: port, Args: args, Binary: cfg.Binary})
			}
			if err == nil || attempt == portAttempts || !errors.Is(err, errPortInUse) {
				break
			}
		}
		if err != nil {
			return fail(err)
		}
		rc.Nodes = append(rc.Nodes, s)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, s := range rc.Nodes {
		id, err := rc.do(ctx, s, "CLUSTER", "MYID").Text()
		if err != nil {
			return fail(fmt.Errorf("testserver: CLUSTER MYID on %s: %w", s.Addr(), err))
		}
		rc.ids = append(rc.ids, id)
	}
	for i := range cfg.Masters {
		lo, hi := i*clusterSlots/cfg.Masters, (i+1)*clusterSlots/cfg.Masters-1
		if err := rc.do(ctx, rc.Nodes[i], "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			return fail(fmt.Errorf("testserver: CLUSTER ADDSLOTSRANGE on %s: %w", rc.Nodes[i].Addr(), err))
		}
	}
	for _, s := range rc.Nodes[1:] {
		host, port, _ := net.SplitHostPort(s.Addr())
		if err := rc.do(ctx, rc.Nodes[0], "CLUSTER", "MEET", host, port).Err(); err != nil {
			return fail(fmt.Errorf("testserver: CLUSTER MEET %s: %w", s.Addr(), err))
		}
	}
	if err := rc.waitKnown(ctx, n); err != nil {
		return fail(err)
	}
	for m := range cfg.Masters {
		for r := range cfg.Replicas {
			s := rc.Nodes[cfg.Masters+m*cfg.Replicas+r]
			if err := rc.do(ctx, s, "CLUSTER", "REPLICATE", rc.ids[m]).Err(); err != nil {
				return fail(fmt.Errorf("testserver: CLUSTER REPLICATE on %s: %w", s.Addr(), err))
			}
		}
	}
	if err := rc.WaitOK(ctx); err != nil {
		return fail(err)
	}
	return rc, nil
}

// RedisClusterFor starts a cluster for a test with StartRedisCluster and
// registers Stop with t.Cleanup. A missing redis-server is a fatal error,
// never a skip.
func RedisClusterFor(t testing.TB, cfg ClusterConfig) *RedisCluster {
	t.Helper()
	requireRedis(t)
	rc, err := StartRedisCluster(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(rc.Stop)
	return rc
}

// Stop stops every node and removes their directories.
func (rc *RedisCluster) Stop() {
	for _, s := range rc.Nodes {
		s.Stop()
	}
}

// node returns a plain client of one node (not following redirects); the
// caller closes it.
func (rc *RedisCluster) node(s *RedisServer) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, PoolSize: 1, DialTimeout: 2 * time.Second})
}

// do runs one command on one node.
func (rc *RedisCluster) do(ctx context.Context, s *RedisServer, args ...any) *redis.Cmd {
	c := rc.node(s)
	defer c.Close()
	return c.Do(ctx, args...)
}

// Masters returns the addresses of the masters the cluster started with.
func (rc *RedisCluster) Masters() []string {
	out := make([]string, rc.masters)
	for i := range out {
		out[i] = rc.Nodes[i].Addr()
	}
	return out
}

// URL is the cluster's URL, redis+cluster://host:port,host:port,…
func (rc *RedisCluster) URL() string {
	return "redis+cluster://" + strings.Join(rc.Masters(), ",")
}

// Client returns a go-redis cluster client, closed at t.Cleanup.
func (rc *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Masters(), MaxRedirects: 16})
	t.Cleanup(func() { c.Close() })
	return c
}

// WaitOK polls every running node until it reports cluster_state:ok,
// all 16384 slots assigned and ok, and the same view of which node serves
// which slots (so a client sees no MOVED storm afterwards).
func (rc *RedisCluster) WaitOK(ctx context.Context) error {
	var last string
	for {
		last = ""
		var view string
		for _, s := range rc.Nodes {
			if !s.running() {
				continue
			}
			c := rc.node(s)
			info, err := c.ClusterInfo(ctx).Result()
			slots, err2 := c.ClusterShards(ctx).Result()
			c.Close()
			if err == nil {
				err = err2
			}
			if err != nil {
				last = s.Addr() + ": " + err.Error()
				break
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				last = s.Addr() + ": " + strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " ")
				break
			}
			v := shardView(slots)
			if view == "" {
				view = v
			} else if v != view {
				last = s.Addr() + ": the nodes disagree on the slots"
				break
			}
		}
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testserver: the Redis Cluster is not ok: %w (%s)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shardView renders which master serves which slots, in a canonical
// order.
func shardView(shards []redis.ClusterShard) string {
	var out []string
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role == "master" && len(sh.Slots) > 0 {
				out = append(out, fmt.Sprintf("%s:%v", n.ID, sh.Slots))
			}
		}
	}
	slices.Sort(out)
	return strings.Join(out, ";")
}

// waitKnown waits until every node knows n nodes.
func (rc *RedisCluster) waitKnown(ctx context.Context, n int) error {
	want := "cluster_known_nodes:" + strconv.Itoa(n) + "\r\n"
	for {
		ok := true
		for _, s := range rc.Nodes {
			c := rc.node(s)
			info, err := c.ClusterInfo(ctx).Result()
			c.Close()
			if err != nil || !strings.Contains(info, want) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testserver: the cluster's nodes did not meet: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MigrateSlots moves slots from master `from` to master `to` (indexes
// into Nodes) while clients run, as redis-cli --cluster reshard does: for
// each slot, IMPORTING on the target and MIGRATING on the source, MIGRATE
// of its keys in batches (clients meanwhile get ASK, or TRYAGAIN for
// multi-key commands whose keys are split between the two), then SETSLOT
// NODE on every master. It returns how many keys moved.
func (rc *RedisCluster) MigrateSlots(ctx context.Context, from, to int, slots []int) (int, error) {
	moved := 0
	for _, slot := range slots {
		m, err := rc.BeginMigration(ctx, from, to, slot)
		if err != nil {
			return moved, err
		}
		n, err := m.Finish(ctx)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// Migration is the move of one slot between masters, step by step, so a
// test can hold the slot half migrated.
type Migration struct {
	rc       *RedisCluster
	from, to int
	slot     int
	cs       []*redis.Client // a client of each master
}

// BeginMigration marks slot IMPORTING on master `to` and MIGRATING on
// master `from`: from now on the source answers ASK for keys it no longer
// has, and TRYAGAIN for multi-key commands whose keys are split. Call
// Finish (or Close, to leave the slot in that state).
func (rc *RedisCluster) BeginMigration(ctx context.Context, from, to, slot int) (*Migration, error) {
	m := &Migration{rc: rc, from: from, to: to, slot: slot, cs: make([]*redis.Client, rc.masters)}
	for i := range m.cs {
		m.cs[i] = rc.node(rc.Nodes[i])
	}
	if err := m.cs[to].Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", rc.ids[from]).Err(); err != nil {
		m.Close()
		return nil, fmt.Errorf("testserver: SETSLOT %d IMPORTING: %w", slot, err)
	}
	if err := m.cs[from].Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", rc.ids[to]).Err(); err != nil {
		m.Close()
		return nil, fmt.Errorf("testserver: SETSLOT %d MIGRATING: %w", slot, err)
	}
	return m, nil
}

// Move migrates keys (of the slot) from the source to the target.
func (m *Migration) Move(ctx context.Context, keys ...string) error {
	host, port, _ := net.SplitHostPort(m.rc.Nodes[m.to].Addr())
	args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	if err := m.cs[m.from].Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("testserver: MIGRATE of slot %d: %w", m.slot, err)
	}
	return nil
}

// Finish migrates the slot's remaining keys, assigns the slot to the
// target on every master, closes the clients, and returns how many keys
// it moved.
func (m *Migration) Finish(ctx context.Context) (int, error) {
	defer m.Close()
	moved := 0
	for {
		keys, err := m.cs[m.from].ClusterGetKeysInSlot(ctx, m.slot, 10).Result()
		if err != nil {
			return moved, fmt.Errorf("testserver: GETKEYSINSLOT %d: %w", m.slot, err)
		}
		if len(keys) == 0 {
			break
		}
		if err := m.Move(ctx, keys...); err != nil {
			return moved, err
		}
		moved += len(keys)
	}
	for i, c := range m.cs {
		err := c.Do(ctx, "CLUSTER", "SETSLOT", m.slot, "NODE", m.rc.ids[m.to]).Err()
		if err != nil && i != m.from && i != m.to {
			continue // the others learn it through the bus
		}
		if err != nil {
			return moved, fmt.Errorf("testserver: SETSLOT %d NODE on %s: %w", m.slot, m.rc.Nodes[i].Addr(), err)
		}
	}
	return moved, nil
}

// Close closes the migration's clients.
func (m *Migration) Close() {
	for _, c := range m.cs {
		c.Close()
	}
}

// Master returns the index of the master serving slot now (by master
// i's view), or -1.
func (rc *RedisCluster) Master(ctx context.Context, slot int) int {
	for i := range rc.masters {
		if slots, err := rc.SlotsOf(ctx, i); err == nil && slices.Contains(slots, slot) {
			return i
		}
	}
	return -1
}

// SlotsOf returns the slots master i serves now, as its own view says.
func (rc *RedisCluster) SlotsOf(ctx context.Context, i int) ([]int, error) {
	c := rc.node(rc.Nodes[i])
	defer c.Close()
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.ID == rc.ids[i] && n.Role == "master" {
				for _, r := range sh.Slots {
					for s := r.Start; s <= r.End; s++ {
						out = append(out, int(s))
					}
				}
			}
		}
	}
	return out, nil
}

// Failover makes the first replica of the node serving as master i's
// shard (Nodes[i] or, after an earlier failover, its replica) take over
// with a graceful CLUSTER FAILOVER: the replica catches up with the
// master's writes (clients of the master are paused meanwhile) and is
// promoted, so no acknowledged write is lost; the old master becomes its
// replica. It waits until the cluster is ok again and returns the new
// master's index in Nodes. The cluster needs Replicas >= 1.
func (rc *RedisCluster) Failover(ctx context.Context, i int) (int, error) {
	replicas := (len(rc.Nodes) - rc.masters) / rc.masters
	if replicas == 0 {
		return -1, errors.New("testserver: failover needs a cluster with replicas")
	}
	// The shard's nodes: the first master and its replicas.
	shard := []int{i}
	for r := range replicas {
		shard = append(shard, rc.masters+i*replicas+r)
	}
	var master, replica = -1, -1
	for _, n := range shard {
		role, err := rc.do(ctx, rc.Nodes[n], "ROLE").Slice()
		if err != nil || len(role) == 0 {
			return -1, fmt.Errorf("testserver: ROLE of %s: %v", rc.Nodes[n].Addr(), err)
		}
		if role[0] == "master" && master < 0 {
			master = n
		} else if role[0] == "slave" && replica < 0 {
			replica = n
		}
	}
	if master < 0 || replica < 0 {
		return -1, fmt.Errorf("testserver: shard %d has no master and replica to fail over", i)
	}
	// Redis gives a manual failover 5 s (CLUSTER_MF_TIMEOUT) and then
	// drops it without a word: on a loaded machine the replica may not
	// catch up in time. Ask again, each time waiting longer than that.
	promoted := false
	for attempt := 1; attempt <= failoverAttempts && !promoted; attempt++ {
		if err := rc.do(ctx, rc.Nodes[replica], "CLUSTER", "FAILOVER").Err(); err != nil {
			return -1, fmt.Errorf("testserver: CLUSTER FAILOVER on %s: %w", rc.Nodes[replica].Addr(), err)
		}
		for deadline := time.Now().Add(failoverWait); time.Now().Before(deadline); {
			role, err := rc.do(ctx, rc.Nodes[replica], "ROLE").Slice()
			if promoted = err == nil && len(role) > 0 && role[0] == "master"; promoted {
				break
			}
			select {
			case <-ctx.Done():
				return -1, fmt.Errorf("testserver: %s not promoted: %w", rc.Nodes[replica].Addr(), ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if !promoted {
		return -1, fmt.Errorf("testserver: %s not promoted after %d CLUSTER FAILOVERs of %v each", rc.Nodes[replica].Addr(), failoverAttempts, failoverWait)
	}
	return replica, rc.WaitOK(ctx)
}

// failoverAttempts and failoverWait bound Failover: each CLUSTER FAILOVER
// gets failoverWait (more than Redis's own 5 s) to promote the replica.
const (
	failoverAttempts = 10
	failoverWait     = 8 * time.Second
)

// KeySlots returns the slots of the keys master i holds now, sorted.
func (rc *RedisCluster) KeySlots(ctx context.Context, i int) ([]int, error) {
	c := rc.node(rc.Nodes[i])
	defer c.Close()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, k := range keys {
		s, err := c.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			return nil, err
		}
		seen[int(s)] = true
	}
	out := make([]int, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// freeClusterPort returns a free port whose cluster bus port (+10000) is
// free too.
func freeClusterPort() (int, error) {
	for range 50 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("testserver: no free port pair (port, port+10000) found")
}
