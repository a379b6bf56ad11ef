package natspub_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/natsserver"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/natspub"
)

// natsURL is the nats-server the examples use (TestMain starts it).
var natsURL string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "natspub-example")
	if err != nil {
		panic(err)
	}
	srv, err := natsserver.Start(natsserver.Config{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	natsURL = srv.ClientURL()
	code := m.Run()
	srv.Shutdown()
	os.RemoveAll(dir)
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

// connect connects to url, reconnecting forever, and returns JetStream.
func connect(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectBufSize(-1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// createStream creates the events stream with replicas.
func createStream(t testing.TB, js jetstream.JetStream, replicas int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "IDX_EVENTS", Subjects: []string{"idx.events.>"},
		Duplicates: 2 * time.Minute, Replicas: replicas}); err != nil {
		t.Fatal(err)
	}
}

// stored reads every message of the stream: how often each Nats-Msg-Id
// is there, checking subject, headers and data of each.
func stored(t *testing.T, js jetstream.JetStream, f event.Format) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, "IDX_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		e, err := event.Decode(f, m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if m.Subject != "idx.events."+e.Database+"."+e.Table || m.Header.Get("Content-Type") != f.ContentType() ||
			m.Header.Get(jetstream.MsgIDHeader) != e.ID {
			t.Fatalf("message %d: subject %s, headers %v, event %s", seq, m.Subject, m.Header, e.ID)
		}
		out[e.ID]++
	}
	return out
}

// checkOnce asserts that the stream holds every event exactly once.
func checkOnce(t *testing.T, js jetstream.JetStream, f event.Format, ev []event.Event) {
	t.Helper()
	got := stored(t, js, f)
	total := 0
	for _, n := range got {
		total += n
	}
	if len(got) != len(ev) || total != len(ev) {
		t.Errorf("%d messages, %d distinct ids, want %d events once each", total, len(got), len(ev))
	}
	for _, e := range ev {
		if got[e.ID] != 1 {
			t.Errorf("event %s stored %d times", e.ID, got[e.ID])
			return
		}
	}
}

func TestPublish(t *testing.T) {
	ctx := context.Background()
	for _, f := range []event.Format{event.JSON, event.MsgPack} {
		js := connect(t, testserver.NATS(t).ClientURL())
		createStream(t, js, 1)
		p, err := natspub.New(js, natspub.Config{MaxInFlight: 7, Options: publish.Options{Format: f}})
		if err != nil {
			t.Fatal(err)
		}
		ev := events(500, 1)
		if err := p.Publish(ctx, ev...); err != nil {
			t.Fatal(err)
		}
		// A writer retrying after a crash publishes the same events again:
		// the stream keeps one of each (Nats-Msg-Id).
		if err := p.Publish(ctx, ev[:100]...); err != nil {
			t.Fatal(err)
		}
		checkOnce(t, js, f, ev)
	}
}

// TestPublishNoMsgID: without Nats-Msg-Id the stream does not
// de-duplicate: an event published twice is stored twice, with its
// Content-Type and without the header.
func TestPublishNoMsgID(t *testing.T) {
	ctx := context.Background()
	js := connect(t, testserver.NATS(t).ClientURL())
	createStream(t, js, 1)
	p, err := natspub.New(js, natspub.Config{NoMsgID: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := events(50, 3)
	if err := p.Publish(ctx, ev...); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, ev[:10]...); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "IDX_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for seq := uint64(1); seq <= 60; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d of 60: %v", seq, err)
		}
		e, err := event.Decode(event.JSON, m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if len(m.Header.Values(jetstream.MsgIDHeader)) != 0 || m.Header.Get("Content-Type") != event.JSON.ContentType() {
			t.Fatalf("message %d: headers %v, want Content-Type and no Nats-Msg-Id", seq, m.Header)
		}
		count[e.ID]++
	}
	for i, e := range ev {
		if want := 1 + b2i(i < 10); count[e.ID] != want {
			t.Fatalf("event %d stored %d times, want %d", i, count[e.ID], want)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPublishInvalid(t *testing.T) {
	js := connect(t, testserver.NATS(t).ClientURL())
	createStream(t, js, 1)
	p, _ := natspub.New(js, natspub.Config{})
	ev := events(10, 2)
	ev[3].ID = ""
	err := p.Publish(context.Background(), ev...)
	var ee *publish.EventError
	var ve *event.ValidationError
	if !errors.As(err, &ee) || ee.Index != 3 || !errors.As(err, &ve) || ve.Field != "id" {
		t.Errorf("Publish with event 3 invalid: %v", err)
	}
	if got := stored(t, js, event.JSON); len(got) != 0 {
		t.Errorf("%d events stored, want none", len(got))
	}
}

// TestNoStream: publishing where no stream captures the subject fails at
// once with ErrStreamMissing; it is not retried.
func TestNoStream(t *testing.T) {
	js := connect(t, testserver.NATS(t).ClientURL())
	p, _ := natspub.New(js, natspub.Config{})
	err := p.Publish(context.Background(), events(5, 3)...)
	if !errors.Is(err, publish.ErrStreamMissing) || !strings.Contains(err.Error(), "indexer setup") {
		t.Errorf("Publish without a stream: %v", err)
	}
}

// TestPublishMsgs: raw messages keep their subject, data and headers; a
// message the server refuses for good (too large) fails alone, named.
func TestPublishMsgs(t *testing.T) {
	js := connect(t, testserver.NATS(t).ClientURL())
	createStream(t, js, 1)
	p, _ := natspub.New(js, natspub.Config{})
	ctx := context.Background()
	m := &nats.Msg{Subject: "idx.events.a.b", Data: []byte("not json"), Header: nats.Header{"Content-Type": {"text/plain"}, "Nats-Msg-Id": {"raw-1"}}}
	if err := p.PublishMsgs(ctx, []*nats.Msg{m, m}); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, "IDX_EVENTS")
	got, err := s.GetMsg(ctx, 1)
	if err != nil || string(got.Data) != "not json" || got.Header.Get("Content-Type") != "text/plain" || got.Subject != "idx.events.a.b" {
		t.Fatalf("stored %+v, %v", got, err)
	}
	if info, _ := s.Info(ctx); info.State.Msgs != 1 {
		t.Errorf("%d messages, want 1 (the same Nats-Msg-Id twice)", info.State.Msgs)
	}
	if m.Reply != "" {
		t.Error("PublishMsgs changed the caller's message")
	}
	big := &nats.Msg{Subject: "idx.events.a.b", Data: make([]byte, 2<<20), Header: nats.Header{"Nats-Msg-Id": {"big"}}}
	err = p.PublishMsgs(ctx, []*nats.Msg{m, big})
	var ee *publish.EventError
	if !errors.As(err, &ee) || ee.Index != 1 || ee.ID != "big" || publish.Transient(err) {
		t.Errorf("a message over max_payload: %v", err)
	}
}

// publishDuring publishes ev in chunks from a goroutine, calls fault once
// the stream holds at least half of them, and returns the publish error.
func publishDuring(t *testing.T, p *natspub.Publisher, js jetstream.JetStream, ev []event.Event, fault func()) error {
	t.Helper()
	done := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		for i := 0; i < len(ev); i += 1000 {
			if err := p.Publish(context.Background(), ev[i:min(i+1000, len(ev))]...); err != nil {
				done <- err
				return
			}
			sent.Store(int64(i + 1000))
		}
		done <- nil
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for sent.Load() < int64(len(ev)/2) {
		if time.Now().After(deadline) {
			t.Fatal("half the events not published within 2 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fault()
	return <-done
}

// TestServerRestart: the server restarts mid-publish; the publisher
// retries what was not acknowledged and the stream holds each event once.
func TestServerRestart(t *testing.T) {
	srv := testserver.NATS(t)
	js := connect(t, srv.ClientURL())
	createStream(t, js, 1)
	p, _ := natspub.New(js, natspub.Config{AckTimeout: time.Second})
	ev := events(20_000, 4)
	err := publishDuring(t, p, js, ev, func() { testserver.RestartNATS(t, srv) })
	if err != nil {
		t.Fatal(err)
	}
	checkOnce(t, js, event.JSON, ev)
}

// TestLeaderChange: the stream leader of an R3 stream on a 3-server
// cluster shuts down mid-publish: Publish rides through the election and
// the stream holds every event exactly once.
func TestLeaderChange(t *testing.T) {
	c := testserver.StartNATSCluster(t, 3)
	js := connect(t, c.URL())
	createStream(t, js, 3)
	p, _ := natspub.New(js, natspub.Config{AckTimeout: 2 * time.Second})
	ev := events(20_000, 5)
	leader := -1
	err := publishDuring(t, p, js, ev, func() {
		leader = c.StreamLeader("IDX_EVENTS")
		if leader < 0 {
			t.Error("no stream leader")
			return
		}
		c.Shutdown(leader)
	})
	if err != nil {
		t.Fatal(err)
	}
	checkOnce(t, js, event.JSON, ev)
	if l := c.StreamLeader("IDX_EVENTS"); l == leader {
		t.Errorf("server %d still leads the stream", l)
	}
}

// TestWriterPermissions: with examples/nats/writer-permissions.conf, the
// writer publishes to its table's subject and gets its PubAcks, and is
// refused another table's subject (an error that is not retried).
func TestWriterPermissions(t *testing.T) {
	t.Setenv("INDEXER_WRITER_PASSWORD", "writer-secret")
	t.Setenv("INDEXER_ADMIN_PASSWORD", "admin-secret")
	opts, err := server.ProcessConfigFile("../../examples/nats/writer-permissions.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Port = 0
	srv := testserver.StartNATSServer(t, opts)
	admin := connect(t, srv.ClientURL(), nats.UserInfo("indexer", "admin-secret"))
	createStream(t, admin, 1)

	js := connect(t, srv.ClientURL(), nats.UserInfo("writer-metrics-cpu", "writer-secret"))
	p, _ := natspub.New(js, natspub.Config{AckTimeout: time.Second, Options: publish.Options{RetryFor: 5 * time.Second}})
	ctx := context.Background()
	ev := events(20, 6)
	if err := p.Publish(ctx, ev...); err != nil {
		t.Fatalf("the writer cannot publish to its table: %v", err)
	}
	checkOnce(t, admin, event.JSON, ev)

	other := events(1, 7)
	other[0].Table = "mem"
	err = p.Publish(ctx, other...)
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "idx.events.metrics.mem") || publish.Transient(err) {
		t.Errorf("publish to another table: %v, want a permissions violation naming its subject", err)
	}
	if got := stored(t, admin, event.JSON); len(got) != len(ev) {
		t.Errorf("%d events stored, want %d", len(got), len(ev))
	}
}

// TestConcurrentPublish: one Publisher used by many goroutines at once
// stores every event once.
func TestConcurrentPublish(t *testing.T) {
	js := connect(t, testserver.NATS(t).ClientURL())
	createStream(t, js, 1)
	p, _ := natspub.New(js, natspub.Config{MaxInFlight: 64})
	ev := events(4000, 8)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for i := g * 500; i < (g+1)*500 && err == nil; i += 50 {
				err = p.Publish(context.Background(), ev[i:i+50]...)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkOnce(t, js, event.JSON, ev)
}
