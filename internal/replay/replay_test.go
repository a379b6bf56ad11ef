package replay_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/replay"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish/redispub"
)

const stream = "idx:events"

// fixture is a Redis with a stream of synthetic events, their model, and
// the index.
type fixture struct {
	c      *redis.Client
	x      *index.Index
	events []event.Event
	ids    []string
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	c := testserver.Redis(t).Client(t)
	x, err := index.New(c, index.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := x.Load(ctx); err != nil {
		t.Fatal(err)
	}
	f := &fixture{c: c, x: x, events: synth.New(synth.Config{Seed: 3}).Events(n)}
	out := make([]redispub.Message, n)
	for i := range f.events {
		d, err := event.Encode(event.JSON, &f.events[i])
		if err != nil {
			t.Fatal(err)
		}
		out[i] = redispub.Message{Data: d, CT: "json"}
	}
	pub, err := redispub.New(c, redispub.Config{Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	if f.ids, err = pub.PublishRaw(ctx, out); err != nil { // the entry ids
		t.Fatal(err)
	}
	return f
}

// indexPrefixes are the keys of the index proper: entries, folders,
// tombstones, statistics and the table registry. (Queue records depend on
// how events were batched, so a rebuild need not reproduce them.)
var indexPrefixes = []string{"files:", "folders:", "idx:tomb:", "idx:stats:", "idx:tables"}

// snapshot is the keys and values of the index, or with all of every key
// but the stream (tombstone scores and the newest event time left out: a
// replay touches them).
func (f *fixture) snapshot(t *testing.T, all bool) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, k := range f.c.Keys(ctx, "*").Val() {
		keep := all && k != stream
		for _, p := range indexPrefixes {
			keep = keep || strings.HasPrefix(k, p)
		}
		if !keep {
			continue
		}
		switch f.c.Type(ctx, k).Val() {
		case "hash":
			for field, v := range f.c.HGetAll(ctx, k).Val() {
				if field != "last_event_ns" {
					out[k+" "+field] = v
				}
			}
		case "zset":
			for _, m := range f.c.ZRange(ctx, k, 0, -1).Val() {
				out[k+" "+m] = ""
			}
		case "set":
			for _, m := range f.c.SMembers(ctx, k).Val() {
				out[k+" "+m] = ""
			}
		case "list":
			out[k] = strings.Join(f.c.LRange(ctx, k, 0, -1).Val(), "\n")
		}
	}
	return out
}

func same(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (f *fixture) run(t *testing.T, ctx context.Context, from, to string, maxDeliver int) (replay.Summary, error) {
	t.Helper()
	r, err := redisstream.NewReplay(ctx, f.c, redisstream.ReplayConfig{Stream: stream, From: from, To: to, ClaimMinIdle: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(ctx); err != nil {
			t.Error(err)
		}
		if n := len(f.c.XInfoGroups(context.Background(), stream).Val()); n != 0 {
			t.Errorf("%d groups left after the replay", n)
		}
	}()
	return replay.Run(ctx, replay.Config{Range: r, Index: f.x, MaxDeliver: maxDeliver, BatchSize: 300,
		Logger: slog.New(slog.DiscardHandler)})
}

// TestReplayIdempotent: a replay onto an emptied index rebuilds it; a
// second one changes nothing, every outcome a duplicate or ignored.
func TestReplayIdempotent(t *testing.T) {
	f := newFixture(t, 3000)
	ctx := context.Background()
	if _, err := f.x.Apply(ctx, f.events); err != nil {
		t.Fatal(err)
	}
	want := f.snapshot(t, false)
	for _, k := range f.c.Keys(ctx, "*").Val() {
		if k != stream {
			f.c.Del(ctx, k)
		}
	}
	sum, err := f.run(t, ctx, "", "", 5)
	if err != nil || !sum.Complete || sum.Messages != 3000 || sum.Outcomes[index.Applied] == 0 {
		t.Fatalf("replay onto the emptied index: %v, %v", sum, err)
	}
	if !same(want, f.snapshot(t, false)) {
		t.Fatal("the replay did not rebuild the index")
	}
	all := f.snapshot(t, true)
	sum, err = f.run(t, ctx, "", "", 5)
	if err != nil || !sum.Complete || sum.Messages != 3000 || sum.Outcomes[index.Applied]+sum.Outcomes[index.Tombstoned] != 0 ||
		sum.Outcomes[index.Duplicate]+sum.Outcomes[index.Ignored] != 3000 {
		t.Fatalf("replay onto the correct index: %v, %v", sum, err)
	}
	if !same(all, f.snapshot(t, true)) {
		t.Fatal("a replay changed a correct index")
	}
}

// TestReplayRangeInvalidRefused: only the range is replayed; invalid
// messages are counted, not dead-lettered; events the index refuses are
// given up after MaxDeliver deliveries and reported.
func TestReplayRangeInvalidRefused(t *testing.T) {
	f := newFixture(t, 500)
	ctx := context.Background()
	bad := f.c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", `{"v":1}`, "ct", "json"}}).Val()
	f.c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", `{"v":2}`, "ct", "json"}})

	sum, err := f.run(t, ctx, f.ids[100], f.ids[199], 5)
	if err != nil || !sum.Complete || sum.Messages != 100 {
		t.Fatalf("range of 100: %v, %v", sum, err)
	}
	sum, err = f.run(t, ctx, bad, "", 5)
	if err != nil || !sum.Complete || sum.Messages != 2 || sum.Invalid != 2 || len(sum.Samples) != 2 || sum.Samples[0].ID != bad {
		t.Fatalf("invalid ones: %v %+v, %v", sum, sum.Samples, err)
	}
	if n := f.c.Exists(ctx, stream+":dlq").Val(); n != 0 {
		t.Fatal("the replay dead-lettered")
	}

	// A key of the wrong type where the first event's file goes.
	e := f.events[0]
	f.c.Set(ctx, f.x.Layout().Files(e.Database, e.Table, e.File.Date()), "x", 0)
	sum, err = f.run(t, ctx, f.ids[0], f.ids[0], 2)
	if err != nil || !sum.Complete || sum.Messages != 1 || sum.Refused != 1 || !strings.Contains(sum.Samples[0].Reason, "delivered 3 times") {
		t.Fatalf("refused: %v %+v, %v", sum, sum.Samples, err)
	}
}

// TestReplayInterrupted: a replay cancelled mid-way stops after the
// batch in flight and reports itself incomplete.
func TestReplayInterrupted(t *testing.T) {
	f := newFixture(t, 3000)
	r, err := redisstream.NewReplay(context.Background(), f.c, redisstream.ReplayConfig{Stream: stream, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	sum, err := replay.Run(ctx, replay.Config{Range: r, Index: f.x, BatchSize: 100, Logger: slog.New(slog.DiscardHandler),
		Progress: func(int64) { cancel() }})
	if err != nil || sum.Complete || sum.Messages == 0 || sum.Messages >= 3000 {
		t.Fatalf("cancelled replay: %v complete=%v, %v", sum, sum.Complete, err)
	}
}
