package redisstream

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

func TestSetupIdempotent(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute) // created at "0"
	ids := g.publish(t, raws(3)...)
	s := g.source(t, "a")
	got := fetchAll(t, s, 2, 5*time.Second)
	if err := s.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	for _, start := range []string{"0", "$", ids[0]} {
		created, info, err := Setup(ctx, g.c, g.stream, g.grp, start)
		if err != nil {
			t.Fatal(err)
		}
		if created || info.LastDeliveredID != ids[1] || info.Lag != 1 || info.Consumers != 1 || info.Pending != 0 || info.EntriesRead != 2 {
			t.Errorf("Setup again at %s: created %v info %+v, want the group untouched at %s", start, created, info, ids[1])
		}
	}
	rest := fetchAll(t, s, 1, 5*time.Second)
	if rest[0].ID != ids[2] {
		t.Errorf("after Setup again, fetched %s, want %s", rest[0].ID, ids[2])
	}

	// A fresh stream: "" means from the beginning, "$" only on purpose.
	n := testSeq.Add(1)
	fresh := fmt.Sprintf("test%d:fresh", n)
	t.Cleanup(func() { g.c.Del(ctx, fresh) })
	created, info, err := Setup(ctx, g.c, fresh, "g", "")
	if err != nil || !created || info.LastDeliveredID != "0-0" || info.Lag != 0 {
		t.Errorf("Setup of a new stream: %v %+v %v", created, info, err)
	}
	if typ := g.c.Type(ctx, fresh).Val(); typ != "stream" {
		t.Errorf("Setup made a %s, want a stream", typ)
	}
	for _, bad := range []string{"now", "-1", "1-x", ">"} {
		if _, _, err := Setup(ctx, g.c, fresh, "g2", bad); err == nil {
			t.Errorf("Setup at %q accepted", bad)
		}
	}
	g.c.Set(ctx, fresh+":string", "x", 0)
	t.Cleanup(func() { g.c.Del(ctx, fresh+":string") })
	if _, _, err := Setup(ctx, g.c, fresh+":string", "g", "0"); err == nil || !redis.HasErrorPrefix(err, "WRONGTYPE") {
		t.Errorf("Setup on a string key: %v, want WRONGTYPE", err)
	}
}

func TestSetupFrom(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	ids := g.publish(t, raws(5)...)
	for _, tc := range []struct {
		start string
		want  []string
	}{
		{ids[2], ids[3:]},
		{"0", ids},
		{"$", nil},
	} {
		grp := "from-" + tc.start
		created, info, err := Setup(ctx, g.c, g.stream, grp, tc.start)
		if err != nil || !created {
			t.Fatalf("Setup at %s: %v %v", tc.start, created, err)
		}
		if tc.start == "$" && info.LastDeliveredID != ids[4] {
			t.Errorf("Setup at $: last delivered %s, want %s", info.LastDeliveredID, ids[4])
		}
		cfg := g.config("a")
		cfg.Group = grp
		s, err := New(g.c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got []consumer.Message
		if len(tc.want) > 0 {
			got = fetchAll(t, s, len(tc.want), 5*time.Second)
		}
		if more, _ := s.Fetch(ctx, 10, 50*time.Millisecond); len(more) > 0 {
			got = append(got, more...)
		}
		if ids := msgIDs(got); !slices.Equal(ids, tc.want) && len(ids)+len(tc.want) > 0 {
			t.Errorf("group created at %s reads %v, want %v", tc.start, ids, tc.want)
		}
	}
}
