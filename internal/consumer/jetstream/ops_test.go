package jetstream

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
)

// TestSeqAtTime: a time maps to the first message stored at or after it,
// through the server's message get and through the consumer fallback.
func TestSeqAtTime(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 5)
	time.Sleep(20 * time.Millisecond)
	at := time.Now()
	time.Sleep(20 * time.Millisecond)
	f.publish(t, 5)
	for name, find := range map[string]func(time.Time) (uint64, bool, error){
		"msg get":  func(t time.Time) (uint64, bool, error) { return SeqAtTime(ctx, f.js, f.cfg.Stream, t) },
		"consumer": func(t time.Time) (uint64, bool, error) { return seqAtTimeByConsumer(ctx, f.js, f.cfg.Stream, t) },
	} {
		if seq, ok, err := find(at); seq != 6 || !ok || err != nil {
			t.Errorf("%s: %d %v %v, want sequence 6", name, seq, ok, err)
		}
		if seq, ok, err := find(at.Add(-time.Hour)); seq != 1 || !ok || err != nil {
			t.Errorf("%s: an hour earlier: %d %v %v, want 1", name, seq, ok, err)
		}
	}
	if _, ok, err := SeqAtTime(ctx, f.js, f.cfg.Stream, time.Now().Add(time.Hour)); ok || err != nil {
		t.Errorf("after the last message: %v %v, want none", ok, err)
	}
	if _, _, err := SeqAtTime(ctx, f.js, "NOPE", at); !errors.Is(err, consumer.ErrStreamMissing) {
		t.Errorf("missing stream: %v", err)
	}
}

// TestStatusAndReset: a staged consumer as Status reports it; a reset in
// place and one that must recreate the consumer.
func TestStatusAndReset(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 10)
	src := f.source(t)
	msgs := fetchAll(t, src, 6, 5*time.Second)
	if err := src.Ack(ctx, msgs[:4]); err != nil {
		t.Fatal(err)
	}
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	dead := []consumer.DeadLetter{{Message: msgs[5], Reason: "bad"}}
	if err := src.DeadLetter(ctx, dead); err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, f.js, f.cfg.Stream, f.cfg.Consumer, f.cfg.DeadLetters)
	if err != nil {
		t.Fatal(err)
	}
	g := st.Group
	switch {
	case st.Length != 10 || st.First.ID != "1" || st.Last.ID != "10" || st.First.Time.IsZero():
		t.Errorf("stream: %+v", st)
	case g.Missing || g.Lag != 4 || g.Pending != 1 || g.LastDelivered != "6":
		t.Errorf("group: %+v, want lag 4, 1 pending, last delivered 6", g)
	case g.OldestPending == nil || g.OldestPending.ID != "5":
		t.Errorf("oldest pending: %+v, want 5", g.OldestPending)
	case len(g.Consumers) != 1 || g.Consumers[0].Pending != 1 || g.Consumers[0].Idle < 0:
		t.Errorf("consumers: %+v", g.Consumers)
	case st.DeadLetters.Count != 1 || st.DeadLetters.Oldest == nil:
		t.Errorf("dead letters: %+v", st.DeadLetters)
	}
	if st, err := Status(ctx, f.js, f.cfg.Stream, "nope", ""); err != nil || !st.Group.Missing {
		t.Errorf("missing consumer: %+v, %v", st.Group, err)
	}

	// In place: the workers' Source goes on from the new position.
	before, after, recreated, err := ResetConsumer(ctx, f.js, f.cfg.Stream, f.cfg.Consumer, 3)
	if err != nil || recreated || before.Delivered != 6 || after.Delivered != 2 || after.Lag != 8 {
		t.Fatalf("reset: %+v -> %+v, recreated %v, %v", before, after, recreated, err)
	}
	if got := fetchAll(t, src, 1, 5*time.Second); got[0].ID != "3" {
		t.Fatalf("after the reset the consumer delivered %s, want 3", got[0].ID)
	}

	// A consumer that starts at a sequence cannot go below it in place:
	// it is recreated with the same settings.
	sc := f.cfg
	sc.AckWait, sc.MaxDeliver = 7*time.Second, 3
	if err := sc.setDefaults(); err != nil {
		t.Fatal(err)
	}
	cfg := sc.consumer()
	cfg.Durable, cfg.DeliverPolicy, cfg.OptStartSeq = "bystart", natsjs.DeliverByStartSequencePolicy, 5
	if _, err := f.js.CreateConsumer(ctx, f.cfg.Stream, cfg); err != nil {
		t.Fatal(err)
	}
	_, after, recreated, err = ResetConsumer(ctx, f.js, f.cfg.Stream, "bystart", 2)
	if err != nil || !recreated || after.Delivered != 1 || after.Lag != 9 {
		t.Fatalf("reset below the start: %+v, recreated %v, %v", after, recreated, err)
	}
	c, _ := f.js.Consumer(ctx, f.cfg.Stream, "bystart")
	if got := c.CachedInfo().Config; got.AckWait != cfg.AckWait || got.MaxDeliver != cfg.MaxDeliver || got.OptStartSeq != 2 {
		t.Errorf("recreated with %+v", got)
	}
	if _, _, _, err := ResetConsumer(ctx, f.js, f.cfg.Stream, "nope", 1); !errors.Is(err, consumer.ErrGroupMissing) {
		t.Errorf("missing consumer: %v", err)
	}
}

// TestRequeueAndPurge: dead letters go back to the subject they came from
// with a new Nats-Msg-Id (the de-duplication window would drop the old
// one), and leave the dead-letter stream once stored.
func TestRequeueAndPurge(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 4)
	src := f.source(t)
	msgs := fetchAll(t, src, 4, 5*time.Second)
	dead := make([]consumer.DeadLetter, len(msgs))
	for i := range msgs {
		dead[i] = consumer.DeadLetter{Message: msgs[i], Reason: "bad " + msgs[i].ID}
	}
	if err := src.DeadLetter(ctx, dead); err != nil {
		t.Fatal(err)
	}
	list, err := DeadLetters(ctx, f.js, f.cfg.DeadLetters, 0, 3)
	if err != nil || len(list) != 3 || list[0].Reason != "bad 1" || list[0].OriginalID != "1" || list[0].Deliveries != 1 ||
		list[0].Subject != "t1.events.db.tbl" || string(list[0].Data) != `{"n":1}` {
		t.Fatalf("list: %+v, %v", list, err)
	}
	rc := RequeueConfig{DeadLetters: f.cfg.DeadLetters, SubjectPrefix: f.cfg.SubjectPrefix, DeadLetterPrefix: f.cfg.DeadLetterPrefix}
	moved, _, err := Requeue(ctx, f.js, rc, []uint64{2, 99})
	if err != nil || len(moved) != 1 || moved[0].Subject != "t1.events.db.tbl" {
		t.Fatalf("requeue: %+v, %v", moved, err)
	}
	st, _ := StreamState(ctx, f.js, f.cfg.Stream)
	if st.Msgs != 5 {
		t.Fatalf("%d messages in the stream after the requeue, want 5 (not de-duplicated)", st.Msgs)
	}
	got := fetchAll(t, src, 1, 5*time.Second)
	if string(got[0].Data) != `{"n":2}` || got[0].Subject != "t1.events.db.tbl" {
		t.Fatalf("requeued message: %q on %s", got[0].Data, got[0].Subject)
	}
	if moved, _, _ := Requeue(ctx, f.js, rc, []uint64{2}); len(moved) != 0 {
		t.Fatal("a dead letter was requeued twice")
	}
	n, _, err := RequeueAll(ctx, f.js, rc, nil)
	if dst, _ := StreamState(ctx, f.js, f.cfg.DeadLetters); n != 3 || err != nil || dst.Msgs != 0 {
		t.Fatalf("requeue all: %d, %v; %d left", n, err, dst.Msgs)
	}

	// Purge.
	more := fetchAll(t, src, 3, 5*time.Second)
	dead = dead[:0]
	for i := range more {
		dead = append(dead, consumer.DeadLetter{Message: more[i], Reason: "again"})
	}
	if err := src.DeadLetter(ctx, dead); err != nil {
		t.Fatal(err)
	}
	if n, err := PurgeDeadLetters(ctx, f.js, f.cfg.DeadLetters); n != 3 || err != nil {
		t.Fatalf("purge: %d, %v", n, err)
	}
	if dst, _ := StreamState(ctx, f.js, f.cfg.DeadLetters); dst.Msgs != 0 {
		t.Fatalf("%d dead letters after the purge", dst.Msgs)
	}

	// A truncated dead letter (only a prefix of its payload kept) is
	// refused and stays.
	f.publish(t, 1)
	one := fetchAll(t, src, 1, 5*time.Second)
	if err := src.DeadLetter(ctx, []consumer.DeadLetter{{Message: one[0], Reason: "too big", Size: 70000, SHA256: "abc"}}); err != nil {
		t.Fatal(err)
	}
	list, _ = DeadLetters(ctx, f.js, f.cfg.DeadLetters, 0, 10)
	if len(list) != 1 || !list[0].Truncated() || list[0].Size != 70000 || list[0].SHA256 != "abc" {
		t.Fatalf("truncated dead letter listed as %+v", list)
	}
	seq, _ := strconv.ParseUint(list[0].ID, 10, 64)
	if moved, truncated, err := Requeue(ctx, f.js, rc, []uint64{seq}); err != nil || len(moved) != 0 || len(truncated) != 1 || truncated[0] != seq {
		t.Fatalf("requeue of a truncated dead letter: %+v, %v, %v", moved, truncated, err)
	}
	if n, truncated, err := RequeueAll(ctx, f.js, rc, nil); n != 0 || len(truncated) != 1 || err != nil {
		t.Fatalf("requeue all with a truncated dead letter: %d, %v, %v", n, truncated, err)
	}

}

// TestReplayConsumer: the temporary consumer covers exactly the range,
// says when it is done, and Close deletes it.
func TestReplayConsumer(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	f.publish(t, 10)
	r, err := NewReplay(ctx, f.js, ReplayConfig{Stream: f.cfg.Stream, From: 3, To: 7})
	if err != nil {
		t.Fatal(err)
	}
	if r.Total() != 5 || r.Start() != 3 || r.End() != 7 {
		t.Errorf("range %d..%d, total %d", r.Start(), r.End(), r.Total())
	}
	var got []consumer.Message
	for len(got) < 8 {
		msgs, err := r.Source().Fetch(ctx, 100, time.Second)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("fetch: %v, %v", msgs, err)
		}
		got = append(got, msgs...)
	}
	if got[0].ID != "3" || r.Past(&got[4]) || !r.Past(&got[5]) {
		t.Fatalf("first %s; past %v %v", got[0].ID, r.Past(&got[4]), r.Past(&got[5]))
	}
	if done, _ := r.Done(ctx); done {
		t.Fatal("done with the range pending")
	}
	r.Source().Ack(ctx, got[:5])
	if !waitFor(5*time.Second, func() bool { done, _ := r.Done(ctx); return done }) {
		t.Fatal("not done once the range was acknowledged")
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.Consumer(ctx, f.cfg.Stream, r.Name()); !errors.Is(err, natsjs.ErrConsumerNotFound) {
		t.Errorf("the replay consumer is still there: %v", err)
	}
	if _, err := NewReplay(ctx, f.js, ReplayConfig{Stream: f.cfg.Stream, From: 11}); !errors.Is(err, ErrNothingToReplay) {
		t.Errorf("replay after the end: %v", err)
	}
	if at, ok, err := Oldest(ctx, f.js, f.cfg.Stream); !ok || err != nil || at.IsZero() {
		t.Errorf("oldest: %v %v %v", at, ok, err)
	}
}
