package redisstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/consumertest"
	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish/redispub"
)

func raws(n int) []consumertest.Raw {
	out := make([]consumertest.Raw, n)
	for i := range out {
		out[i] = consumertest.Raw{Data: []byte(fmt.Sprintf(`{"n":%d}`, i)), ContentType: "json"}
	}
	return out
}

// fetchAll fetches until n messages came or within passed.
func fetchAll(t *testing.T, s *Source, n int, within time.Duration) []consumer.Message {
	t.Helper()
	deadline := time.Now().Add(within)
	var got []consumer.Message
	for len(got) < n && time.Now().Before(deadline) {
		msgs, err := s.Fetch(context.Background(), n-len(got), 100*time.Millisecond)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		got = append(got, msgs...)
	}
	if len(got) != n {
		t.Fatalf("fetched %d messages, want %d", len(got), n)
	}
	return got
}

func msgIDs(msgs []consumer.Message) []string {
	out := make([]string, len(msgs))
	for i := range msgs {
		out[i] = msgs[i].ID
	}
	slices.Sort(out)
	return out
}

// pendingOf returns the group's pending entries: id -> (owner, deliveries).
func (g *group) pendingOf(t *testing.T) map[string]redis.XPendingExt {
	t.Helper()
	ps, err := g.c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: g.stream, Group: g.grp, Start: "-", End: "+", Count: 1000}).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]redis.XPendingExt{}
	for _, p := range ps {
		out[p.ID] = p
	}
	return out
}

func TestConfig(t *testing.T) {
	c := server.Client(t)
	if _, err := New(c, Config{}); err == nil || !strings.Contains(err.Error(), "Consumer is required") {
		t.Errorf("New without a consumer: %v", err)
	}
	for _, cfg := range []Config{
		{Consumer: "a", ClaimMinIdle: -time.Second},
		{Consumer: "a", ClaimMinIdle: time.Microsecond},
		{Consumer: "a", ClaimEvery: -1},
		{Consumer: "a", MaxBlock: -1},
		{Consumer: "a", Stream: "s", DeadLetterStream: "s"},
	} {
		if _, err := New(c, cfg); err == nil {
			t.Errorf("New(%+v) accepted an invalid config", cfg)
		}
	}
	s, err := New(c, Config{Consumer: "a"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Stream: "idx:events", Group: "indexer", Consumer: "a", DeadLetterStream: "idx:events:dlq", DeadLetterMaxLen: 100_000,
		ClaimMinIdle: time.Minute, ClaimEvery: 15 * time.Second, MaxBlock: 250 * time.Millisecond, DeadConsumerIdle: time.Hour}
	got := s.cfg
	got.Logger = nil
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	if s.ExtendEvery() != 20*time.Second {
		t.Errorf("ExtendEvery = %v, want ClaimMinIdle/3", s.ExtendEvery())
	}
	if s, _ := New(c, Config{Consumer: "a", ClaimMinIdle: 200 * time.Millisecond}); s.cfg.ClaimEvery != 100*time.Millisecond {
		t.Errorf("ClaimEvery = %v, want at least 100ms", s.cfg.ClaimEvery)
	}
	s.Close()
	s.Close()
	if _, err := s.Fetch(context.Background(), 10, time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Fetch after Close: %v, want ErrClosed", err)
	}
}

func TestGroupMissing(t *testing.T) {
	ctx := context.Background()
	c := server.Client(t)
	// The defaults, so the message is exactly what an operator reads.
	t.Cleanup(func() { c.Del(ctx, "idx:events") })
	s, err := New(c, Config{Consumer: "a", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const want = `consumer group "indexer" of stream "idx:events" does not exist (NOGROUP): create it with 'indexer setup --source redis'`
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, consumer.ErrGroupMissing) || consumer.Classify(err) != consumer.Fatal {
			t.Errorf("%s: %v (class %v), want consumer.ErrGroupMissing, fatal", what, err, consumer.Classify(err))
		}
		if err != nil && err.Error() != want {
			t.Errorf("%s: message %q, want %q", what, err, want)
		}
	}
	_, err = s.Fetch(ctx, 10, 100*time.Millisecond)
	check("no stream", err)

	// The stream exists, the group does not.
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "idx:events", Values: []any{"data", "{}", "ct", "json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	s.startRecovery()
	_, err = s.Fetch(ctx, 10, 100*time.Millisecond) // recovery (XPENDING)
	check("no group, recovering", err)
	_, err = s.Fetch(ctx, 10, 100*time.Millisecond) // claim pass, then XREADGROUP
	check("no group, claim pass", err)
	s.nextClaim = time.Now().Add(time.Hour)
	_, err = s.Fetch(ctx, 10, 100*time.Millisecond)
	check("no group, read", err)
	err = s.DeadLetter(ctx, []consumer.DeadLetter{{Message: consumer.Message{ID: "1-0", Deliveries: 1}, Reason: "r"}})
	check("dead-letter", err)
	_, err = s.Lag(ctx)
	check("lag", err)
	if s, err := New(c, Config{Consumer: "a", Stream: "test:nostream"}); err != nil {
		t.Fatal(err)
	} else if _, err := s.Lag(ctx); !errors.Is(err, consumer.ErrStreamMissing) || consumer.Classify(err) != consumer.Fatal ||
		err.Error() != `stream "test:nostream" does not exist: create it with 'indexer setup --source redis'` {
		t.Errorf("lag of a missing stream: %v", err)
	}
	if n, _ := c.Exists(ctx, "idx:events:dlq").Result(); n != 0 {
		t.Error("the dead-letter stream was written to")
	}
	if groups, _ := c.XInfoGroups(ctx, "idx:events").Result(); len(groups) != 0 {
		t.Errorf("the worker created a group: %+v", groups)
	}
}

// TestTrimmedWhilePending: entries trimmed from the stream while pending
// come back Lost, through another consumer's claim pass and through the
// owner's own recovery, and acknowledging them clears the pending list.
func TestTrimmedWhilePending(t *testing.T) {
	ctx := context.Background()
	for _, path := range []string{"claim", "recovery"} {
		t.Run(path, func(t *testing.T) {
			g := newGroup(t, 200*time.Millisecond)
			ids := g.publish(t, raws(3)...)
			a := g.source(t, "a")
			fetchAll(t, a, 3, 5*time.Second) // never acknowledged
			if err := g.c.XTrimMaxLen(ctx, g.stream, 0).Err(); err != nil {
				t.Fatal(err)
			}
			var s *Source
			var minDeliveries int
			if path == "claim" {
				time.Sleep(250 * time.Millisecond)
				s, minDeliveries = g.source(t, "b"), 2
			} else {
				s, minDeliveries = g.source(t, "a"), 1 // a restarted under the same name
			}
			got := fetchAll(t, s, 3, 5*time.Second)
			if !slices.Equal(msgIDs(got), ids) {
				t.Fatalf("got %v, want %v", msgIDs(got), ids)
			}
			for _, m := range got {
				if !m.Lost || m.Data != nil || m.Deliveries < minDeliveries || m.Time.IsZero() {
					t.Errorf("%s: lost %v data %q deliveries %d time %v, want a lost message", m.ID, m.Lost, m.Data, m.Deliveries, m.Time)
				}
			}
			if err := s.Ack(ctx, got); err != nil {
				t.Fatal(err)
			}
			if n := g.pending(t); n != 0 {
				t.Errorf("pending = %d after acknowledging the lost messages", n)
			}
			if n := len(s.inflight); n != 0 {
				t.Errorf("%d messages still in flight after their ack", n)
			}
		})
	}
}

// TestRecoverOwnPending: entries delivered to this consumer by a fetch
// whose reply was lost come back at the next Fetch, with the delivery
// count Redis recorded, while messages in flight are neither handed out
// again nor counted as delivered again.
func TestRecoverOwnPending(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	ids := g.publish(t, raws(5)...)
	a := g.source(t, "a")
	held := fetchAll(t, a, 2, 5*time.Second)
	// An XREADGROUP whose reply never reached the source.
	if err := g.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: g.grp, Consumer: "a", Streams: []string{g.stream, ">"}, Count: 2, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	a.startRecovery()
	got, err := a.Fetch(ctx, 10, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(msgIDs(got), ids[2:4]) {
		t.Fatalf("recovered %v, want %v (in flight: %v)", msgIDs(got), ids[2:4], msgIDs(held))
	}
	for _, m := range got {
		if m.Deliveries != 1 || m.Lost || len(m.Data) == 0 || m.ContentType != "json" {
			t.Errorf("recovered %+v, want its first delivery with data", m)
		}
	}
	next := fetchAll(t, a, 1, 5*time.Second)
	if next[0].ID != ids[4] {
		t.Errorf("after recovery fetched %s, want %s", next[0].ID, ids[4])
	}
	for id, p := range g.pendingOf(t) {
		if p.RetryCount != 1 || p.Consumer != "a" {
			t.Errorf("%s: owner %s deliveries %d, want a and 1", id, p.Consumer, p.RetryCount)
		}
	}
	// The recovery pages through the pending list with max.
	b := g.source(t, "a")
	var again []consumer.Message
	for range 3 {
		msgs, err := b.Fetch(ctx, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) > 2 {
			t.Fatalf("Fetch(max 2) returned %d", len(msgs))
		}
		again = append(again, msgs...)
	}
	if !slices.Equal(msgIDs(again), ids) {
		t.Errorf("a restarted a recovered %v, want all %v", msgIDs(again), ids)
	}
	if err := b.Ack(ctx, again); err != nil {
		t.Fatal(err)
	}
	if n := g.pending(t); n != 0 {
		t.Errorf("pending = %d", n)
	}
}

func TestDeadLetterEntry(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	msgpack := []byte{0x81, 0xa1, 'v', 0x01}
	ids := g.publish(t, consumertest.Raw{Data: msgpack, ContentType: "msgpack"}, consumertest.Raw{Data: []byte("{}"), ContentType: "json"})
	s := g.source(t, "w1")
	got := fetchAll(t, s, 2, 5*time.Second)
	before := time.Now().UnixMilli()
	if err := s.DeadLetter(ctx, []consumer.DeadLetter{{Message: got[0], Reason: "invalid event: field v: bad"}}); err != nil {
		t.Fatal(err)
	}
	xs, err := g.c.XRange(ctx, g.dlq, "-", "+").Result()
	if err != nil || len(xs) != 1 {
		t.Fatalf("dead letters %v %v", xs, err)
	}
	at, _ := strconv.ParseInt(fmt.Sprint(xs[0].Values["dead_lettered_at"]), 10, 64)
	if at < before-1000 || at > time.Now().UnixMilli()+1000 {
		t.Errorf("dead_lettered_at %d, want about %d", at, before)
	}
	delete(xs[0].Values, "dead_lettered_at")
	sum := sha256.Sum256(msgpack)
	want := map[string]any{"data": string(msgpack), "ct": "msgpack", "reason": "invalid event: field v: bad",
		"original_id": ids[0], "deliveries": "1", "stream": g.stream, "group": g.grp, "consumer": "w1",
		"data_size": "4", "data_sha256": hex.EncodeToString(sum[:])}
	if fmt.Sprint(xs[0].Values) != fmt.Sprint(want) {
		t.Errorf("dead letter fields\n %v\nwant\n %v", xs[0].Values, want)
	}
	if p := g.pendingOf(t); len(p) != 1 || p[ids[1]].ID == "" {
		t.Errorf("pending %v, want only %s", p, ids[1])
	}
	// Dead-lettering it again (another consumer took it over and failed
	// it too) adds nothing.
	if err := s.DeadLetter(ctx, []consumer.DeadLetter{{Message: got[0], Reason: "again"}}); err != nil {
		t.Fatal(err)
	}
	if n := g.c.XLen(ctx, g.dlq).Val(); n != 1 {
		t.Errorf("%d dead letters after dead-lettering an acknowledged entry again, want 1", n)
	}
	// Lost messages are acknowledged, never dead-lettered.
	if err := s.DeadLetter(ctx, []consumer.DeadLetter{{Message: consumer.Message{ID: ids[1], Lost: true}, Reason: "lost"}}); err != nil {
		t.Fatal(err)
	}
	if n := g.c.XLen(ctx, g.dlq).Val(); n != 1 || g.pending(t) != 0 {
		t.Errorf("after dead-lettering a lost message: %d dead letters, %d pending; want 1, 0", n, g.pending(t))
	}
}

// TestDeadLetterFails: a failing dead-letter call moves and acknowledges
// nothing.
func TestDeadLetterFails(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	g.publish(t, raws(2)...)
	s := g.source(t, "a")
	got := fetchAll(t, s, 2, 5*time.Second)
	if err := g.c.Set(ctx, g.dlq, "planted", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := s.DeadLetter(ctx, []consumer.DeadLetter{{Message: got[0], Reason: "r0"}, {Message: got[1], Reason: "r1"}})
	if err == nil || !redis.HasErrorPrefix(err, "WRONGTYPE") || consumer.Classify(err) == consumer.Retry {
		t.Fatalf("dead-letter to a string key: %v (class %v), want WRONGTYPE, not retried", err, consumer.Classify(err))
	}
	t.Log(err)
	if v, err := g.c.Get(ctx, g.dlq).Result(); v != "planted" || err != nil {
		t.Errorf("dead-letter key = %q %v, want it untouched", v, err)
	}
	if n := g.pending(t); n != 2 {
		t.Errorf("pending = %d, want 2: a failed dead-letter acknowledges nothing", n)
	}
	if len(s.inflight) != 2 {
		t.Errorf("%d in flight, want 2", len(s.inflight))
	}
}

// TestMalformedEntries: an entry must have one data field, at most one ct
// and nothing but the fields dlq requeue adds. Any other comes out of
// every path (read, claim, recovery) Malformed, with a reason naming its
// fields, its first data and ct kept; the dead letter carries the reason.
// go-redis's XMessage keeps fields in a map, where a second data replaces
// the first: the source must see the entry's own field list.
func TestMalformedEntries(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		fields []any
		reason string // "" for a well-formed entry
	}{
		{"data twice", []any{"data", `{"a":1}`, "data", `{"b":2}`, "ct", "json"}, `has fields other than one data and one ct (its fields: "data", "data", "ct")`},
		{"ct twice", []any{"data", `{"a":1}`, "ct", "json", "ct", "msgpack"}, `(its fields: "data", "ct", "ct")`},
		{"an unknown field", []any{"data", `{"a":1}`, "trace", "x"}, `(its fields: "data", "trace")`},
		{"no data", []any{"payload", "{}", "ct", "json"}, `stream entry has no "data" field (its fields: "payload", "ct")`},
		{"requeued", []any{"data", `{"a":1}`, "ct", "json", "requeued_from", "1-1", "original_id", "0-1"}, ""},
		{"data only", []any{"data", `{"a":1}`}, ""},
	}
	for _, path := range []string{"read", "claim", "recovery"} {
		t.Run(path, func(t *testing.T) {
			g := newGroup(t, 100*time.Millisecond)
			var ids []string
			for _, c := range cases {
				id, err := g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.stream, Values: c.fields}).Result()
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			s := g.source(t, "a")
			var got []consumer.Message
			switch path {
			case "read":
				got = fetchAll(t, s, len(cases), 5*time.Second)
			case "claim":
				fetchAll(t, g.source(t, "dead"), len(cases), 5*time.Second)
				time.Sleep(150 * time.Millisecond)
				got = fetchAll(t, s, len(cases), 5*time.Second)
			case "recovery":
				fetchAll(t, s, len(cases), 5*time.Second)
				s = g.source(t, "a") // a restarted under the same name
				got = fetchAll(t, s, len(cases), 5*time.Second)
			}
			for i, c := range cases {
				m := got[i]
				if m.ID != ids[i] {
					t.Fatalf("message %d is %s, want %s", i, m.ID, ids[i])
				}
				if !strings.Contains(m.Malformed, c.reason) || (c.reason == "") != (m.Malformed == "") {
					t.Errorf("%s: Malformed %q, want it to say %q", c.name, m.Malformed, c.reason)
				}
				first := func(name string) string {
					for k := 0; k < len(c.fields); k += 2 {
						if c.fields[k] == name {
							return c.fields[k+1].(string)
						}
					}
					return ""
				}
				if string(m.Data) != first("data") || m.ContentType != first("ct") {
					t.Errorf("%s: data %q ct %q, want the first data %q and ct %q", c.name, m.Data, m.ContentType, first("data"), first("ct"))
				}
			}
			var dead []consumer.DeadLetter
			for _, m := range got {
				if m.Malformed != "" {
					dead = append(dead, consumer.DeadLetter{Message: m, Reason: m.Malformed})
				}
			}
			if err := s.DeadLetter(ctx, dead); err != nil {
				t.Fatal(err)
			}
			xs := g.c.XRange(ctx, g.dlq, "-", "+").Val()
			if len(xs) != 4 {
				t.Fatalf("%d dead letters, want 4", len(xs))
			}
			if r := fmt.Sprint(xs[0].Values["reason"]); !strings.HasPrefix(r, "stream entry has fields other than one data and one ct") || xs[0].Values["data"] != `{"a":1}` {
				t.Errorf("dead letter of data twice: %v", xs[0].Values)
			}
		})
	}
}

// TestExtend: Extend renews the lease of entries this consumer owns
// without counting a delivery, and leaves entries another consumer took
// over alone.
func TestExtend(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	g.publish(t, raws(2)...)
	a := g.source(t, "a")
	got := fetchAll(t, a, 2, 5*time.Second)
	time.Sleep(150 * time.Millisecond)
	// b takes over the second one (its lease ended, say).
	if err := g.c.XClaim(ctx, &redis.XClaimArgs{Stream: g.stream, Group: g.grp, Consumer: "b", Messages: []string{got[1].ID}}).Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := a.Extend(ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	p := g.pendingOf(t)
	if e := p[got[0].ID]; e.Consumer != "a" || e.RetryCount != 1 || e.Idle >= 100*time.Millisecond {
		t.Errorf("extended entry: owner %s deliveries %d idle %v; want a, 1, renewed", e.Consumer, e.RetryCount, e.Idle)
	}
	if e := p[got[1].ID]; e.Consumer != "b" || e.RetryCount != 2 {
		t.Errorf("entry taken over by b: owner %s deliveries %d; want b, 2 (not taken back)", e.Consumer, e.RetryCount)
	}
	if _, held := a.inflight[got[1].ID]; held {
		t.Error("a still holds the entry b took over")
	}
	if err := a.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := a.Extend(ctx, got); err != nil {
		t.Fatalf("extend of acknowledged messages: %v", err)
	}
	if n := g.pending(t); n != 0 {
		t.Errorf("pending = %d: extending acknowledged entries revived them", n)
	}
}

// TestDeadConsumers: the claim pass deletes consumers idle longer than
// DeadConsumerIdle that own no pending entry, keeps those with pending
// entries, and never deletes itself.
func TestDeadConsumers(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	g.publish(t, raws(1)...)
	for _, name := range []string{"idle-empty", "self"} {
		g.c.XGroupCreateConsumer(ctx, g.stream, g.grp, name)
	}
	if err := g.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: g.grp, Consumer: "idle-pending", Streams: []string{g.stream, ">"}, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	g.c.XGroupCreateConsumer(ctx, g.stream, g.grp, "recent")
	cfg := g.config("self")
	cfg.DeadConsumerIdle = 300 * time.Millisecond
	s, err := New(g.c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(ctx, 10, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cs, err := g.c.XInfoConsumers(ctx, g.stream, g.grp).Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if want := []string{"idle-pending", "recent", "self"}; !slices.Equal(names, want) {
		t.Errorf("consumers %v, want %v", names, want)
	}

	// Disabled: nothing is deleted. (Redis 7.0 neither creates a consumer
	// nor refreshes its idle time on a read that delivers nothing, so
	// "other" does not show up.)
	time.Sleep(400 * time.Millisecond)
	cfg.DeadConsumerIdle = -1
	cfg.Consumer = "other"
	s, _ = New(g.c, cfg)
	s.Fetch(ctx, 10, 10*time.Millisecond)
	if cs := g.c.XInfoConsumers(ctx, g.stream, g.grp).Val(); len(cs) != 3 {
		t.Errorf("%d consumers with removal disabled, want 3: %+v", len(cs), cs)
	}
}

func TestLag(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	s := g.source(t, "a")
	check := func(want int64) {
		t.Helper()
		if n, err := s.Lag(ctx); n != want || err != nil {
			t.Errorf("lag = %d %v, want %d", n, err, want)
		}
	}
	check(0)
	ids := g.publish(t, raws(10)...)
	check(10)
	fetchAll(t, s, 4, 5*time.Second)
	check(6)

	// A deleted entry in the unread part makes Redis unable to tell: the
	// fallback is the stream's length (an upper bound), and 0 once read up.
	g.c.XDel(ctx, g.stream, ids[6])
	if info, _ := groupInfo(ctx, g.c, g.stream, g.grp); info.Lag != -1 {
		t.Logf("Redis reports lag %d with a deleted entry", info.Lag)
	}
	if n, err := s.Lag(ctx); err != nil || n < 5 || n > 9 {
		t.Errorf("lag with a deleted entry = %d %v, want 5..9", n, err)
	}
	fetchAll(t, s, 5, 5*time.Second)
	check(0)
}

// TestFetchBlocksBriefly: Fetch never blocks longer than MaxBlock in one
// command, and returns a message published while it waits.
func TestFetchWhileWaiting(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	s := g.source(t, "a")
	go func() {
		time.Sleep(600 * time.Millisecond)
		g.publish(t, raws(1)...)
	}()
	start := time.Now()
	msgs, err := s.Fetch(ctx, 10, 5*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v %v", msgs, err)
	}
	if took := time.Since(start); took < 500*time.Millisecond || took > 2*time.Second {
		t.Errorf("fetch took %v, want about 600ms", took)
	}
	start = time.Now()
	if msgs, err := s.Fetch(ctx, 10, 300*time.Millisecond); err != nil || len(msgs) != 0 {
		t.Fatalf("fetch: %v %v", msgs, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > time.Second {
		t.Errorf("an empty fetch took %v, want its wait of 300ms", took)
	}
	if msgs, err := s.Fetch(ctx, 10, 0); err != nil || len(msgs) != 0 {
		t.Fatalf("fetch without waiting: %v %v", msgs, err)
	}
}

// TestServerDown: with the server gone, every call fails with an error
// the loop retries; once it is back, nothing was lost.
func TestServerDown(t *testing.T) {
	ctx := context.Background()
	srv := testserver.Redis(t, testserver.RedisConfig{AOF: true})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	if _, _, err := Setup(ctx, c, "s", "g", "0"); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, c, "s", redispub.Message{Data: []byte("a")}, redispub.Message{Data: []byte("b")})
	s, err := New(c, Config{Stream: "s", Group: "g", Consumer: "a", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Fetch(ctx, 1, time.Second)
	if err != nil || len(first) != 1 {
		t.Fatalf("fetch: %v %v", first, err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	retried := func(what string, err error) {
		t.Helper()
		if err == nil || consumer.Classify(err) != consumer.Retry {
			t.Errorf("%s with the server down: %v (class %v), want a retried error", what, err, consumer.Classify(err))
		}
	}
	_, err = s.Fetch(ctx, 10, 100*time.Millisecond)
	retried("fetch", err)
	retried("ack", s.Ack(ctx, first))
	retried("extend", s.Extend(ctx, first))
	retried("dead-letter", s.DeadLetter(ctx, []consumer.DeadLetter{{Message: first[0], Reason: "r"}}))
	_, err = s.Lag(ctx)
	retried("lag", err)
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	rest := fetchAll(t, s, 1, 5*time.Second)
	if err := s.Ack(ctx, append(first, rest...)); err != nil {
		t.Fatal(err)
	}
	if p := c.XPending(ctx, "s", "g").Val(); p.Count != 0 || rest[0].ID == first[0].ID {
		t.Errorf("pending %d, fetched %s then %s", p.Count, first[0].ID, rest[0].ID)
	}
}

// TestScriptFlush: the scripts reload themselves after SCRIPT FLUSH (or a
// restart without persistence of the script cache).
func TestScriptFlush(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, 100*time.Millisecond)
	g.publish(t, raws(3)...)
	a := g.source(t, "a")
	got := fetchAll(t, a, 3, 5*time.Second)
	steps := []struct {
		name string
		run  func() error
	}{
		{"extend", func() error { return a.Extend(ctx, got[:1]) }},
		{"dead-letter", func() error {
			return a.DeadLetter(ctx, []consumer.DeadLetter{{Message: got[0], Reason: "r"}})
		}},
		{"claim", func() error {
			time.Sleep(150 * time.Millisecond)
			b := g.source(t, "b")
			msgs, err := b.Fetch(ctx, 10, 0)
			if err == nil && len(msgs) != 2 {
				err = fmt.Errorf("claimed %d, want 2", len(msgs))
			}
			return err
		}},
	}
	for _, step := range steps {
		if err := g.c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := step.run(); err != nil {
			t.Errorf("%s after SCRIPT FLUSH: %v", step.name, err)
		}
	}
}

// TestLogKeysOnce: with the caller's logger naming the stream, group and
// consumer (as 'indexer run' does), the claim and recovery messages carry
// each key once.
func TestLogKeysOnce(t *testing.T) {
	g := newGroup(t, 50*time.Millisecond)
	g.publish(t, raws(3)...)
	fetchAll(t, g.source(t, "a"), 3, 5*time.Second) // held by a, never acknowledged
	var buf testserver.Buffer
	cfg := g.config("b")
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil)).With("stream", g.stream, "group", g.grp, "consumer", "b")
	b, err := New(g.c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fetchAll(t, b, 3, 10*time.Second) // claimed once idle
	b2, err := New(g.c, cfg)          // b restarted: recovers its own pending entries
	if err != nil {
		t.Fatal(err)
	}
	fetchAll(t, b2, 3, 10*time.Second)
	out := buf.String()
	for _, want := range []string{"claimed messages left idle", "recovered messages delivered to this consumer"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q message in the log:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if dup := duplicateKey(t, line); dup != "" {
			t.Errorf("key %q twice in %s", dup, line)
		}
	}
}

// duplicateKey returns a top-level key that a JSON object repeats.
func duplicateKey(t *testing.T, line string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		t.Fatalf("%s: %v", line, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if seen[k.(string)] {
			return k.(string)
		}
		seen[k.(string)] = true
	}
	return ""
}

// TestDeadLetterRetention: a dead letter keeps the prefix and the whole
// payload's size and digest the loop gave it (DeadLetters reports it
// truncated), and the dead-letter stream is trimmed to about
// DeadLetterMaxLen entries, the oldest first.
func TestDeadLetterRetention(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	g.publish(t, raws(300)...)
	cfg := g.config("a")
	cfg.DeadLetterMaxLen = 10
	s, err := New(g.c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, s, 300, 5*time.Second)
	dead := make([]consumer.DeadLetter, len(got))
	for i, m := range got {
		dead[i] = consumer.DeadLetter{Message: m, Reason: "bad", Size: 1000, SHA256: "abc"}
	}
	for i := 0; i < len(dead); i += 50 {
		if err := s.DeadLetter(ctx, dead[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.c.XLen(ctx, g.dlq).Val(); n < 10 || n >= 300 {
		t.Errorf("the dead-letter stream holds %d entries, want about 10 (MAXLEN ~)", n)
	}
	list, err := DeadLetters(ctx, g.c, g.dlq, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	last := list[len(list)-1]
	if last.OriginalID != got[299].ID || last.Size != 1000 || last.SHA256 != "abc" || !last.Truncated() {
		t.Errorf("newest dead letter %+v, want %s, size 1000, truncated", last, got[299].ID)
	}
}

// TestBacklog: the lag, the pending entries and the dead letters, as the
// worker's gauges show them, in one round trip.
func TestBacklog(t *testing.T) {
	ctx := context.Background()
	g := newGroup(t, time.Minute)
	s := g.source(t, "a")
	check := func(want consumer.Backlog) {
		t.Helper()
		if b, err := s.Backlog(ctx); err != nil || b != want {
			t.Errorf("Backlog = %+v, %v; want %+v", b, err, want)
		}
	}
	check(consumer.Backlog{})
	g.publish(t, raws(10)...)
	got := fetchAll(t, s, 4, 5*time.Second)
	check(consumer.Backlog{Lag: 6, Pending: 4})
	if err := s.DeadLetter(ctx, []consumer.DeadLetter{{Message: got[0], Reason: "r"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, got[1:2]); err != nil {
		t.Fatal(err)
	}
	check(consumer.Backlog{Lag: 6, Pending: 2, DeadLetters: 1})
}
