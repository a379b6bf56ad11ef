package index_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
)

// clusterLayout is the cluster layout with the default prefix.
func clusterLayout(t *testing.T) index.Layout {
	t.Helper()
	l, err := index.NewClusterLayout("")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// clusterDump returns DUMP of every key of every master, by name.
func clusterDump(t *testing.T, c *redis.ClusterClient) map[string]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string]string{}
	err := c.ForEachMaster(t.Context(), func(ctx context.Context, n *redis.Client) error {
		keys, err := n.Keys(ctx, "*").Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			v, err := n.Dump(ctx, k).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			out[k] = v
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantStats fails the test unless the table's statistics are exactly
// files, bytes, rows in total and per date.
func wantStats(t *testing.T, x *index.Index, files, bytes, rows int64, dates map[string]index.DateStats) {
	t.Helper()
	st, err := x.Stats(t.Context(), "db", "t")
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != files || st.Bytes != bytes || st.Rows != rows || len(st.Dates) != len(dates) {
		t.Fatalf("stats %+v, want files %d bytes %d rows %d dates %v", st, files, bytes, rows, dates)
	}
	for d, want := range dates {
		if st.Dates[d] != want {
			t.Fatalf("stats of %s: %+v, want %+v", d, st.Dates[d], want)
		}
	}
}

// TestClusterAdopt: an index another writer wrote in the cluster layout's
// keys (entries and folder counts only, over three dates, so three Parts)
// is adopted as in the gigapi layout: the dry run writes nothing, adopt
// registers the table and its dates and rebuilds every Part's counters,
// --repair rewrites the entry GigAPI's reader skips, and then check
// passes, the statistics are exact, deleting an adopted file keeps them
// exact, and adopting again changes nothing.
func TestClusterAdopt(t *testing.T) {
	ctx := t.Context()
	x, c, _ := clusterIndex(t, index.Config{})
	l := clusterLayout(t)
	a, b, d, huge, e := file(14, "a"), file(14, "b"), file(15, "d"), file(30, "huge"), file(50, "e")
	a.SizeBytes, b.SizeBytes, d.SizeBytes, e.SizeBytes = 500, 700, 900, 300
	huge.SizeBytes = 123_450_000_000_000 // cjson writes 1.2345e+14
	for _, f := range []event.File{a, b, d, huge, e} {
		gigapiWriteTo(t, c, l, "db", "t", f)
	}
	if ds := drifts(t, x); len(ds) != 1 || !strings.Contains(ds[0].What, "not registered") {
		t.Fatalf("check before adopt: %v, want the unregistered table", ds)
	}

	before := clusterDump(t, c)
	dry := adopt(t, x, index.AdoptConfig{DryRun: true})
	if d := diffDumps(before, clusterDump(t, c)); d != "" {
		t.Fatalf("a dry run changed Redis: %s", d)
	}
	if dry.Entries != 5 || dry.Keys != 3 || dry.Unreadable != 1 || dry.Repairable != 1 || dry.NewTables != 1 || len(dry.Fixes) == 0 {
		t.Fatalf("dry run report %+v", dry)
	}

	rep := adopt(t, x, index.AdoptConfig{})
	if rep.Keys != 3 || rep.Unreadable != 1 || rep.Repaired != 0 || len(rep.Listed) != 1 || !strings.Contains(rep.Listed[0].Reason, "size_bytes 1.2345e+14") {
		t.Fatalf("adopt report %+v", rep)
	}
	if ds := drifts(t, x); len(ds) != 1 || !strings.Contains(ds[0].What, "entry is not valid") {
		t.Fatalf("check after adopt without --repair: %v, want only the unreadable entry", ds)
	}
	rep = adopt(t, x, index.AdoptConfig{Repair: true})
	if rep.Repaired != 1 || len(rep.Fixes) != 0 || rep.NewTables != 0 {
		t.Fatalf("adopt --repair report %+v, want 1 repaired, no counter changed", rep)
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("check after adopt --repair: %v", ds)
	}
	if dates, _ := c.SMembers(ctx, l.Dates("db", "t")).Result(); len(dates) != 3 {
		t.Fatalf("registered dates %v, want 3", dates)
	}
	day15, day16, day17 := a.Date(), huge.Date(), e.Date()
	wantStats(t, x, 5, 2400+huge.SizeBytes, 50, map[string]index.DateStats{
		day15: {Files: 3, Bytes: 2100, Rows: 30}, day16: {Files: 1, Bytes: huge.SizeBytes, Rows: 10}, day17: {Files: 1, Bytes: 300, Rows: 10}})

	if res := apply(t, x, created(b)); res.Outcomes[0] != index.Duplicate {
		t.Errorf("create of an adopted file: %v, want duplicate", res.Outcomes[0])
	}
	if res := apply(t, x, deleted(a)); res.Outcomes[0] != index.Applied {
		t.Errorf("delete of an adopted file: %v, want applied", res.Outcomes[0])
	}
	wantStats(t, x, 4, 1900+huge.SizeBytes, 40, map[string]index.DateStats{
		day15: {Files: 2, Bytes: 1600, Rows: 20}, day16: {Files: 1, Bytes: huge.SizeBytes, Rows: 10}, day17: {Files: 1, Bytes: 300, Rows: 10}})
	if v := c.HGet(ctx, l.Folders(l.Part("db", "t", day15)), a.Dir()).Val(); v != "1" {
		t.Errorf("folder count %s, want 1", v)
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("check after deleting an adopted file: %v", ds)
	}

	before = clusterDump(t, c)
	if rep := adopt(t, x, index.AdoptConfig{Repair: true}); len(rep.Fixes) != 0 || rep.Repaired != 0 || rep.Unreadable != 0 || rep.Keys != 3 {
		t.Errorf("adopt again: %+v", rep)
	}
	if fixes, err := x.Recount(ctx, "db", "t", true); err != nil || len(fixes) != 0 {
		t.Errorf("recount after adopt: %v %v", fixes, err)
	}
	if d := diffDumps(before, clusterDump(t, c)); d != "" {
		t.Errorf("adopting again changed Redis: %s", d)
	}
}

// TestClusterRecountRepairsDrift: check --repair's recount, in the
// cluster layout, fixes the counters of every Part another writer left
// wrong (a merge committed with GigAPI's own Batch, a wrong per-date
// field) and those of a registered Part without entries, reports each
// fix (a dry recount changes nothing; its totals are the sums of the
// stored per-date fields, so they differ), and a second run fixes nothing.
func TestClusterRecountRepairsDrift(t *testing.T) {
	ctx := t.Context()
	x, c, _ := clusterIndex(t, index.Config{})
	l := clusterLayout(t)
	a, b, cf := file(1, "a"), file(2, "b"), file(30, "c")
	apply(t, x, created(a), created(b), created(cf))
	// Another writer merges a and b into m without telling indexer.
	m := file(1, "m")
	m.SizeBytes = 1000
	c.HDel(ctx, l.Files("db", "t", a.Date()), a.Path, b.Path)
	gigapiWriteTo(t, c, l, "db", "t", m)
	c.HSet(ctx, l.Stats(l.Part("db", "t", cf.Date())), "bytes:"+cf.Date(), "7")
	stale := l.Part("db", "t", "date=2020-01-01")
	c.SAdd(ctx, l.Dates("db", "t"), stale.Date)
	c.HSet(ctx, l.Stats(stale), "files:"+stale.Date, "3", "files", "3")
	c.HSet(ctx, l.Folders(stale), stale.Date+"/hour=00", "3")
	if len(drifts(t, x)) == 0 {
		t.Fatal("no drift to repair")
	}

	before := clusterDump(t, c)
	dry, err := x.Recount(ctx, "db", "t", false)
	if err != nil || len(dry) == 0 {
		t.Fatalf("dry recount: %v %v", dry, err)
	}
	if d := diffDumps(before, clusterDump(t, c)); d != "" {
		t.Fatalf("a dry recount changed Redis: %s", d)
	}
	fixes, err := x.Recount(ctx, "db", "t", true)
	if err != nil {
		t.Fatal(err)
	}
	sameFixes(t, dry, fixes)
	want := index.Fix{Key: l.Stats(l.Part("db", "t", m.Date())), Field: "bytes:" + m.Date(), Stored: "202", Recounted: "1000"}
	if !slices.Contains(fixes, want) {
		t.Errorf("fixes %v lack %s", fixes, want)
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("drift after recount: %v (fixes %v)", ds, fixes)
	}
	wantStats(t, x, 2, 1000+cf.SizeBytes, 20, map[string]index.DateStats{
		m.Date(): {Files: 1, Bytes: 1000, Rows: 10}, cf.Date(): {Files: 1, Bytes: cf.SizeBytes, Rows: 10}})
	if fixes, _ := x.Recount(ctx, "db", "t", true); len(fixes) != 0 {
		t.Errorf("a second recount fixed %v", fixes)
	}
	if res := apply(t, x, deleted(m)); res.Outcomes[0] != index.Applied {
		t.Fatal(res.Outcomes)
	}
	wantStats(t, x, 1, cf.SizeBytes, 10, map[string]index.DateStats{cf.Date(): {Files: 1, Bytes: cf.SizeBytes, Rows: 10}})
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("drift after deleting the merged file: %v", ds)
	}
}

var errKilled = errors.New("killed")

// progressKiller is a cluster client that fails the adopt progress
// record's HSET after letting `left` of them through, as a process
// killed between a Part's calls and the record would.
type progressKiller struct {
	*redis.ClusterClient
	key  string
	left int
}

func (k *progressKiller) HSet(ctx context.Context, key string, values ...any) *redis.IntCmd {
	if key == k.key {
		if k.left == 0 {
			cmd := redis.NewIntCmd(ctx)
			cmd.SetErr(errKilled)
			return cmd
		}
		k.left--
	}
	return k.ClusterClient.HSet(ctx, key, values...)
}

// TestClusterAdoptKilledResumes: adopt killed after a Part's recount
// calls and before its progress record (which lies in another slot, so
// no script can write both) leaves that Part counted but not recorded;
// the resumed run skips the recorded Part, recounts the other again
// without changing it, adopts the rest, and ends with exact counters, a
// passing check and no progress record.
func TestClusterAdoptKilledResumes(t *testing.T) {
	ctx := t.Context()
	x, c, _ := clusterIndex(t, index.Config{})
	l := clusterLayout(t)
	fs := []event.File{file(1, "a"), file(2, "b"), file(30, "c"), file(50, "d")}
	for _, f := range fs {
		gigapiWriteTo(t, c, l, "db", "t", f)
	}
	day1, day2, day3 := fs[0].Date(), fs[2].Date(), fs[3].Date()

	killer := &progressKiller{ClusterClient: c, key: l.Adoption(), left: 1}
	k := openIndex(t, killer, index.Config{Layout: &l})
	if _, err := k.Adopt(ctx, index.AdoptConfig{}); !errors.Is(err, errKilled) {
		t.Fatalf("the killed run: %v", err)
	}
	if done := c.HKeys(ctx, l.Adoption()).Val(); len(done) != 1 || done[0] != l.Files("db", "t", day1) {
		t.Fatalf("progress recorded %v, want only %s", done, l.Files("db", "t", day1))
	}
	if v := c.HGet(ctx, l.Stats(l.Part("db", "t", day2)), "files").Val(); v != "1" {
		t.Fatalf("the killed Part's files total %q, want 1 (counted before the kill)", v)
	}
	if n := c.Exists(ctx, l.Stats(l.Part("db", "t", day3))).Val(); n != 0 {
		t.Fatal("the Part after the kill was counted")
	}

	rep := adopt(t, x, index.AdoptConfig{})
	if rep.Resumed != 1 || rep.Keys != 2 || rep.Entries != 2 {
		t.Fatalf("resumed run %+v, want 1 key resumed, 2 adopted", rep)
	}
	for _, f := range rep.Fixes {
		if strings.Contains(f.Key, day2) {
			t.Errorf("the resumed run changed the killed Part's counter %s", f)
		}
	}
	if n := c.Exists(ctx, l.Adoption()).Val(); n != 0 {
		t.Errorf("the progress record is left after a complete run")
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("check after the resumed run: %v", ds)
	}
	wantStats(t, x, 4, fs[0].SizeBytes+fs[1].SizeBytes+fs[2].SizeBytes+fs[3].SizeBytes, 40, map[string]index.DateStats{
		day1: {Files: 2, Bytes: fs[0].SizeBytes + fs[1].SizeBytes, Rows: 20},
		day2: {Files: 1, Bytes: fs[2].SizeBytes, Rows: 10}, day3: {Files: 1, Bytes: fs[3].SizeBytes, Rows: 10}})
	before := clusterDump(t, c)
	if rep := adopt(t, x, index.AdoptConfig{}); len(rep.Fixes) != 0 || rep.Keys != 3 {
		t.Errorf("adopt again: %+v", rep)
	}
	if d := diffDumps(before, clusterDump(t, c)); d != "" {
		t.Errorf("adopting again changed Redis: %s", d)
	}
}
