package integration

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestOpsNATSReplay(t *testing.T) { testReplay(t, newOpsEnv(t, "nats", 30*time.Second)) }

func TestOpsNATSByTime(t *testing.T) {
	o := newOpsEnv(t, "nats", 30*time.Second)
	testByTime(t, o,
		func(time.Time) string { return "501" }, // published 500, then the time, then 300
		func() string {
			c, err := o.js().Consumer(context.Background(), "IDX_EVENTS", "indexer")
			if err != nil {
				t.Fatal(err)
			}
			return strconv.FormatUint(c.CachedInfo().Delivered.Stream+1, 10)
		})
}

func TestOpsNATSStatus(t *testing.T) { testStatus(t, newOpsEnv(t, "nats", 5*time.Second)) }

func TestOpsNATSDLQ(t *testing.T) { testDLQ(t, newOpsEnv(t, "nats", 30*time.Second)) }

// TestOpsNATSGC: the bound is the stream's first message's time (less the
// skew); the worker's periodic collection works with NATS too.
func TestOpsNATSGC(t *testing.T) {
	o := newOpsEnv(t, "nats", 30*time.Second)
	o.publish(100, 48)
	now := time.Now()
	o.tombstones(map[string]time.Time{
		"a": now.Add(-3 * time.Hour),
		"b": now.Add(-10 * time.Minute),
		"c": now.Add(-2 * time.Minute), // within the skew of the first message
		"d": now.Add(time.Second),      // younger than the first message
	})
	var rep gcOut
	o.jsonOut(&rep, "gc", "--source", "nats", "--tombstone-min-age", "0", "--format", "json")
	if rep.Removed != 2 || o.tombstonesLeft("abcd") != "cd" || rep.Oldest.IsZero() {
		t.Fatalf("gc: %+v, left %s", rep, o.tombstonesLeft("abcd"))
	}
	o.tombstones(map[string]time.Time{"a": now.Add(-3 * time.Hour)})
	w := o.start("w1", nil, o.workerArgs("--gc-interval", "200ms", "--tombstone-min-age", "0")...)
	w.waitLog(t, `"msg":"tombstones collected"`, 10*time.Second)
	deadline := time.Now().Add(patient(10 * time.Second))
	for o.tombstonesLeft("a") != "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if o.tombstonesLeft("abcd") != "cd" {
		t.Fatalf("the worker's collection left %s, want cd", o.tombstonesLeft("abcd"))
	}
}
