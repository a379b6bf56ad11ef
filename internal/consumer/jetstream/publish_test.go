package jetstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/publish/natspub"
)

// Outgoing is a message the tests publish: an event (its subject and
// Nats-Msg-Id derived from it) or raw data to Subject.
type Outgoing struct {
	Event          *event.Event
	Data           []byte
	Format         event.Format
	ContentType    string // instead of Format's
	Subject, MsgID string // instead of the event's; no MsgID: no Nats-Msg-Id
}

// testPublisher publishes Outgoing messages through the writer library
// (natspub.Publisher.PublishMsgs).
type testPublisher struct {
	p      *natspub.Publisher
	prefix string
}

func newTestPublisher(js natsjs.JetStream, prefix string) *testPublisher {
	p, err := natspub.New(js, natspub.Config{SubjectPrefix: prefix})
	if err != nil {
		panic(err)
	}
	return &testPublisher{p: p, prefix: prefix}
}

func (p *testPublisher) Publish(ctx context.Context, msgs []Outgoing) error {
	out := make([]*nats.Msg, len(msgs))
	for i, o := range msgs {
		m := &nats.Msg{Subject: o.Subject, Data: o.Data, Header: nats.Header{}}
		id := o.MsgID
		if o.Event != nil {
			if m.Subject == "" {
				m.Subject = p.p.Subject(o.Event.Database, o.Event.Table)
			}
			if id == "" {
				id = o.Event.ID
			}
		}
		ct := o.ContentType
		if ct == "" {
			ct = o.Format.ContentType()
		}
		m.Header.Set(HeaderContentType, ct)
		if id != "" {
			m.Header.Set(natsjs.MsgIDHeader, id)
		}
		out[i] = m
	}
	return p.p.PublishMsgs(ctx, out)
}

func TestDeadLetterSubjectsAndRetry(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	out := []Outgoing{
		{Subject: "t1.events.db.tbl", Data: []byte("a"), Format: event.MsgPack},
		{Subject: "t1.events.odd", Data: []byte("b")},
		{Subject: "t1.events.my.db.tbl", Data: []byte("c")},
	}
	if err := f.pub.Publish(ctx, out); err != nil {
		t.Fatal(err)
	}
	src := f.source(t)
	got := fetchAll(t, src, 3, 5*time.Second)
	dead := make([]consumer.DeadLetter, len(got))
	for i, m := range got {
		dead[i] = consumer.DeadLetter{Message: m, Reason: "bad\r\nthing " + m.ID}
	}
	if err := src.DeadLetter(ctx, dead); err != nil {
		t.Fatal(err)
	}
	if err := src.DeadLetter(ctx, dead); err != nil { // retried: stored once
		t.Fatal(err)
	}
	s, err := f.js.Stream(ctx, f.cfg.DeadLetters)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 3 {
		t.Fatalf("%d dead letters, want 3", n)
	}
	for seq, want := range map[uint64]struct{ subject, ct, orig string }{
		1: {"t1.dlq.db.tbl", "application/msgpack", "t1.events.db.tbl"},
		2: {"t1.dlq._unknown._unknown", "application/json", "t1.events.odd"},
		3: {"t1.dlq.my.db.tbl", "application/json", "t1.events.my.db.tbl"},
	} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		h := m.Header
		if m.Subject != want.subject || h.Get("Content-Type") != want.ct || h.Get(HeaderOriginalSubject) != want.orig ||
			h.Get(HeaderOriginalSeq) != got[seq-1].ID || h.Get(HeaderDeliveries) != "1" ||
			h.Get(HeaderReason) != "bad thing "+got[seq-1].ID || !strings.HasSuffix(h.Get(natsjs.MsgIDHeader), "-"+got[seq-1].ID) {
			t.Errorf("dead letter %d: subject %s headers %v, want %+v", seq, m.Subject, h, want)
		}
	}
	if n := consumerInfo(t, f).NumAckPending; n != 0 {
		t.Errorf("%d pending after dead-lettering, want 0 (terminated)", n)
	}
}

func consumerInfo(t *testing.T, f *fixture) *natsjs.ConsumerInfo {
	t.Helper()
	c, err := f.js.Consumer(context.Background(), f.cfg.Stream, f.cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

func TestDeadLetterWithoutStream(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 1)
	src := f.source(t)
	got := fetchAll(t, src, 1, 5*time.Second)
	if err := f.js.DeleteStream(ctx, f.cfg.DeadLetters); err != nil {
		t.Fatal(err)
	}
	err := src.DeadLetter(ctx, []consumer.DeadLetter{{Message: got[0], Reason: "r"}})
	if !errors.Is(err, consumer.ErrStreamMissing) || consumer.Classify(err) != consumer.Fatal {
		t.Fatalf("DeadLetter without a dead-letter stream: %v, want a fatal ErrStreamMissing", err)
	}
	if n := consumerInfo(t, f).NumAckPending; n != 1 {
		t.Errorf("%d pending, want 1: a message must not be terminated before its dead letter is stored", n)
	}
}

func TestLagAndHandle(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 5)
	src := f.source(t)
	if n, err := src.Lag(ctx); err != nil || n != 5 {
		t.Fatalf("Lag = %d, %v; want 5", n, err)
	}
	got := fetchAll(t, src, 2, 5*time.Second)
	if n, err := src.Lag(ctx); err != nil || n != 3 {
		t.Fatalf("Lag after fetching 2 = %d, %v; want 3", n, err)
	}
	h, ok := got[0].Handle.(natsjs.Msg)
	if !ok {
		t.Fatalf("Handle is a %T, want a jetstream.Msg", got[0].Handle)
	}
	md, err := h.Metadata()
	if err != nil || md.Sequence.Stream != 1 || md.NumDelivered != 1 || md.Stream != f.cfg.Stream || md.Consumer != f.cfg.Consumer ||
		!md.Timestamp.Equal(got[0].Time) || h.Subject() != got[0].Subject {
		t.Errorf("Metadata %+v, %v", md, err)
	}
	if err := h.DoubleAck(ctx); err != nil {
		t.Errorf("DoubleAck through the handle: %v", err)
	}
	if src.ExtendEvery() != 10*time.Second {
		t.Errorf("ExtendEvery %v; want 10s (AckWait/3)", src.ExtendEvery())
	}
	if err := src.Ack(ctx, []consumer.Message{{ID: "1"}}); err == nil {
		t.Error("Ack of a message the source did not fetch succeeded")
	}
}

func TestParseAckSubject(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want ackInfo
	}{
		{"$JS.ACK.S.C.3.42.7.1700000000000000000.9", true, ackInfo{stream: "S", consumer: "C", delivered: 3, seq: "42", cseq: 7, time: 1700000000000000000, pending: 9}},
		{"$JS.ACK._.HASH.S.C.1.5.6.17.0.tok", true, ackInfo{stream: "S", consumer: "C", delivered: 1, seq: "5", cseq: 6, time: 17}},
		{"$JS.ACK.dom.HASH.S.C.1.5.6.17.0", true, ackInfo{domain: "dom", stream: "S", consumer: "C", delivered: 1, seq: "5", cseq: 6, time: 17}},
		{"$JS.ACK.S.C.x.42.7.1.9", false, ackInfo{}},
		{"$JS.ACK.S.C.3.42.7.1", false, ackInfo{}},
		{"$JS.ACK.S.C.3..7.1.9", false, ackInfo{}},
		{"_INBOX.abc.1", false, ackInfo{}},
		{"", false, ackInfo{}},
	} {
		got, ok := parseAckSubject(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseAckSubject(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDeadLetterSubject(t *testing.T) {
	for in, want := range map[string]string{
		"idx.events.db.tbl":     "idx.dlq.db.tbl",
		"idx.events.d.b.t-1":    "idx.dlq.d.b.t-1",
		"idx.events.db":         "idx.dlq._unknown._unknown",
		"idx.events.":           "idx.dlq._unknown._unknown",
		"idx.events..x":         "idx.dlq._unknown._unknown",
		"other.events.db.tbl":   "idx.dlq._unknown._unknown",
		"idx.eventsx.db.tbl":    "idx.dlq._unknown._unknown",
		"":                      "idx.dlq._unknown._unknown",
		"idx.events.db.tbl.":    "idx.dlq._unknown._unknown",
		"idx.events.db.tbl.x.y": "idx.dlq.db.tbl.x.y",
	} {
		if got := deadLetterSubject(in, "idx.events", "idx.dlq"); got != want {
			t.Errorf("deadLetterSubject(%q) = %q, want %q", in, got, want)
		}
	}
	if got := headerValue("a\r\nb\nc\rd"); got != "a b c d" {
		t.Errorf("headerValue = %q", got)
	}
	if got := headerValue(strings.Repeat("é", 2000)); len(got) > maxReasonHeaderLength+4 || !strings.HasSuffix(got, "…") {
		t.Errorf("headerValue of a long reason has %d bytes", len(got))
	}
}

// TestBacklog: the lag, the pending messages and the dead letters, as the
// worker's gauges show them.
func TestBacklog(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 5)
	_, js := testConn(t, f.srv.ClientURL(), "worker")
	cfg := f.sourceConfig()
	cfg.DeadLetterStream = f.cfg.DeadLetters
	src, err := New(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	check := func(want consumer.Backlog) {
		t.Helper()
		if b, err := src.Backlog(ctx); err != nil || b != want {
			t.Errorf("Backlog = %+v, %v; want %+v", b, err, want)
		}
	}
	check(consumer.Backlog{Lag: 5, Pending: 0, DeadLetters: 0})
	got := fetchAll(t, src, 3, 5*time.Second)
	check(consumer.Backlog{Lag: 2, Pending: 3, DeadLetters: 0})
	if err := src.DeadLetter(ctx, []consumer.DeadLetter{{Message: got[0], Reason: "r"}}); err != nil {
		t.Fatal(err)
	}
	if err := src.Ack(ctx, got[1:]); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool { b, _ := src.Backlog(ctx); return b.Pending == 0 }) {
		t.Fatal("the acks were never confirmed")
	}
	check(consumer.Backlog{Lag: 2, Pending: 0, DeadLetters: 1})

	// Without a dead-letter stream the count is unknown.
	if b, err := f.source(t).Backlog(ctx); err != nil || b.DeadLetters != -1 {
		t.Errorf("Backlog without DeadLetterStream = %+v, %v; want DeadLetters -1", b, err)
	}
}
