package redisstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseReadGroup(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      []string // per entry: id then fields, "|"-joined; "id|deleted" for a deleted entry
		err       string
	}{
		{name: "RESP3 null", raw: "_\r\n"},
		{name: "RESP2 null", raw: "*-1\r\n"},
		{name: "RESP3", raw: "%1\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$4\r\ndata\r\n$1\r\na\r\n$4\r\ndata\r\n$1\r\nb\r\n*2\r\n$3\r\n2-0\r\n_\r\n",
			want: []string{"1-0|data|a|data|b", "2-0|deleted"}},
		{name: "RESP2", raw: "*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ndata\r\n$0\r\n\r\n*2\r\n$3\r\n2-0\r\n*-1\r\n",
			want: []string{"1-0|data|", "2-0|deleted"}},
		{name: "binary payload", raw: "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ndata\r\n$4\r\n\r\n\x00\xff\r\n",
			want: []string{"1-0|data|\r\n\x00\xff"}},
		{name: "error", raw: "-NOGROUP No such key\r\n", err: "NOGROUP"},
		{name: "truncated", raw: "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ndata\r\n$9\r\nab\r\n", err: "truncated"},
		{name: "two streams", raw: "*2\r\n", err: "2 streams"},
		{name: "garbage", raw: "hello", err: "malformed"},
		{name: "bad length", raw: "*x\r\n", err: "length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := parseReadGroup([]byte(tc.raw))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				parts := []string{e.id}
				if e.deleted {
					parts = append(parts, "deleted")
				}
				for _, f := range e.fields {
					parts = append(parts, string(f))
				}
				got = append(got, strings.Join(parts, "|"))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	var rerr redis.Error
	if _, err := parseReadGroup([]byte("-BUSY script\r\n")); !errors.As(err, &rerr) || !redis.HasErrorPrefix(err, "BUSY") {
		t.Errorf("an error reply is %T %v, want a redis.Error", err, err)
	}
}

func FuzzParseReadGroup(f *testing.F) {
	f.Add([]byte("%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ndata\r\n$1\r\na\r\n"))
	f.Add([]byte("*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		es, err := parseReadGroup(raw)
		if err != nil && es != nil {
			t.Fatal("entries with an error")
		}
	})
}

// TestReadBothProtocols: the source reads entries, field list and all,
// over RESP2 and RESP3 connections.
func TestReadBothProtocols(t *testing.T) {
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		g := newGroup(t, time.Minute)
		c := redis.NewClient(&redis.Options{Addr: server.Addr(), Protocol: proto})
		t.Cleanup(func() { c.Close() })
		id := g.c.XAdd(ctx, &redis.XAddArgs{Stream: g.stream, Values: []any{"data", "a", "data", "b", "ct", "msgpack"}}).Val()
		s, err := New(c, g.config("a"))
		if err != nil {
			t.Fatal(err)
		}
		got := fetchAll(t, s, 1, 5*time.Second)
		if m := got[0]; m.ID != id || string(m.Data) != "a" || m.ContentType != "msgpack" || m.Malformed == "" {
			t.Errorf("RESP%d: got %+v", proto, m)
		}
	}
}
