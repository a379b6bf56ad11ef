package redisstream

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
)

func TestPublisher(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	p := NewPublisher(g.c, PublisherConfig{Stream: g.stream, MaxLen: 100, Pipeline: 37})
	msgs := make([]Outgoing, 1000)
	for i := range msgs {
		msgs[i] = Outgoing{Data: []byte(strconv.Itoa(i)), Format: event.Format(i % 2)}
	}
	ids, err := p.Publish(ctx, msgs)
	if err != nil || len(ids) != len(msgs) {
		t.Fatalf("published %d of %d: %v", len(ids), len(msgs), err)
	}
	for i := 1; i < len(ids); i++ {
		if compareIDs(ids[i-1], ids[i]) >= 0 {
			t.Fatalf("ids out of order: %s then %s", ids[i-1], ids[i])
		}
	}
	// MAXLEN ~ trims whole nodes (stream-node-max-entries, 100 by default).
	if n := g.c.XLen(ctx, g.stream).Val(); n < 100 || n > 300 {
		t.Errorf("stream length %d, want about 100", n)
	}
	last := g.c.XRevRangeN(ctx, g.stream, "+", "-", 2).Val()
	if len(last) != 2 || last[0].ID != ids[999] || last[0].Values["data"] != "999" || last[0].Values["ct"] != "msgpack" || last[1].Values["ct"] != "json" {
		t.Errorf("last entries %+v", last)
	}

	// No MaxLen: nothing is trimmed. A failing pipeline reports the ids
	// published before the failure.
	p = NewPublisher(g.c, PublisherConfig{Stream: g.stream + ":b"})
	t.Cleanup(func() { g.c.Del(ctx, g.stream+":b") })
	if ids, err := p.Publish(ctx, msgs); err != nil || len(ids) != 1000 || g.c.XLen(ctx, g.stream+":b").Val() != 1000 {
		t.Errorf("publish without MaxLen: %d ids, %v", len(ids), err)
	}
	g.c.Del(ctx, g.stream+":b")
	g.c.Set(ctx, g.stream+":b", "x", 0)
	if ids, err := p.Publish(ctx, msgs[:3]); err == nil || len(ids) != 0 || !redis.HasErrorPrefix(err, "WRONGTYPE") {
		t.Errorf("publish to a string key: %v %v", ids, err)
	}
}
