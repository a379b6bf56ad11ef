package index_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/testserver"
)

// TestQueryAcrossMidnight: a range from 22:30 to 01:30 UTC selects exactly
// the files overlapping it, on both days, whatever the local time zone.
func TestQueryAcrossMidnight(t *testing.T) {
	x, _ := newIndex(t, index.Config{})
	// Hours 20..27 = 2024-01-15 20:00 .. 2024-01-16 03:00; each file spans
	// the first 59 minutes of its hour.
	var all []event.Event
	for h := 20; h <= 27; h++ {
		all = append(all, created(file(h, "f")))
	}
	// A file in folder 21 whose data reaches 22:45: it overlaps the range
	// but its folder starts before After's hour, so GigAPI's rule drops it.
	late := file(21, "late")
	late.MaxTime = time.Date(2024, 1, 15, 22, 45, 0, 0, time.UTC).UnixNano()
	all = append(all, created(late))
	apply(t, x, all...)

	after := time.Date(2024, 1, 15, 22, 30, 0, 0, time.UTC)
	before := time.Date(2024, 1, 16, 1, 30, 0, 0, time.UTC)
	want := []string{
		"date=2024-01-15/hour=22/f.1.parquet", // 22:00-22:59 overlaps 22:30
		"date=2024-01-15/hour=23/f.1.parquet",
		"date=2024-01-16/hour=00/f.1.parquet",
		"date=2024-01-16/hour=01/f.1.parquet", // 01:00-01:59 overlaps up to 01:30
	}
	for _, tz := range []string{"UTC", "Asia/Tokyo", "America/Los_Angeles"} {
		t.Run(tz, func(t *testing.T) {
			loc, err := time.LoadLocation(tz)
			if err != nil {
				t.Fatal(err)
			}
			saved := time.Local
			time.Local = loc
			t.Cleanup(func() { time.Local = saved })
			// Bounds given in the local zone denote the same instants.
			got := queryPaths(t, x, index.Query{Database: "db", Table: "t", After: after.In(loc), Before: before.In(loc)})
			if !slices.Equal(got, want) {
				t.Errorf("query = %v\nwant    %v", got, want)
			}
		})
	}
}

func TestQueryFilters(t *testing.T) {
	x, _ := newIndex(t, index.Config{})
	a, b := file(3, "a"), file(4, "b")
	b2 := file(4, "b2")
	b2.Path = strings.Replace(b2.Path, ".1.parquet", ".2.parquet", 1)
	apply(t, x, created(a), created(b), created(b2))
	for _, tc := range []struct {
		q    index.Query
		want []string
	}{
		{index.Query{Folder: "date=2024-01-15/hour=04"}, []string{b.Path, b2.Path}},
		{index.Query{Folder: "date=2024-01-15"}, []string{a.Path, b.Path, b2.Path}},
		{index.Query{Folder: "date=2024-01-16"}, nil},
		{index.Query{Iteration: 2}, []string{b2.Path}},
		{index.Query{After: time.Date(2024, 1, 15, 4, 0, 0, 0, time.UTC)}, []string{b.Path, b2.Path}},
		{index.Query{Before: time.Date(2024, 1, 15, 3, 59, 0, 0, time.UTC)}, []string{a.Path}},
	} {
		tc.q.Database, tc.q.Table = "db", "t"
		got := queryPaths(t, x, tc.q)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.q, got, tc.want)
		}
	}
}

// TestQueryManyPages: a date holding several HSCAN pages is read whole,
// each file once; a caller stopping early stops the page reader too.
func TestQueryManyPages(t *testing.T) {
	x, _ := newIndex(t, index.Config{})
	const n = 3500 // between three and four pages of scanCount
	var evs []event.Event
	for i := range n {
		evs = append(evs, created(file(i%24, fmt.Sprintf("f%04d", i))))
	}
	apply(t, x, evs...)
	got := queryPaths(t, x, index.Query{Database: "db", Table: "t"})
	if len(got) != n || len(slices.Compact(got)) != n {
		t.Fatalf("query returned %d paths (%d distinct), want %d", len(got), len(slices.Compact(got)), n)
	}

	before := runtime.NumGoroutine()
	for range 20 {
		k := 0
		for _, err := range x.Query(context.Background(), index.Query{Database: "db", Table: "t"}) {
			if err != nil {
				t.Fatal(err)
			}
			if k++; k == 10 {
				break
			}
		}
	}
	// go-redis may still be closing a connection a cancelled read left
	// (or dialing its replacement) in a goroutine of its own for a moment:
	// wait for the count to come back, as it never would for a leaked
	// page reader.
	deadline := time.Now().Add(10 * time.Second)
	for after := runtime.NumGoroutine(); after > before; after = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 10 s after 20 queries stopped early, %d before: the page reader outlives the query", after, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueryPages reads a table of several HSCAN pages over RESP2 and
// RESP3, and through a proxy that loses HSCAN replies (go-redis sends the
// page's HSCAN again), and checks every entry against HGETALL's.
func TestQueryPages(t *testing.T) {
	srv := testserver.Redis(t)
	x := openIndex(t, srv.Client(t), index.Config{})
	const n = 2500
	var evs []event.Event
	for i := range n {
		evs = append(evs, created(file(i%24, fmt.Sprintf("f%04d", i))))
	}
	apply(t, x, evs...)
	ctx := context.Background()
	key := testLayout(t).Files("db", "t", "date=2024-01-15")
	all, err := srv.Client(t).HGetAll(ctx, key).Result()
	if err != nil || len(all) != n {
		t.Fatalf("HGETALL: %d entries, %v", len(all), err)
	}
	want := map[string]index.Entry{}
	for _, v := range all {
		e, err := index.ParseEntry(v)
		if err != nil {
			t.Fatal(err)
		}
		want[e.Path] = e
	}
	proxy := testserver.NewProxy(t, srv.Addr())
	for _, c := range []struct {
		name string
		opts redis.Options
		drop bool
	}{
		{"RESP2", redis.Options{Addr: srv.Addr(), Protocol: 2}, false},
		{"RESP3", redis.Options{Addr: srv.Addr(), Protocol: 3}, false},
		{"lost replies", redis.Options{Addr: proxy.Addr()}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := redis.NewClient(&c.opts)
			t.Cleanup(func() { rc.Close() })
			q := openIndex(t, rc, index.Config{})
			if c.drop {
				// The replies of the first two HSCANs are lost: the first
				// page is read on the third attempt.
				isHSCAN, lost := testserver.RedisCommandIs("HSCAN"), 0
				var mu sync.Mutex
				proxy.Set(testserver.Faults{DropReply: 1, ReplyTo: func(req []byte) bool {
					mu.Lock()
					defer mu.Unlock()
					if !isHSCAN(req) || lost == 2 {
						return false
					}
					lost++
					return true
				}})
				defer proxy.Set(testserver.Faults{})
			}
			got := 0
			for e, err := range q.Query(ctx, index.Query{Database: "db", Table: "t"}) {
				if err != nil {
					t.Fatal(err)
				}
				if w, ok := want[e.Path]; !ok || !reflect.DeepEqual(e, w) {
					t.Fatalf("entry %s: got %+v, want %+v", e.Path, e, w)
				}
				got++
			}
			if got != n {
				t.Fatalf("query returned %d entries, want %d", got, n)
			}
			if c.drop && proxy.Stats().DroppedReplies != 2 {
				t.Fatalf("the proxy lost %d HSCAN replies, want 2", proxy.Stats().DroppedReplies)
			}
		})
	}
}

// TestQueryServerError: an error reply of HSCAN ends the query with it.
func TestQueryServerError(t *testing.T) {
	x, c := newIndex(t, index.Config{})
	apply(t, x, created(file(3, "a")))
	key := testLayout(t).Files("db", "t", "date=2024-01-15")
	ctx := context.Background()
	if err := c.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, key, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var qerr error
	for _, err := range x.Query(ctx, index.Query{Database: "db", Table: "t"}) {
		if err != nil {
			qerr = err
		}
	}
	if !redis.HasErrorPrefix(errors.Unwrap(qerr), "WRONGTYPE") {
		t.Fatalf("query error: %v, want the WRONGTYPE reply", qerr)
	}
}

func testLayout(t *testing.T) index.Layout {
	l, err := index.NewLayout(index.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func queryPaths(t *testing.T, x *index.Index, q index.Query) []string {
	t.Helper()
	var out []string
	for e, err := range x.Query(context.Background(), q) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Path)
	}
	slices.Sort(out)
	return out
}

func TestCheckFindsDrift(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	a, b := file(1, "a"), file(2, "b")
	apply(t, x, created(a), created(b), deleted(file(3, "z")))
	rep, err := x.Check(ctx, nil)
	if err != nil || len(rep.Drifts) != 0 || rep.Files != 2 || rep.Tables != 1 {
		t.Fatalf("clean index: %+v %v", rep, err)
	}
	c.HSet(ctx, "folders:db:t", "date=2024-01-15/hour=01", "5")
	c.HIncrBy(ctx, "idx:stats:db:t", "bytes", 7)
	c.HSet(ctx, "files:db:t:date=2024-01-15", file(3, "z").Path, `{"path":"x"}`)
	rep, err = x.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range rep.Drifts {
		got = append(got, d.String())
	}
	for _, want := range []string{
		"folders:db:t date=2024-01-15/hour=01: stored 5, recount 1",
		"idx:stats:db:t bytes: stored ",
		"files:db:t:date=2024-01-15 date=2024-01-15/hour=03/z.1.parquet: entry names",
		"live and tombstoned",
	} {
		found := false
		for _, g := range got {
			found = found || strings.Contains(g, want)
		}
		if !found {
			t.Errorf("drifts %q lack %q", got, want)
		}
	}
}

func TestCollectTombstones(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return now }
	x, c := newIndex(t, index.Config{Now: clock})
	a, b := file(1, "a"), file(2, "b")
	apply(t, x, deleted(a)) // tombstoned at now
	now = now.Add(time.Hour)
	apply(t, x, deleted(b)) // tombstoned an hour later

	n, err := x.CollectTombstones(ctx, now.Add(-30*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("collected %d, %v; want 1", n, err)
	}
	if got := c.ZRange(ctx, "idx:tomb:db:t", 0, -1).Val(); !slices.Equal(got, []string{b.Path}) {
		t.Fatalf("tombstones left = %v, want only %s", got, b.Path)
	}
	// A tombstone touched again (a late create ignored) is young again.
	now = now.Add(time.Hour)
	if res := apply(t, x, created(b)); res.Outcomes[0] != index.Ignored {
		t.Fatalf("create of a tombstoned path: %v", res.Outcomes[0])
	}
	if n, _ := x.CollectTombstones(ctx, now.Add(-30*time.Minute)); n != 0 {
		t.Fatalf("collected a tombstone touched %v ago", 0)
	}
	if n, _ := x.CollectTombstones(ctx, now.Add(time.Millisecond)); n != 1 {
		t.Fatalf("collected %d, want 1", n)
	}
}
