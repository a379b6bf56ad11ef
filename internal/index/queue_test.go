package index_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
)

// clock is a settable clock for queue tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) S() int64 { return c.Now().Unix() }

// queueIndex starts a redis-server and an index with queues configured by
// q and the clock ck.
func queueIndex(t *testing.T, q index.QueueConfig, ck *clock) (*index.Index, *redis.Client) {
	t.Helper()
	return newIndex(t, index.Config{Queues: q, Now: ck.Now})
}

// qfile returns a valid file of iteration n in hour h of 2024-01-15.
func qfile(h int, name string, n int, layer string, size int64) event.File {
	f := file(h, name)
	f.Path = strings.TrimSuffix(f.Path, "1.parquet") + strconv.Itoa(n) + ".parquet"
	f.Layer, f.SizeBytes = layer, size
	return f
}

// list returns the JSON items of a list, decoded with numbers kept.
func list(t *testing.T, c redis.ListCmdable, key string) []map[string]any {
	t.Helper()
	raw, err := c.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		dec := json.NewDecoder(strings.NewReader(r))
		dec.UseNumber()
		if err := dec.Decode(&out[i]); err != nil {
			t.Fatalf("%s item %d is not JSON: %v: %s", key, i, err, r)
		}
	}
	return out
}

func publish(t *testing.T, x *index.Index) int {
	t.Helper()
	n, err := x.Publish(context.Background())
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return n
}

// sameFields checks an item against the contract field by field: the
// same field names, each with the wanted value.
func sameFields(t *testing.T, what string, got map[string]any, want map[string]any) {
	t.Helper()
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Errorf("%s fields %v, want %v", what, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for k, w := range want {
		g := got[k]
		switch w := w.(type) {
		case int64:
			n, ok := g.(json.Number)
			if !ok || n.String() != strconv.FormatInt(w, 10) {
				t.Errorf("%s %s = %v, want the integer %d", what, k, g, w)
			}
		case []string:
			arr, ok := g.([]any)
			var ss []string
			for _, a := range arr {
				s, _ := a.(string)
				ss = append(ss, s)
			}
			if !ok || !slices.Equal(ss, w) {
				t.Errorf("%s %s = %v, want %v", what, k, g, w)
			}
		default:
			if g != w {
				t.Errorf("%s %s = %#v, want %#v", what, k, g, w)
			}
		}
	}
}

// TestQueueItemShapes: merge, move and drop items equal GigAPI's contract
// (docs/gigapi-layout.md, "Queue items") field by field.
func TestQueueItemShapes(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{
		Layers: []index.Layer{{Name: "hot", TTL: time.Hour}, {Name: "cold"}},
	}, ck)
	t0 := ck.S()
	// A merge: iteration 1 on a layer without TTL.
	m1, m2 := qfile(14, "m1", 1, "cold", 1000), qfile(14, "m2", 1, "cold", 2500)
	// Earlier-time rule: on hot, a merge (10 s) comes before the move (1 h).
	h1 := qfile(14, "h1", 1, "hot", 700)
	// A move: iteration 5 has no merge; due at chunk time + TTL (in the past).
	mv := qfile(14, "mv", 5, "hot", 9000)
	mv.WriterID = "w-1"
	mv.ChunkTime = ck.Now().Add(-2 * time.Hour).UnixNano()
	apply(t, x, created(m1), created(m2), created(h1), created(mv))
	// Merge items wait until due; the move is due already.
	if n := publish(t, x); n != 1 {
		t.Fatalf("published %d items before the merges are due, want the move", n)
	}
	ck.Add(10 * time.Second)
	if n := publish(t, x); n != 2 {
		t.Fatalf("published %d items, want 2 merges", n)
	}
	merges := list(t, c, "merge:db:t:1:date=2024-01-15/hour=14:cold::idle")
	if len(merges) != 1 {
		t.Fatalf("%d merge items on cold, want 1", len(merges))
	}
	sameFields(t, "merge item", merges[0], map[string]any{
		"id":     index.ItemID('m', "db", "t", m1.Path, "cold", ""),
		"time_s": t0 + 10,
		"paths":  []string{m1.Path, m2.Path},
		"size":   int64(3500),
	})
	if hot := list(t, c, "merge:db:t:1:date=2024-01-15/hour=14:hot::idle"); len(hot) != 1 || hot[0]["paths"].([]any)[0] != h1.Path {
		t.Errorf("hot merge items %v, want one with %s (merge before move)", hot, h1.Path)
	}
	moves := list(t, c, "move:db:t:hot:w-1:idle")
	if len(moves) != 1 {
		t.Fatalf("%d move items, want 1", len(moves))
	}
	to, _ := moves[0]["path_to"].(string)
	sameFields(t, "move item", moves[0], map[string]any{
		"id":         index.ItemID('v', "db", "t", mv.Path, "hot", "w-1"),
		"writer_id":  "w-1",
		"database":   "db",
		"table":      "t",
		"path_from":  mv.Path,
		"layer_from": "hot",
		"path_to":    to,
		"layer_to":   "cold",
		"time_s":     mv.ChunkTime/1e9 + 3600,
	})
	if !strings.HasPrefix(to, "date=2024-01-15/hour=14/") || !strings.HasSuffix(to, ".5.parquet") || to == mv.Path ||
		to != index.MovePathTo("db", "t", "hot", mv.Path) {
		t.Errorf("path_to %q: want the same folder, a new name, the same .5.parquet: %s", to, index.MovePathTo("db", "t", "hot", mv.Path))
	}
	// A delete of a live path and of a path never created: one drop item each.
	ghost := qfile(15, "ghost", 1, "cold", 1)
	apply(t, x, deleted(m2), deleted(ghost))
	drops := list(t, c, "drop:db:t:cold::idle")
	if len(drops) != 2 {
		t.Fatalf("%d drop items, want 2", len(drops))
	}
	for i, f := range []event.File{m2, ghost} {
		sameFields(t, "drop item", drops[i], map[string]any{
			"id":        index.ItemID('d', "db", "t", f.Path, "cold", ""),
			"writer_id": "",
			"layer":     "cold",
			"path":      f.Path,
			"database":  "db",
			"table":     "t",
			"time_s":    ck.S() + 30,
		})
	}
	// GigAPI's Go readers take them: int fields stay ints.
	var gig struct {
		ID    string   `json:"id"`
		TimeS int64    `json:"time_s"`
		Paths []string `json:"paths"`
		Size  int64    `json:"size"`
	}
	raw := c.LIndex(ctx, "merge:db:t:1:date=2024-01-15/hour=14:cold::idle", 0).Val()
	if raw != "" {
		t.Errorf("the merge item listing deleted %s is still idle: %s", m2.Path, raw)
	}
	ck.Add(time.Second)
	publish(t, x)
	raw = c.LIndex(ctx, "merge:db:t:1:date=2024-01-15/hour=14:cold::idle", 0).Val()
	if err := json.Unmarshal([]byte(raw), &gig); err != nil || gig.Size != 1000 || !slices.Equal(gig.Paths, []string{m1.Path}) || gig.TimeS != t0+10 {
		t.Errorf("after the delete the merge item is %s (%v), want only %s, size 1000, time_s unchanged", raw, err, m1.Path)
	}
	checkOK(t, x)
}

func checkOK(t *testing.T, x *index.Index) {
	t.Helper()
	rep, err := x.Check(context.Background(), nil)
	if err != nil || len(rep.Drifts) > 0 {
		t.Fatalf("check: %v %v", rep.Drifts, err)
	}
}

// TestQueueMergeSizes: a file joins the last item while its size fits the
// iteration's max, else starts a new item; an item due takes no more
// files; files of iterations beyond the configuration get no merge item.
func TestQueueMergeSizes(t *testing.T) {
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{Merge: []index.MergeLevel{{Timeout: 10 * time.Second, MaxSize: 250}}}, ck)
	a, b, cc, d := qfile(3, "a", 1, "default", 100), qfile(3, "b", 1, "default", 100), qfile(3, "c", 1, "default", 100), qfile(3, "d", 1, "default", 100)
	big := qfile(3, "big", 1, "default", 900)
	two := qfile(3, "two", 2, "default", 10)
	apply(t, x, created(a), created(b), created(cc), created(two))
	ck.Add(5 * time.Second)
	apply(t, x, created(d)) // joins c's item: 100 + 100 <= 250
	apply(t, x, created(big))
	ck.Add(5 * time.Second)
	e := qfile(3, "e", 1, "default", 1)
	apply(t, x, created(e)) // the last item (big's) is due: a new item
	ck.Add(10 * time.Second)
	publish(t, x)
	var got [][]string
	var sizes []string
	for _, it := range list(t, c, "merge:db:t:1:date=2024-01-15/hour=03:default::idle") {
		var ps []string
		for _, p := range it["paths"].([]any) {
			ps = append(ps, strings.TrimSuffix(strings.TrimPrefix(p.(string), "date=2024-01-15/hour=03/"), ".1.parquet"))
		}
		got = append(got, ps)
		sizes = append(sizes, it["size"].(json.Number).String())
	}
	want := [][]string{{"a", "b"}, {"c", "d"}, {"big"}, {"e"}}
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(sizes) != "[200 200 900 1]" {
		t.Errorf("merge items %v sizes %v, want %v sizes [200 200 900 1]", got, sizes, want)
	}
	if n := c.Exists(context.Background(), "merge:db:t:2:date=2024-01-15/hour=03:default::idle").Val(); n != 0 {
		t.Errorf("iteration 2 got a merge item; only iteration 1 is configured")
	}
	checkOK(t, x)
}

// TestQueueProperty: over random histories with duplicates, shuffled,
// applied in many calls with items published and withdrawn along the way:
// no merge item lists a path twice, no idle item lists a deleted path,
// each item's size is the sum of its paths' sizes, every live file of a
// configured iteration is in exactly one merge item once all are due, and
// each deleted path has exactly one drop item.
func TestQueueProperty(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			ck := newClock()
			x, c := newIndex(t, index.Config{MaxEventsPerCall: 97, Now: ck.Now,
				Queues: index.QueueConfig{Merge: []index.MergeLevel{{Timeout: 10 * time.Second, MaxSize: 3 << 20}, {Timeout: 20 * time.Second, MaxSize: 8 << 20}}}})
			g := synth.New(synth.Config{Seed: seed, DeleteRatio: 0.35, ReplaceRatio: 0.08, Hours: 30})
			history := g.Events(2500)
			rng := rand.New(rand.NewPCG(seed, 11))
			delivered := redeliver(rng, history, 3)
			for len(delivered) > 0 {
				n := min(1+rng.IntN(300), len(delivered))
				if _, err := x.Apply(ctx, delivered[:n]); err != nil {
					t.Fatal(err)
				}
				delivered = delivered[n:]
				ck.Add(time.Duration(rng.IntN(8)) * time.Second)
				if rng.IntN(3) == 0 {
					publish(t, x)
					checkIdle(t, c, false)
				}
			}
			checkIdle(t, c, false)
			ck.Add(time.Minute)
			publish(t, x)
			m := synth.NewModel()
			m.Apply(history...)
			live := m.Live["demo:events"]
			listed := checkIdle(t, c, true)
			for p, f := range live {
				if f.Iteration() <= 2 && listed[p] != 1 {
					t.Errorf("live %s is in %d merge items, want 1", p, listed[p])
				}
			}
			for p := range listed {
				if _, ok := live[p]; !ok {
					t.Errorf("merge item lists %s, which is not live", p)
				}
			}
			dropped := map[string]int{}
			for _, it := range list(t, c, "drop:demo:events:default::idle") {
				dropped[it["path"].(string)]++
			}
			for p := range m.Tombstoned["demo:events"] {
				if dropped[p] != 1 {
					t.Errorf("deleted %s has %d drop items, want 1", p, dropped[p])
				}
			}
			if len(dropped) != len(m.Tombstoned["demo:events"]) {
				t.Errorf("%d paths dropped, %d deleted", len(dropped), len(m.Tombstoned["demo:events"]))
			}
			checkOK(t, x)
		})
	}
}

// checkIdle checks the merge items in every :idle list against the files
// hashes: no path twice, every path live, sizes summing up. It returns how
// many items list each path.
func checkIdle(t *testing.T, c *redis.Client, final bool) map[string]int {
	t.Helper()
	ctx := context.Background()
	listed := map[string]int{}
	keys := c.Keys(ctx, "merge:*:idle").Val()
	sort.Strings(keys)
	for _, k := range keys {
		for _, it := range list(t, c, k) {
			var sum int64
			for _, p := range it["paths"].([]any) {
				p := p.(string)
				listed[p]++
				if listed[p] > 1 {
					t.Errorf("%s: item %s lists %s, listed already", k, it["id"], p)
				}
				v, err := c.HGet(ctx, "files:demo:events:"+p[:len("date=2024-01-15")], p).Bytes()
				if err != nil {
					t.Errorf("%s: item %s lists %s, which is not live", k, it["id"], p)
					continue
				}
				e, _ := index.ParseEntry(v)
				sum += e.SizeBytes
			}
			if it["size"].(json.Number).String() != strconv.FormatInt(sum, 10) {
				t.Errorf("%s: item %s size %s, its paths sum to %d", k, it["id"], it["size"], sum)
			}
		}
	}
	return listed
}

// TestQueueConfig validates the configuration and GigAPI's earlier-time
// rule.
func TestQueueConfig(t *testing.T) {
	for _, tc := range []struct {
		q    index.QueueConfig
		want string
	}{
		{index.QueueConfig{Merge: []index.MergeLevel{{Timeout: 0, MaxSize: 1}}}, "whole seconds"},
		{index.QueueConfig{Merge: []index.MergeLevel{{Timeout: 1500 * time.Millisecond, MaxSize: 1}}}, "whole seconds"},
		{index.QueueConfig{Merge: []index.MergeLevel{{Timeout: time.Second, MaxSize: 0}}}, "max size"},
		{index.QueueConfig{Layers: []index.Layer{{Name: "a:b"}}}, "not a valid name"},
		{index.QueueConfig{Layers: []index.Layer{{Name: "a"}, {Name: "a"}}}, "twice"},
		{index.QueueConfig{Lease: time.Millisecond}, "lease"},
	} {
		if _, err := index.New(nil, index.Config{Queues: tc.q}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.q, err, tc.want)
		}
	}
	if got := (index.MergeQueue | index.DropQueue).String(); got != "merge,drop" {
		t.Errorf("String = %q", got)
	}
	if got := index.QueueKinds(0).String(); got != "none" {
		t.Errorf("String = %q", got)
	}
}

// TestQueuesOff: with every queue disabled, nothing is queued and a plan is
// ignored.
func TestQueuesOff(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{Disable: index.AllQueues}, ck)
	a := qfile(1, "a", 1, "default", 1)
	e := replaced([]event.File{a}, nil)
	e.Plan = &event.Plan{Kind: event.PlanMerge, ID: "x1", Token: "1"}
	if res := apply(t, x, e, deleted(qfile(1, "b", 1, "default", 1))); res.Outcomes[0] != index.Applied {
		t.Fatalf("outcome %v", res.Outcomes[0])
	}
	ck.Add(time.Hour)
	publish(t, x)
	for _, k := range c.Keys(ctx, "*").Val() {
		if isQueueKey(k) {
			t.Errorf("queue key %s written with queues off", k)
		}
	}
	if _, err := x.Next(ctx, index.QueueRef{Kind: event.PlanMerge, Database: "db", Table: "t", Layer: "default"}); !errors.Is(err, index.ErrQueuesOff) {
		t.Errorf("next: %v, want ErrQueuesOff", err)
	}
}

// TestQueuePublishedItemTakesNoFiles: once an item is published, files
// join a new item, even from a worker whose clock is behind.
func TestQueuePublishedItemTakesNoFiles(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{}, ck)
	apply(t, x, created(qfile(5, "a", 1, "default", 1)))
	ck.Add(10 * time.Second)
	publish(t, x)
	ck.Add(-9 * time.Second) // a worker whose clock is behind: the item is not due to it
	apply(t, x, created(qfile(5, "b", 1, "default", 1)))
	ck.Add(20 * time.Second)
	publish(t, x)
	items := list(t, c, "merge:db:t:1:date=2024-01-15/hour=05:default::idle")
	if len(items) != 2 {
		t.Fatalf("%d items, want 2 (b starts a new item): %v", len(items), items)
	}
	if n := c.LLen(ctx, "idx:qc:db:t:date=2024-01-15").Val(); n != 0 {
		t.Errorf("%d chunk elements left over", n)
	}
	checkOK(t, x)
}

// TestQueuePublishOrphans: a pending item without its record (damaged by
// hand) is dropped, and Publish makes progress past it.
func TestQueuePublishOrphans(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{}, ck)
	apply(t, x, created(qfile(6, "a", 1, "default", 1)))
	for i := range 300 {
		c.ZAdd(ctx, "idx:qd:db:t", redis.Z{Score: 1, Member: strconv.Itoa(1000 + i)})
	}
	ck.Add(10 * time.Second)
	if n := publish(t, x); n != 1 {
		t.Errorf("published %d items, want 1", n)
	}
	if n := c.ZCard(ctx, "idx:qd:db:t").Val(); n != 0 {
		t.Errorf("%d pending entries left", n)
	}
}

// TestQueueDeleteNamingAnotherLayer: the rule for a file.deleted whose
// layer or writer_id is not the file's. The path alone names the file:
// the delete applies, and the file leaves its merge item whether that
// item is still pending or already published in its :idle list (timing
// does not matter); the drop item goes to the queue of the layer and
// writer the delete names.
func TestQueueDeleteNamingAnotherLayer(t *testing.T) {
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{Layers: []index.Layer{{Name: "hot"}, {Name: "cold"}}}, ck)
	idle := "merge:db:t:1:date=2024-01-15/hour=05:hot::idle"
	other := func(f event.File, layer, writer string) event.Event {
		e := deleted(f)
		e.File.Layer, e.File.WriterID = layer, writer
		return e
	}
	a, b, d, e := qfile(5, "a", 1, "hot", 1), qfile(5, "b", 1, "hot", 2), qfile(5, "d", 1, "hot", 3), qfile(5, "e", 1, "hot", 4)
	apply(t, x, created(a), created(b), created(d), created(e))

	// Pending item.
	if res := apply(t, x, other(a, "cold", "")); res.Outcomes[0] != index.Applied {
		t.Fatalf("delete of a pending item's file naming another layer: %v, want applied", res.Outcomes[0])
	}
	ck.Add(10 * time.Second)
	publish(t, x)
	items := list(t, c, idle)
	if len(items) != 1 || fmt.Sprint(items[0]["paths"]) != fmt.Sprint([]any{b.Path, d.Path, e.Path}) {
		t.Fatalf("published items %v, want one listing b, d, e", items)
	}

	// Published item: another layer, then another writer.
	if res := apply(t, x, other(b, "cold", "")); res.Outcomes[0] != index.Applied {
		t.Fatalf("delete of a published item's file naming another layer: %v, want applied", res.Outcomes[0])
	}
	if res := apply(t, x, other(d, "hot", "w2")); res.Outcomes[0] != index.Applied {
		t.Fatalf("delete of a published item's file naming another writer: %v, want applied", res.Outcomes[0])
	}
	publish(t, x)
	items = list(t, c, idle)
	if len(items) != 1 || fmt.Sprint(items[0]["paths"]) != fmt.Sprint([]any{e.Path}) || fmt.Sprint(items[0]["size"]) != "4" {
		t.Fatalf("published items after the deletes %v, want one listing only e, size 4", items)
	}
	drops := map[string]int{}
	for _, k := range []string{"drop:db:t:cold::idle", "drop:db:t:hot:w2:idle", "drop:db:t:hot::idle"} {
		drops[k] = len(list(t, c, k))
	}
	if want := map[string]int{"drop:db:t:cold::idle": 2, "drop:db:t:hot:w2:idle": 1, "drop:db:t:hot::idle": 0}; !maps.Equal(drops, want) {
		t.Errorf("drop items %v, want %v (the queue the delete names)", drops, want)
	}
	checkOK(t, x)
}
