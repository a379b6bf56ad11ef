package jetstream

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/replay"
	"github.com/streamindex/indexer/internal/synth"
)

func TestOnTableSubject(t *testing.T) {
	for _, tc := range []struct {
		subject, db, table string
		want               bool
	}{
		{"idx.events.db.tbl", "db", "tbl", true},
		{"idx.events.my.db.tbl", "my.db", "tbl", true},
		{"idx.events.db.my.tbl", "db", "my.tbl", true},
		{"idx.events.db.tbl", "db", "tb", false},
		{"idx.events.db.tbl", "d", "tbl", false},
		{"idx.events.db.tbl.x", "db", "tbl", false},
		{"idx.events.dbXtbl", "db", "tbl", false},
		{"idx.eventsXdb.tbl", "db", "tbl", false},
		{"idx.events.other.tbl", "db", "tbl", false},
		{"other.events.db.tbl", "db", "tbl", false},
		{"idx.events.db.tbl", "db.tbl", "", false},
		{"", "db", "tbl", false},
	} {
		if got := onTableSubject(tc.subject, "idx.events", tc.db, tc.table); got != tc.want {
			t.Errorf("onTableSubject(%q, %q, %q) = %v, want %v", tc.subject, tc.db, tc.table, got, tc.want)
		}
		if got := tc.subject == TableSubject("idx.events", tc.db, tc.table); got != tc.want {
			t.Errorf("TableSubject(%q, %q) == %q is %v, want %v", tc.db, tc.table, tc.subject, got, tc.want)
		}
	}
}

// indexed reports whether e's file is in the index.
func indexed(t *testing.T, x *index.Index, e *event.Event) bool {
	t.Helper()
	_, err := x.Get(context.Background(), e.Database, e.Table, e.File.Path)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// runLoop runs the consume loop on a new source until it acknowledged
// (applied or dead-lettered) n more messages.
func (f *fixture) runLoop(t *testing.T, x *index.Index, n int64) {
	t.Helper()
	src := f.source(t)
	var acked atomic.Int64
	r, err := consumer.New(consumer.Config{Source: src, Index: x, Logger: slog.New(slog.DiscardHandler),
		AfterBatch: func(k int) { acked.Add(int64(k)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// A bound, not a timing: a message the server handed to the previous
	// loop's pull request as it stopped comes back after the consumer's
	// AckWait (30 s).
	ok := waitFor(2*time.Minute, func() bool { return acked.Load() >= n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("acknowledged %d of %d", acked.Load(), n)
	}
	src.Close()
}

// TestSubjectMismatchDeadLettered: an event published on another table's
// subject is dead-lettered with the reason and never reaches the index;
// names with dots are matched exactly; requeued, the mismatch is
// dead-lettered again (it goes back to the subject it was published on);
// a replay counts it invalid, as the workers did.
func TestSubjectMismatchDeadLettered(t *testing.T) {
	f := newFixture(t, testNames(1))
	ctx := context.Background()
	x := newTestIndex(t)
	good := synth.New(synth.Config{Seed: 1, Database: "db1", Table: "t1"}).Events(1)[0]
	forged := synth.New(synth.Config{Seed: 2, Database: "db1", Table: "t1"}).Events(1)[0]
	dotted := synth.New(synth.Config{Seed: 3, Database: "my.db", Table: "tbl"}).Events(1)[0]
	out := make([]Outgoing, 3)
	for i, e := range []*event.Event{&good, &forged, &dotted} {
		data, err := event.Encode(event.JSON, e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = Outgoing{Event: e, Data: data}
	}
	out[1].Subject = f.cfg.SubjectPrefix + ".db2.t2" // a writer allowed on db2.t2 only
	if err := f.pub.Publish(ctx, out); err != nil {
		t.Fatal(err)
	}
	f.runLoop(t, x, 3)

	list, err := DeadLetters(ctx, f.js, f.cfg.DeadLetters, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d dead letters, want the forged event only: %+v", len(list), list)
	}
	d := list[0]
	if d.OriginalID != "2" || d.Subject != "t1.events.db2.t2" ||
		!strings.Contains(d.Reason, `subject mismatch: the event is for database "db1", table "t1", whose events are published to t1.events.db1.t1, but it was published to t1.events.db2.t2`) {
		t.Errorf("dead letter %+v", d)
	}
	for _, tc := range []struct {
		e    *event.Event
		live bool
	}{{&good, true}, {&forged, false}, {&dotted, true}} {
		if live := indexed(t, x, tc.e); live != tc.live {
			t.Errorf("%s.%s %s in the index: %v, want %v", tc.e.Database, tc.e.Table, tc.e.File.Path, live, tc.live)
		}
	}

	// Requeued, it goes back to the subject it came on, and is refused again.
	seq, _ := strconv.ParseUint(d.ID, 10, 64)
	moved, _, err := Requeue(ctx, f.js, RequeueConfig{DeadLetters: f.cfg.DeadLetters, SubjectPrefix: f.cfg.SubjectPrefix, DeadLetterPrefix: f.cfg.DeadLetterPrefix}, []uint64{seq})
	if err != nil || len(moved) != 1 || moved[0].Subject != "t1.events.db2.t2" {
		t.Fatalf("requeue: %+v, %v", moved, err)
	}
	f.runLoop(t, x, 1)
	list, err = DeadLetters(ctx, f.js, f.cfg.DeadLetters, 0, 10)
	if err != nil || len(list) != 1 || list[0].OriginalID != "4" || !strings.Contains(list[0].Reason, "subject mismatch") {
		t.Fatalf("dead letters after the requeue: %+v, %v; want the requeued message (4) dead-lettered again", list, err)
	}
	if indexed(t, x, &forged) {
		t.Error("the requeued forged event reached the index")
	}

	// A replay of everything counts both copies invalid.
	r, err := NewReplay(ctx, f.js, ReplayConfig{Stream: f.cfg.Stream, SubjectPrefix: f.cfg.SubjectPrefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	sum, err := replay.Run(ctx, replay.Config{Range: r, Index: x, Logger: slog.New(slog.DiscardHandler)})
	if err != nil || !sum.Complete || sum.Messages != 4 || sum.Invalid != 2 {
		t.Errorf("replay: %v, %v; want 4 messages, 2 invalid", sum, err)
	}
	if indexed(t, x, &forged) {
		t.Error("the replay applied the forged event")
	}
}
