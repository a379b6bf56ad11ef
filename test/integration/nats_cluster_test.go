package integration

// NATS on a 3-server cluster (issue 15): 'indexer setup' creates R3
// streams there by default, and the stream leader may die at any time:
// 'indexer publish' and the workers ride through the election.

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/testserver"
)

// streamState returns the events stream's replicas and message count.
func streamState(t *testing.T, js natsjs.JetStream) (replicas int, msgs uint64, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "IDX_EVENTS")
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.Config.Replicas, info.State.Msgs, nil
}

// killStreamLeader shuts down the events stream's leader, waits until
// another server leads it, and starts the old one again.
func killStreamLeader(t *testing.T, c *testserver.NATSCluster) int {
	t.Helper()
	var leader int
	waitFor(t, time.Minute, "a stream leader", func() bool { leader = c.StreamLeader("IDX_EVENTS"); return leader >= 0 })
	c.Shutdown(leader)
	waitFor(t, time.Minute, "a new stream leader", func() bool { l := c.StreamLeader("IDX_EVENTS"); return l >= 0 && l != leader })
	c.Restart(leader)
	return leader
}

// TestFaultNATSLeaderKill: three workers consume an R3 stream on a
// 3-server in-process cluster while events are published; the stream's
// leader is shut down twice mid-run (and started again once another
// server leads). No worker exits, and the index is the model's.
func TestFaultNATSLeaderKill(t *testing.T) {
	t.Parallel()
	f := newFaultEnv(t, "nats", fopts{natsCluster: true})
	if r, _, err := streamState(t, f.js); err != nil || r != 3 {
		t.Fatalf("setup on a 3-server cluster made %d replicas (%v), want 3", r, err)
	}
	for range 3 {
		f.startWorker(nil)
	}
	ev := eventsOf(30_000, 120, "events")
	published := make(chan error, 1)
	go func() { published <- f.tryPublish(t.Context(), ev, 3*time.Minute) }()
	for _, at := range []uint64{10_000, 20_000} {
		waitFor(t, 3*time.Minute, strconv.FormatUint(at, 10)+" events in the stream", func() bool {
			_, n, err := streamState(t, f.js)
			return err == nil && n >= at
		})
		leader := killStreamLeader(t, f.cluster)
		f.fault("stream-leader-kill")
		t.Logf("stream leader n%d shut down at %d events and restarted", leader+1, at)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	for _, w := range f.workers {
		if !w.alive() {
			t.Errorf("worker %s exited", w.name)
		}
	}
	f.finish("nats-leader-kill", 3*time.Minute)
}

// TestPublishNATSLeaderChange: 'indexer publish' against a 3-server
// cluster survives the stream leader's death mid-publish, exits 0, and
// the stream holds every event exactly once.
func TestPublishNATSLeaderChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	c := testserver.StartNATSCluster(t, 3)
	e.vars = append(e.vars, "INDEXER_NATS_URL="+c.URL(), "INDEXER_SOURCE=nats")
	nc := dialNATS(t, c.URL())
	js, _ := natsjs.New(nc)
	// An explicit R1 on a cluster works, loudly.
	if r := e.indexer("", "setup", "--replicas", "1"); r.Code != 0 || !strings.Contains(r.Stderr, "only 1 replica on the 3-server cluster") {
		t.Errorf("setup --replicas 1 on a cluster: exit %d, no loud warning:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, s := range []string{"IDX_EVENTS", "IDX_DLQ"} {
		if err := js.DeleteStream(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	// The default there is R3.
	if r := e.must("", "setup"); strings.Contains(r.Stderr, "replica") {
		t.Errorf("setup on a 3-server cluster warned about replicas: %s", r.Stderr)
	}
	if replicas, _, err := streamState(t, js); err != nil || replicas != 3 {
		t.Fatalf("setup made %d replicas (%v), want 3", replicas, err)
	}

	// The publisher is connected to the leader: when it goes, so does its
	// connection (it reconnects to the others, which the servers announced).
	var leader int
	waitFor(t, time.Minute, "a stream leader", func() bool { leader = c.StreamLeader("IDX_EVENTS"); return leader >= 0 })
	const n = 20_000
	done := make(chan testserver.Result, 1)
	go func() {
		done <- testserver.Run(t, bin, append(e.vars, "INDEXER_NATS_URL="+c.ClientURL(leader)), "",
			"publish", "--generate", strconv.Itoa(n), "--seed", "7", "--rate", "4000", "--quiet")
	}()
	waitFor(t, 2*time.Minute, "a fifth of the events stored", func() bool {
		_, got, err := streamState(t, js)
		return err == nil && got >= n/5
	})
	if l := killStreamLeader(t, c); l != leader {
		t.Logf("the leader moved from n%d to n%d before the kill", leader+1, l+1)
	}
	res := <-done
	if res.Code != 0 {
		t.Fatalf("publish exited %d after the leader change (n%d):\n%s%s", res.Code, leader+1, res.Stdout, res.Stderr)
	}
	t.Logf("publish: %s%s", res.Stdout, res.Stderr)

	ids := streamMsgIDs(t, js)
	want := generated(n, 7).events
	dup := 0
	for _, cnt := range ids {
		dup += cnt - 1
	}
	if len(ids) != len(want) || dup != 0 {
		t.Errorf("the stream holds %d distinct events and %d duplicates, want %d once each", len(ids), dup, len(want))
	}
	for _, ev := range want {
		if ids[ev.ID] != 1 {
			t.Fatalf("event %s stored %d times", ev.ID, ids[ev.ID])
		}
	}
}

// streamMsgIDs reads the events stream with an ordered consumer and
// counts each Nats-Msg-Id. It starts again on an error (a server of the
// cluster just restarted, say), for up to a minute.
func streamMsgIDs(t *testing.T, js natsjs.JetStream) map[string]int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ids, err := readMsgIDs(t.Context(), js)
		if err == nil {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("read the stream: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readMsgIDs(ctx context.Context, js natsjs.JetStream) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, "IDX_EVENTS")
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	cons, err := js.OrderedConsumer(ctx, "IDX_EVENTS", natsjs.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	ids := map[string]int{}
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := cons.Fetch(1000, natsjs.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			ids[m.Headers().Get(natsjs.MsgIDHeader)]++
			read++
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// dialNATS connects to url, reconnecting forever, until the test ends.
func dialNATS(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
