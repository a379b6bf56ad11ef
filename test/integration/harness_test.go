// Package integration runs indexer end to end: real redis-server and
// nats-server, the built binary (with failpoints) as worker processes,
// faults injected, and the index compared with a model computed
// independently from the events the test published.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// bin is the indexer binary built with failpoints for this package;
// natsBin is nats-server, built from this module's dependency.
var bin, natsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "indexer-it")
	if err != nil {
		panic(err)
	}
	if bin, err = testserver.BuildIndexer(dir, "failpoints"); err != nil {
		panic(err)
	}
	// A nats-server process, for the fault tests that SIGKILL it.
	if natsBin, err = testserver.BuildNATSServer(dir); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's servers.
type env struct {
	t     *testing.T
	redis *testserver.RedisServer // nil with sentinels
	// sentinels, when set, is the Redis deployment instead of redis: a
	// master, a replica and three sentinels; rdb and the processes reach
	// the master through the sentinels.
	sentinels *testserver.SentinelGroup
	rdb       *redis.Client
	vars      []string // environment for every indexer process
	dir       string
}

func newEnv(t *testing.T, cfg testserver.RedisConfig) *env {
	t.Helper()
	srv := testserver.Redis(t, cfg)
	e := &env{t: t, redis: srv, rdb: srv.Client(t), dir: t.TempDir()}
	e.vars = []string{"INDEXER_REDIS_URL=" + srv.URL(), "INDEXER_LAYERS=*"}
	return e
}

// newSentinelEnv is newEnv with a Sentinel group: every process gets
// INDEXER_REDIS_URL=redis+sentinel://…
func newSentinelEnv(t *testing.T) *env {
	t.Helper()
	g := testserver.Sentinels(t)
	e := &env{t: t, sentinels: g, rdb: g.Client(t), dir: t.TempDir()}
	e.vars = []string{"INDEXER_REDIS_URL=" + g.URL(), "INDEXER_LAYERS=*"}
	return e
}

// redisURL is the URL of the environment's Redis.
func (e *env) redisURL() string {
	if e.sentinels != nil {
		return e.sentinels.URL()
	}
	return e.redis.URL()
}

// indexer runs a command to completion.
func (e *env) indexer(stdin string, args ...string) testserver.Result {
	e.t.Helper()
	return testserver.Run(e.t, bin, e.vars, stdin, args...)
}

// must runs a command that must succeed.
func (e *env) must(stdin string, args ...string) testserver.Result {
	e.t.Helper()
	r := e.indexer(stdin, args...)
	if r.Code != 0 {
		e.t.Fatalf("indexer %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// worker is a running indexer process.
type worker struct {
	name    string
	cmd     *exec.Cmd
	log     *os.File
	logPath string
	done    chan struct{}
	err     error

	mu          sync.Mutex
	metricsAddr string
}

// start starts 'indexer run' with args and extra environment.
func (e *env) start(name string, extra []string, args ...string) *worker {
	e.t.Helper()
	logPath := filepath.Join(e.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	full := append([]string{"run", "--consumer", name, "--metrics-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(append(os.Environ(), e.vars...), extra...)
	pr, pw := io.Pipe()
	cmd.Stdout = f
	cmd.Stderr = io.MultiWriter(f, pw)
	w := &worker{name: name, cmd: cmd, log: f, logPath: logPath, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				if addr, ok := rec["addr"].(string); ok && strings.Contains(fmt.Sprint(rec["msg"]), "metrics") {
					w.mu.Lock()
					w.metricsAddr = addr
					w.mu.Unlock()
				}
			}
		}
	}()
	go func() {
		w.err = cmd.Wait()
		pw.Close()
		f.Close()
		close(w.done)
	}()
	e.t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.done
		if e.t.Failed() {
			b, _ := os.ReadFile(logPath)
			e.t.Logf("--- log of %s (last 4 KiB) ---\n%s", name, tail(b, 4096))
		}
	})
	return w
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// patience is the factor patient applies: INDEXER_TEST_PATIENCE, default 5.
var patience = func() time.Duration {
	if n, err := strconv.Atoi(os.Getenv("INDEXER_TEST_PATIENCE")); err == nil && n > 0 {
		return time.Duration(n)
	}
	return 5
}()

// patient scales the bound of a wait on a condition (waitFor, waitLog, a
// drain, an exit): the bound only says when to give up and fail, and the
// machine running the suite may be busy with other work, so the bounds
// tests give — what a quiet machine needs, with a margin — are multiplied
// by INDEXER_TEST_PATIENCE (default 5). A passing test never waits
// longer for it.
func patient(d time.Duration) time.Duration { return d * patience }

// exitCode waits for the worker to exit and returns its exit code (-1 if
// killed by a signal).
func (w *worker) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	within = patient(within)
	select {
	case <-w.done:
	case <-time.After(within):
		t.Fatalf("worker %s did not exit within %v", w.name, within)
	}
	if w.err == nil {
		return 0
	}
	if ee, ok := w.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -2
}

// signal sends sig to the worker.
func (w *worker) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, w.name, err)
	}
}

// waitLog waits until the worker's log contains s.
func (w *worker) waitLog(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(patient(within))
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(w.logPath); bytes.Contains(b, []byte(s)) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("worker %s never logged %q within %v", w.name, s, patient(within))
}

// metric scrapes one sample (name with labels, as exposed) from /metrics.
func (w *worker) metric(t *testing.T, sample string) float64 {
	t.Helper()
	deadline := time.Now().Add(patient(10 * time.Second))
	for {
		w.mu.Lock()
		addr := w.metricsAddr
		w.mu.Unlock()
		if addr != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s never logged its metrics address", w.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + w.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", w.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, sample+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[len(sample):]), 64)
			return v
		}
	}
	return 0
}

// history is what the test published: the distinct events in writer
// order, and their model.
type history struct {
	events []event.Event
	model  *synth.Model
}

// generated returns the history 'indexer publish --generate n --seed s'
// publishes (publish uses synth with the same defaults).
func generated(n int, seed uint64) history {
	g := synth.New(synth.Config{Seed: seed, Database: "demo", Table: "events", DeleteRatio: 0.3})
	ev := g.Events(n)
	m := synth.NewModel()
	m.Apply(ev...)
	return history{events: ev, model: m}
}

// publish publishes the generated history through the binary.
func (e *env) publish(n int, seed uint64, args ...string) history {
	e.t.Helper()
	e.must("", append([]string{"publish", "--generate", strconv.Itoa(n), "--seed", strconv.FormatUint(seed, 10), "--quiet"}, args...)...)
	return generated(n, seed)
}

// groupState reads a Redis stream group's read position and pending count.
func (e *env) groupState(stream, group string) (entriesRead, lag, pending int64) {
	e.t.Helper()
	groups, err := e.rdb.XInfoGroups(context.Background(), stream).Result()
	if err != nil {
		e.t.Fatalf("xinfo groups: %v", err)
	}
	for _, g := range groups {
		if g.Name == group {
			return g.EntriesRead, g.Lag, g.Pending
		}
	}
	e.t.Fatalf("group %s missing", group)
	return
}

// waitRedisDrained waits until the group has read and acknowledged every
// entry of the stream.
func (e *env) waitRedisDrained(stream, group string, within time.Duration) {
	e.t.Helper()
	within = patient(within)
	deadline := time.Now().Add(within)
	for {
		n := e.rdb.XLen(context.Background(), stream).Val()
		read, lag, pending := e.groupState(stream, group)
		if read >= n && lag == 0 && pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not drained after %v: %d entries, %d read, lag %d, %d pending", within, n, read, lag, pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkIndex compares the index with the model: exactly the model's live
// files (with their sizes), counters equal to a recount, and every
// tombstone of the model present.
func (e *env) checkIndex(m *synth.Model) {
	e.t.Helper()
	ctx := context.Background()
	x, err := index.New(e.rdb, index.Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	for table, live := range m.Live {
		db, tbl, _ := strings.Cut(table, ":")
		got := map[string]index.Entry{}
		for en, err := range x.Query(ctx, index.Query{Database: db, Table: tbl}) {
			if err != nil {
				e.t.Fatal(err)
			}
			got[en.Path] = en
		}
		lost, unexpected, mismatched := 0, 0, 0
		for p, f := range live {
			en, ok := got[p]
			switch {
			case !ok:
				lost++
			case en.SizeBytes != f.SizeBytes || en.RowCount != f.RowCount || en.MinTime != f.MinTime || en.MaxTime != f.MaxTime:
				mismatched++
			}
		}
		for p := range got {
			if _, ok := live[p]; !ok {
				unexpected++
			}
		}
		tombs := e.rdb.ZRange(ctx, "idx:tomb:"+table, 0, -1).Val()
		tombSet := map[string]bool{}
		for _, p := range tombs {
			tombSet[p] = true
		}
		missingTombs := 0
		for p := range m.Tombstoned[table] {
			if !tombSet[p] {
				missingTombs++
			}
		}
		if lost+unexpected+mismatched+missingTombs > 0 {
			e.t.Errorf("%s: %d live in model, %d indexed: lost=%d unexpected=%d mismatched=%d missing_tombstones=%d",
				table, len(live), len(got), lost, unexpected, mismatched, missingTombs)
		}
	}
	rep, err := x.Check(ctx, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(rep.Drifts) > 0 {
		e.t.Errorf("check: %d drifts, first %s", len(rep.Drifts), rep.Drifts[0])
	}
	if r := e.indexer("", "check"); r.Code != 0 {
		e.t.Errorf("indexer check: exit %d: %s", r.Code, r.Stdout)
	}
}

// logicalIndex returns the index as a reader sees it, keyed by Redis key:
// hash fields (without last_event_ns), tombstone and registry members
// (without scores). Streams are left out.
func logicalIndex(t *testing.T, c *redis.Client) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]map[string]string{}
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			switch c.Type(ctx, k).Val() {
			case "hash":
				h := c.HGetAll(ctx, k).Val()
				delete(h, "last_event_ns")
				out[k] = h
			case "zset":
				m := map[string]string{}
				for _, v := range c.ZRange(ctx, k, 0, -1).Val() {
					m[v] = ""
				}
				out[k] = m
			case "set":
				m := map[string]string{}
				for _, v := range c.SMembers(ctx, k).Val() {
					m[v] = ""
				}
				out[k] = m
			}
		}
		if cursor = next; cursor == 0 {
			return out
		}
	}
}

// diffIndex describes the first difference between two logical indexes.
func diffIndex(a, b map[string]map[string]string) string {
	for k, ha := range a {
		hb, ok := b[k]
		if !ok {
			return "key " + k + " disappeared"
		}
		for f, v := range ha {
			if w, ok := hb[f]; !ok || w != v {
				return fmt.Sprintf("%s %s: %.60q -> %.60q", k, f, v, w)
			}
		}
		for f := range hb {
			if _, ok := ha[f]; !ok {
				return fmt.Sprintf("%s %s appeared", k, f)
			}
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return "key " + k + " appeared"
		}
	}
	return ""
}

// freePort returns a free loopback TCP port.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
