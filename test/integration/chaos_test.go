package integration

// The chaos run: per source, 50,000 events (INDEXER_SOAK_EVENTS for 'make
// soak': 1,000,000) of two tables with writer retries (duplicates) and 100
// poison messages, published while three workers apply them and a fault
// schedule hits everything at once, one fault every 300-600 ms:
//
//   - a worker SIGKILLed, and replaced by one that may carry a failpoint
//     that kills it at a random step (after fetch, before or after apply,
//     mid-dead-letter with NATS) within its first batches;
//   - a worker SIGSTOPped for 1.5-3 s (past claim-min-idle and AckWait),
//     then SIGCONTed: a zombie whose late work must change nothing;
//   - every connection between the workers and Redis (or NATS) reset;
//   - a burst of lost patch_index replies (the script ran, the reply was
//     lost) for half a second;
//   - SCRIPT FLUSH;
//   - twice in the run, Redis (AOF, appendfsync always) SIGKILLed and
//     restarted; with NATS also twice nats-server SIGKILLed and restarted
//     on the same store.
//
// Every 3 s a probe checks that every acknowledged event (of the last
// 20,000) is in effect in the index (checker_test.go, ackedNotApplied).
// Then the faults stop, the workers drain the stream, and the checker
// must find 0 lost (at the end and by the probes), 0 unexpected, 0 mismatches, 0 drift, nothing pending,
// and dead letters exactly the poison. --max-deliver is 10 here: a valid
// event that happens to be in flight at ten crashes would be dead-lettered
// by design, which the checker would report.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/testserver"
)

// chaosEvents is the number of events of a chaos run per source.
func chaosEvents(t *testing.T) int {
	if s := os.Getenv("INDEXER_SOAK_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			t.Fatalf("INDEXER_SOAK_EVENTS=%q: want a number of events, at least 1000", s)
		}
		return n
	}
	return 50_000
}

func TestChaos(t *testing.T) {
	bothSources(t, chaos)
}

func chaos(t *testing.T, source string) {
	n := chaosEvents(t)
	const minFaults = 60
	f := newFaultEnv(t, source, fopts{redis: testserver.RedisConfig{AOF: true}, maxDeliver: 10,
		redisProxy: true, natsProxy: true})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 301))
	seed := rng.Uint64()
	t.Logf("%s: %d events, seed %d", source, n, seed)

	// The history: two tables interleaved; 5 % of the events published a
	// second time, later, as a writer retrying would.
	ev := interleave(eventsOf(n/2, seed, "events"), eventsOf(n-n/2, seed+1, "metrics"))
	var msgs []event.Event
	for i := range ev {
		msgs = append(msgs, ev[i])
		if rng.Float64() < 0.05 {
			j := i - rng.IntN(min(i+1, 2000))
			msgs = append(msgs, ev[j])
		}
	}
	poison := poisonSet(false)

	for i := 0; i < 3; i++ {
		f.startWorker(nil)
	}

	// The writers: chunks of 500 at about 2,000 events a second, a poison
	// message after every few chunks.
	const rate = 2000.0
	published := make(chan struct{})
	go func() {
		defer close(published)
		start := time.Now()
		chunks := (len(msgs) + 499) / 500
		p := 0
		for c := 0; c < chunks; c++ {
			chunk := msgs[c*500 : min(c*500+500, len(msgs))]
			if err := f.tryPublish(t.Context(), chunk, 2*time.Minute); err != nil {
				t.Error(err)
				return
			}
			for ; p < len(poison) && p*chunks <= c*len(poison); p++ {
				for f.publishPoison(poison[p].data, poison[p].ct) != nil {
					if t.Context().Err() != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			if wait := time.Until(start.Add(time.Duration(float64((c+1)*500) / rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		for ; p < len(poison); p++ {
			for f.publishPoison(poison[p].data, poison[p].ct) != nil && t.Context().Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()

	// The probe: every 3 s, whether every acknowledged event is in effect.
	deletedEver := deletedPaths(ev)
	probeStop := make(chan struct{})
	var probes sync.WaitGroup
	probes.Add(1)
	go func() {
		defer probes.Done()
		for {
			select {
			case <-probeStop:
				return
			case <-time.After(3 * time.Second):
			}
			missing, checked, err := f.ackedNotApplied(t.Context(), deletedEver)
			if err != nil {
				t.Logf("probe skipped: %v", err) // a server is restarting
				continue
			}
			f.midLost.Add(int64(missing))
			t.Logf("probe: %d acknowledged events checked, %d not in effect", checked, missing)
		}
	}()

	// The fault schedule.
	var stopped sync.WaitGroup
	selfKill := map[*worker]bool{} // workers started with a killing failpoint
	steps := []string{"after-fetch", "before-apply", "after-apply"}
	if source == "nats" {
		steps = append(steps, "mid-dead-letter")
	}
	ctx := context.Background()
	pubFrac := func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return float64(f.sent) / float64(len(msgs)+len(poison))
	}
	redisRestarts, natsRestarts := 0, 0
	faults := func() int64 {
		return f.faults.Load() + f.rproxy.Stats().Faults() + func() int64 {
			if f.nproxy != nil {
				return f.nproxy.Stats().Faults()
			}
			return 0
		}()
	}
	for done := false; !done; {
		select {
		case <-published:
			done = faults() >= minFaults
		default:
		}
		time.Sleep(time.Duration(300+rng.IntN(300)) * time.Millisecond)
		frac := pubFrac()
		switch {
		case redisRestarts < 2 && frac > 0.3+0.35*float64(redisRestarts):
			redisRestarts++
			f.redis.Kill()
			f.fault("redis-kill")
			if err := f.redis.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		case source == "nats" && natsRestarts < 2 && frac > 0.45+0.35*float64(natsRestarts):
			natsRestarts++
			f.nats.Kill()
			f.fault("nats-server-kill")
			if err := f.nats.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		switch r := rng.IntN(100); {
		case r < 35: // SIGKILL a worker, replace it
			ws := f.running()
			if len(ws) == 0 {
				break
			}
			victim := ws[rng.IntN(len(ws))]
			victim.kill9()
			delete(selfKill, victim) // killed by the schedule, not by its failpoint
			f.fault("worker-kill")
			var env []string
			if rng.IntN(2) == 0 {
				env = []string{fmt.Sprintf("INDEXER_FAILPOINT=%s-kill:%d", steps[rng.IntN(len(steps))], 1+rng.IntN(3))}
			}
			w := f.startWorker(env)
			if env != nil {
				selfKill[w] = true
			}
		case r < 47: // a zombie
			ws := f.running()
			if len(ws) == 0 {
				break
			}
			w := ws[rng.IntN(len(ws))]
			if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				break
			}
			f.fault("worker-stop")
			stopped.Add(1)
			d := time.Duration(1500+rng.IntN(1500)) * time.Millisecond
			time.AfterFunc(d, func() { w.cmd.Process.Signal(syscall.SIGCONT); stopped.Done() })
		case r < 62: // reset the workers' connections
			f.rproxy.CutAll()
			if f.nproxy != nil && rng.IntN(2) == 0 {
				f.nproxy.CutAll()
			}
		case r < 75: // patch_index replies lost for a while
			f.rproxy.Set(testserver.Faults{DropReply: 0.3, ReplyTo: testserver.RedisCommandIs("EVALSHA", "EVAL")})
			time.AfterFunc(500*time.Millisecond, func() { f.rproxy.Set(testserver.Faults{}) })
		default:
			if f.rdb.ScriptFlush(ctx).Err() == nil {
				f.fault("script-flush")
			}
		}
		// Keep three workers: replace those a failpoint killed.
		for len(f.running()) < 3 {
			f.startWorker(nil)
		}
	}
	stopped.Wait()
	close(probeStop)
	probes.Wait()
	f.rproxy.Set(testserver.Faults{})
	for w := range selfKill {
		if !w.alive() && w.exitStatus() == -1 {
			f.fault("worker-failpoint") // its failpoint fired
		}
	}
	for len(f.running()) < 3 {
		f.startWorker(nil)
	}
	v := f.finish("chaos-"+source, 3*time.Minute)
	if v.Faults < minFaults {
		t.Errorf("only %d faults injected, want at least %d", v.Faults, minFaults)
	}
	if v.Events < n {
		t.Errorf("only %d messages published, want at least %d", v.Events, n)
	}
}
