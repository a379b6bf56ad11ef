package redisstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
