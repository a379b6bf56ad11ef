package testserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/testserver"
)

// TestNATSCluster: an R3 stream on the 3-server cluster keeps its
// messages and gets a new leader when its leader shuts down, and the
// server comes back on Restart.
func TestNATSCluster(t *testing.T) {
	c := testserver.StartNATSCluster(t, 3)
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, c, "S", -1)
	c.Shutdown(leader)
	next := waitLeader(t, c, "S", leader)
	if c.Server(leader) != nil {
		t.Fatal("Server of a shut-down server is not nil")
	}
	c.Restart(leader)
	var info *jetstream.StreamInfo
	for info == nil || info.State.Msgs != 1 {
		s, err := js.Stream(ctx, "S")
		if err == nil {
			info, err = s.Info(ctx)
		}
		if ctx.Err() != nil {
			t.Fatalf("stream info after the leader change: %v %+v", err, info)
		}
	}
	t.Logf("leader n%d shut down, n%d took over; restarted", leader+1, next+1)
}

// waitLeader waits until a server other than not leads stream.
func waitLeader(t *testing.T, c *testserver.NATSCluster, stream string, not int) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if l := c.StreamLeader(stream); l >= 0 && l != not {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader of %s other than %d within a minute", stream, not)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
