package integration

// The writer examples of the README run against real servers and their
// events are indexed by a worker without a dead letter: examples/writer
// (Go, the public packages only) on both sources, examples/python/publish.py
// (redis-py) on Redis.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/testserver"
)

// moduleRoot is the repository's root directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("find the module root: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// liveFiles counts the files of database.table in the index.
func (e *env) liveFiles(database, table string) int {
	e.t.Helper()
	x, err := index.New(e.rdb, index.Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, err := range x.Query(context.Background(), index.Query{Database: database, Table: table}) {
		if err != nil {
			e.t.Fatal(err)
		}
		n++
	}
	return n
}

// TestExampleWriter builds examples/writer and runs it against Redis and
// NATS: it prints the number published, the stream holds them, and a
// worker indexes them (500 events: 400 files created, 100 of them deleted
// again) with no dead letter.
func TestExampleWriter(t *testing.T) {
	t.Parallel()
	writer := filepath.Join(t.TempDir(), "writer")
	build := exec.Command("go", "build", "-o", writer, "./examples/writer")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/writer: %v\n%s", err, out)
	}
	bothSources(t, func(t *testing.T, source string) {
		e := newEnv(t, testserver.RedisConfig{})
		var js natsjs.JetStream
		if source == "nats" {
			srv := testserver.NATS(t)
			e.vars = append(e.vars, "INDEXER_NATS_URL="+srv.ClientURL())
			js, _ = natsjs.New(dialNATS(t, srv.ClientURL()))
		}
		e.vars = append(e.vars, "INDEXER_SOURCE="+source)
		e.must("", "setup")
		r := testserver.Run(t, writer, e.vars, "", "--events", "500")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "published 500 events to "+source {
			t.Fatalf("writer: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		e.start("w1", nil)
		if source == "redis" {
			if n := e.rdb.XLen(t.Context(), "idx:events").Val(); n != 500 {
				t.Errorf("%d entries in the stream, want 500", n)
			}
			e.waitRedisDrained("idx:events", "indexer", 2*time.Minute)
			if n := e.rdb.XLen(t.Context(), "idx:events:dlq").Val(); n != 0 {
				t.Errorf("%d dead letters", n)
			}
		} else {
			if _, n, err := streamState(t, js); err != nil || n != 500 {
				t.Errorf("%d messages in the stream (%v), want 500", n, err)
			}
			waitNATSDrained(t, js, 2*time.Minute)
			if s, err := js.Stream(t.Context(), "IDX_DLQ"); err != nil || s.CachedInfo().State.Msgs != 0 {
				t.Errorf("dead letters: %v", err)
			}
		}
		if n := e.liveFiles("demo", "writer"); n != 300 {
			t.Errorf("%d files indexed, want 300", n)
		}
		if r := e.indexer("", "check"); r.Code != 0 {
			t.Errorf("indexer check: exit %d\n%s", r.Code, r.Stdout)
		}
	})
}

// waitNATSDrained waits until the workers' consumer has nothing pending.
func waitNATSDrained(t *testing.T, js natsjs.JetStream, within time.Duration) {
	t.Helper()
	waitFor(t, within, "the consumer drained", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, "IDX_EVENTS", "indexer")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// python3WithRedis finds a python3 that can import redis: the one on
// PATH, else the system's.
func python3WithRedis(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		py, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if exec.Command(py, "-c", "import redis").Run() == nil {
			return py
		}
		tried = append(tried, py)
	}
	t.Fatalf("no python3 that can import redis (tried %v): install redis-py with 'sudo apt-get install -y python3-redis' (or .ci/run); tests never skip", tried)
	return ""
}

// TestExamplePython runs examples/python/publish.py (redis-py): a worker
// indexes its 500 events (300 live files) without a dead letter.
func TestExamplePython(t *testing.T) {
	t.Parallel()
	py := python3WithRedis(t)
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	script := filepath.Join(moduleRoot(t), "examples", "python", "publish.py")
	cmd := exec.Command(py, script, "--events", "500")
	cmd.Env = append(os.Environ(), e.vars...)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "published 500 events to idx:events" {
		t.Fatalf("publish.py: %v\n%s", err, out)
	}
	e.start("w1", nil, "--source", "redis")
	e.waitRedisDrained("idx:events", "indexer", 2*time.Minute)
	if n := e.rdb.XLen(t.Context(), "idx:events:dlq").Val(); n != 0 {
		t.Errorf("%d dead letters: the workers refused the Python events", n)
	}
	if n := e.liveFiles("demo", "python"); n != 300 {
		t.Errorf("%d files indexed, want 300", n)
	}
}
