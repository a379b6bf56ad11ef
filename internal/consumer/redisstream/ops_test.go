package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

func TestPositions(t *testing.T) {
	for _, tc := range []struct {
		in          string
		first, last string
		bad         bool
	}{
		{in: "1700-5", first: "1700-5", last: "1700-5"},
		{in: "1700", first: "1700-0", last: "1700-18446744073709551615"},
		{in: "0", first: "0-0", last: "0-18446744073709551615"},
		{in: "01700", bad: true},
		{in: "1700-", bad: true},
		{in: "-5", bad: true},
		{in: "x", bad: true},
		{in: "1700-5-1", bad: true},
	} {
		first, err1 := ParseID(tc.in, true)
		last, err2 := ParseID(tc.in, false)
		if tc.bad {
			if err1 == nil || err2 == nil {
				t.Errorf("ParseID(%q) accepted", tc.in)
			}
			continue
		}
		if first != tc.first || last != tc.last || err1 != nil || err2 != nil {
			t.Errorf("ParseID(%q) = %q, %q (%v, %v), want %q, %q", tc.in, first, last, err1, err2, tc.first, tc.last)
		}
	}
	for in, want := range map[string]string{"1700-5": "1700-4", "1700-0": "1699-18446744073709551615", "0-0": "0-0", "0-1": "0-0"} {
		if got := StartBefore(in); got != want {
			t.Errorf("StartBefore(%q) = %q, want %q", in, got, want)
		}
	}
	at := time.UnixMilli(1700).Add(400 * time.Microsecond)
	if got := StartAtTime(at); got != "1699-18446744073709551615" {
		t.Errorf("StartAtTime = %q: the entries of t's millisecond must be included", got)
	}
	if got := LastAtTime(at); got != "1700-18446744073709551615" {
		t.Errorf("LastAtTime = %q", got)
	}
}

// addEntries adds n entries with explicit ids <ms>-0, ms = base+i.
func addEntries(t *testing.T, c *redis.Client, stream string, base int64, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id, err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, ID: fmt.Sprintf("%d-0", base+int64(i)),
			Values: []any{"data", fmt.Sprintf(`{"n":%d}`, i), "ct", "json"}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestStatusAndSetPosition: a staged group (some entries acknowledged,
// some pending, some unread) as Status reports it; SetGroupPosition moves
// it and keeps its lag known.
func TestStatusAndSetPosition(t *testing.T) {
	g := newGroup(t, time.Minute)
	ctx := context.Background()
	ids := addEntries(t, g.c, g.stream, 1_000_000, 10)
	src := g.source(t, "w1")
	msgs, err := src.Fetch(ctx, 6, time.Second)
	if err != nil || len(msgs) != 6 {
		t.Fatalf("fetch: %d, %v", len(msgs), err)
	}
	if err := src.Ack(ctx, msgs[:4]); err != nil {
		t.Fatal(err)
	}
	g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.dlq, Values: []any{"data", "x", "reason", "r"}})

	st, err := Status(ctx, g.c, g.stream, g.grp, g.dlq)
	if err != nil {
		t.Fatal(err)
	}
	gs := st.Group
	switch {
	case st.Length != 10 || st.First.ID != ids[0] || st.Last.ID != ids[9] || !st.First.Time.Equal(time.UnixMilli(1_000_000)):
		t.Errorf("stream: %+v first %+v last %+v", st, st.First, st.Last)
	case gs.Missing || gs.Lag != 4 || gs.LagEstimated || gs.Pending != 2 || gs.LastDelivered != ids[5]:
		t.Errorf("group: %+v, want lag 4, 2 pending, last delivered %s", gs, ids[5])
	case gs.OldestPending == nil || gs.OldestPending.ID != ids[4] || gs.OldestPending.Consumer != "w1" || gs.OldestPending.Deliveries != 1:
		t.Errorf("oldest pending: %+v, want %s held by w1", gs.OldestPending, ids[4])
	case len(gs.Consumers) != 1 || gs.Consumers[0].Name != "w1" || gs.Consumers[0].Pending != 2:
		t.Errorf("consumers: %+v", gs.Consumers)
	case st.DeadLetters.Count != 1 || st.DeadLetters.Oldest == nil:
		t.Errorf("dead letters: %+v", st.DeadLetters)
	}

	// Back to the third entry: lag 8 (entries 3..10), known.
	before, after, err := SetGroupPosition(ctx, g.c, g.stream, g.grp, StartBefore(ids[2]))
	if err != nil {
		t.Fatal(err)
	}
	if before.LastDeliveredID != ids[5] || after.Lag != 8 || after.Pending != 2 {
		t.Errorf("set position: before %+v after %+v; want lag 8 and the 2 pending kept", before, after)
	}
	next, err := NextEntry(ctx, g.c, g.stream, after.LastDeliveredID)
	if err != nil || next == nil || next.ID != ids[2] {
		t.Errorf("next entry %+v, %v; want %s", next, err, ids[2])
	}
	msgs, _ = src.Fetch(ctx, 1, time.Second)
	if len(msgs) != 1 || msgs[0].ID != ids[2] {
		t.Errorf("after the reset the group delivered %v, want %s", msgs, ids[2])
	}
	// By time: the first entry at or after 1,000,007 ms.
	if _, after, err = SetGroupPosition(ctx, g.c, g.stream, g.grp, StartAtTime(time.UnixMilli(1_000_007))); err != nil || after.Lag != 3 {
		t.Errorf("by time: %+v, %v; want lag 3", after, err)
	}
	if _, _, err := SetGroupPosition(ctx, g.c, g.stream, "nope", "0"); !errors.Is(err, consumer.ErrGroupMissing) {
		t.Errorf("missing group: %v", err)
	}
}

// TestRequeue: dead letters go back to the stream and leave the
// dead-letter stream in one step; a call that cannot complete writes
// nothing.
func TestRequeue(t *testing.T) {
	g := newGroup(t, time.Minute)
	ctx := context.Background()
	var dl []string
	for i := 0; i < 5; i++ {
		id := g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.dlq, Values: []any{"data", fmt.Sprintf("d%d", i), "ct", "msgpack",
			"reason", "bad", "original_id", fmt.Sprintf("1-%d", i), "deliveries", "2", "dead_lettered_at", "1234"}}).Val()
		dl = append(dl, id)
	}
	list, err := DeadLetters(ctx, g.c, g.dlq, "", 3)
	if err != nil || len(list) != 3 || list[0].Reason != "bad" || list[0].Deliveries != 2 || list[0].OriginalID != "1-0" ||
		string(list[0].Data) != "d0" || list[0].ContentType != "msgpack" || !list[0].Time.Equal(time.UnixMilli(1234)) {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if more, _ := DeadLetters(ctx, g.c, g.dlq, list[2].ID, 10); len(more) != 2 {
		t.Fatalf("list after %s: %d, want 2", list[2].ID, len(more))
	}

	moved, truncated, err := Requeue(ctx, g.c, g.stream, g.dlq, []string{dl[1], "9-9"})
	if err != nil || len(moved) != 1 || moved[0].DeadLetterID != dl[1] || len(truncated) != 0 {
		t.Fatalf("requeue: %+v, %v, %v", moved, truncated, err)
	}
	x := g.c.XRange(ctx, g.stream, moved[0].NewID, moved[0].NewID).Val()
	if len(x) != 1 || x[0].Values["data"] != "d1" || x[0].Values["ct"] != "msgpack" || x[0].Values["requeued_from"] != dl[1] {
		t.Fatalf("requeued entry: %+v", x)
	}
	if n := g.c.XLen(ctx, g.dlq).Val(); n != 4 {
		t.Fatalf("%d dead letters left, want 4", n)
	}

	// Into a missing stream: refused, nothing written.
	if _, _, err := Requeue(ctx, g.c, g.stream+":nope", g.dlq, []string{dl[0]}); err == nil {
		t.Fatal("requeue into a missing stream succeeded")
	}
	if n := g.c.XLen(ctx, g.dlq).Val(); n != 4 || g.c.Exists(ctx, g.stream+":nope").Val() != 0 {
		t.Fatal("a failed requeue wrote")
	}

	// A truncated dead letter (only a prefix of its payload kept) is
	// refused, by id and by RequeueAll, and stays.
	cut := g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.dlq, Values: []any{"data", "{\"v\":1", "ct", "json", "reason", "bad",
		"original_id", "1-9", "data_size", "70000", "data_sha256", "abc"}}).Val()
	if moved, truncated, err := Requeue(ctx, g.c, g.stream, g.dlq, []string{cut}); err != nil || len(moved) != 0 || len(truncated) != 1 || truncated[0] != cut {
		t.Fatalf("requeue of a truncated dead letter: %+v, %v, %v", moved, truncated, err)
	}

	// All of them, including after SCRIPT FLUSH.
	g.c.ScriptFlush(ctx)
	n, truncated, err := RequeueAll(ctx, g.c, g.stream, g.dlq, nil)
	if err != nil || n != 4 || len(truncated) != 1 || g.c.XLen(ctx, g.dlq).Val() != 1 || g.c.XLen(ctx, g.stream).Val() != 5 {
		t.Fatalf("requeue all: %d, %v, %v; %d dead letters left, %d entries", n, truncated, err, g.c.XLen(ctx, g.dlq).Val(), g.c.XLen(ctx, g.stream).Val())
	}
	g.c.XDel(ctx, g.dlq, cut)

	g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.dlq, Values: []any{"data", "x"}})
	g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.dlq, Values: []any{"data", "y"}})
	if n, err := PurgeDeadLetters(ctx, g.c, g.dlq); n != 2 || err != nil || g.c.XLen(ctx, g.dlq).Val() != 0 {
		t.Fatalf("purge: %d, %v", n, err)
	}
}

// TestReplayRange: the temporary group covers exactly the range, says
// when it is done, and is removed by Close.
func TestReplayRange(t *testing.T) {
	g := newGroup(t, time.Minute)
	ctx := context.Background()
	ids := addEntries(t, g.c, g.stream, 2_000_000, 10)
	r, err := NewReplay(ctx, g.c, ReplayConfig{Stream: g.stream, From: "2000002-0", To: ids[6], Logger: g.log})
	if err != nil {
		t.Fatal(err)
	}
	if r.Total() != 5 || r.End() != ids[6] {
		t.Errorf("total %d (want the 5 entries of the range), end %s", r.Total(), r.End())
	}
	var got []consumer.Message
	for len(got) < 8 {
		msgs, err := r.Source().Fetch(ctx, 100, time.Second)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("fetch: %v, %v", msgs, err)
		}
		got = append(got, msgs...)
	}
	if got[0].ID != ids[2] || r.Past(&got[4]) || !r.Past(&got[5]) {
		t.Fatalf("first %s (want %s); past: %v %v", got[0].ID, ids[2], r.Past(&got[4]), r.Past(&got[5]))
	}
	if done, _ := r.Done(ctx); done {
		t.Fatal("done with every entry pending")
	}
	r.Source().Ack(ctx, got[:4])
	if done, _ := r.Done(ctx); done {
		t.Fatal("done with the range's last entry pending")
	}
	r.Source().Ack(ctx, got[4:5])
	if done, err := r.Done(ctx); !done || err != nil {
		t.Fatalf("not done once the range was acknowledged (%v); entries past it may stay pending", err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, gi := range g.c.XInfoGroups(ctx, g.stream).Val() {
		if gi.Name != g.grp {
			t.Errorf("group %s left behind", gi.Name)
		}
	}
	if _, err := NewReplay(ctx, g.c, ReplayConfig{Stream: g.stream, From: "3000000-0"}); !errors.Is(err, ErrNothingToReplay) {
		t.Errorf("replay after the end: %v", err)
	}
	var sm *StreamMissingError
	if _, err := NewReplay(ctx, g.c, ReplayConfig{Stream: g.stream + ":nope"}); !errors.As(err, &sm) {
		t.Errorf("replay of a missing stream: %v", err)
	}

	// A group left by a killed replay an hour ago is removed; a recent one
	// stays.
	old := ReplayGroupPrefix + strconv.FormatInt(time.Now().Add(-2*time.Hour).UnixMilli(), 10) + "-abc"
	recent := ReplayGroupPrefix + strconv.FormatInt(time.Now().UnixMilli(), 10) + "-abc"
	g.c.XGroupCreate(ctx, g.stream, old, "0")
	g.c.XGroupCreate(ctx, g.stream, recent, "0")
	removed, err := RemoveStaleReplayGroups(ctx, g.c, g.stream, time.Hour)
	if err != nil || len(removed) != 1 || removed[0] != old {
		t.Fatalf("removed %v, %v; want only %s", removed, err, old)
	}
}

// TestEstimateRange: the progress estimate of a replay counts the range,
// not the stream: exactly when the range or what lies outside it is small
// enough to count, else within a few percent (entries evenly spread).
func TestEstimateRange(t *testing.T) {
	g := newGroup(t, time.Minute)
	ctx := context.Background()
	ids := addEntries(t, g.c, g.stream, 5_000_000, 1000)
	const limit = 100 // counting reads at most this many entries each way
	for _, tc := range []struct {
		name       string
		from, to   int // entry indexes, inclusive
		want, slop int64
	}{
		{"small range", 400, 449, 50, 0},
		{"recent part, to the end", 950, 999, 50, 0},
		{"old part, to the end: the entries before are counted", 60, 999, 940, 0},
		{"middle, nothing countable: interpolated", 300, 899, 600, 30},
		{"all", 0, 999, 1000, 0},
	} {
		got := estimateRange(ctx, g.c, g.stream, StartBefore(ids[tc.from]), ids[tc.to], limit)
		if got < tc.want-tc.slop || got > tc.want+tc.slop {
			t.Errorf("%s: estimate %d, want %d±%d", tc.name, got, tc.want, tc.slop)
		}
	}
}

// TestOldest: the oldest entry's time, none for an empty stream, an error
// for a missing one.
func TestOldest(t *testing.T) {
	g := newGroup(t, time.Minute)
	ctx := context.Background()
	if _, ok, err := Oldest(ctx, g.c, g.stream); ok || err != nil {
		t.Fatalf("empty stream: %v %v", ok, err)
	}
	addEntries(t, g.c, g.stream, 5_000_000, 3)
	g.c.XTrimMinID(ctx, g.stream, "5000001-0")
	if at, ok, err := Oldest(ctx, g.c, g.stream); !ok || err != nil || !at.Equal(time.UnixMilli(5_000_001)) {
		t.Fatalf("oldest %v %v %v, want 5000001 ms", at, ok, err)
	}
	if _, _, err := Oldest(ctx, g.c, g.stream+":nope"); !errors.Is(err, consumer.ErrStreamMissing) {
		t.Fatalf("missing stream: %v", err)
	}
}
