package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer/jetstream"
)

// refusedEvent is a valid db8/t8 event of 2024-01-15: with a string at
// files:db8:t8:date=2024-01-15, the index refuses it (WRONGTYPE) at every
// delivery.
const refusedEvent = `{"v":1,"id":"refused-1","type":"file.created","time":1705327260000000000,"database":"db8","table":"t8",` +
	`"layer":"hot","path":"date=2024-01-15/hour=14/a.1.parquet","size_bytes":10,"row_count":1,` +
	`"chunk_time":1705327200000000000,"min_time":1705327200000000000,"max_time":1705327200000000001}` + "\n"

// natsJS connects to the test's nats-server, closing at t.Cleanup.
func (e *natsEnv) natsJS() natsjs.JetStream {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.ClientURL(), nats.Timeout(2*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	return js
}

// awaitDeadLetter waits until the dead-letter stream holds a message and
// returns the first. With vanish, it fails at once when the event vanished
// instead: delivered, no longer pending nor unread, and not dead-lettered
// (without, a message the server gave up on is waited for: the workers
// dead-letter it from the server's advisory).
func (e *natsEnv) awaitDeadLetter(js natsjs.JetStream, within time.Duration, vanish bool) deadLetter {
	e.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		dlq, err := js.Stream(ctx, "IDX_DLQ")
		if err != nil {
			e.t.Fatal(err)
		}
		info, err := dlq.Info(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if info.State.Msgs > 0 {
			break
		}
		c, err := js.Consumer(ctx, "IDX_EVENTS", "indexer")
		if err != nil {
			e.t.Fatal(err)
		}
		ci, err := c.Info(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if vanish && ci.Delivered.Stream >= 1 && ci.NumPending == 0 && ci.NumAckPending == 0 {
			// Read the dead letters once more: the dead letter is
			// published before the original is terminated.
			if info, err := dlq.Info(ctx); err == nil && info.State.Msgs > 0 {
				break
			}
			e.t.Fatalf("the event vanished: delivered, neither pending nor unread, and the dead-letter stream is empty (consumer max_deliver %d)",
				ci.Config.MaxDeliver)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no dead letter within %v (consumer: %d unread, %d unacknowledged)", within, ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return e.deadLetters(js)[0]
}

// deadLetters returns every dead letter.
func (e *natsEnv) deadLetters(js natsjs.JetStream) []deadLetter {
	e.t.Helper()
	list, err := jetstream.DeadLetters(e.t.Context(), js, "IDX_DLQ", 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// TestNATSMaxDeliverAboveConsumer is the reproduction of issue 12 item 1:
// setup with the default --max-deliver (5: the consumer's MaxDeliver is
// 6; a short --ack-wait only makes redeliveries quick), a worker with --max-deliver 10, an event the index refuses. The
// worker raises the consumer's MaxDeliver to 11 at start, so it sees the
// 11th delivery and dead-letters the event; before, the server stopped
// delivering it after 6 and it vanished without a trace.
func TestNATSMaxDeliverAboveConsumer(t *testing.T) {
	e := newNATSEnv(t, 500*time.Millisecond) // --max-deliver 5, the default
	js := e.natsJS()
	if err := e.rdb.Set(context.Background(), "files:db8:t8:date=2024-01-15", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	w := e.start("w1", nil, natsWorkerArgs("--max-deliver", "10")...)
	w.waitLog(t, "worker started", 30*time.Second)
	e.must(refusedEvent, "publish")

	d := e.awaitDeadLetter(js, 2*time.Minute, true)
	if d.Deliveries != 11 || !strings.Contains(d.Reason, "11 times") {
		t.Errorf("dead letter %+v, want 11 deliveries and the worker's reason", d)
	}
	if n := w.metric(t, `indexer_dead_letters_total{kind="max_deliver",source="nats"}`); n != 1 {
		t.Errorf("indexer_dead_letters_total{kind=max_deliver} = %v, want 1", n)
	}
}

// TestNATSServerGaveUpDeadLettered: the second line of defence. An
// operator lowers the consumer's max_deliver to 2 under two running
// workers (--max-deliver 5): the server stops delivering a refused event
// after 2 deliveries, and the workers dead-letter it from the server's
// advisory, once, with the server's reason, counted once and with one
// ALARM. A worker started afterwards raises max_deliver again.
func TestNATSServerGaveUpDeadLettered(t *testing.T) {
	e := newNATSEnv(t, 500*time.Millisecond) // --max-deliver 5, the default
	js := e.natsJS()
	ctx := context.Background()
	if err := e.rdb.Set(ctx, "files:db8:t8:date=2024-01-15", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	w1 := e.start("w1", nil, natsWorkerArgs()...)
	w2 := e.start("w2", nil, natsWorkerArgs()...)
	w1.waitLog(t, "worker started", 30*time.Second)
	w2.waitLog(t, "worker started", 30*time.Second)
	c, err := js.Consumer(ctx, "IDX_EVENTS", "indexer")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.MaxDeliver = 2
	if _, err := js.UpdateConsumer(ctx, "IDX_EVENTS", cc); err != nil {
		t.Fatal(err)
	}
	e.must(refusedEvent, "publish")

	d := e.awaitDeadLetter(js, time.Minute, false)
	if d.Deliveries != 2 || d.OriginalID != "1" || !strings.Contains(d.Reason, "the server stopped delivering it after 2 deliveries") {
		t.Errorf("dead letter %+v, want the server's reason after 2 deliveries", d)
	}
	kind := `indexer_dead_letters_total{kind="server_max_deliver",source="nats"}`
	deadline := time.Now().Add(10 * time.Second)
	for w1.metric(t, kind)+w2.metric(t, kind) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // counted right after the dead letter's PubAck
	}
	if n := w1.metric(t, kind) + w2.metric(t, kind); n != 1 {
		t.Errorf("%s summed over the workers = %v, want 1", kind, n)
	}
	alarms := 0
	for _, w := range []*worker{w1, w2} {
		b, _ := os.ReadFile(w.logPath)
		alarms += strings.Count(string(b), "ALARM: the server stopped delivering a message")
	}
	if alarms != 1 {
		t.Errorf("%d ALARM lines, want 1", alarms)
	}
	if ci, err := c.Info(ctx); err != nil || ci.NumAckPending != 0 || ci.NumPending != 0 {
		t.Errorf("consumer after the dead letter: %+v, %v; want nothing pending", ci, err)
	}
	if n := len(e.deadLetters(js)); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}

	w3 := e.start("w3", nil, natsWorkerArgs()...)
	w3.waitLog(t, "raised the consumer's max_deliver", 30*time.Second)
	if ci, err := c.Info(ctx); err != nil || ci.Config.MaxDeliver != 6 {
		t.Errorf("consumer max_deliver after a new worker started: %v, want 6", err)
	}
}
