package integration

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/natsserver"
	"github.com/streamindex/indexer/internal/testserver"
)

// natsEnv is an env with an in-process nats-server.
type natsEnv struct {
	*env
	nats *natsserver.Server
}

func newNATSEnv(t *testing.T, ackWait time.Duration) *natsEnv {
	t.Helper()
	e := &natsEnv{env: newEnv(t, testserver.RedisConfig{}), nats: testserver.NATS(t)}
	e.vars = append(e.vars, "INDEXER_NATS_URL="+e.nats.ClientURL(), "INDEXER_SOURCE=nats")
	e.must("", "setup", "--ack-wait", ackWait.String(), "--max-deliver", "5")
	return e
}

func natsWorkerArgs(extra ...string) []string { return append([]string{"--source", "nats"}, extra...) }

// consumerState reads the durable consumer's unread and unacknowledged
// message counts.
func (e *natsEnv) consumerState() (pending uint64, ackPending int, err error) {
	return natsConsumerState(e.nats.ClientURL())
}

// natsConsumerState reads the unread and unacknowledged message counts of
// the durable consumer of the NATS server at url.
func natsConsumerState(url string) (pending uint64, ackPending int, err error) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, "IDX_EVENTS", "indexer")
	if err != nil {
		return 0, 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.NumPending, info.NumAckPending, nil
}

// waitNATSDrained waits until the consumer has delivered and had
// acknowledged every message.
func (e *natsEnv) waitNATSDrained(within time.Duration) {
	e.t.Helper()
	within = patient(within)
	deadline := time.Now().Add(within)
	for {
		pending, ackPending, err := e.consumerState()
		if err == nil && pending == 0 && ackPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not drained after %v: %d unread, %d unacknowledged (%v)", within, pending, ackPending, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNATSThreeWorkers: 100,000 events via NATS, three worker processes:
// the index equals the model.
func TestNATSThreeWorkers(t *testing.T) {
	e := newNATSEnv(t, 30*time.Second)
	for i := 1; i <= 3; i++ {
		e.start(fmt.Sprintf("w%d", i), nil, natsWorkerArgs()...)
	}
	h := e.publish(100_000, 31, "--duplicate-ratio", "0.1")
	e.waitNATSDrained(3 * time.Minute)
	e.checkIndex(h.model)
}

// TestNATSKill9HoldingBatch: a worker holding an applied, unacknowledged
// batch is killed; the server redelivers it after AckWait to the others;
// the index equals the model and nothing stays pending.
func TestNATSKill9HoldingBatch(t *testing.T) {
	ackWait := 2 * time.Second
	e := newNATSEnv(t, ackWait)
	h := e.publish(20_000, 32)
	victim := e.start("w1", []string{"INDEXER_FAILPOINT=after-apply-stall:2", "INDEXER_FAILPOINT_STALL=1h"}, natsWorkerArgs()...)
	victim.waitLog(t, "failpoint: after-apply: stalling", 30*time.Second)
	if _, ackPending, err := e.consumerState(); err != nil || ackPending == 0 {
		t.Fatalf("the victim holds %d unacknowledged messages (%v); the test would prove nothing", ackPending, err)
	}
	victim.signal(t, syscall.SIGKILL)
	w2 := e.start("w2", nil, natsWorkerArgs()...)
	e.waitNATSDrained(2 * time.Minute)
	e.checkIndex(h.model)
	if n := w2.metric(t, `indexer_redeliveries_total{source="nats"}`); n == 0 {
		t.Error("no redelivery was seen: the victim's batch was not redelivered")
	}
}

// TestNATSSlowBatchNotRedelivered: a batch applied for three times AckWait
// (a slow Redis) is not redelivered to another worker, thanks to
// InProgress.
func TestNATSSlowBatchNotRedelivered(t *testing.T) {
	ackWait := time.Second
	e := newNATSEnv(t, ackWait)
	h := e.publish(3000, 33)
	w1 := e.start("w1", []string{"INDEXER_FAILPOINT=before-apply-stall:1", "INDEXER_FAILPOINT_STALL=3s"}, natsWorkerArgs()...)
	w1.waitLog(t, "failpoint: before-apply: stalling", 30*time.Second)
	w2 := e.start("w2", nil, natsWorkerArgs()...)
	e.waitNATSDrained(time.Minute)
	e.checkIndex(h.model)
	for _, w := range []*worker{w1, w2} {
		if n := w.metric(t, `indexer_redeliveries_total{source="nats"}`); n != 0 {
			t.Errorf("%s saw %v redeliveries; InProgress should have kept the slow batch", w.name, n)
		}
	}
}

// TestNATSServerRestart: the NATS server is restarted on the same store
// mid-run; the workers reconnect and finish; the index equals the model.
func TestNATSServerRestart(t *testing.T) {
	e := newNATSEnv(t, 5*time.Second)
	h := e.publish(40_000, 34)
	w1 := e.start("w1", nil, natsWorkerArgs()...)
	e.start("w2", nil, natsWorkerArgs()...)
	deadline := time.Now().Add(patient(time.Minute))
	for w1.metric(t, `indexer_acks_total{source="nats"}`) < 3000 {
		if time.Now().After(deadline) {
			t.Fatal("no progress before the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.nats = testserver.RestartNATS(t, e.nats)
	e.waitNATSDrained(2 * time.Minute)
	e.checkIndex(h.model)
}
