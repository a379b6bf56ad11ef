package integration

// The Redis Sentinel scenarios (issue 15): the index (and, with the Redis
// source, the stream) lives on a master with one replica, watched by
// three sentinels, all redis-server processes the test starts; the
// workers reach the master through redis+sentinel:// and run with
// --redis-wait-replicas 1. A graceful SENTINEL FAILOVER, and a SIGKILL of
// the master, mid-run; the checker then wants lost = 0, mismatches = 0,
// drift = 0.
//
// What a failover can lose, and what the checker may therefore expect:
// Redis replicates asynchronously, and a replica promoted by Sentinel has
// what the master had sent it, no more (after SIGKILL), and a master
// demoted by SENTINEL FAILOVER throws away what it accepted after the
// replica's promotion (Sentinel reconfigures it a moment later, and it
// resynchronises from the new master).
//   - Index writes: a worker acknowledges a batch only after WAIT
//     confirmed its patch_index call on the replica, so an acknowledged
//     batch is on the new master. A batch whose WAIT fails (the replica was
//     promoted, or is gone) is not acknowledged and is applied again.
//     Without --redis-wait-replicas both sources can lose acknowledged
//     batches (with the Redis source too: the acknowledgement may reach
//     the new master while the index write went to the old one).
//   - The stream (Redis source): the writers' XADDs are replicated
//     asynchronously too, so an event whose XADD the old master
//     acknowledged can be missing on the new one. The test's writer, like
//     'indexer publish --redis-wait-replicas 1', counts an event as
//     published only after WAIT confirmed it on the replica, and
//     publishes again what was not confirmed (a duplicate entry is
//     harmless): every event in the model is in the stream. A writer that
//     does not WAIT can lose events this way; the checker would report
//     them as lost, and rightly so — they are lost to the index.
//   - The group's state (last delivered entry, pending entries,
//     acknowledgements) may lose its last changes: entries are then
//     delivered again, and applying them again changes nothing.
//
// Without --redis-wait-replicas the kill scenario does lose acknowledged
// batches: run by hand with the NATS source, workers without the flag and
// the replica stopped for 1.5 s before the kill, the checker reported
// lost=4853. It is not kept as a negative control because how much is
// lost depends on how much of the replication stream the kernel's socket
// buffers still hand to the resumed replica, so it can come out clean.

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamindex/indexer/event"
)

// sentinelRun runs a Sentinel scenario: two workers, 12,000 events (half
// before the fault, half published meanwhile), the fault once the workers
// have acknowledged some, then the checker. fault injects it; it may wait
// for what it needs before returning.
func sentinelRun(t *testing.T, source, scenario string, fault func(ctx context.Context, f *fenv)) {
	f := newFaultEnv(t, source, fopts{sentinel: true, waitReplicas: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	ev := eventsOf(12_000, 130, "events")
	f.publish(ev[:6000])
	ws := []*worker{f.startWorker(nil), f.startWorker(nil)}
	waitFor(t, time.Minute, "the workers to acknowledge events", func() bool {
		return f.sum(f.metricName("indexer_acks_total")) >= 2000
	})
	published := make(chan error, 1)
	go func() { published <- publishSlowly(ctx, f, ev[6000:]) }()

	fault(ctx, f)

	if err := <-published; err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if !w.alive() {
			t.Fatalf("worker %s exited", w.name)
		}
		w.waitLog(t, "Redis master changed", 30*time.Second)
	}
	f.finish(scenario+"-"+source, 2*time.Minute)
}

// publishSlowly publishes events in chunks of 500, 50 ms apart, so that
// they keep coming while the fault happens.
func publishSlowly(ctx context.Context, f *fenv, events []event.Event) error {
	for i := 0; i < len(events); i += 500 {
		if err := f.tryPublish(ctx, events[i:min(i+500, len(events))], 3*time.Minute); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// TestFaultSentinelFailover: a graceful SENTINEL FAILOVER while the
// workers apply and the writer publishes: the workers follow the master
// to the promoted replica; the old master, now a replica, resynchronises.
func TestFaultSentinelFailover(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		sentinelRun(t, source, "sentinel-failover", func(ctx context.Context, f *fenv) {
			if _, _, err := f.sentinels.Failover(ctx); err != nil {
				t.Fatal(err)
			}
			f.fault("sentinel-failover")
		})
	})
}

// TestFaultSentinelKillMaster: the master SIGKILLed while the workers
// apply and the writer publishes, at a moment when it surely holds writes
// the replica has not confirmed: the replica is SIGSTOPped first, until a
// worker found its batch unconfirmed by WAIT (so it did not acknowledge
// it), then the master is killed and the replica resumed. The sentinels
// promote the replica; until the killed server, restarted, has become its
// replica, the new master has none, so WAIT fails and nothing is
// acknowledged; then everything goes through.
func TestFaultSentinelKillMaster(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		sentinelRun(t, source, "sentinel-kill-master", func(ctx context.Context, f *fenv) {
			killMaster(ctx, f, func() {
				waitFor(t, 2*time.Minute, "a worker to find its batch unconfirmed by WAIT", func() bool {
					for _, w := range f.running() {
						if b, _ := os.ReadFile(w.logPath); strings.Contains(string(b), "0 of 1 replicas confirmed") {
							return true
						}
					}
					return false
				})
			})
		})
	})
}

// killMaster SIGSTOPs the replica, calls whileStopped, SIGKILLs the
// master, resumes the replica, waits for the failover, restarts the killed
// server and waits until it replicates from the new master.
func killMaster(ctx context.Context, f *fenv, whileStopped func()) {
	t, g := f.t, f.sentinels
	master, err := g.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replica := g.Nodes[0]
	if replica == master {
		replica = g.Nodes[1]
	}
	if err := replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	whileStopped()
	killed, err := g.KillMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	f.fault("sentinel-kill-master")
	if _, err := g.WaitFailover(ctx, killed); err != nil {
		t.Fatal(err)
	}
	if err := killed.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReplicas(ctx, 1); err != nil {
		t.Fatal(err)
	}
}
