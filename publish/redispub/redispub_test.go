package redispub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/redispub"
)

// redisAddr is the redis-server the examples use (TestMain starts it).
var redisAddr string

func TestMain(m *testing.M) {
	srv, err := testserver.StartRedis(context.Background(), testserver.RedisConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "redis-server:", err, "(install it with 'sudo apt-get install -y redis-server')")
		os.Exit(1)
	}
	redisAddr = srv.Addr()
	code := m.Run()
	srv.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func events(n int, seed uint64) []event.Event {
	return synth.New(synth.Config{Seed: seed, Database: "metrics", Table: "cpu", DeleteRatio: 0.3}).Events(n)
}

// entries reads the stream's entries: the decoded events by id (and how
// often each id is there), checking the fields of each entry.
func entries(t *testing.T, c redis.Cmdable, stream string, f event.Format) map[string]int {
	t.Helper()
	msgs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range msgs {
		if ct := redispub.CT(f); ct == "" && len(m.Values) != 1 || ct != "" && (m.Values["ct"] != ct || len(m.Values) != 2) {
			t.Fatalf("entry %s: fields %v, want data and, unless JSON, ct=%s", m.ID, m.Values, f)
		}
		e, err := event.Decode(f, []byte(m.Values["data"].(string)))
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		out[e.ID]++
	}
	return out
}

func client(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPublish(t *testing.T) {
	ctx := context.Background()
	c := client(t, testserver.Redis(t).Addr())
	for _, f := range []event.Format{event.JSON, event.MsgPack} {
		stream := "s:" + f.String()
		p, err := redispub.New(c, redispub.Config{Stream: stream, Pipeline: 37, Options: publish.Options{Format: f}})
		if err != nil {
			t.Fatal(err)
		}
		ev := events(500, 1)
		if err := p.Publish(ctx, ev...); err != nil {
			t.Fatal(err)
		}
		got := entries(t, c, stream, f)
		if len(got) != len(ev) {
			t.Errorf("%v: %d entries, want %d", f, len(got), len(ev))
		}
		for _, e := range ev {
			if got[e.ID] != 1 {
				t.Errorf("%v: event %s stored %d times", f, e.ID, got[e.ID])
			}
		}
	}
}

// TestPublishInvalid: an invalid event fails the call before anything is
// sent, naming the event and the field; so does one the workers' rules
// (layers) refuse.
func TestPublishInvalid(t *testing.T) {
	ctx := context.Background()
	c := client(t, testserver.Redis(t).Addr())
	p, err := redispub.New(c, redispub.Config{Options: publish.Options{Rules: event.Config{Layers: []string{"hot"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ev := events(10, 2)
	for i := range ev {
		ev[i].Files(func(f *event.File, _ bool) { f.Layer = "hot" })
	}
	ev[6].Database = "a:b"
	err = p.Publish(ctx, ev...)
	var ee *publish.EventError
	var ve *event.ValidationError
	if !errors.As(err, &ee) || ee.Index != 6 || ee.ID != ev[6].ID || !errors.As(err, &ve) || ve.Field != "database" {
		t.Errorf("Publish with event 6 invalid: %v", err)
	}
	ev[6].Database = "metrics"
	ev[2].File.Layer = "cold"
	if err := p.Publish(ctx, ev...); !errors.As(err, &ve) || ve.Field != "layer" {
		t.Errorf("Publish with a layer the rules refuse: %v", err)
	}
	if n := c.XLen(ctx, redispub.DefaultStream).Val(); n != 0 {
		t.Errorf("%d entries stored, want none", n)
	}
}

// logBuffer is a slog destination tests can read while it is written.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublishRetriesReadonly: a server that became a replica refuses
// writes (READONLY), as after a failover until the client finds the new
// master; Publish retries until it takes writes again, then stores
// everything once.
func TestPublishRetriesReadonly(t *testing.T) {
	ctx := context.Background()
	srv := testserver.Redis(t)
	c := client(t, srv.Addr())
	if err := c.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil { // a master that never answers
		t.Fatal(err)
	}
	var log logBuffer
	p, err := redispub.New(c, redispub.Config{Options: publish.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	ev := events(300, 3)
	done := make(chan error)
	go func() { done <- p.Publish(ctx, ev...) }()
	waitUntil(t, "a retry after READONLY", func() bool { return strings.Contains(log.String(), "READONLY") })
	if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := entries(t, c, redispub.DefaultStream, event.JSON); len(got) != len(ev) {
		t.Errorf("%d distinct events stored, want %d", len(got), len(ev))
	}
}

// TestPublishRetriesConnectionLoss: connections reset every few KiB;
// every event is stored (some maybe twice: their replies were lost).
func TestPublishRetriesConnectionLoss(t *testing.T) {
	ctx := context.Background()
	srv := testserver.Redis(t)
	proxy := testserver.NewProxy(t, srv.Addr())
	proxy.Set(testserver.Faults{ResetAfter: 64 << 10})
	c := client(t, proxy.Addr())
	p, err := redispub.New(c, redispub.Config{Pipeline: 100})
	if err != nil {
		t.Fatal(err)
	}
	ev := events(3000, 4)
	if err := p.Publish(ctx, ev...); err != nil {
		t.Fatal(err)
	}
	if proxy.Stats().Resets == 0 {
		t.Fatal("no connection was reset: the test tested nothing")
	}
	got := entries(t, client(t, srv.Addr()), redispub.DefaultStream, event.JSON)
	if len(got) != len(ev) {
		t.Errorf("%d distinct events stored, want %d", len(got), len(ev))
	}
	t.Logf("%d resets, %d entries for %d events", proxy.Stats().Resets, c.XLen(ctx, redispub.DefaultStream).Val(), len(ev))
}

func TestMaxLen(t *testing.T) {
	ctx := context.Background()
	c := client(t, testserver.Redis(t).Addr())
	p, err := redispub.New(c, redispub.Config{MaxLen: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, events(2000, 5)...); err != nil {
		t.Fatal(err)
	}
	if n := c.XLen(ctx, redispub.DefaultStream).Val(); n < 100 || n > 300 {
		t.Errorf("%d entries after publishing 2000 with MaxLen ~100", n)
	}
	if _, err := redispub.New(c, redispub.Config{MaxLen: -1}); err == nil {
		t.Error("New accepted MaxLen -1")
	}
}

func TestPublishRaw(t *testing.T) {
	ctx := context.Background()
	c := client(t, testserver.Redis(t).Addr())
	p, err := redispub.New(c, redispub.Config{Stream: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := p.PublishRaw(ctx, []redispub.Message{{Data: []byte("not json"), CT: "json"}, {Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	msgs := c.XRange(ctx, "raw", "-", "+").Val()
	if len(ids) != 2 || len(msgs) != 2 || msgs[0].ID != ids[0] || msgs[1].ID != ids[1] {
		t.Fatalf("ids %v, entries %v", ids, msgs)
	}
	if msgs[0].Values["data"] != "not json" || msgs[0].Values["ct"] != "json" || len(msgs[1].Values) != 1 {
		t.Errorf("entries %v", msgs)
	}
}

// TestPublishPermanentFailure: a key of another type is not retried.
func TestPublishPermanentFailure(t *testing.T) {
	ctx := context.Background()
	c := client(t, testserver.Redis(t).Addr())
	c.Set(ctx, "notastream", "x", 0)
	p, err := redispub.New(c, redispub.Config{Stream: "notastream"})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Publish(ctx, events(3, 6)...)
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || publish.Transient(err) {
		t.Errorf("Publish to a string key: %v", err)
	}
}

func TestClose(t *testing.T) {
	c := client(t, testserver.Redis(t).Addr())
	p, _ := redispub.New(c, redispub.Config{})
	p.Close()
	if err := p.Publish(context.Background(), events(1, 7)...); !errors.Is(err, publish.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Errorf("Close closed the caller's client: %v", err)
	}
}

// TestWriterACL: the README's writer user may XADD to the events stream
// and nothing else.
func TestWriterACL(t *testing.T) {
	ctx := context.Background()
	srv := testserver.Redis(t)
	admin := client(t, srv.Addr())
	if err := admin.Do(ctx, "ACL", "SETUSER", "writer", "on", ">writer-secret", "resetkeys", "~idx:events",
		"resetchannels", "-@all", "+xadd").Err(); err != nil {
		t.Fatal(err)
	}
	w := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "writer", Password: "writer-secret"})
	defer w.Close()
	p, err := redispub.New(w, redispub.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ev := events(50, 8)
	if err := p.Publish(ctx, ev...); err != nil {
		t.Fatalf("the writer cannot publish: %v", err)
	}
	if got := entries(t, admin, redispub.DefaultStream, event.JSON); len(got) != len(ev) {
		t.Errorf("%d events stored, want %d", len(got), len(ev))
	}
	for name, err := range map[string]error{
		"XRANGE":              w.XRange(ctx, "idx:events", "-", "+").Err(),
		"DEL":                 w.Del(ctx, "idx:events").Err(),
		"XTRIM":               w.XTrimMaxLen(ctx, "idx:events", 0).Err(),
		"XADD to another key": w.XAdd(ctx, &redis.XAddArgs{Stream: "idx:events:dlq", Values: []any{"data", "x"}}).Err(),
		"HSET":                w.HSet(ctx, "files:metrics:cpu:date=2024-01-15", "x", "y").Err(),
		"GET":                 w.Get(ctx, "idx:events").Err(),
	} {
		if !redis.HasErrorPrefix(err, "NOPERM") {
			t.Errorf("%s as the writer: %v, want NOPERM", name, err)
		}
	}
	p2, _ := redispub.New(w, redispub.Config{Stream: "other"})
	if err := p2.Publish(ctx, ev[:1]...); err == nil || !strings.Contains(err.Error(), "NOPERM") || publish.Transient(err) {
		t.Errorf("publish to another stream as the writer: %v, want a NOPERM that is not retried", err)
	}
}
