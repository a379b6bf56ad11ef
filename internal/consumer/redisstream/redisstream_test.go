package redisstream

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/consumertest"
	"github.com/streamindex/indexer/internal/lua"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish/redispub"
)

// server is the package's one redis-server; every test uses its own keys.
var server *testserver.RedisServer

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		fmt.Fprintln(os.Stderr, "redis-server not found on PATH: install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis`; tests never skip for a missing server")
		os.Exit(1)
	}
	var err error
	server, err = testserver.StartRedis(context.Background(), testserver.RedisConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start redis-server:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

var testSeq atomic.Int64

// group is one test's stream, dead-letter stream and group, created as
// 'indexer setup' does and removed at cleanup.
type group struct {
	c                *redis.Client
	stream, dlq, grp string
	claimAfter       time.Duration
	log              *slog.Logger
}

func newGroup(t *testing.T, claimAfter time.Duration) *group {
	t.Helper()
	n := testSeq.Add(1)
	g := &group{
		c:          server.Client(t),
		stream:     fmt.Sprintf("test%d:events", n),
		dlq:        fmt.Sprintf("test%d:events:dlq", n),
		grp:        fmt.Sprintf("group%d", n),
		claimAfter: claimAfter,
		log:        testLogger(t),
	}
	ctx := context.Background()
	if err := lua.Load(ctx, g.c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Setup(ctx, g.c, g.stream, g.grp, "0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.c.Del(context.Background(), g.stream, g.dlq) })
	return g
}

// config returns the Source config of consumer name in g.
func (g *group) config(name string) Config {
	return Config{
		Stream: g.stream, Group: g.grp, Consumer: name, DeadLetterStream: g.dlq,
		ClaimMinIdle: g.claimAfter, ClaimEvery: g.claimAfter / 5, Logger: g.log,
	}
}

func (g *group) source(t *testing.T, name string) *Source {
	t.Helper()
	s, err := New(g.c, g.config(name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (g *group) publish(t *testing.T, msgs ...consumertest.Raw) []string {
	t.Helper()
	out := make([]redispub.Message, len(msgs))
	for i, m := range msgs {
		out[i] = redispub.Message{Data: m.Data, CT: m.ContentType}
		if f, err := event.ParseFormat(m.ContentType); err == nil {
			out[i].CT = f.String()
		} // else a content type writers must not use: publish it verbatim
	}
	return publishRaw(t, g.c, g.stream, out...)
}

func (g *group) pending(t *testing.T) int {
	t.Helper()
	p, err := g.c.XPending(context.Background(), g.stream, g.grp).Result()
	if err != nil {
		t.Fatalf("xpending: %v", err)
	}
	return int(p.Count)
}

// harness runs the conformance suite against groups of this package's server.
type harness struct{}

func (harness) Setup(t *testing.T, opts consumertest.Options) consumertest.Env {
	return env{newGroup(t, opts.ClaimAfter)}
}

type env struct{ g *group }

func (e env) NewSource(t *testing.T, name string) consumer.Source { return e.g.source(t, name) }
func (e env) Publish(t *testing.T, msgs ...consumertest.Raw)      { e.g.publish(t, msgs...) }
func (e env) Pending(t *testing.T) int                            { return e.g.pending(t) }

func (e env) DeadLetters(t *testing.T) []consumertest.Dead {
	t.Helper()
	xs, err := e.g.c.XRange(context.Background(), e.g.dlq, "-", "+").Result()
	if err != nil {
		t.Fatalf("xrange %s: %v", e.g.dlq, err)
	}
	out := make([]consumertest.Dead, len(xs))
	for i, x := range xs {
		n, err := strconv.Atoi(fmt.Sprint(x.Values["deliveries"]))
		if err != nil {
			t.Errorf("dead letter %s: deliveries %q", x.ID, x.Values["deliveries"])
		}
		out[i] = consumertest.Dead{
			OriginalID: fmt.Sprint(x.Values["original_id"]),
			Reason:     fmt.Sprint(x.Values["reason"]),
			Deliveries: n,
			Data:       []byte(fmt.Sprint(x.Values["data"])),
		}
	}
	return out
}

func TestConformance(t *testing.T) { consumertest.Run(t, harness{}) }

// testLogger logs to t until the test ends (a source's goroutine may
// outlive it briefly).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// publishRaw appends msgs to stream through the writer library and
// returns their entry ids.
func publishRaw(t testing.TB, c redis.UniversalClient, stream string, msgs ...redispub.Message) []string {
	t.Helper()
	p, err := redispub.New(c, redispub.Config{Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := p.PublishRaw(context.Background(), msgs)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ids
}
