package integration

import (
	"context"
	"testing"
	"time"

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
