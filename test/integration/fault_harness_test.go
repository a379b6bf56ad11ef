package integration

// The harness of the fault-injection suite (fault_*_test.go, chaos_test.go):
// one test's servers (redis-server, and for NATS a nats-server process that
// can be SIGKILLed), TCP proxies between the workers and the servers, a
// publisher that records what it published, and the workers as
// subprocesses. The checker is in checker_test.go.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/natspub"
	"github.com/streamindex/indexer/publish/redispub"
)

// fopts configures a fault environment. Zero fields mean the defaults.
type fopts struct {
	redis testserver.RedisConfig
	// ackWait is the NATS consumer's AckWait (default 2 s); claimMinIdle
	// the Redis workers' --claim-min-idle (default 1 s).
	ackWait, claimMinIdle time.Duration
	// maxDeliver is the workers' (and the NATS consumer's) --max-deliver
	// (default 5).
	maxDeliver int
	// redisProxy and natsProxy put a fault proxy between the workers and
	// Redis, and between the workers and NATS. Commands the test runs
	// (setup, publish, replay, dlq, check) always reach the servers
	// directly.
	redisProxy, natsProxy bool
	// natsCluster runs NATS as a 3-server in-process cluster (setup then
	// creates R3 streams) instead of one nats-server process; natsProxy
	// does not apply.
	natsCluster bool
	// sentinel replaces the Redis server with a Sentinel group (see
	// newSentinelEnv); redis and redisProxy do not apply.
	sentinel bool
	// waitReplicas is the workers' --redis-wait-replicas, and the
	// replicas the test's Redis publisher waits for (WAIT) before it
	// counts an event as published.
	waitReplicas int
}

// fenv is one fault test's servers, proxies, workers and record of what was
// published.
type fenv struct {
	*env
	source  string
	opts    fopts
	nats    *testserver.NATSProcess // with source nats
	cluster *testserver.NATSCluster // with source nats and natsCluster
	rproxy  *testserver.Proxy       // workers -> Redis, when asked
	nproxy  *testserver.Proxy       // workers -> NATS, when asked
	wvars   []string                // the workers' environment: URLs through the proxies

	nc      *nats.Conn // the test's own connection to NATS (reconnects forever)
	js      natsjs.JetStream
	pubNATS *natspub.Publisher // the writer library, retrying for 2 minutes
	pubRds  *redispub.Publisher
	pubRdb  *redis.Client // pubRds's client, for the poison (one attempt at a time)

	mu     sync.Mutex
	model  *synth.Model // what the distinct valid events published give
	sent   int          // messages published: valid, duplicates and poison
	poison [][]byte     // payloads published that must end as dead letters
	// unconfirmed are poison payloads (by digest) whose Redis publish
	// failed: a retry first looks whether the entry was stored anyway.
	unconfirmed map[[32]byte]bool
	workers     []*worker
	faults      atomic.Int64   // faults the test injected (proxy faults are added by the checker)
	kinds       map[string]int // faults by kind, for the log
	midLost     atomic.Int64   // acknowledged events found not in effect while the workers ran
	nameSeq     atomic.Int64
	drainFor    time.Duration // the last drain's duration
}

func newFaultEnv(t *testing.T, source string, o fopts) *fenv {
	t.Helper()
	if o.ackWait == 0 {
		o.ackWait = 2 * time.Second
	}
	if o.claimMinIdle == 0 {
		o.claimMinIdle = time.Second
	}
	if o.maxDeliver == 0 {
		o.maxDeliver = 5
	}
	var e *env
	if o.sentinel {
		e = newSentinelEnv(t)
	} else {
		e = newEnv(t, o.redis)
	}
	f := &fenv{env: e, source: source, opts: o, model: synth.NewModel()}
	redisURL := f.redisURL()
	if o.redisProxy {
		f.rproxy = testserver.NewProxy(t, f.redis.Addr())
		redisURL = "redis://" + f.rproxy.Addr() + "/0"
	}
	f.wvars = []string{"INDEXER_REDIS_URL=" + redisURL}
	// The publisher's own client: writing the 64 MB poison payload on a
	// loaded machine takes longer than go-redis's default 3 s timeouts.
	// With Sentinel, the environment's failover client follows the master.
	pc := f.rdb
	if !o.sentinel {
		pc = redis.NewClient(&redis.Options{Addr: f.redis.Addr(), ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
		t.Cleanup(func() { pc.Close() })
	}
	f.pubRdb = pc
	var err error
	if f.pubRds, err = redispub.New(pc, redispub.Config{Options: publish.Options{RetryFor: 2 * time.Minute},
		WaitReplicas: o.waitReplicas, WaitTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if source == "nats" {
		var serverURL, natsURL string
		if o.natsCluster {
			f.cluster = testserver.StartNATSCluster(t, 3)
			serverURL, natsURL = f.cluster.URL(), f.cluster.URL()
		} else {
			f.nats = testserver.StartNATSProcess(t, natsBin)
			serverURL, natsURL = f.nats.ClientURL(), f.nats.ClientURL()
			if o.natsProxy {
				f.nproxy = testserver.NewProxy(t, f.nats.Addr())
				natsURL = "nats://" + f.nproxy.Addr()
			}
		}
		f.vars = append(f.vars, "INDEXER_NATS_URL="+serverURL, "INDEXER_SOURCE=nats")
		f.wvars = append(f.wvars, "INDEXER_NATS_URL="+natsURL)
		f.nc, err = nats.Connect(serverURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
			nats.Timeout(2*time.Second), nats.ReconnectBufSize(-1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.nc.Close)
		if f.js, err = natsjs.New(f.nc); err != nil {
			t.Fatal(err)
		}
		if f.pubNATS, err = natspub.New(f.js, natspub.Config{AckTimeout: 5 * time.Second, Options: publish.Options{RetryFor: 2 * time.Minute}}); err != nil {
			t.Fatal(err)
		}
		f.must("", "setup", "--source", "nats", "--ack-wait", o.ackWait.String(),
			"--max-deliver", strconv.Itoa(o.maxDeliver), "--workers", "6")
	} else {
		f.must("", "setup", "--source", "redis")
	}
	return f
}

// fault counts one injected fault of a kind.
func (f *fenv) fault(kind string) {
	f.faults.Add(1)
	f.mu.Lock()
	if f.kinds == nil {
		f.kinds = map[string]int{}
	}
	f.kinds[kind]++
	f.mu.Unlock()
}

// args prefixes a command line with --source.
func (f *fenv) args(cmd string, extra ...string) []string {
	return append([]string{cmd, "--source", f.source}, extra...)
}

// workerArgs are the flags of every worker of the environment.
func (f *fenv) workerArgs(extra ...string) []string {
	a := []string{"--source", f.source, "--max-deliver", strconv.Itoa(f.opts.maxDeliver)}
	if f.source == "redis" {
		a = append(a, "--claim-min-idle", f.opts.claimMinIdle.String())
	}
	if f.opts.waitReplicas > 0 {
		a = append(a, "--redis-wait-replicas", strconv.Itoa(f.opts.waitReplicas), "--redis-wait-timeout", "1s")
	}
	return append(a, extra...)
}

// startWorker starts a worker named w<n>, with extra environment (e.g. a
// failpoint) and flags.
func (f *fenv) startWorker(extraEnv []string, args ...string) *worker {
	f.t.Helper()
	name := fmt.Sprintf("w%d", f.nameSeq.Add(1))
	w := f.start(name, append(append([]string(nil), f.wvars...), extraEnv...), f.workerArgs(args...)...)
	f.mu.Lock()
	f.workers = append(f.workers, w)
	f.mu.Unlock()
	return w
}

// running returns the workers whose process has not exited.
func (f *fenv) running() []*worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*worker
	for _, w := range f.workers {
		if w.alive() {
			out = append(out, w)
		}
	}
	return out
}

// alive reports whether the worker's process has not exited.
func (w *worker) alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// exitStatus is the exit code of a worker that exited (-1: killed by a
// signal).
func (w *worker) exitStatus() int {
	<-w.done
	if w.err == nil {
		return 0
	}
	if ee, ok := w.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -2
}

// kill9 SIGKILLs the worker and waits for it to exit.
func (w *worker) kill9() {
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
}

// vmHWM is the worker's peak resident set size in bytes (VmHWM), read
// from /proc while it runs.
func (w *worker) vmHWM(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the status of %s: %v", w.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in the status of %s", w.name)
	return 0
}

// sum adds a metric sample over the running workers.
func (f *fenv) sum(sample string) float64 {
	var n float64
	for _, w := range f.running() {
		n += w.metric(f.t, sample)
	}
	return n
}

// eventsOf returns n synthetic events of demo.<table>.
func eventsOf(n int, seed uint64, table string) []event.Event {
	return synth.New(synth.Config{Seed: seed, Database: "demo", Table: table, DeleteRatio: 0.3}).Events(n)
}

// interleave merges histories, taking one event of each in turn, so that
// every batch mixes the tables; each history keeps its order.
func interleave(hs ...[]event.Event) []event.Event {
	var out []event.Event
	for i := 0; ; i++ {
		more := false
		for _, h := range hs {
			if i < len(h) {
				out = append(out, h[i])
				more = true
			}
		}
		if !more {
			return out
		}
	}
}

// publish publishes events (JSON) through the writer library, which
// retries while the server is down (a retried Redis publish may store an
// event twice, which the index absorbs; NATS de-duplicates by event id),
// and adds them to the model.
func (f *fenv) publish(events []event.Event) {
	f.t.Helper()
	if err := f.tryPublish(f.t.Context(), events, 2*time.Minute); err != nil {
		f.t.Fatal(err)
	}
}

// tryPublish publishes events in chunks of 500 within the time given.
func (f *fenv) tryPublish(ctx context.Context, events []event.Event, within time.Duration) error {
	f.mu.Lock()
	f.model.Apply(events...)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, patient(within))
	defer cancel()
	for len(events) > 0 {
		n := min(len(events), 500)
		var err error
		if f.source == "nats" {
			err = f.pubNATS.Publish(ctx, events[:n]...)
		} else {
			err = f.pubRds.Publish(ctx, events[:n]...)
		}
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		f.mu.Lock()
		f.sent += n
		f.mu.Unlock()
		events = events[n:]
	}
	return nil
}

// publishPoison publishes one malformed message as it is, with content
// type ct ("json" or "msgpack"), and expects it among the dead letters.
//
// Callers retry it until it succeeds, so a retry must not store the
// message twice (the checker expects one dead letter per poison): NATS
// de-duplicates it by a Nats-Msg-Id of the call and the payload; with
// Redis, a publish whose reply was lost (Redis killed, a timeout under
// load) counts as done if the entry is in the stream.
func (f *fenv) publishPoison(data []byte, ct string) error {
	ctx, cancel := context.WithTimeout(f.t.Context(), 2*time.Minute)
	defer cancel()
	var err error
	sum := sha256.Sum256(append([]byte(ct+"\n"), data...))
	if f.source == "nats" {
		// The id names this call (the poison published so far: a retry
		// shares it) and the payload: the same payload published twice
		// on purpose is stored twice.
		f.mu.Lock()
		id := fmt.Sprintf("poison-%d-%x", len(f.poison), sum[:16])
		f.mu.Unlock()
		format, _ := event.ParseFormat(ct)
		err = f.pubNATS.PublishMsgs(ctx, []*nats.Msg{{Subject: "idx.events.demo.events", Data: data, Header: nats.Header{
			"Content-Type": {format.ContentType()}, natsjs.MsgIDHeader: {id}}}})
	} else {
		f.mu.Lock()
		retried := f.unconfirmed[sum]
		f.mu.Unlock()
		if !retried || !f.inStreamTail(ctx, data, ct) {
			err = f.pubRdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", data, "ct", ct}}).Err()
		}
		f.mu.Lock()
		if err != nil {
			if f.unconfirmed == nil {
				f.unconfirmed = map[[32]byte]bool{}
			}
			f.unconfirmed[sum] = true
		} else {
			delete(f.unconfirmed, sum)
		}
		f.mu.Unlock()
	}
	if err == nil {
		f.mu.Lock()
		f.sent++
		f.poison = append(f.poison, data)
		f.mu.Unlock()
	}
	return err
}

// inStreamTail reports whether one of the Redis stream's last 100
// entries holds data with content type ct.
func (f *fenv) inStreamTail(ctx context.Context, data []byte, ct string) bool {
	xs, err := f.pubRdb.XRevRangeN(ctx, stream, "+", "-", 100).Result()
	if err != nil {
		return false
	}
	for _, x := range xs {
		if x.Values["data"] == string(data) && x.Values["ct"] == ct {
			return true
		}
	}
	return false
}

// deadLetter is a dead letter of either source.
type deadLetter = consumer.StoredDeadLetter

// deadLetters returns every dead letter.
func (f *fenv) deadLetters() []deadLetter {
	f.t.Helper()
	var dead []deadLetter
	var err error
	if f.source == "nats" {
		dead, err = jetstream.DeadLetters(f.t.Context(), f.js, "IDX_DLQ", 0, 1<<20)
	} else {
		dead, err = redisstream.DeadLetters(f.t.Context(), f.rdb, dlq, "", 1<<20)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return dead
}

// modelOf is the model of histories.
func modelOf(hs ...[]event.Event) *synth.Model {
	m := synth.NewModel()
	for _, h := range hs {
		m.Apply(h...)
	}
	return m
}

// natsConsumer returns the durable consumer's info.
func (f *fenv) natsConsumer(ctx context.Context) (*natsjs.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := f.js.Consumer(ctx, "IDX_EVENTS", group)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// backlog returns how many messages the workers' group has not read and
// how many it read and did not acknowledge; with Redis, "read" means up
// to the stream's last entry (entries trimmed before anyone read them do
// not count: see TestFaultTrimUnderLag).
func (f *fenv) backlog() (unread, pending int64, err error) {
	ctx := f.t.Context()
	if f.source == "nats" {
		info, err := f.natsConsumer(ctx)
		if err != nil {
			return 0, 0, err
		}
		return int64(info.NumPending), int64(info.NumAckPending), nil
	}
	groups, err := f.rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return 0, 0, err
	}
	for _, g := range groups {
		if g.Name != group {
			continue
		}
		after, err := f.rdb.XRangeN(ctx, stream, "("+g.LastDeliveredID, "+", 1000).Result()
		if err != nil {
			return 0, 0, err
		}
		return int64(len(after)), g.Pending, nil
	}
	return 0, 0, errors.New("no group " + group)
}

// waitDrained waits until the group has read and acknowledged everything
// the stream holds; it reports whether it did within the time, and
// records how long it took.
func (f *fenv) waitDrained(within time.Duration) bool {
	within = patient(within)
	start := time.Now()
	defer func() { f.drainFor = time.Since(start) }()
	deadline := start.Add(within)
	for {
		unread, pending, err := f.backlog()
		if err == nil && unread == 0 && pending == 0 {
			return true
		}
		if time.Now().After(deadline) {
			f.t.Errorf("not drained after %v: %d unread, %d unacknowledged (%v)", within, unread, pending, err)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls cond every 50 ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	within = patient(within)
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports whether the worker's /readyz says ready.
func (w *worker) ready(t *testing.T) bool {
	t.Helper()
	w.metric(t, "go_goroutines") // waits for the metrics address
	w.mu.Lock()
	addr := w.metricsAddr
	w.mu.Unlock()
	c := http2xx("http://" + addr + "/readyz")
	return c
}

// finish drains, checks the index against the model, prints the summary
// line and fails the test unless the checker found nothing wrong.
func (f *fenv) finish(scenario string, drainWithin time.Duration) verdict {
	f.t.Helper()
	f.waitDrained(drainWithin)
	v := f.check(scenario, "")
	v.assertClean(f.t)
	return v
}
