package testserver

import (
	"context"
	"testing"
	"time"
)

// TestSentinels: a master, a replica and three sentinels; a client through
// the sentinels writes, a graceful failover moves the master and the old
// one replicates from the new, a SIGKILL of the master fails over again,
// and the killed server, restarted, comes back as a replica; the data
// written with WAIT survives both.
func TestSentinels(t *testing.T) {
	// A sentinel starts another failover of the same master only 2 ×
	// failover-timeout after the last one.
	g := Sentinels(t, SentinelConfig{FailoverTimeout: 4 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if len(g.Nodes) != 2 || len(g.Sentinels) != 3 {
		t.Fatalf("%d nodes, %d sentinels; want 2 and 3", len(g.Nodes), len(g.Sentinels))
	}
	if m, err := g.Master(ctx); err != nil || m != g.Nodes[0] {
		t.Fatalf("master at start: %v, %v; want Nodes[0]", m, err)
	}
	c := g.Client(t)
	write := func(v string) {
		t.Helper()
		if err := c.Set(ctx, "k", v, 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
			t.Fatalf("WAIT: %d, %v", n, err)
		}
	}
	read := func(want string) {
		t.Helper()
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != want {
			t.Fatalf("GET: %q, %v; want %q", got, err, want)
		}
	}
	write("1")

	old, cur, err := g.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if old != g.Nodes[0] || cur != g.Nodes[1] {
		t.Fatalf("failover from %s to %s; want %s to %s", old.Addr(), cur.Addr(), g.Nodes[0].Addr(), g.Nodes[1].Addr())
	}
	if role, err := nodeRole(ctx, old); err != nil || role != "slave" {
		t.Fatalf("the old master is %q (%v), want a replica", role, err)
	}
	read("1")
	write("2")

	killed, err := g.KillMaster(ctx)
	if err != nil || killed != cur {
		t.Fatalf("KillMaster: %v, %v", killed, err)
	}
	if cur, err = g.WaitFailover(ctx, killed); err != nil || cur != old {
		t.Fatalf("after the kill: %v, %v; want %s", cur, err, old.Addr())
	}
	read("2")
	if err := killed.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReplicas(ctx, 1); err != nil {
		t.Fatal(err)
	}
	write("3")
	if g.URL() != "redis+sentinel://"+g.Sentinels[0].Addr()+","+g.Sentinels[1].Addr()+","+g.Sentinels[2].Addr()+"/mymaster/0" {
		t.Errorf("URL %s", g.URL())
	}
}
