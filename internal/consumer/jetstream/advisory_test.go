package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/telemetry"
	"github.com/streamindex/indexer/internal/testserver"
)

// counter reads a counter of m: name{label="value"}, 0 if absent.
func counter(t *testing.T, m *telemetry.Metrics, name, label, value string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if label == "" || l.GetName() == label && l.GetValue() == value {
					return s.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// runAdvisories runs an Advisories on a connection of its own until the
// test ends.
func (f *fixture) runAdvisories(t *testing.T, name string) *telemetry.Metrics {
	t.Helper()
	_, js := testConn(t, f.srv.ClientURL(), name)
	m := telemetry.NewMetrics("nats", MetricLabels())
	a, err := NewAdvisories(context.Background(), js, f.sourceConfig(), m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return m
}

// advisoryState is the workers' advisory consumer: advisories not yet
// delivered, and delivered and not acknowledged.
func (f *fixture) advisoryState(t *testing.T) (unread uint64, pending int) {
	t.Helper()
	ctx := context.Background()
	c, err := f.js.Consumer(ctx, DefaultAdvisories(f.cfg.Stream), f.cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ci.NumPending, ci.NumAckPending
}

// waitAdvisoriesDone waits until every advisory was handled and
// acknowledged.
func (f *fixture) waitAdvisoriesDone(t *testing.T, want uint64) {
	t.Helper()
	ctx := context.Background()
	s, err := f.js.Stream(ctx, DefaultAdvisories(f.cfg.Stream))
	if err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool {
		info, err := s.Info(ctx)
		unread, pending := f.advisoryState(t)
		return err == nil && info.State.Msgs == want && unread == 0 && pending == 0
	}) {
		unread, pending := f.advisoryState(t)
		t.Fatalf("advisories not handled: %d unread, %d unacknowledged", unread, pending)
	}
}

// publishAdvisory publishes an advisory as the server would.
func (f *fixture) publishAdvisory(t *testing.T, seq, deliveries uint64) {
	t.Helper()
	data, _ := json.Marshal(map[string]any{"type": "io.nats.jetstream.advisory.v1.max_deliver", "id": "adv" + strconv.FormatInt(f.n.Add(1), 10),
		"stream": f.cfg.Stream, "consumer": f.cfg.Consumer, "stream_seq": seq, "deliveries": deliveries})
	if _, err := f.js.Publish(context.Background(), MaxDeliveriesSubject(f.cfg.Stream, f.cfg.Consumer), data); err != nil {
		t.Fatal(err)
	}
}

// TestAdvisoriesDeadLetterWhatTheServerGaveUp: an operator lowers the
// consumer's max_deliver to 2 while a worker (--max-deliver 5) runs; a
// message is delivered twice without an acknowledgement and the server
// stops delivering it. The advisory is stored while no Advisories runs;
// one started later dead-letters the message with the server's reason,
// counts it and acknowledges the advisory.
func TestAdvisoriesDeadLetterWhatTheServerGaveUp(t *testing.T) {
	cfg := testNames(1)
	cfg.AckWait = 300 * time.Millisecond
	f := newFixture(t, cfg)
	ctx := context.Background()
	src := f.source(t)
	cc := consumerConfig(t, f.js, cfg.Stream, cfg.Consumer)
	cc.MaxDeliver = 2
	if _, err := f.js.UpdateConsumer(ctx, cfg.Stream, cc); err != nil {
		t.Fatal(err)
	}
	f.publish(t, 1)

	// Deliveries 1 and 2, never acknowledged; then the server gives up.
	deliveries := 0
	advisories, err := f.js.Stream(ctx, DefaultAdvisories(cfg.Stream))
	if err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool {
		msgs, err := src.Fetch(ctx, 10, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		deliveries += len(msgs)
		info, err := advisories.Info(ctx)
		return err == nil && info.State.Msgs == 1
	}) {
		t.Fatalf("no advisory stored after %d deliveries", deliveries)
	}
	if deliveries != 2 {
		t.Fatalf("the message was delivered %d times, want 2 (max_deliver)", deliveries)
	}
	if dead := readDeadLetters(t, f.js, cfg.DeadLetters); len(dead) != 0 {
		t.Fatalf("dead letters before Advisories ran: %+v", dead)
	}

	m := f.runAdvisories(t, "w1")
	f.waitAdvisoriesDone(t, 1)
	list, err := DeadLetters(ctx, f.js, cfg.DeadLetters, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(list), list)
	}
	d := list[0]
	if d.OriginalID != "1" || d.Deliveries != 2 || d.Subject != cfg.SubjectPrefix+".db.tbl" || string(d.Data) != `{"n":1}` ||
		d.ContentType != "application/json" || !strings.Contains(d.Reason, "the server stopped delivering it after 2 deliveries") {
		t.Errorf("dead letter %+v", d)
	}
	if n := counter(t, m, "indexer_dead_letters_total", "kind", DeadLetterKindServer); n != 1 {
		t.Errorf("indexer_dead_letters_total{kind=%s} = %v, want 1", DeadLetterKindServer, n)
	}
}

// TestAdvisoriesHandledOnce: two workers' Advisories, the same advisory
// three times (a worker stopped before its ack, say), and an advisory of
// a message the loop had dead-lettered already: one dead letter per
// message, counted once across the workers.
func TestAdvisoriesHandledOnce(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 2)
	src := f.source(t)
	msgs := fetchAll(t, src, 2, 5*time.Second)
	if err := src.DeadLetter(ctx, []consumer.DeadLetter{{Message: msgs[1], Reason: "the loop's reason"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.publishAdvisory(t, 1, 6)
	}
	f.publishAdvisory(t, 2, 6)
	m1, m2 := f.runAdvisories(t, "w1"), f.runAdvisories(t, "w2")
	f.waitAdvisoriesDone(t, 4)
	dead := readDeadLetters(t, f.js, f.cfg.DeadLetters)
	if len(dead) != 2 || dead[0].OriginalID != "2" || dead[0].Reason != "the loop's reason" || dead[1].OriginalID != "1" {
		t.Errorf("dead letters %+v, want message 2 (the loop's) then 1 (the server's), once each", dead)
	}
	k := DeadLetterKindServer
	if n := counter(t, m1, "indexer_dead_letters_total", "kind", k) + counter(t, m2, "indexer_dead_letters_total", "kind", k); n != 1 {
		t.Errorf("indexer_dead_letters_total{kind=%s} summed over the workers = %v, want 1", k, n)
	}
}

// TestAdvisoriesMessageGone: an advisory of a message no longer in the
// stream is counted as lost, not dead-lettered, and acknowledged.
func TestAdvisoriesMessageGone(t *testing.T) {
	f := newFixture(t, testNames(1))
	f.publishAdvisory(t, 99, 6)
	m := f.runAdvisories(t, "w1")
	f.waitAdvisoriesDone(t, 1)
	if dead := readDeadLetters(t, f.js, f.cfg.DeadLetters); len(dead) != 0 {
		t.Errorf("dead letters %+v, want none", dead)
	}
	if n := counter(t, m, "indexer_lost_messages_total", "", ""); n != 1 {
		t.Errorf("indexer_lost_messages_total = %v, want 1", n)
	}
}

// TestAdvisoriesAcrossServerRestart: Advisories goes on after the server
// restarts (the worker's connection reconnects): an advisory published
// meanwhile is handled.
func TestAdvisoriesAcrossServerRestart(t *testing.T) {
	f := newFixture(t, testNames(1))
	f.publish(t, 1)
	m := f.runAdvisories(t, "w1")
	f.srv = testserver.RestartNATS(t, f.srv)
	if !waitFor(30*time.Second, func() bool {
		_, err := f.js.Publish(context.Background(), MaxDeliveriesSubject(f.cfg.Stream, f.cfg.Consumer),
			[]byte(`{"stream":"`+f.cfg.Stream+`","consumer":"`+f.cfg.Consumer+`","stream_seq":1,"deliveries":6}`))
		return err == nil
	}) {
		t.Fatal("could not publish after the restart")
	}
	f.waitAdvisoriesDone(t, 1)
	if dead := readDeadLetters(t, f.js, f.cfg.DeadLetters); len(dead) != 1 || dead[0].OriginalID != "1" {
		t.Errorf("dead letters %+v, want message 1", dead)
	}
	if n := counter(t, m, "indexer_dead_letters_total", "kind", DeadLetterKindServer); n != 1 {
		t.Errorf("indexer_dead_letters_total{kind=%s} = %v, want 1", DeadLetterKindServer, n)
	}
}

// TestSetupAdvisories: Setup creates the advisory stream and consumer, or
// uses a stream that captures the advisories already; NewAdvisories
// explains a missing one.
func TestSetupAdvisories(t *testing.T) {
	js, cfg := setUp(t)
	ctx := context.Background()
	s, err := js.Stream(ctx, "T1_MAX_DELIVERIES")
	if err != nil {
		t.Fatal(err)
	}
	if sc := s.CachedInfo().Config; len(sc.Subjects) != 1 || sc.Subjects[0] != "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.T1.*" || sc.MaxAge != 7*24*time.Hour {
		t.Errorf("advisory stream %+v", sc)
	}
	if cc := consumerConfig(t, js, "T1_MAX_DELIVERIES", "workers"); cc.FilterSubject != "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.T1.workers" ||
		cc.AckPolicy != natsjs.AckExplicitPolicy || cc.MaxDeliver != -1 {
		t.Errorf("advisory consumer %+v", cc)
	}
	wcfg := Config{Stream: cfg.Stream, Consumer: cfg.Consumer}
	if _, err := NewAdvisories(ctx, js, wcfg, nil); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, "T1_MAX_DELIVERIES", "workers"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAdvisories(ctx, js, wcfg, nil); !errors.Is(err, consumer.ErrGroupMissing) || !strings.Contains(err.Error(), "indexer setup --source nats") {
		t.Errorf("NewAdvisories without the advisory consumer: %v", err)
	}
	if err := js.DeleteStream(ctx, "T1_MAX_DELIVERIES"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAdvisories(ctx, js, wcfg, nil); !errors.Is(err, consumer.ErrStreamMissing) || !strings.Contains(err.Error(), "indexer setup --source nats") {
		t.Errorf("NewAdvisories without the advisory stream: %v", err)
	}

	// An operator's stream that captures every advisory is used as it is.
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "OPS", Subjects: []string{"$JS.EVENT.ADVISORY.>"}}); err != nil {
		t.Fatal(err)
	}
	created, _, err := Setup(ctx, js, cfg)
	if err != nil || !created.Any() {
		t.Fatalf("Setup with the operator's advisory stream: created %+v, %v", created, err)
	}
	if _, err := js.Stream(ctx, "T1_MAX_DELIVERIES"); !errors.Is(err, natsjs.ErrStreamNotFound) {
		t.Errorf("Setup created its own advisory stream next to the operator's: %v", err)
	}
	if _, err := NewAdvisories(ctx, js, wcfg, nil); err != nil {
		t.Errorf("NewAdvisories on the operator's stream: %v", err)
	}
	if created, _, err := Setup(ctx, js, cfg); err != nil || created.Any() {
		t.Errorf("Setup again: created %v, %v", created, err)
	}
}
