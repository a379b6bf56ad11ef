package redisstream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

// TestTrimmedBeforeFirstRead: entries trimmed from the stream before the
// group's first read are counted once the group caught up — for a group
// created by Setup, for one created at 0 without a read counter (an older
// setup, or XGROUP CREATE by hand), and for one created at "$" — while
// entries trimmed before Setup created the group are not the group's
// loss.
func TestTrimmedBeforeFirstRead(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		before int64 // entries added (and trimmed to keep) before the group exists
		create func(g *group) error
		add    int64 // entries added after, trimming the stream to keep
		keep   int64
		want   int64
	}{
		{name: "setup", create: setupAt("0"), add: 50, keep: 20, want: 30},
		{name: "setup on a trimmed stream", before: 40, create: setupAt("0"), add: 50, keep: 20, want: 10 + 30},
		{name: "setup at $", before: 40, create: setupAt("$"), add: 50, keep: 20, want: 30},
		{name: "setup at an id", before: 40, create: setupAtSecond, add: 50, keep: 20, want: 8 + 30},
		{name: "created without a read counter", create: func(g *group) error {
			return g.c.XGroupCreateMkStream(ctx, g.stream, g.grp, "0").Err()
		}, add: 50, keep: 20, want: 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(t, time.Minute)
			if err := g.c.XGroupDestroy(ctx, g.stream, g.grp).Err(); err != nil {
				t.Fatal(err)
			}
			add := func(n int64) {
				for i := range n {
					if err := g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.stream, MaxLen: 10, Values: []any{"data", fmt.Sprintf(`{"n":%d}`, i)}}).Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
			add(tc.before)
			if err := tc.create(g); err != nil {
				t.Fatal(err)
			}
			for i := range tc.add {
				if err := g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.stream, MaxLen: tc.keep, Values: []any{"data", fmt.Sprintf(`{"n":%d}`, i)}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			s := g.source(t, "a")
			left := g.c.XLen(ctx, g.stream).Val()
			if n, err := s.Trimmed(ctx); err != nil || n != 0 {
				t.Fatalf("before the group read anything: Trimmed = %d, %v; want 0 (it counts once the group caught up)", n, err)
			}
			got := fetchAll(t, s, int(left), 5*time.Second)
			if err := s.Ack(ctx, got); err != nil {
				t.Fatal(err)
			}
			if n, err := s.Trimmed(ctx); err != nil || n != tc.want {
				t.Errorf("Trimmed = %d, %v; want %d", n, err, tc.want)
			}
			if n, err := s.Trimmed(ctx); err != nil || n != 0 {
				t.Errorf("Trimmed again = %d, %v; want 0 (each counted once)", n, err)
			}
		})
	}
}

func setupAt(pos string) func(g *group) error {
	return func(g *group) error {
		_, _, err := Setup(context.Background(), g.c, g.stream, g.grp, pos)
		return err
	}
}

// setupAtSecond creates the group after the stream's second entry: of the
// 10 entries the stream holds then, the 8 after it are the group's.
func setupAtSecond(g *group) error {
	xs, err := g.c.XRangeN(context.Background(), g.stream, "-", "+", 2).Result()
	if err != nil {
		return err
	}
	_, _, err = Setup(context.Background(), g.c, g.stream, g.grp, xs[1].ID)
	return err
}

// TestReadCounterRefused: a worker whose Redis user may not run XGROUP
// SETID (an ACL from before it was needed) still reads, and says what to
// grant; a missing group still stops it.
func TestReadCounterRefused(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	if err := g.c.XGroupDestroy(ctx, g.stream, g.grp).Err(); err != nil {
		t.Fatal(err)
	}
	if err := g.c.XGroupCreate(ctx, g.stream, g.grp, "0").Err(); err != nil { // no read counter
		t.Fatal(err)
	}
	g.publish(t, raws(2)...)
	user := fmt.Sprintf("nosetid%d", testSeq.Add(1))
	if err := g.c.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~*", "+@all", "-xgroup|setid").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.c.Do(context.Background(), "ACL", "DELUSER", user) })
	c := redis.NewClient(&redis.Options{Addr: server.Addr(), Username: user, Password: "pw"})
	t.Cleanup(func() { c.Close() })
	s, err := New(c, g.config("a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fetchAll(t, s, 2, 5*time.Second); len(got) != 2 {
		t.Fatalf("fetched %d", len(got))
	}
	cfg := g.config("b")
	cfg.Group = "nope"
	missing, err := New(g.c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.Fetch(ctx, 10, 10*time.Millisecond); !errors.Is(err, consumer.ErrGroupMissing) {
		t.Errorf("a missing group: %v, want ErrGroupMissing", err)
	}
}
