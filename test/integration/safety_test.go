package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/testserver"
)

// TestRedisTrimmedBeforeFirstRead: the operator's sequence of issue 12
// item 2 — setup; publish 5,000 events trimming the stream to about 2,000;
// run — counts every trimmed entry as lost, with the alarm, and applies
// the rest.
func TestRedisTrimmedBeforeFirstRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	e.publish(5000, 21, "--source", "redis", "--maxlen", "2000")
	left := e.rdb.XLen(context.Background(), stream).Val()
	if left >= 5000 || left < 2000 {
		t.Fatalf("the stream holds %d entries after publishing 5000 with --maxlen 2000", left)
	}
	w := e.start("w1", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, 2*time.Minute)
	want := float64(5000 - left)
	waitFor(t, time.Minute, "the trimmed entries counted lost", func() bool {
		return w.metric(t, `indexer_lost_messages_total{source="redis"}`) >= want
	})
	if n := w.metric(t, `indexer_lost_messages_total{source="redis"}`); n != want {
		t.Errorf("indexer_lost_messages_total = %v, want %v", n, want)
	}
	if n := w.metric(t, `indexer_acks_total{source="redis"}`); n != float64(left) {
		t.Errorf("indexer_acks_total = %v, want the %d entries left", n, left)
	}
	w.waitLog(t, "ALARM: messages were trimmed from the stream before any worker read them", 10*time.Second)
}

// TestRedisEntryWithDataTwice: a stream entry carrying the field data
// twice (two valid events) is dead-lettered with a reason naming its
// fields; neither event reaches the index, and the entries around it are
// applied.
func TestRedisEntryWithDataTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	ctx := context.Background()
	e.must("", "setup", "--source", "redis")
	var creates []event.Event
	for _, ev := range eventsOf(50, 31, "dup") {
		if ev.Type == event.FileCreated {
			creates = append(creates, ev)
		}
	}
	a, err := event.Encode(event.JSON, &creates[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(event.JSON, &creates[1])
	if err != nil {
		t.Fatal(err)
	}
	h := e.publish(200, 32)
	if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", a, "data", b, "ct", "json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	h2 := e.publish(200, 33)
	e.start("w1", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, 2*time.Minute)

	dead := e.rdb.XRange(ctx, dlq, "-", "+").Val()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if r, _ := dead[0].Values["reason"].(string); !strings.Contains(r, `its fields: "data", "data", "ct"`) {
		t.Errorf("dead letter reason %q does not name the entry's fields", r)
	}
	if d, _ := dead[0].Values["data"].(string); d != string(a) {
		t.Errorf("dead letter data %q, want the entry's first data", d)
	}
	x, err := index.New(e.rdb, index.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range creates[:2] {
		if en, err := x.Get(ctx, "demo", "dup", ev.File.Path); err == nil {
			t.Errorf("%s reached the index: %+v", ev.File.Path, en)
		}
	}
	m := h.model
	m.Apply(h2.events...)
	e.checkIndex(m)
}
