package jetstream

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func consumerConfig(t *testing.T, js natsjs.JetStream, stream, name string) natsjs.ConsumerConfig {
	t.Helper()
	c, err := js.Consumer(context.Background(), stream, name)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Config
}

// TestNewRaisesMaxDeliver: a worker with --max-deliver 10 on a consumer
// set up for 5 (server MaxDeliver 6) raises it to 11 in place, keeping
// the consumer's pending messages and their delivery counts; a worker
// with a lower limit, or an unlimited consumer, changes nothing.
func TestNewRaisesMaxDeliver(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 3)
	first := f.source(t)
	held := fetchAll(t, first, 2, 5*time.Second) // pending, unacknowledged

	cfg := f.sourceConfig()
	cfg.MaxDeliver = 10
	_, js := testConn(t, f.srv.ClientURL(), "w10")
	src, err := New(ctx, js, cfg)
	if err != nil {
		t.Fatalf("New with MaxDeliver 10 on a consumer with max_deliver 6: %v", err)
	}
	defer src.Close()
	if got := consumerConfig(t, f.js, f.cfg.Stream, f.cfg.Consumer).MaxDeliver; got != 11 {
		t.Fatalf("consumer max_deliver %d after New with MaxDeliver 10, want 11", got)
	}
	c, err := f.js.Consumer(ctx, f.cfg.Stream, f.cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	if ci := c.CachedInfo(); ci.NumAckPending != 2 || ci.NumPending != 1 || ci.Delivered.Stream != 2 {
		t.Errorf("after the update: %d pending, %d unread, delivered up to %d; want 2, 1, 2 (the update must keep the position)",
			ci.NumAckPending, ci.NumPending, ci.Delivered.Stream)
	}
	if err := first.Ack(ctx, held); err != nil {
		t.Fatal(err)
	}

	cfg.MaxDeliver = 3
	low, err := New(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	low.Close()
	if got := consumerConfig(t, f.js, f.cfg.Stream, f.cfg.Consumer).MaxDeliver; got != 11 {
		t.Errorf("consumer max_deliver %d after New with MaxDeliver 3, want 11 kept", got)
	}

	// An unlimited consumer stays unlimited.
	cc := consumerConfig(t, f.js, f.cfg.Stream, f.cfg.Consumer)
	cc.MaxDeliver = -1
	if _, err := f.js.UpdateConsumer(ctx, f.cfg.Stream, cc); err != nil {
		t.Fatal(err)
	}
	cfg.MaxDeliver = 50
	unl, err := New(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	unl.Close()
	if got := consumerConfig(t, f.js, f.cfg.Stream, f.cfg.Consumer).MaxDeliver; got != -1 {
		t.Errorf("consumer max_deliver %d after New on an unlimited consumer, want -1", got)
	}
}

// TestNewRefusesWhenMaxDeliverCannotBeRaised: a worker whose NATS user
// may not update the consumer refuses to start with one line naming both
// limits and the fixes.
func TestNewRefusesWhenMaxDeliverCannotBeRaised(t *testing.T) {
	all := &server.SubjectPermission{Allow: []string{">"}}
	s := startServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), Users: []*server.User{
		{Username: "admin", Password: "a"},
		{Username: "worker", Password: "w", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"},
				Deny: []string{"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>"}},
			Subscribe: all,
		}},
	}})
	addr := s.Addr().String()
	_, admin := testConn(t, "nats://admin:a@"+addr, "admin")
	ctx := context.Background()
	cfg := testNames(1)
	if _, _, err := Setup(ctx, admin, cfg); err != nil {
		t.Fatal(err)
	}
	_, js := testConn(t, "nats://worker:w@"+addr, "worker")
	start := time.Now()
	_, err := New(ctx, js, Config{Stream: cfg.Stream, Consumer: cfg.Consumer, MaxDeliver: 10, RequestTimeout: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("New with MaxDeliver 10 on a consumer with max_deliver 6 it may not update: no error")
	}
	msg := err.Error()
	for _, want := range []string{"max_deliver 6", "permissions violation", "on delivery 11 (--max-deliver 10)",
		"indexer setup --source nats --max-deliver 10", "nats consumer edit T1 workers --max-deliver 11", "--max-deliver 5"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one line", msg)
	}
	t.Logf("refused after %v: %s", time.Since(start), msg)
	if got := consumerConfig(t, admin, cfg.Stream, cfg.Consumer).MaxDeliver; got != 6 {
		t.Errorf("consumer max_deliver %d after a refused New, want 6", got)
	}
}

// TestSetupRaisesMaxDeliver: setup again with a higher --max-deliver
// raises the consumer's MaxDeliver in place and says so; a lower one is
// compatible and changes nothing.
func TestSetupRaisesMaxDeliver(t *testing.T) {
	js, cfg := setUp(t)
	ctx := context.Background()
	cfg.MaxDeliver = 10
	created, warnings, err := Setup(ctx, js, cfg)
	if err != nil || created.Any() {
		t.Fatalf("Setup with MaxDeliver 10: created %+v, %v", created, err)
	}
	if got := consumerConfig(t, js, cfg.Stream, cfg.Consumer).MaxDeliver; got != 11 {
		t.Errorf("consumer max_deliver %d, want 11", got)
	}
	if !strings.Contains(strings.Join(warnings, "\n"), "max_deliver raised from 6 to 11") {
		t.Errorf("warnings %q do not say max_deliver was raised", warnings)
	}
	cfg.MaxDeliver = 2
	if _, warnings, err := Setup(ctx, js, cfg); err != nil || strings.Contains(strings.Join(warnings, "\n"), "max_deliver") {
		t.Errorf("Setup with MaxDeliver 2: %v, warnings %q", err, warnings)
	}
	if got := consumerConfig(t, js, cfg.Stream, cfg.Consumer).MaxDeliver; got != 11 {
		t.Errorf("consumer max_deliver %d after Setup with a lower MaxDeliver, want 11 kept", got)
	}
}
