package integration

// The fault-injection scenarios of issue 6, each against both sources
// where it applies: real servers, the failpoint build of the binary as
// worker processes, one fault injected on purpose, a drain, and the
// checker (checker_test.go) comparing the index with the model of what
// was published. Each prints its summary line.
//
// Not for both sources, and why:
//   - Redis restarted without persistence (TestFaultRedisLostGroup): the
//     group lives in Redis only with the Redis source; with NATS it lives
//     in the NATS server, and a Redis that lost its data has lost the
//     index, which 'indexer replay' rebuilds (TestOpsNATSReplay).
//   - nats-server SIGKILL (TestFaultNATSServerKill): NATS only.
//   - Trimming under lag (TestFaultRedisTrimUnderLag): Redis only. A
//     JetStream stream discards by MaxAge/MaxBytes/MaxMsgs, and a consumer
//     is never offered a discarded message, so there is nothing for the
//     worker to count; 'indexer setup' warns about limits that can discard
//     unconsumed messages instead.
//   - The 64 MB payload of the poison scenario: Redis only; NATS refuses
//     it at publish (max_payload is 1 MB), which the test asserts.
//   - The mid-dead-letter crash (TestFaultMidDeadLetter): NATS only. Redis
//     moves a dead letter and acknowledges it in one atomic script
//     (stream_dead_letter.lua): there is no step in between to crash at;
//     the Redis half of that test loses the script's replies instead.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/lua"
	"github.com/streamindex/indexer/internal/testserver"
)

// bothSources runs a scenario as two subtests named redis and nats, in
// parallel with the other scenarios (-parallel, GOMAXPROCS by default).
func bothSources(t *testing.T, scenario func(t *testing.T, source string)) {
	for _, src := range []string{"redis", "nats"} {
		t.Run(src, func(t *testing.T) {
			t.Parallel()
			scenario(t, src)
		})
	}
}

// metricName is a sample of the source's series.
func (f *fenv) metricName(name string, labels ...string) string {
	l := append(labels, `source="`+f.source+`"`)
	slices.Sort(l) // as /metrics writes them
	return name + "{" + strings.Join(l, ",") + "}"
}

// 1. A worker SIGKILLed after applying a batch and before acknowledging
// it: the batch is delivered again and re-applying it changes nothing.
func TestFaultKillAfterApply(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{})
		f.publish(eventsOf(20_000, 101, "events"))
		victim := f.startWorker([]string{"INDEXER_FAILPOINT=after-apply-kill:3"})
		if code := victim.exitCode(t, time.Minute); code != -1 {
			t.Fatalf("the victim exited %d, want killed by its failpoint", code)
		}
		f.faults.Add(1)
		if _, pending, err := f.backlog(); err != nil || pending == 0 {
			t.Fatalf("nothing pending after the crash (%v): the test would prove nothing", err)
		}
		f.startWorker(nil)
		f.startWorker(nil)
		waitFor(t, time.Minute, "a redelivery", func() bool { return f.sum(f.metricName("indexer_redeliveries_total")) > 0 })
		f.finish("kill-after-apply-"+source, 2*time.Minute)
	})
}

// 1b. Random SIGKILLs of workers every second while events flow; each
// killed worker is replaced.
func TestFaultRandomKills(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{})
		for i := 0; i < 3; i++ {
			f.startWorker(nil)
		}
		ev := eventsOf(30_000, 102, "events")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < len(ev); i += 3000 {
				if err := f.tryPublish(t.Context(), ev[i:min(i+3000, len(ev))], time.Minute); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(300 * time.Millisecond)
			}
		}()
		rng := rand.New(rand.NewPCG(102, 1))
		for kills := 0; kills < 8; kills++ {
			time.Sleep(time.Duration(500+rng.IntN(700)) * time.Millisecond)
			ws := f.running()
			ws[rng.IntN(len(ws))].kill9()
			f.faults.Add(1)
			f.startWorker(nil)
		}
		<-done
		f.finish("random-kills-"+source, 2*time.Minute)
	})
}

// 2. A worker SIGSTOPped while it holds an applied, unacknowledged batch,
// for three times the lease (claim-min-idle, AckWait): another worker
// takes the batch over; the zombie, SIGCONTed, acknowledges late and
// applies its next batch late, which must change nothing.
func TestFaultZombie(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{ackWait: time.Second, claimMinIdle: time.Second})
		f.publish(eventsOf(20_000, 103, "events"))
		zombie := f.startWorker([]string{"INDEXER_FAILPOINT=after-apply-stall:2", "INDEXER_FAILPOINT_STALL=500ms"})
		zombie.waitLog(t, "failpoint: after-apply: stalling", 30*time.Second)
		zombie.signal(t, syscall.SIGSTOP)
		f.faults.Add(1)
		w := f.startWorker(nil)
		time.Sleep(3 * time.Second) // the lease runs out while the zombie sleeps
		waitFor(t, time.Minute, "the zombie's batch taken over", func() bool {
			return w.metric(t, f.metricName("indexer_redeliveries_total")) > 0
		})
		f.waitDrained(time.Minute)
		before := indexOnly(logicalIndex(t, f.rdb))
		zombie.signal(t, syscall.SIGCONT)
		// The zombie acknowledges and applies what it held, late.
		waitFor(t, 30*time.Second, "the zombie to finish its batch", func() bool {
			return zombie.metric(t, f.metricName("indexer_batches_total")) >= 2
		})
		// And the batch it may have fetched before it was stopped: wait
		// until it has done nothing for a second.
		last, since := -1.0, time.Now()
		waitFor(t, 30*time.Second, "the zombie to settle", func() bool {
			if n := zombie.metric(t, f.metricName("indexer_batches_total")); n != last {
				last, since = n, time.Now()
			}
			return time.Since(since) > time.Second
		})
		if !zombie.alive() {
			t.Fatal("the zombie died")
		}
		if d := diffIndex(before, indexOnly(logicalIndex(t, f.rdb))); d != "" {
			t.Errorf("the zombie's late batch changed the index: %s", d)
		}
		f.finish("zombie-"+source, time.Minute)
	})
}

// 3. A key of the wrong type planted in one table's index (folders: as a
// string) while the events of two tables flow, interleaved so every batch
// mixes them: patch_index refuses every call touching that table, and
// writes nothing of it; the loop splits the batches so the other table's
// events go through; the refused events are never acknowledged, so after
// --max-deliver deliveries they are dead-lettered, each with
// max-deliver+1 deliveries. Then the key is removed, the dead letters
// requeued, and everything converges to the model.
func TestFaultWrongTypeKey(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		const maxDeliver = 3
		f := newFaultEnv(t, source, fopts{maxDeliver: maxDeliver, ackWait: time.Second})
		ctx := context.Background()
		if err := f.rdb.Set(ctx, "folders:demo:t1", "planted", 0).Err(); err != nil {
			t.Fatal(err)
		}
		f.faults.Add(1)
		t1, t2 := eventsOf(300, 104, "t1"), eventsOf(300, 105, "t2")
		f.publish(interleave(t1, t2))
		f.startWorker(nil)
		f.startWorker(nil)
		if !f.waitDrained(2 * time.Minute) {
			t.FailNow()
		}
		// Nothing of t1 was written: no entry, tombstone, statistic or
		// registry member.
		var t1keys []string
		for _, k := range f.rdb.Keys(ctx, "*t1*").Val() {
			if k != "folders:demo:t1" {
				t1keys = append(t1keys, k)
			}
		}
		if len(t1keys) > 0 || f.rdb.SIsMember(ctx, "idx:tables", "demo:t1").Val() {
			t.Errorf("refused calls left effects of t1: keys %v", t1keys)
		}
		// Every t1 event, and nothing else, is a dead letter, delivered
		// max-deliver+1 times without ever being acknowledged.
		want := map[string]bool{}
		for i := range t1 {
			want[t1[i].ID] = true
		}
		dead := f.deadLetters()
		if len(dead) != len(t1) {
			t.Fatalf("%d dead letters, want the %d events of t1", len(dead), len(t1))
		}
		for _, d := range dead {
			e, err := event.Decode(event.JSON, d.Data)
			if err != nil || !want[e.ID] {
				t.Fatalf("dead letter %s is not an event of t1: %.80q", d.ID, d.Data)
			}
			delete(want, e.ID)
			if d.Deliveries != maxDeliver+1 || !strings.Contains(d.Reason, "--max-deliver") {
				t.Fatalf("dead letter %s: %d deliveries, reason %q; want %d and the max-deliver reason", d.ID, d.Deliveries, d.Reason, maxDeliver+1)
			}
		}
		// t2 went through: check it alone.
		only2 := modelOf(t2)
		v := verdict{}
		checkModel(t, f.rdb, gigapiLayout, only2, map[string]bool{}, &v)
		if v.Lost+v.Unexpected+v.Mismatches > 0 {
			t.Fatalf("t2 did not go through: %+v %v", v, v.examples)
		}

		// The repair: the key removed, the dead letters requeued.
		f.rdb.Del(ctx, "folders:demo:t1")
		f.must("", f.args("dlq", "requeue", "--all")...)
		f.finish("wrong-type-key-"+source, 2*time.Minute)
	})
}

// 4. SCRIPT FLUSH every 50 ms while the workers apply (NOSCRIPT heals
// itself: EVALSHA, then EVAL), and Redis, with AOF and appendfsync always,
// SIGKILLed and restarted twice.
func TestFaultScriptFlushAndRestart(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{redis: testserver.RedisConfig{AOF: true}})
		for i := 0; i < 2; i++ {
			f.startWorker(nil)
		}
		ev := eventsOf(30_000, 106, "events")
		ctx, stop := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // SCRIPT FLUSH, on its own client: it survives the restarts
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: f.redis.Addr(), MaxRetries: -1})
			defer c.Close()
			for ctx.Err() == nil {
				if c.ScriptFlush(ctx).Err() == nil {
					f.faults.Add(1)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		for i := 0; i < len(ev); i += 5000 {
			f.publish(ev[i : i+5000])
			if i == 10_000 || i == 20_000 {
				if err := f.redis.Kill(); err != nil {
					t.Fatal(err)
				}
				f.faults.Add(1)
				if err := f.redis.Restart(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Second)
		stop()
		wg.Wait()
		for _, w := range f.workers {
			if !w.alive() {
				t.Errorf("worker %s exited", w.name)
			}
		}
		f.finish("script-flush-aof-restart-"+source, 2*time.Minute)
	})
}

// 5. Redis BUSY: another client runs a script that loops (past
// lua-time-limit, 100 ms) until both workers said they
// are not ready and a second more, then SCRIPT KILL: the workers back off and
// report not ready meanwhile, never exit, and finish once it is over.
func TestFaultRedisBusy(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{redis: testserver.RedisConfig{Args: []string{"--lua-time-limit", "100"}}})
		w1, w2 := f.startWorker(nil), f.startWorker(nil)
		f.publish(eventsOf(5000, 107, "events"))
		waitFor(t, 30*time.Second, "the workers ready", func() bool { return w1.ready(t) && w2.ready(t) })

		busy := redis.NewClient(&redis.Options{Addr: f.redis.Addr(), ReadTimeout: -1, MaxRetries: -1})
		defer busy.Close()
		done := make(chan error, 1)
		go func() { done <- busy.Eval(context.Background(), "while true do end", nil).Err() }()
		f.faults.Add(1)
		// Events keep coming: NATS workers meet the busy Redis when they
		// apply them, Redis workers already when they read. (The model
		// counts them from the start: the publish must finish.)
		published := make(chan error, 1)
		go func() { published <- f.tryPublish(t.Context(), eventsOf(5000, 108, "t2"), 30*time.Second) }()
		// A worker blocked in XREADGROUP notices only when its read times
		// out (go-redis: BLOCK + 10 s).
		waitFor(t, 30*time.Second, "both workers not ready", func() bool { return !w1.ready(t) && !w2.ready(t) })
		time.Sleep(time.Second)
		for _, w := range []*worker{w1, w2} {
			if !w.alive() {
				t.Fatalf("%s exited while Redis was busy", w.name)
			}
			// Whichever step meets the busy Redis first: a read, an
			// apply, or the ack of a batch applied just before.
			n := 0.0
			for _, step := range []string{"fetch", "apply", "ack"} {
				n += w.metric(t, f.metricName("indexer_failures_total", `class="retry"`, `step="`+step+`"`))
			}
			if n == 0 {
				t.Errorf("%s counted no retried failure", w.name)
			}
		}
		kill := redis.NewClient(&redis.Options{Addr: f.redis.Addr()})
		defer kill.Close()
		if err := kill.ScriptKill(context.Background()).Err(); err != nil {
			t.Fatalf("SCRIPT KILL: %v", err)
		}
		if err := <-done; err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("the busy script ended with %v", err)
		}
		waitFor(t, 30*time.Second, "both workers ready again", func() bool { return w1.ready(t) && w2.ready(t) })
		if err := <-published; err != nil {
			t.Fatalf("publishing while Redis was busy: %v", err)
		}
		f.finish("redis-busy-"+source, time.Minute)
	})
}

// 6. Redis restarted without persistence (Redis source only, see the top
// of the file): the stream and its group are gone; writers go on
// publishing, which creates the stream again, without a group. Every
// worker, running or new, stops with exit 1, NOGROUP and the setup
// command in its error, and none creates the group (at "$" or anywhere).
// Then the operator runs setup and the writers publish again what was
// lost: the index is the model's.
func TestFaultRedisLostGroup(t *testing.T) {
	t.Parallel()
	f := newFaultEnv(t, "redis", fopts{})
	ctx := context.Background()
	ev := eventsOf(10_000, 109, "events")
	f.publish(ev)
	ws := []*worker{f.startWorker(nil), f.startWorker(nil)}
	f.waitDrained(time.Minute)
	if err := f.redis.Kill(); err != nil {
		t.Fatal(err)
	}
	f.faults.Add(1)
	if err := f.redis.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	f.publish(eventsOf(2000, 110, "t2"))
	ws = append(ws, f.startWorker(nil))
	for _, w := range ws {
		if code := w.exitCode(t, time.Minute); code != 1 {
			t.Fatalf("%s exited %d, want 1", w.name, code)
		}
		w.waitLog(t, "NOGROUP", time.Second)
		w.waitLog(t, "indexer setup --source redis", time.Second)
	}
	if gs, err := f.rdb.XInfoGroups(ctx, stream).Result(); err != nil || len(gs) != 0 {
		t.Fatalf("groups after the workers died: %v (%v); want none", gs, err)
	}
	// Recovery.
	f.must("", "setup", "--source", "redis")
	f.publish(ev)
	f.startWorker(nil)
	f.finish("redis-lost-group", time.Minute)
}

// 7. Lost replies and connection resets between the workers and Redis
// (and NATS), through the proxy: first the replies of patch_index are lost
// after the script ran (30 %), then every reply may be lost (3 %) and
// connections are reset after about 1 MiB (budgets of 0.5-1.5 MiB: a
// full batch's patch_index call, about 450 KB, usually fits; a budget
// below it would make every apply fail for as long as the fault lasts,
// and after --max-deliver claims the batch would be dead-lettered by
// design, which is not what this scenario is about). A lost reply is an unknown
// outcome: nothing is acknowledged, the batch is applied again, and the
// second time every event of it is a duplicate.
func TestFaultLostReplies(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{redisProxy: true, natsProxy: true})
		// patch_index's calls, not the stream scripts' (lease renewals,
		// claims): only a lost reply of patch_index makes the loop apply
		// a batch again.
		sha := []byte(lua.PatchIndexHash())
		patchIndex := func(req []byte) bool { return bytes.Contains(req, sha) }
		f.rproxy.Set(testserver.Faults{DropReply: 0.3, ReplyTo: patchIndex})
		f.startWorker(nil)
		f.startWorker(nil)
		ev := eventsOf(20_000, 111, "events")
		// Small chunks, each applied on its own, until five replies were
		// lost: each apply loses its reply with p = 0.3, so ten full
		// batches would often lose fewer than five.
		i := 0
		for ; i < 10_000 && f.rproxy.Stats().DroppedReplies < 5; i += 250 {
			f.publish(ev[i : i+250])
			time.Sleep(50 * time.Millisecond)
		}
		waitFor(t, time.Minute, "patch_index replies lost", func() bool { return f.rproxy.Stats().DroppedReplies >= 5 })
		f.rproxy.Set(testserver.Faults{DropReply: 0.03, ResetAfter: 1 << 20})
		if f.nproxy != nil {
			f.nproxy.Set(testserver.Faults{ResetAfter: 256 << 10})
		}
		f.publish(ev[i:])
		time.Sleep(2 * time.Second)
		f.rproxy.Set(testserver.Faults{})
		if f.nproxy != nil {
			f.nproxy.Set(testserver.Faults{})
		}
		v := f.finish("lost-replies-"+source, time.Minute)
		if dup := f.sum(f.metricName("indexer_events_total", `outcome="duplicate"`)); dup == 0 {
			t.Errorf("no event was applied twice: no lost reply of patch_index reached the loop (%d faults)", v.Faults)
		}
	})
}

// 8. nats-server SIGKILLed twice while the workers run and events are
// published, and restarted on the same store: nothing acknowledged is lost.
func TestFaultNATSServerKill(t *testing.T) {
	t.Parallel()
	f := newFaultEnv(t, "nats", fopts{})
	f.startWorker(nil)
	f.startWorker(nil)
	ev := eventsOf(30_000, 112, "events")
	for i := 0; i < len(ev); i += 5000 {
		f.publish(ev[i : i+5000])
		if i == 10_000 || i == 20_000 {
			f.nats.Kill()
			f.faults.Add(1)
			if err := f.nats.Restart(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, w := range f.workers {
		if !w.alive() {
			t.Errorf("worker %s exited", w.name)
		}
	}
	f.finish("nats-server-kill", 2*time.Minute)
}

// 9. The group (Redis) or durable consumer (NATS) deleted mid-run, while
// one worker holds a batch it has not applied and another runs: both fail
// explicitly (exit 1, "does not exist", the setup command); a new one too.
// The operator recreates it at the position recorded before the deletion
// (Redis: the group's last delivered entry, with 'indexer setup --from';
// NATS: after the consumer's ack floor, with 'indexer setup' and 'indexer
// group reset --to') and replays the stream up to that position: the
// index is the model's. With Redis, the batch in flight when the group
// was deleted is missing until the replay (the checker says so first).
func TestFaultGroupDeleted(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{})
		ctx := context.Background()
		ev := eventsOf(20_000, 113, "events")
		f.publish(ev[:10_000])
		holder := f.startWorker([]string{"INDEXER_FAILPOINT=before-apply-stall:2", "INDEXER_FAILPOINT_STALL=1h"})
		holder.waitLog(t, "failpoint: before-apply: stalling", 30*time.Second)
		runner := f.startWorker(nil)
		waitFor(t, time.Minute, "everything else read", func() bool {
			unread, _, err := f.backlog()
			return err == nil && unread == 0
		})
		// The operator's record of the position, then the deletion.
		var position string
		if source == "nats" {
			info, err := f.natsConsumer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			position = fmt.Sprint(info.AckFloor.Stream)
			if err := f.js.DeleteConsumer(ctx, "IDX_EVENTS", group); err != nil {
				t.Fatal(err)
			}
		} else {
			for _, g := range f.rdb.XInfoGroups(ctx, stream).Val() {
				if g.Name == group {
					position = g.LastDeliveredID
				}
			}
			if err := f.rdb.XGroupDestroy(ctx, stream, group).Err(); err != nil {
				t.Fatal(err)
			}
		}
		f.faults.Add(1)
		f.publish(ev[10_000:]) // the writers go on
		late := f.startWorker(nil)
		for _, w := range []*worker{runner, late} {
			if code := w.exitCode(t, time.Minute); code != 1 {
				t.Fatalf("%s exited %d after the deletion, want 1", w.name, code)
			}
			w.waitLog(t, "does not exist", time.Second)
			w.waitLog(t, "indexer setup --source "+source, time.Second)
		}
		holder.kill9()

		// Recreate at the recorded position.
		if source == "nats" {
			f.must("", "setup", "--source", "nats", "--ack-wait", f.opts.ackWait.String(), "--max-deliver", "5", "--workers", "6")
			n, err := strconv.ParseUint(position, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			f.must("", "group", "reset", "--source", "nats", "--to", fmt.Sprint(n+1))
		} else {
			f.must("", "setup", "--source", "redis", "--from", position)
		}
		f.startWorker(nil)
		f.startWorker(nil)
		f.waitDrained(time.Minute)
		if source == "redis" {
			if v := f.check("group-deleted-before-replay-redis", "lost"); v.Lost == 0 {
				t.Error("nothing was missing before the replay: the batch in flight was not lost, the test proves less than it says")
			}
		}
		f.must("", f.args("replay", "--from", "earliest", "--to", position, "--quiet")...)
		f.finish("group-deleted-"+source, time.Minute)
	})
}

// 10. An operator replays the whole stream, twice, while writers publish
// and workers apply (deletes included): the index ends as the model's, and
// at no moment is a tombstoned path live (a tombstone, once there, is never
// followed by the file coming back).
func TestFaultReplayDuringTraffic(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{})
		ctx := context.Background()
		f.startWorker(nil)
		f.startWorker(nil)
		ev := eventsOf(30_000, 114, "events")
		f.publish(ev[:5000])
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 5000; i < len(ev); i += 1000 {
				if err := f.tryPublish(t.Context(), ev[i:i+1000], time.Minute); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 2; i++ {
				r := f.indexer("", f.args("replay", "--from", "earliest", "--quiet")...)
				if r.Code != 0 {
					t.Errorf("replay: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
				}
				f.faults.Add(1)
			}
		}()
		stop := make(chan struct{})
		var resurrected atomic.Int64
		var checks atomic.Int64
		var cwg sync.WaitGroup
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Tombstones first, then the live files: a path tombstoned
				// before and live after was resurrected.
				tombs := f.rdb.ZRange(ctx, "idx:tomb:demo:events", 0, -1).Val()
				pipe := f.rdb.Pipeline()
				cmds := make([]*redis.BoolCmd, len(tombs))
				for i, p := range tombs {
					cmds[i] = pipe.HExists(ctx, "files:demo:events:"+p[:len("date=2006-01-02")], p)
				}
				pipe.Exec(ctx)
				for i, c := range cmds {
					if c.Val() {
						resurrected.Add(1)
						t.Errorf("tombstoned path %s is live", tombs[i])
					}
				}
				checks.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
		}()
		wg.Wait()
		close(stop)
		cwg.Wait()
		if checks.Load() < 5 {
			t.Errorf("only %d resurrection checks ran", checks.Load())
		}
		f.finish("replay-during-traffic-"+source, time.Minute)
	})
}

// poisonMsg is a malformed message: its payload and content type.
type poisonMsg struct {
	data []byte
	ct   string
	kind string
}

// poisonSet returns 100 malformed messages of 20 kinds: bad JSON, bad
// msgpack, ../ paths, {} in names, invalid UTF-8, a 5 KB path, numbers
// above 2^53, 10,000 levels of nesting (JSON arrays and objects, msgpack
// arrays), Lua-looking strings, and the older kinds of poisonKinds. With
// big, one of them is a 64 MB payload.
func poisonSet(big bool) []poisonMsg {
	valid := func(i int) string {
		return fmt.Sprintf(`{"v":1,"id":"poison-%d","type":"file.created","time":1,"database":"demo","table":"events","layer":"default","path":"date=2024-01-15/hour=01/poison%d.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":2}`, i, i)
	}
	repl := func(old, new string) func(int) []byte {
		return func(i int) []byte { return []byte(strings.Replace(valid(i), old, new, 1)) }
	}
	type kind struct {
		name string
		ct   string
		gen  func(i int) []byte
	}
	kinds := []kind{
		{"bad msgpack: reserved byte", "msgpack", func(i int) []byte { return []byte{0x81, 0xa1, 'v', 0xc1, byte(i)} }},
		{"bad msgpack: truncated map", "msgpack", func(i int) []byte { return []byte{0x8f, 0xa1, 'v', 0x01, 0xa2, 'i', 'd', 0xd9, 0xff, byte(i)} }},
		{"msgpack nesting 10,000", "msgpack", func(i int) []byte { return append(bytes.Repeat([]byte{0x91}, 10_000), byte(i&0x7f)) }},
		{"msgpack: not an event", "msgpack", func(i int) []byte {
			return []byte{0x82, 0xa1, 'v', 0x01, 0xa4, 't', 'y', 'p', 'e', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, byte(i)}
		}},
		{"invalid UTF-8 in a path", "json", func(i int) []byte {
			return []byte(strings.Replace(valid(i), "poison", "p\xff\xfeoison", 1))
		}},
		{"invalid UTF-8 outside strings", "json", func(i int) []byte { return append([]byte(valid(i)), 0xff) }},
		{"JSON object nesting 10,000", "json", func(i int) []byte {
			return []byte(strings.Repeat(`{"v":`, 10_000) + fmt.Sprint(i) + strings.Repeat("}", 10_000))
		}},
		{"Lua-looking path", "json", repl("poison", `x'..redis.call('FLUSHALL')..'`)},
		{"Lua-looking layer", "json", repl(`"layer":"default"`, `"layer":"]]..redis.call('DEL',KEYS[1])--[["`)},
		{"number > 2^53 in row_count", "json", repl(`"row_count":1`, `"row_count":18446744073709551617`)},
		{"float size", "json", repl(`"size_bytes":1`, `"size_bytes":1.5e300`)},
		{"empty payload", "json", func(int) []byte { return nil }},
		{"../ in the table", "json", repl(`"table":"events"`, `"table":"../events"`)},
	}
	for j, k := range poisonKinds() { // from redis_test.go: truncated JSON, ../, {}, 2^53+1, 5 KB path, 10,000-level arrays, ...
		kinds = append(kinds, kind{fmt.Sprintf("older kind %d", j), "json", func(i int) []byte { return []byte(k(i)) }})
	}
	var out []poisonMsg
	if big {
		pad := strings.Repeat("x", 64<<20)
		out = append(out, poisonMsg{data: []byte(`{"v":1,"id":"big","pad":"` + pad + `"}`), ct: "json", kind: "64 MB payload"})
	}
	for i := 0; len(out) < 100; i++ {
		k := kinds[i%len(kinds)]
		out = append(out, poisonMsg{data: k.gen(1000 + i), ct: k.ct, kind: k.name})
	}
	return out
}

// 11. 100 poison messages of 20 kinds among valid events: exactly they
// are dead-lettered; no key outside the index's prefixes appears in Redis;
// no worker's peak RSS reaches 256 MB. Redis carries a 64 MB payload too;
// NATS refuses it when it is published (max_payload is 1 MB), so there it
// is replaced by another kind.
func TestFaultPoison(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		// No worker dies here, so claims are not what this checks: a long
		// claim-min-idle keeps a worker still reading the 64 MB payload on
		// a loaded machine (before its lease renewal covers it) from
		// losing it to the other one, which would count deliveries.
		f := newFaultEnv(t, source, fopts{claimMinIdle: 30 * time.Second})
		ctx := context.Background()
		ws := []*worker{f.startWorker(nil), f.startWorker(nil)}
		ev := eventsOf(5000, 115, "events")
		if source == "nats" {
			huge := make([]byte, 64<<20)
			err := f.pubNATS.PublishMsgs(ctx, []*nats.Msg{{Subject: "idx.events.demo.events", Data: huge,
				Header: nats.Header{"Content-Type": {"application/json"}, "Nats-Msg-Id": {"huge"}}}})
			if err == nil || !strings.Contains(err.Error(), "maximum payload") {
				t.Fatalf("publishing 64 MB to NATS: %v; want the max_payload refusal", err)
			}
		}
		poison := poisonSet(source == "redis")
		kinds := map[string]bool{}
		for i, p := range poison {
			if i%4 == 0 {
				f.publish(ev[i/4*200 : i/4*200+200])
			}
			if err := f.publishPoison(p.data, p.ct); err != nil {
				t.Fatalf("publish poison %q: %v", p.kind, err)
			}
			f.faults.Add(1)
			kinds[p.kind] = true
		}
		f.publish(ev[25*200:])
		if len(kinds) < 10 {
			t.Fatalf("only %d kinds of poison", len(kinds))
		}
		f.finish("poison-"+source, time.Minute)
		for _, d := range f.deadLetters() {
			if d.Reason == "" || strings.Contains(d.Reason, "--max-deliver") || d.Deliveries != 1 {
				t.Errorf("dead letter %s: %d deliveries, reason %q; want dead-lettered when first read, for what it is", d.ID, d.Deliveries, d.Reason)
			}
			// The dead-letter stream keeps at most the first 64 KiB
			// (--dead-letter-max-bytes) of the 64 MB payload.
			if len(d.Data) > 64<<10 || (d.Size > 64<<10) != d.Truncated() {
				t.Errorf("dead letter %s keeps %d bytes of %d (truncated %v); want at most 65536", d.ID, len(d.Data), d.Size, d.Truncated())
			}
		}

		// Every key of Redis has one of the index's prefixes.
		prefixes := []string{"files:", "folders:", "merge:", "move:", "drop:", "idx:"}
		var cursor uint64
		for {
			keys, next, err := f.rdb.Scan(ctx, cursor, "*", 1000).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
					t.Errorf("stray key %q", k)
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		for _, w := range ws {
			if !w.alive() {
				t.Fatalf("%s exited", w.name)
			}
			if rss := w.vmHWM(t); rss >= 256<<20 {
				t.Errorf("%s peaked at %d MiB of RSS, want < 256", w.name, rss>>20)
			} else {
				t.Logf("%s peak RSS %d MiB", w.name, rss>>20)
			}
		}
	})
}

// 12. Trimming under lag (Redis only, see the top of the file): a worker
// holds two batches (2,000 entries, read, not applied) and is SIGKILLed;
// the stream is trimmed with MAXLEN to its last 5,000 of 10,000 entries,
// which removes the 2,000 pending entries and 3,000 no worker has read.
// All 5,000 are counted in indexer_lost_messages_total and alarmed; the
// pending ones are acknowledged; the workers keep running and do not
// retry anything; the index is the model of the 5,000 entries left.
func TestFaultRedisTrimUnderLag(t *testing.T) {
	t.Parallel()
	f := newFaultEnv(t, "redis", fopts{})
	ctx := context.Background()
	ev := eventsOf(10_000, 116, "events")
	f.publish(ev)
	holder := f.startWorker([]string{"INDEXER_FAILPOINT=before-apply-stall:1", "INDEXER_FAILPOINT_STALL=1h"})
	holder.waitLog(t, "failpoint: before-apply: stalling", 30*time.Second)
	waitFor(t, 30*time.Second, "the holder to read its second batch", func() bool {
		_, _, pending := f.groupState(stream, group)
		return pending == 2000
	})
	holder.kill9()
	if n := f.rdb.XTrimMaxLen(ctx, stream, 5000).Val(); n != 5000 {
		t.Fatalf("trimmed %d entries, want 5000", n)
	}
	f.faults.Add(1)
	f.mu.Lock()
	f.model = modelOf(ev[5000:]) // what is left to apply
	f.mu.Unlock()
	w := f.startWorker(nil)
	waitFor(t, time.Minute, "5,000 messages counted lost", func() bool {
		return w.metric(t, `indexer_lost_messages_total{source="redis"}`) >= 5000
	})
	w.waitLog(t, "ALARM", time.Second)
	f.waitDrained(time.Minute)
	// Nothing more happens: no retry, no batch.
	batches := w.metric(t, `indexer_batches_total{source="redis"}`)
	time.Sleep(2 * time.Second)
	if n := w.metric(t, `indexer_lost_messages_total{source="redis"}`); n != 5000 {
		t.Errorf("%v messages counted lost, want 5000", n)
	}
	if b := w.metric(t, `indexer_batches_total{source="redis"}`); b != batches || !w.alive() {
		t.Errorf("the worker goes on: %v batches, then %v; alive %v", batches, b, w.alive())
	}
	f.finish("trim-under-lag", time.Minute)
}

// The mid-dead-letter fault. NATS: a worker SIGKILLed after publishing
// its dead letters and before terminating the originals: they are
// delivered again and dead-lettered again, and the dead-letter stream
// stores each once (Nats-Msg-Id). Redis has no such step (one atomic
// script); the closest fault is the script's reply lost after it ran
// (three in four, through the proxy): the retried call finds the entries
// acknowledged and moves nothing twice. Either way the dead letters are
// exactly the poison.
func TestFaultMidDeadLetter(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{redisProxy: source == "redis"})
		ev := eventsOf(2000, 117, "events")
		poison := poisonSet(false)[:20]
		for i, p := range poison {
			f.publish(ev[i*100 : i*100+100])
			if err := f.publishPoison(p.data, p.ct); err != nil {
				t.Fatal(err)
			}
		}
		if source == "nats" {
			w := f.startWorker([]string{"INDEXER_FAILPOINT=mid-dead-letter-kill:2"})
			if code := w.exitCode(t, time.Minute); code != -1 {
				t.Fatalf("the worker exited %d, want killed by its failpoint", code)
			}
			f.faults.Add(1)
			if n := len(f.deadLetters()); n == 0 {
				t.Fatal("no dead letter was published before the crash: the test proves nothing")
			}
		} else {
			sha := scriptSHA(t, "../../internal/lua/stream_dead_letter.lua")
			// The first reply surely lost (the worker may dead-letter all
			// the poison in two or three calls, which p = 0.75 alone could
			// all miss), then three in four.
			deadLetter := func(req []byte) bool { return strings.Contains(string(req), sha) }
			f.rproxy.Set(testserver.Faults{DropReply: 1, ReplyTo: deadLetter})
			f.startWorker(nil)
			waitFor(t, time.Minute, "a dead-letter reply lost", func() bool { return f.rproxy.Stats().DroppedReplies >= 1 })
			f.rproxy.Set(testserver.Faults{DropReply: 0.75, ReplyTo: deadLetter})
		}
		f.startWorker(nil)
		f.finish("mid-dead-letter-"+source, time.Minute)
	})
}

// scriptSHA is the SHA1 EVALSHA names a script file by.
func scriptSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha1.Sum(b))
}
