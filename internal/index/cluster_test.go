package index_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// clusterIndex starts a 3-master Redis Cluster and returns an index in the
// cluster layout over it.
func clusterIndex(t *testing.T, cfg index.Config) (*index.Index, *redis.ClusterClient, *testserver.RedisCluster) {
	t.Helper()
	rc := testserver.RedisClusterFor(t, testserver.ClusterConfig{})
	c := rc.Client(t)
	l, err := index.NewClusterLayout("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Layout = &l
	return openIndex(t, c, cfg), c, rc
}

// clusterKeys returns every key of the cluster and the number of masters
// holding files: keys.
func clusterKeys(t *testing.T, c *redis.ClusterClient) (keys []string, filesMasters int) {
	t.Helper()
	var mu sync.Mutex
	err := c.ForEachMaster(t.Context(), func(ctx context.Context, n *redis.Client) error {
		ks, err := n.Keys(ctx, "*").Result()
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, ks...)
		if slices.ContainsFunc(ks, func(k string) bool { return strings.HasPrefix(k, "files:") }) {
			filesMasters++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, filesMasters
}

// TestClusterLayoutEquivalent applies the same redelivered, shuffled
// histories of three tables over four days to the gigapi layout on one
// server and to the cluster layout on a 3-master cluster, and proves that
// every reader sees the same index: tables, statistics, queries, entries,
// tombstone counts, the items of the work queues; that Check finds no
// drift in either; that every key of a Part carries its hash tag (the only
// untagged keys are the registry's); and that the tables are spread over
// the shards.
func TestClusterLayoutEquivalent(t *testing.T) {
	ctx := t.Context()
	ck := newClock()
	cx, cc, _ := clusterIndex(t, index.Config{Now: ck.Now, MaxEventsPerCall: 300})
	gx, gc := newIndex(t, index.Config{Now: ck.Now, MaxEventsPerCall: 300})

	rng := rand.New(rand.NewPCG(7, 7))
	var history []event.Event
	for i, table := range []string{"cpu", "mem", "disk"} {
		history = append(history, synth.New(synth.Config{Seed: uint64(i + 1), Database: "metrics", Table: table, Hours: 96}).Events(1500)...)
	}
	stream := redeliver(rng, history, 3)
	for len(stream) > 0 {
		n := min(len(stream), 1+rng.IntN(700))
		for _, x := range []*index.Index{cx, gx} {
			if _, err := x.Apply(ctx, stream[:n]); err != nil {
				t.Fatal(err)
			}
		}
		stream = stream[n:]
		ck.Add(3 * time.Second)
	}
	ck.Add(2 * time.Hour)
	for _, x := range []*index.Index{cx, gx} {
		if _, err := x.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}

	tables, err := cx.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := gx.Tables(ctx); !reflect.DeepEqual(tables, want) || len(tables) != 3 {
		t.Fatalf("tables: cluster %v, gigapi %v", tables, want)
	}
	for _, tb := range tables {
		cs, err := cx.Stats(ctx, tb[0], tb[1])
		if err != nil {
			t.Fatal(err)
		}
		gs, _ := gx.Stats(ctx, tb[0], tb[1])
		if !reflect.DeepEqual(cs, gs) || cs.Files == 0 || len(cs.Dates) < 4 {
			t.Fatalf("stats of %v: cluster %+v, gigapi %+v", tb, cs, gs)
		}
		ct, _ := cx.Tombstones(ctx, tb[0], tb[1])
		gt, _ := gx.Tombstones(ctx, tb[0], tb[1])
		if ct != gt || ct == 0 {
			t.Fatalf("tombstones of %v: cluster %d, gigapi %d", tb, ct, gt)
		}
		for _, q := range []index.Query{
			{},
			{After: time.Date(2024, 1, 16, 5, 30, 0, 0, time.UTC), Before: time.Date(2024, 1, 17, 1, 0, 0, 0, time.UTC)},
			{Folder: "date=2024-01-17"},
		} {
			q.Database, q.Table = tb[0], tb[1]
			got, want := queryAll(t, cx, q), queryAll(t, gx, q)
			if !reflect.DeepEqual(got, want) || len(got) == 0 {
				t.Fatalf("query %+v: cluster %d entries, gigapi %d, differ", q, len(got), len(want))
			}
			e, err := cx.Get(ctx, tb[0], tb[1], got[0].Path)
			if err != nil || !reflect.DeepEqual(e, got[0]) {
				t.Fatalf("get %s: %+v, %v", got[0].Path, e, err)
			}
		}
	}
	for name, x := range map[string]*index.Index{"cluster": cx, "gigapi": gx} {
		rep, err := x.Check(ctx, nil)
		if err != nil || len(rep.Drifts) > 0 || rep.Files == 0 {
			t.Fatalf("check of the %s layout: %d files, drifts %v, %v", name, rep.Files, rep.Drifts, err)
		}
	}

	keys, spread := clusterKeys(t, cc)
	if spread != 3 {
		t.Errorf("files: keys on %d of 3 masters, want all", spread)
	}
	var items []string
	for _, k := range keys {
		tag := index.HashTag(k)
		switch {
		case tag == k && (k == "idx:tables" || strings.HasPrefix(k, "idx:dates:")):
		case tag == k:
			t.Errorf("key %s has no hash tag", k)
		case !strings.HasPrefix(tag, "metrics:") || !strings.Contains(tag, ":date=") || !cx.Layout().Own(k):
			t.Errorf("key %s has the hash tag {%s}, not a Part's", k, tag)
		}
		if strings.HasSuffix(k, ":idle") {
			items = append(items, cc.LRange(ctx, k, 0, -1).Val()...)
		}
	}
	// How files are grouped into merge items depends on how the events
	// were batched into calls (which differs: the cluster layout makes a
	// call per Part); the files queued and the drop items do not.
	got, want := queued(t, items), queued(t, idleItems(t, gc))
	if !reflect.DeepEqual(got, want) || len(got) == 0 {
		t.Fatalf("work queues: cluster queues %d files and drops, gigapi %d, and they differ", len(got), len(want))
	}
}

// queued returns the paths of the merge items and the drop items (as
// they are) among items, sorted.
func queued(t *testing.T, items []string) []string {
	t.Helper()
	var out []string
	for _, it := range items {
		var v struct {
			Paths []string `json:"paths"`
		}
		if err := json.Unmarshal([]byte(it), &v); err != nil {
			t.Fatal(err)
		}
		if v.Paths == nil {
			out = append(out, it)
		}
		out = append(out, v.Paths...)
	}
	slices.Sort(out)
	return out
}

func queryAll(t *testing.T, x *index.Index, q index.Query) []index.Entry {
	t.Helper()
	var out []index.Entry
	for e, err := range x.Query(t.Context(), q) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b index.Entry) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// idleItems returns every item in an :idle list of one server, sorted.
func idleItems(t *testing.T, c *redis.Client) []string {
	t.Helper()
	var out []string
	for _, k := range c.Keys(t.Context(), "*:idle").Val() {
		out = append(out, c.LRange(t.Context(), k, 0, -1).Val()...)
	}
	slices.Sort(out)
	return out
}

// TestClusterLayoutPlansAndGC leases work on the cluster layout, commits a
// merge with a files.replaced event naming its plan, releases a drop
// lease, collects the tombstones of every Part, and refuses a
// files.replaced whose files lie in two dates.
func TestClusterLayoutPlansAndGC(t *testing.T) {
	ctx := t.Context()
	ck := newClock()
	x, _, _ := clusterIndex(t, index.Config{Now: ck.Now})
	a, b, c := qfile(1, "a", 1, "default", 10), qfile(1, "b", 1, "default", 20), qfile(30, "c", 1, "default", 30)
	tx := func(e event.Event) event.Event { e.Database, e.Table = "db", "t"; return e }
	apply(t, x, tx(created(a)), tx(created(b)), tx(created(c)), tx(deleted(c)))
	ck.Add(time.Hour)

	l, err := x.Next(ctx, index.QueueRef{Kind: event.PlanMerge, Database: "db", Table: "t", Layer: "default"})
	if err != nil {
		t.Fatal(err)
	}
	out := qfile(1, "ab", 2, "default", 30)
	commit := tx(replaced([]event.File{out}, []event.File{a, b}))
	commit.Plan = &event.Plan{Kind: event.PlanMerge, ID: l.ID, Token: l.Token}
	if res := apply(t, x, commit); res.Outcomes[0] != index.Applied {
		t.Fatalf("commit of %s: %v", l.ID, res.Outcomes)
	}
	if err := x.Done(ctx, index.QueueRef{Kind: event.PlanMerge, Database: "db", Table: "t"}, l.ID, l.Token); !errors.Is(err, index.ErrStaleLease) {
		t.Fatalf("done after the commit: %v, want a stale lease", err)
	}
	d, err := x.Next(ctx, index.QueueRef{Kind: index.PlanDrop, Database: "db", Table: "t", Layer: "default"})
	if err != nil || !strings.Contains(string(d.Item), c.Path) {
		t.Fatalf("drop lease: %+v, %v", d, err)
	}
	if err := x.Done(ctx, index.QueueRef{Kind: index.PlanDrop, Database: "db", Table: "t"}, d.ID, d.Token); err != nil {
		t.Fatal(err)
	}
	if rep, err := x.Check(ctx, nil); err != nil || len(rep.Drifts) > 0 || rep.Files != 1 {
		t.Fatalf("check: %+v, %v", rep, err)
	}

	if n, err := x.Tombstones(ctx, "db", "t"); err != nil || n != 3 {
		t.Fatalf("%d tombstones (%v), want 3 in two Parts", n, err)
	}
	if n, err := x.CollectTombstones(ctx, ck.Now().Add(time.Second)); err != nil || n != 3 {
		t.Fatalf("collected %d tombstones (%v), want 3", n, err)
	}

	span := tx(replaced([]event.File{qfile(2, "x", 2, "default", 1)}, []event.File{qfile(30, "y", 1, "default", 1)}))
	_, err = x.Apply(ctx, []event.Event{span})
	var ve *event.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "spans date=2024-01-16 and date=2024-01-15") {
		t.Fatalf("a files.replaced over two dates: %v, want a validation error naming both", err)
	}
}

// TestClusterLayoutHalfMigratedSlot holds a Part's slot half migrated
// (its files: hash moved to the target, its other keys still on the
// source) and applies events to it: the call fails with TRYAGAIN or ASK,
// which the worker's loop retries (consumer.Classify), and writes
// nothing; once the migration finished, applying the same events again
// succeeds and the index is exact.
func TestClusterLayoutHalfMigratedSlot(t *testing.T) {
	ctx := t.Context()
	x, cc, rc := clusterIndex(t, index.Config{})
	l := x.Layout()
	apply(t, x, created(file(1, "a")), created(file(2, "b")))
	files := l.Files("db", "t", "date=2024-01-15")
	slot := int(cc.ClusterKeySlot(ctx, files).Val())
	src := rc.Master(ctx, slot)
	if src < 0 {
		t.Fatalf("no master serves slot %d", slot)
	}
	m, err := rc.BeginMigration(ctx, src, (src+1)%3, slot)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Move(ctx, files); err != nil {
		t.Fatal(err)
	}
	before, err := x.Stats(ctx, "db", "t")
	if err != nil {
		t.Fatal(err)
	}

	// A client that gives up after one redirect, so the error surfaces.
	c1 := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Masters(), MaxRedirects: 1})
	defer c1.Close()
	x1, err := index.New(c1, index.Config{Layout: &l, Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }})
	if err != nil {
		t.Fatal(err)
	}
	batch := []event.Event{created(file(3, "c")), deleted(file(1, "a"))}
	_, err = x1.Apply(ctx, batch)
	if err == nil || !strings.Contains(err.Error(), "TRYAGAIN") && !strings.Contains(err.Error(), "ASK") {
		t.Fatalf("apply to a half-migrated slot: %v, want TRYAGAIN or ASK", err)
	}
	if c := consumer.Classify(err); c != consumer.Retry {
		t.Fatalf("Classify(%v) = %v, want retry", err, c)
	}

	if _, err := m.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.WaitOK(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := x.Stats(ctx, "db", "t")
	if err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("the failed call wrote: stats %+v, before %+v (%v)", after, before, err)
	}
	apply(t, x, batch...)
	s, err := x.Stats(ctx, "db", "t")
	if err != nil || s.Files != 2 {
		t.Fatalf("stats after the retry: %+v, %v; want 2 files", s, err)
	}
	if rep, err := x.Check(ctx, nil); err != nil || len(rep.Drifts) > 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}
