package index_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
)

// TestQueueLeases: only due items are leased; an expired lease is
// delivered again under a new token; a stale token's done fails and
// changes nothing; the new holder's done releases the item.
func TestQueueLeases(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{}, ck)
	ref := index.QueueRef{Kind: event.PlanMerge, Database: "db", Table: "t", Layer: "default"}
	a, b := qfile(7, "a", 1, "default", 10), qfile(7, "b", 1, "default", 20)
	apply(t, x, created(a), created(b))
	if _, err := x.Next(ctx, ref); !errors.Is(err, index.ErrNoItem) {
		t.Fatalf("next before the item is due: %v, want ErrNoItem", err)
	}
	ck.Add(10 * time.Second)
	l1, err := x.Next(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	var item struct {
		ID    string   `json:"id"`
		TimeS int64    `json:"time_s"`
		Paths []string `json:"paths"`
		Size  int64    `json:"size"`
	}
	if err := json.Unmarshal(l1.Item, &item); err != nil || item.TimeS != ck.S()+1800 || len(item.Paths) != 2 || item.Size != 30 {
		t.Fatalf("leased item %s (%v): want both paths, size 30, time_s = now + 1800", l1.Item, err)
	}
	processing := "merge:db:t:1:date=2024-01-15/hour=07:default::processing"
	if l1.Processing != processing || c.LLen(ctx, processing).Val() != 1 ||
		c.LLen(ctx, "merge:db:t:1:date=2024-01-15/hour=07:default::idle").Val() != 0 {
		t.Fatalf("lease %+v: want the item moved from :idle to %s", l1, processing)
	}
	if _, err := x.Next(ctx, ref); !errors.Is(err, index.ErrNoItem) {
		t.Fatalf("a second next: %v, want ErrNoItem (the item is leased)", err)
	}
	ck.Add(1801 * time.Second)
	l2, err := x.Next(ctx, ref)
	if err != nil || l2.ID != l1.ID || l2.Token == l1.Token {
		t.Fatalf("after the lease expired: %+v %v, want %s again with a new token", l2, err, l1.ID)
	}
	before := dump(t, c)
	err = x.Done(ctx, ref, l1.ID, l1.Token)
	if !errors.Is(err, index.ErrStaleLease) || !strings.Contains(err.Error(), "leased again") || strings.Contains(err.Error(), "token "+l2.Token) {
		t.Fatalf("done with the stale token: %v, want ErrStaleLease saying it was leased again (without the new token)", err)
	}
	if d := diffDumps(before, dump(t, c)); d != "" {
		t.Fatalf("a stale done changed Redis: %s", d)
	}
	if err := x.Done(ctx, ref, l2.ID, l2.Token); err != nil {
		t.Fatal(err)
	}
	if n := c.LLen(ctx, processing).Val(); n != 0 {
		t.Fatalf("%d items still processing after done", n)
	}
	if err := x.Done(ctx, ref, l2.ID, l2.Token); !errors.Is(err, index.ErrStaleLease) {
		t.Fatalf("done twice: %v, want ErrStaleLease", err)
	}

	// Drop items: due 30 s after the delete.
	dref := index.QueueRef{Kind: index.PlanDrop, Database: "db", Table: "t", Layer: "default"}
	apply(t, x, deleted(a))
	if _, err := x.Next(ctx, dref); !errors.Is(err, index.ErrNoItem) {
		t.Fatalf("drop before it is due: %v", err)
	}
	ck.Add(30 * time.Second)
	dl, err := x.Next(ctx, dref)
	if err != nil || !strings.Contains(string(dl.Item), a.Path) {
		t.Fatalf("drop lease %+v %v", dl, err)
	}
	if err := x.Done(ctx, dref, dl.ID, dl.Token); err != nil {
		t.Fatal(err)
	}
}

// TestQueueDistinctIDs: 10,000 merge items and 10,000 drop items have
// 10,000 distinct ids each.
func TestQueueDistinctIDs(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	// Every file is bigger than the max: one item per file.
	x, c := queueIndex(t, index.QueueConfig{Merge: []index.MergeLevel{{Timeout: time.Second, MaxSize: 1}}}, ck)
	const n = 10_000
	var evs []event.Event
	for i := range n {
		evs = append(evs, created(qfile(i%48, fmt.Sprintf("f%05d", i), 1, "default", 5)))
	}
	apply(t, x, evs...)
	ck.Add(time.Second)
	if got := publish(t, x); got != n {
		t.Fatalf("published %d items, want %d", got, n)
	}
	ids := map[string]bool{}
	keys := c.Keys(ctx, "merge:db:t:*:idle").Val()
	for _, k := range keys {
		for _, it := range list(t, c, k) {
			ids[it["id"].(string)] = true
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct merge item ids for %d items", len(ids), n)
	}
	evs = evs[:0]
	for i := range n {
		evs = append(evs, deleted(qfile(i%48, fmt.Sprintf("g%05d", i), 1, "default", 5)))
	}
	apply(t, x, evs...)
	clear(ids)
	for _, it := range list(t, c, "drop:db:t:default::idle") {
		ids[it["id"].(string)] = true
	}
	if len(ids) != n {
		t.Errorf("%d distinct drop item ids for %d items", len(ids), n)
	}
}

// TestQueueCommitWithPlan: a files.replaced naming its plan adds the
// output, deletes the inputs and releases the lease in one call; a replay
// changes nothing; a stale worker's commit is superseded.
func TestQueueCommitWithPlan(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{}, ck)
	ref := index.QueueRef{Kind: event.PlanMerge, Database: "db", Table: "t", Layer: "default"}
	a, b := qfile(9, "a", 1, "default", 10), qfile(9, "b", 1, "default", 20)
	apply(t, x, created(a), created(b))
	ck.Add(10 * time.Second)
	l, err := x.Next(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	out := qfile(9, "merged", 2, "default", 30)
	commit := replaced([]event.File{out}, []event.File{a, b})
	commit.Plan = &event.Plan{Kind: event.PlanMerge, ID: l.ID, Token: l.Token}
	if res := apply(t, x, commit); res.Outcomes[0] != index.Applied {
		t.Fatalf("commit outcome %v, want applied", res.Outcomes[0])
	}
	if _, err := x.Get(ctx, "db", "t", out.Path); err != nil {
		t.Errorf("output not indexed: %v", err)
	}
	for _, f := range []event.File{a, b} {
		if _, err := x.Get(ctx, "db", "t", f.Path); !errors.Is(err, index.ErrNotFound) {
			t.Errorf("input %s still indexed: %v", f.Path, err)
		}
	}
	if n := c.LLen(ctx, l.Processing).Val(); n != 0 {
		t.Errorf("the plan's item is still processing")
	}
	if err := x.Done(ctx, ref, l.ID, l.Token); !errors.Is(err, index.ErrStaleLease) {
		t.Errorf("done after the commit: %v, want ErrStaleLease (the commit released it)", err)
	}
	if n := len(list(t, c, "drop:db:t:default::idle")); n != 2 {
		t.Errorf("%d drop items, want one per input", n)
	}
	before := dump(t, c)
	if res := apply(t, x, commit); res.Outcomes[0] != index.Duplicate {
		t.Errorf("replay outcome %v, want duplicate", res.Outcomes[0])
	}
	if d := diffDumps(before, dump(t, c)); d != "" {
		t.Errorf("replaying the commit changed Redis: %s", d)
	}

	// A stale worker: its lease expired and the item went to another
	// worker; its commit must not index the same rows twice.
	p, q := qfile(10, "p", 1, "default", 5), qfile(10, "q", 1, "default", 6)
	apply(t, x, created(p), created(q))
	ck.Add(10 * time.Second)
	old, err := x.Next(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	ck.Add(1801 * time.Second)
	cur, err := x.Next(ctx, ref)
	if err != nil || cur.ID != old.ID {
		t.Fatalf("re-delivery: %+v %v", cur, err)
	}
	stale := replaced([]event.File{qfile(10, "stale-out", 2, "default", 11)}, []event.File{p, q})
	stale.Plan = &event.Plan{Kind: event.PlanMerge, ID: old.ID, Token: old.Token}
	if res := apply(t, x, stale); res.Outcomes[0] != index.Superseded {
		t.Fatalf("stale commit outcome %v, want superseded", res.Outcomes[0])
	}
	for _, f := range []event.File{p, q} {
		if _, err := x.Get(ctx, "db", "t", f.Path); err != nil {
			t.Errorf("input %s of a superseded commit was removed: %v", f.Path, err)
		}
	}
	if _, err := x.Get(ctx, "db", "t", stale.Add[0].Path); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("the superseded output is indexed: %v", err)
	}
	drops := list(t, c, "drop:db:t:default::idle")
	if last := drops[len(drops)-1]; last["path"] != stale.Add[0].Path {
		t.Errorf("the superseded output gets no drop item; last drop %v", last)
	}
	good := replaced([]event.File{qfile(10, "good-out", 2, "default", 11)}, []event.File{p, q})
	good.Plan = &event.Plan{Kind: event.PlanMerge, ID: cur.ID, Token: cur.Token}
	if res := apply(t, x, good); res.Outcomes[0] != index.Applied {
		t.Fatalf("the current holder's commit: %v", res.Outcomes[0])
	}
	checkOK(t, x)
}

// gigapiLease leases like GigAPI's compactor: the head of :idle if its
// time_s has passed, to :processing with time_s = now + 1800. (Written
// from docs/gigapi-layout.md, not GigAPI's code.)
var gigapiLease = redis.NewScript(`
local item = redis.call('LPOP', KEYS[1])
if not item then return false end
local it = cjson.decode(item)
if tonumber(it.time_s) > tonumber(ARGV[1]) then
  redis.call('LPUSH', KEYS[1], item)
  return false
end
it.time_s = tonumber(ARGV[1]) + 1800
local out = cjson.encode(it)
redis.call('RPUSH', KEYS[2], out)
return out`)

// TestQueueGigAPILease: GigAPI's own lease script takes published items;
// a later delete of one of their paths does not touch them.
func TestQueueGigAPILease(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{}, ck)
	a, b := qfile(11, "a", 1, "default", 1), qfile(11, "b", 1, "default", 2)
	apply(t, x, created(a), created(b))
	ck.Add(10 * time.Second)
	publish(t, x)
	q := "merge:db:t:1:date=2024-01-15/hour=11:default:"
	got, err := gigapiLease.Run(ctx, c, []string{q + ":idle", q + ":processing"}, ck.S()).Text()
	if err != nil || !strings.Contains(strings.ReplaceAll(got, `\/`, "/"), a.Path) {
		t.Fatalf("GigAPI's lease: %q %v", got, err)
	}
	apply(t, x, deleted(a))
	if n := c.LLen(ctx, q+":processing").Val(); n != 1 {
		t.Errorf("the delete touched GigAPI's processing item")
	}
	if n := c.HLen(ctx, "idx:qx:db:t:date=2024-01-15").Val(); n != 0 {
		t.Errorf("%d published-path records left after GigAPI leased the item", n)
	}
	checkOK(t, x)
}

// TestQueueLongNameIDs: files with the longest names the contract allows
// (128 characters, "<name>.<N>" of 135) get merge, move and drop items
// whose ids fit a files.replaced event's plan.id, so the merge and the move
// commit atomically through plan next → files.replaced; ids stay
// deterministic and distinct for names sharing their first 40 characters.
func TestQueueLongNameIDs(t *testing.T) {
	ctx := context.Background()
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{Layers: []index.Layer{{Name: "hot", TTL: time.Hour}, {Name: "cold"}}}, ck)
	long := func(c byte) string { return strings.Repeat("n", 120) + strings.Repeat(string(c), 8) }
	a, b := qfile(5, long('a'), 1, "hot", 10), qfile(5, long('b'), 1, "hot", 20)
	v := qfile(5, long('v'), 5, "hot", 30) // iteration 5: no merge, a move
	if len(a.Path) != len("date=2024-01-15/hour=05/")+128+len(".1.parquet") {
		t.Fatalf("test name has %d characters", len(a.Path))
	}
	apply(t, x, created(a), created(b), created(v))

	ck.Add(10 * time.Second)
	mref := index.QueueRef{Kind: event.PlanMerge, Database: "db", Table: "t", Layer: "hot"}
	l, err := x.Next(ctx, mref)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.ID) > 128 || l.ID != index.ItemID('m', "db", "t", a.Path, "hot", "") {
		t.Fatalf("merge item id %q (%d characters): want ItemID's, at most 128", l.ID, len(l.ID))
	}
	commit := replaced([]event.File{qfile(5, long('m'), 2, "hot", 30)}, []event.File{a, b})
	commit.Plan = &event.Plan{Kind: event.PlanMerge, ID: l.ID, Token: l.Token}
	if err := event.Validate(&commit); err != nil {
		t.Fatalf("the commit of the merge is not a valid event: %v", err)
	}
	if res := apply(t, x, commit); res.Outcomes[0] != index.Applied {
		t.Fatalf("merge commit outcome %v, want applied", res.Outcomes[0])
	}
	if n := c.LLen(ctx, l.Processing).Val(); n != 0 {
		t.Errorf("the merge item is still processing after its commit")
	}

	ck.Add(time.Date(2024, 1, 16, 0, 0, 0, 0, time.UTC).Sub(ck.Now())) // past chunk time + TTL
	vref := index.QueueRef{Kind: event.PlanMove, Database: "db", Table: "t", Layer: "hot"}
	mv, err := x.Next(ctx, vref)
	if err != nil {
		t.Fatal(err)
	}
	if len(mv.ID) > 128 || mv.ID != index.ItemID('v', "db", "t", v.Path, "hot", "") {
		t.Fatalf("move item id %q (%d characters): want ItemID's, at most 128", mv.ID, len(mv.ID))
	}
	to := v
	to.Layer, to.Path = "cold", index.MovePathTo("db", "t", "hot", v.Path)
	move := replaced([]event.File{to}, []event.File{v})
	move.Plan = &event.Plan{Kind: event.PlanMove, ID: mv.ID, Token: mv.Token}
	if res := apply(t, x, move); res.Outcomes[0] != index.Applied {
		t.Fatalf("move commit outcome %v, want applied", res.Outcomes[0])
	}
	for _, it := range list(t, c, "drop:db:t:hot::idle") {
		id := it["id"].(string)
		if p := it["path"].(string); len(id) > 128 || id != index.ItemID('d', "db", "t", p, "hot", "") {
			t.Errorf("drop item id %q (%d characters) for %s", id, len(id), p)
		}
	}
	if ia, ib := index.ItemID('m', "db", "t", a.Path, "hot", ""), index.ItemID('m', "db", "t", b.Path, "hot", ""); ia == ib {
		t.Errorf("two long names sharing 120 characters give the same id %s", ia)
	}
	checkOK(t, x)
}
