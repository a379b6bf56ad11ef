package testserver

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestProxyDropReply: the request reaches the server and runs there; its
// reply is lost and the connection reset.
func TestProxyDropReply(t *testing.T) {
	s := Redis(t)
	p := NewProxy(t, s.Addr())
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer c.Close()
	ctx := t.Context()
	if err := c.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Set(Faults{DropReply: 1, ReplyTo: RedisCommandIs("INCR")})
	if err := c.Get(ctx, "a").Err(); err != nil {
		t.Fatalf("GET is not aimed at: %v", err)
	}
	if err := c.Incr(ctx, "a").Err(); err == nil {
		t.Fatal("INCR got its reply")
	}
	p.Set(Faults{})
	if v := s.Client(t).Get(ctx, "a").Val(); v != "2" {
		t.Fatalf("a = %s, want 2: the INCR ran", v)
	}
	if st := p.Stats(); st.DroppedReplies != 1 || st.Faults() != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestProxyResetAfter: a connection is reset after its byte budget; the
// client reconnects.
func TestProxyResetAfter(t *testing.T) {
	s := Redis(t)
	p := NewProxy(t, s.Addr())
	p.Set(Faults{ResetAfter: 2000, Latency: time.Millisecond})
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer c.Close()
	ctx := t.Context()
	failed := 0
	for i := 0; i < 200; i++ {
		if err := c.Set(ctx, "k", strings.Repeat("x", 100), 0).Err(); err != nil {
			failed++
		}
	}
	st := p.Stats()
	if failed == 0 || st.Resets == 0 || st.Conns < 2 {
		t.Fatalf("%d failures, stats %+v: want resets and reconnections", failed, st)
	}
	if n := p.CutAll(); n > 1 {
		t.Fatalf("cut %d connections, want at most the pool's one", n)
	}
	p.Set(Faults{Refuse: true})
	if err := c.Ping(ctx).Err(); err == nil {
		// the pooled connection was cut: a new one must be refused
		t.Fatal("PING went through a refusing proxy")
	}
}
