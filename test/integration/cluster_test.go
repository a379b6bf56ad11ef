package integration

// Scenarios on a Redis Cluster (the cluster layout): a 3-master cluster
// started by the test holds the stream and the index; workers run as
// processes with --layout cluster and a redis+cluster:// URL. The checker
// (checker_test.go) reads the index straight from every master.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish/redispub"
)

// The cluster scenarios' stream: stream and dead letters share a hash tag.
const (
	clusterStream = "{idx:events}"
	clusterDLQ    = "{idx:events}:dlq"
)

// cenv is a cluster scenario's environment.
type cenv struct {
	*env
	rc     *testserver.RedisCluster
	cc     *redis.ClusterClient
	layout index.Layout
	pub    *redispub.Publisher
	model  *synth.Model
	sent   int
}

func newClusterEnv(t *testing.T, cfg ...testserver.ClusterConfig) *cenv {
	t.Helper()
	var cc testserver.ClusterConfig
	if len(cfg) > 0 {
		cc = cfg[0]
	}
	rc := testserver.RedisClusterFor(t, cc)
	l, err := index.NewClusterLayout("")
	if err != nil {
		t.Fatal(err)
	}
	c := &cenv{rc: rc, cc: rc.Client(t), layout: l, model: synth.NewModel(),
		env: &env{t: t, dir: t.TempDir(), vars: []string{"INDEXER_REDIS_URL=" + rc.URL(), "INDEXER_LAYOUT=cluster",
			"INDEXER_STREAM=" + clusterStream, "INDEXER_LAYERS=*"}}}
	if c.pub, err = redispub.New(c.cc, redispub.Config{Stream: clusterStream}); err != nil {
		t.Fatal(err)
	}
	c.must("", "setup", "--source", "redis")
	return c
}

// publish publishes events and adds them to the model. It may run in
// another goroutine than the test's (one at a time): it reports a failure
// with Error.
func (c *cenv) publish(events []event.Event) {
	c.t.Helper()
	c.model.Apply(events...)
	for len(events) > 0 {
		n := min(len(events), 500)
		if err := c.pub.Publish(c.t.Context(), events[:n]...); err != nil {
			c.t.Errorf("publish: %v", err)
			return
		}
		c.sent += n
		events = events[n:]
	}
}

// publishMeanwhile publishes events in chunks of 100 every 50 ms in
// another goroutine, or at once when stop is called; stop returns when
// all were published.
func (c *cenv) publishMeanwhile(events []event.Event) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; i < len(events); i += 100 {
			c.publish(events[i:min(i+100, len(events))])
			select {
			case <-done:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); <-finished }
}

// backlog returns the entries the group has not read and those it has
// not acknowledged.
func (c *cenv) backlog(ctx context.Context) (unread, pending int64, err error) {
	groups, err := c.cc.XInfoGroups(ctx, clusterStream).Result()
	if err != nil {
		return 0, 0, err
	}
	for _, g := range groups {
		if g.Name == group {
			after, err := c.cc.XRangeN(ctx, clusterStream, "("+g.LastDeliveredID, "+", 1000).Result()
			return int64(len(after)), g.Pending, err
		}
	}
	return 0, 0, fmt.Errorf("no group %s", group)
}

// finish waits until the workers drained the stream, checks the index
// against the model, prints the summary line and fails the test unless it
// is clean.
func (c *cenv) finish(scenario string, faults int64) {
	c.t.Helper()
	start := time.Now()
	waitFor(c.t, 3*time.Minute, "the workers to drain the stream", func() bool {
		unread, pending, err := c.backlog(c.t.Context())
		return err == nil && unread == 0 && pending == 0
	})
	v := verdict{Scenario: scenario, Events: c.sent, Faults: faults, Drain: time.Since(start)}
	checkModel(c.t, c.cc, c.layout, c.model, nil, &v)
	dead, err := redisstream.DeadLetters(c.t.Context(), c.cc, clusterDLQ, "", 1000)
	if err != nil {
		c.t.Fatal(err)
	}
	v.DLQGot, v.DLQStray = len(dead), len(dead)
	v.print()
	v.assertClean(c.t)
}

// clusterHistory is three tables over four days, interleaved: every batch
// touches many Parts on all three masters.
func clusterHistory(n int, seed uint64) []event.Event {
	var hs [][]event.Event
	for i, table := range []string{"cpu", "mem", "disk"} {
		hs = append(hs, synth.New(synth.Config{Seed: seed + uint64(i), Database: "demo", Table: table, Hours: 96}).Events(n))
	}
	return interleave(hs...)
}

// TestClusterKillBetweenParts SIGKILLs a worker between two of a batch's
// per-Part patch_index calls (failpoint between-parts): the batch is
// applied in part and not acknowledged. Another worker claims it and
// applies it again, which changes nothing the first calls did: the index
// ends equal to the model, counters exact.
func TestClusterKillBetweenParts(t *testing.T) {
	c := newClusterEnv(t)
	ctx := t.Context()
	c.publish(clusterHistory(2000, 11))

	victim := c.start("victim", []string{"INDEXER_FAILPOINT=between-parts-kill:5"}, "--source", "redis", "--claim-min-idle", "1s")
	<-victim.done
	if victim.exitStatus() != -1 {
		t.Fatalf("the victim exited with %d, want killed by the failpoint", victim.exitStatus())
	}
	// Its last batch is pending, and some of it is in the index already.
	pend, err := c.cc.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: clusterStream, Group: group, Start: "-", End: "+", Count: 10000}).Result()
	if err != nil || len(pend) == 0 {
		t.Fatalf("no pending entries after the kill (%v)", err)
	}
	applied := 0
	for _, p := range pend {
		ms := c.cc.XRange(ctx, clusterStream, p.ID, p.ID).Val()
		if len(ms) == 0 {
			continue
		}
		data, _ := ms[0].Values["data"].(string)
		e, err := event.Decode(event.JSON, []byte(data))
		if err != nil || e.Type != event.FileCreated {
			continue
		}
		if c.cc.HExists(ctx, c.layout.Files(e.Database, e.Table, e.File.Date()), e.File.Path).Val() {
			applied++
		}
	}
	if applied == 0 {
		t.Fatalf("none of the %d unacknowledged entries is in the index: the kill did not fall between two Part calls", len(pend))
	}
	t.Logf("killed between two Part calls: %d entries unacknowledged, %d of their creates already applied", len(pend), applied)

	c.start("w2", nil, "--source", "redis", "--claim-min-idle", "1s")
	c.finish("cluster-kill-between-parts", 1)
}

// TestClusterSlotMigration runs three workers on a 3-master cluster while
// writers publish, and meanwhile moves every slot holding keys of master 0
// to master 1, then those of master 1 to master 2, then those of master 2
// back to master 0 (index Parts and the stream alike, migrated with
// MIGRATE while the workers' scripts run: ASK, TRYAGAIN and MOVED on the
// way), then checks the index: nothing lost, no mismatch, no drift.
func TestClusterSlotMigration(t *testing.T) {
	c := newClusterEnv(t)
	ctx := t.Context()
	history := clusterHistory(6000, 21)
	c.publish(history[:3000])
	var workers []*worker
	for i := range 3 {
		workers = append(workers, c.start(fmt.Sprintf("w%d", i+1), nil, "--source", "redis", "--claim-min-idle", "2s", "--batch-size", "100"))
	}
	stop := c.publishMeanwhile(history[3000:]) // the writers go on while slots move
	waitFor(t, time.Minute, "the index to spread over the masters", func() bool {
		for i := range 3 {
			if slots, err := c.rc.KeySlots(ctx, i); err != nil || len(slots) < 2 {
				return false
			}
		}
		return true
	})
	moved, migrations := 0, 0
	for _, mv := range [][2]int{{0, 1}, {1, 2}, {2, 0}} {
		slots, err := c.rc.KeySlots(ctx, mv[0])
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.rc.MigrateSlots(ctx, mv[0], mv[1], slots)
		if err != nil {
			t.Fatal(err)
		}
		moved += n
		migrations += len(slots)
	}
	stop()
	unread, pending, _ := c.backlog(ctx)
	if moved < 100 {
		t.Fatalf("the migrations moved %d keys, want many", moved)
	}
	t.Logf("moved %d keys of %d slots between masters while the workers ran (backlog after: %d unread, %d pending)",
		moved, migrations, unread, pending)
	c.finish("cluster-slot-migration", int64(migrations))
	retries := 0
	for _, w := range workers {
		b, _ := os.ReadFile(w.logPath)
		retries += strings.Count(string(b), "failed; retrying")
	}
	t.Logf("the workers retried %d steps (TRYAGAIN, ASK or MOVED past go-redis's redirects)", retries)
}

// TestClusterCommands runs the operator and reader commands against a
// cluster with --layout cluster: stats, query, get, check, adopt, check
// --repair, status, replay, gc and plan, and the refusals: the gigapi layout on a cluster
// URL, a stream and dead letters in two slots.
func TestClusterCommands(t *testing.T) {
	c := newClusterEnv(t)
	history := clusterHistory(500, 31)
	c.publish(history)
	w := c.start("w1", nil, "--source", "redis", "--queues", "merge,drop", "--merge-timeout-base", "1s")
	waitFor(t, time.Minute, "the worker to drain the stream", func() bool {
		unread, pending, err := c.backlog(t.Context())
		return err == nil && unread == 0 && pending == 0
	})

	var stats []struct {
		Database, Table string
		Files           int64
	}
	if err := json.Unmarshal([]byte(c.must("", "stats", "--format", "json").Stdout), &stats); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for tb, files := range c.model.Live {
		want[tb] = int64(len(files))
	}
	for _, s := range stats {
		if want[s.Database+":"+s.Table] != s.Files {
			t.Errorf("stats: %s.%s has %d files, the model %d", s.Database, s.Table, s.Files, want[s.Database+":"+s.Table])
		}
	}
	if len(stats) != 3 {
		t.Fatalf("stats lists %d tables, want 3", len(stats))
	}
	var some string
	for p := range c.model.Live["demo:cpu"] {
		some = p
		break
	}
	q := c.must("", "query", "--database", "demo", "--table", "cpu", "--format", "ndjson")
	if n := strings.Count(q.Stdout, "\n"); n != len(c.model.Live["demo:cpu"]) || !strings.Contains(q.Stdout, some) {
		t.Fatalf("query printed %d entries, the model has %d live files", n, len(c.model.Live["demo:cpu"]))
	}
	if g := c.must("", "get", "--database", "demo", "--table", "cpu", some); !strings.Contains(g.Stdout, some) {
		t.Fatalf("get %s: %s", some, g.Stdout)
	}
	c.must("", "check")
	// The index the workers wrote has exact counters: adopt and check
	// --repair (Part by Part on the cluster) change nothing.
	if r := c.must("", "adopt"); !strings.Contains(r.Stdout, "nothing changed: the index was adopted already") {
		t.Fatalf("adopt of the workers' index:\n%s", r.Stdout)
	}
	if r := c.must("", "check", "--repair"); !strings.Contains(r.Stdout, "repaired 0 counters in 3 tables") {
		t.Fatalf("check --repair of the workers' index:\n%s", r.Stdout)
	}
	if st := c.must("", "status"); !strings.Contains(st.Stdout, clusterStream) || !strings.Contains(st.Stdout, "cpu") {
		t.Fatalf("status:\n%s", st.Stdout)
	}
	if r := c.must("", "replay", "--from", "earliest", "--quiet"); !strings.Contains(r.Stdout, "nothing changed") {
		t.Fatalf("replay of an up-to-date index:\n%s", r.Stdout)
	}
	// Every tombstone is younger than the stream's first entry: gc
	// collects none (internal/index tests collection over the Parts).
	if g := c.must("", "gc", "--tombstone-min-age", "0"); !strings.Contains(g.Stdout, "removed 0 tombstones") {
		t.Fatalf("gc: %s", g.Stdout)
	}
	var lease struct{ ID, Token string }
	waitFor(t, time.Minute, "a due merge item", func() bool {
		r := c.indexer("", "plan", "next", "--kind", "merge", "--database", "demo", "--table", "cpu", "--layer", "default", "--queues", "merge,drop")
		return r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &lease) == nil && lease.ID != ""
	})
	c.must("", "plan", "done", "--kind", "merge", "--database", "demo", "--table", "cpu", "--id", lease.ID, "--token", lease.Token, "--queues", "merge,drop")

	if r := c.indexer("", "stats", "--layout", "gigapi"); r.Code != 2 || !strings.Contains(r.Stderr, "--layout cluster") {
		t.Fatalf("the gigapi layout on a cluster URL: exit %d, %s", r.Code, r.Stderr)
	}
	if r := c.indexer("", "status", "--stream", "idx:events"); r.Code != 2 || !strings.Contains(r.Stderr, "hash tag") {
		t.Fatalf("a stream and dead letters in two slots: exit %d, %s", r.Code, r.Stderr)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	<-w.done
}

// TestClusterFailover runs two workers on a cluster of 3 masters with a
// replica each while writers publish, and fails two of the masters over
// to their replicas meanwhile (graceful CLUSTER FAILOVER: the replica
// catches up, is promoted; the old master's clients get MOVED and
// connection errors, the workers retry), then checks the index.
func TestClusterFailover(t *testing.T) {
	c := newClusterEnv(t, testserver.ClusterConfig{Replicas: 1})
	ctx := t.Context()
	history := clusterHistory(4000, 41)
	c.publish(history[:2000])
	for i := range 2 {
		c.start(fmt.Sprintf("w%d", i+1), nil, "--source", "redis", "--claim-min-idle", "2s", "--batch-size", "100")
	}
	stop := c.publishMeanwhile(history[2000:])
	waitFor(t, time.Minute, "the workers to apply some events", func() bool {
		_, pending, err := c.backlog(ctx)
		return err == nil && pending > 0
	})
	for _, m := range []int{0, 1} {
		n, err := c.rc.Failover(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("master %d failed over to %s", m, c.rc.Nodes[n].Addr())
	}
	stop()
	c.finish("cluster-failover", 2)
}
