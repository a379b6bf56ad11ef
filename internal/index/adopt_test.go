package index_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
)

// gigapiAdd writes a file the way GigAPI's metadata library does (see
// docs/gigapi-layout.md): its Lua decodes the entry and re-encodes it with
// cjson (field order of its own, numbers of 14 significant digits) into
// the files: hash, and increments the folder count. No counters of
// indexer's, no registry, no tombstone.
var gigapiAdd = redis.NewScript(`
local e = cjson.decode(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)`)

func gigapiWrite(t *testing.T, c *redis.Client, db, table string, f event.File) {
	t.Helper()
	l, _ := index.NewLayout("")
	gigapiWriteTo(t, c, l, db, table, f)
}

// gigapiWriteTo writes a file as gigapiWrite does, under layout l's names
// (in the cluster layout: another writer writing its keys directly).
func gigapiWriteTo(t *testing.T, c redis.Scripter, l index.Layout, db, table string, f event.File) {
	t.Helper()
	entry := fmt.Sprintf(`{"layer":%q,"database":%q,"table":%q,"path":%q,"size_bytes":%d,"row_count":%d,"chunk_time":0,"min_time":0,"max_time":0,`+
		`"str_chunk_time":"%d","str_min_time":"%d","str_max_time":"%d","min":{},"max":{},"writer_id":"","cmd":"ADD"}`,
		f.Layer, db, table, f.Path, f.SizeBytes, f.RowCount, f.ChunkTime, f.MinTime, f.MaxTime)
	keys := []string{l.Files(db, table, f.Date()), l.Folders(l.Part(db, table, f.Date()))}
	if err := gigapiAdd.Run(context.Background(), c, keys, f.Path, entry, f.Dir()).Err(); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
}

func adopt(t *testing.T, x *index.Index, cfg index.AdoptConfig) index.AdoptReport {
	t.Helper()
	rep, err := x.Adopt(context.Background(), cfg)
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	return rep
}

func drifts(t *testing.T, x *index.Index) []index.Drift {
	t.Helper()
	rep, err := x.Check(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Drifts
}

// TestAdoptGigAPIIndex: an index GigAPI's library wrote is adopted: the
// dry run writes nothing, adopt registers the table and rebuilds its
// counters, --repair rewrites the entry GigAPI's reader skips (a size in
// exponent form), and then check passes, deleting an adopted file keeps
// every counter exact, and a create of an adopted file is a duplicate.
func TestAdoptGigAPIIndex(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	a, b, d, huge := file(14, "a"), file(14, "b"), file(15, "d"), file(30, "huge")
	a.SizeBytes, b.SizeBytes, d.SizeBytes = 500, 700, 900
	huge.SizeBytes = 123_450_000_000_000 // cjson writes 1.2345e+14
	for _, f := range []event.File{a, b, d, huge} {
		gigapiWrite(t, c, "db", "t", f)
	}
	if v := c.HGet(ctx, "files:db:t:"+huge.Date(), huge.Path).Val(); !strings.Contains(v, "1.2345e+14") {
		t.Fatalf("the test's GigAPI entry has no exponent: %s", v)
	}
	if n := len(drifts(t, x)); n != 1 {
		t.Errorf("check before adopt: %d drifts, want 1 (the table is not registered)", n)
	}

	before := dump(t, c)
	dry := adopt(t, x, index.AdoptConfig{DryRun: true})
	if d := diffDumps(before, dump(t, c)); d != "" {
		t.Fatalf("a dry run changed Redis: %s", d)
	}
	if dry.Entries != 4 || dry.Unreadable != 1 || dry.Repairable != 1 || dry.NewTables != 1 || len(dry.Fixes) == 0 {
		t.Fatalf("dry run report %+v", dry)
	}

	rep := adopt(t, x, index.AdoptConfig{})
	if rep.Unreadable != 1 || rep.Repaired != 0 || len(rep.Listed) != 1 || !strings.Contains(rep.Listed[0].Reason, "size_bytes 1.2345e+14") {
		t.Fatalf("adopt report %+v", rep)
	}
	ds := drifts(t, x)
	if len(ds) != 1 || !strings.Contains(ds[0].What, "entry is not valid") {
		t.Fatalf("check after adopt without --repair: %v, want only the unreadable entry", ds)
	}
	rep = adopt(t, x, index.AdoptConfig{Repair: true})
	if rep.Repaired != 1 || len(rep.Fixes) != 0 || rep.NewTables != 0 {
		t.Fatalf("adopt --repair report %+v, want 1 repaired, no counter changed", rep)
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("check after adopt --repair: %v", ds)
	}
	if e, err := x.Get(ctx, "db", "t", huge.Path); err != nil || e.SizeBytes != huge.SizeBytes || e.MaxTime != huge.MaxTime {
		t.Fatalf("repaired entry %+v %v", e, err)
	}
	st, _ := x.Stats(ctx, "db", "t")
	if st.Files != 4 || st.Bytes != 500+700+900+huge.SizeBytes || st.Rows != 40 {
		t.Fatalf("stats after adopt %+v", st)
	}

	// The symptoms, gone.
	if res := apply(t, x, created(a)); res.Outcomes[0] != index.Duplicate {
		t.Errorf("create of an adopted file: %v, want duplicate", res.Outcomes[0])
	}
	if res := apply(t, x, deleted(a)); res.Outcomes[0] != index.Applied {
		t.Errorf("delete of an adopted file: %v, want applied", res.Outcomes[0])
	}
	st, _ = x.Stats(ctx, "db", "t")
	if st.Files != 3 || st.Bytes != 700+900+huge.SizeBytes {
		t.Errorf("stats after deleting an adopted file %+v", st)
	}
	if v := c.HGet(ctx, "folders:db:t", a.Dir()).Val(); v != "1" {
		t.Errorf("folder count %s, want 1", v)
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("check after deleting an adopted file: %v", ds)
	}

	// Idempotent: again, nothing changes.
	before = dump(t, c)
	if rep := adopt(t, x, index.AdoptConfig{Repair: true}); len(rep.Fixes) != 0 || rep.Repaired != 0 || rep.Unreadable != 0 {
		t.Errorf("adopt again: %+v", rep)
	}
	if d := diffDumps(before, dump(t, c)); d != "" {
		t.Errorf("adopting again changed Redis: %s", d)
	}
}

// TestAdoptResumes: keys a killed run completed are not read again; a
// completed run leaves no progress record.
func TestAdoptResumes(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	gigapiWrite(t, c, "db", "t", file(1, "a"))
	gigapiWrite(t, c, "db", "t", file(30, "b"))
	c.HSet(ctx, "idx:adopt", "files:db:t:date=2024-01-15", "1700000000 0") // as a killed run left it
	rep := adopt(t, x, index.AdoptConfig{})
	if rep.Resumed != 1 || rep.Keys != 1 || rep.Entries != 1 {
		t.Fatalf("resumed run %+v, want 1 key resumed, 1 adopted", rep)
	}
	if n := c.Exists(ctx, "idx:adopt").Val(); n != 0 {
		t.Errorf("the progress record is left after a complete run")
	}
	// The resumed key's counters: the killed run is trusted to have set
	// them; here it did not, so they drift until the next run.
	if len(drifts(t, x)) == 0 {
		t.Errorf("want the drift the fake killed run left")
	}
	if rep := adopt(t, x, index.AdoptConfig{}); rep.Keys != 2 || len(drifts(t, x)) != 0 {
		t.Errorf("a fresh run %+v, drifts %v", rep, drifts(t, x))
	}
}

// TestAdoptWhileApplying: adopt and check --repair's recount run while a
// worker applies creates and deletes to the same dates: the counters end
// exact.
func TestAdoptWhileApplying(t *testing.T) {
	x, c := newIndex(t, index.Config{})
	l, _ := index.NewLayout("")
	adoptWhileApplying(t, x, c, l)
}

// TestClusterAdoptWhileApplying: the same in the cluster layout, where
// the recount runs Part by Part.
func TestClusterAdoptWhileApplying(t *testing.T) {
	x, c, _ := clusterIndex(t, index.Config{})
	l, _ := index.NewClusterLayout("")
	adoptWhileApplying(t, x, c, l)
}

func adoptWhileApplying(t *testing.T, x *index.Index, c redis.Scripter, l index.Layout) {
	t.Helper()
	ctx := context.Background()
	for i := range 200 {
		gigapiWriteTo(t, c, l, "db", "t", file(i%30, fmt.Sprintf("g%d", i)))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f := file(i%30, fmt.Sprintf("w%d", i))
			evs := []event.Event{created(f), deleted(file(i%30, fmt.Sprintf("g%d", i%200)))}
			if i%3 == 0 {
				evs = append(evs, deleted(f))
			}
			if _, err := x.Apply(ctx, evs); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 3 {
		adopt(t, x, index.AdoptConfig{})
		if _, err := x.Recount(ctx, "db", "t", true); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("drift after adopting while applying: %v", ds)
	}
}

// TestRecountRepairsDrift: check --repair's recount fixes folder counts,
// date fields and totals left wrong (by GigAPI's own Batch committing
// around indexer), including counters of a date without entries, and
// reports each fix; a second run fixes nothing.
func TestRecountRepairsDrift(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	a, b := file(1, "a"), file(2, "b")
	apply(t, x, created(a), created(b))
	// GigAPI's Batch merges a and b into m without telling indexer.
	m := file(1, "m")
	c.HDel(ctx, "files:db:t:date=2024-01-15", a.Path, b.Path)
	gigapiWrite(t, c, "db", "t", m)
	c.HSet(ctx, "idx:stats:db:t", "files:date=2020-01-01", "3") // a stale date
	if len(drifts(t, x)) == 0 {
		t.Fatal("no drift to repair")
	}
	dry, err := x.Recount(ctx, "db", "t", false)
	if err != nil {
		t.Fatal(err)
	}
	fixes, err := x.Recount(ctx, "db", "t", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(fixes) == 0 {
		t.Fatal("no fix reported")
	}
	sameFixes(t, dry, fixes)
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("drift after recount: %v (fixes %v)", ds, fixes)
	}
	if fixes, _ := x.Recount(ctx, "db", "t", true); len(fixes) != 0 {
		t.Errorf("a second recount fixed %v", fixes)
	}
	if res := apply(t, x, deleted(m)); res.Outcomes[0] != index.Applied {
		t.Fatal(res.Outcomes)
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("drift after deleting the merged file: %v", ds)
	}
}

// sameFixes fails unless a dry run listed exactly the fixes the real run
// made, the totals' included.
func sameFixes(t *testing.T, dry, fixes []index.Fix) {
	t.Helper()
	for _, f := range dry {
		if !slices.Contains(fixes, f) {
			t.Errorf("the dry run said %s, the real run did not make that fix: %v", f, fixes)
		}
	}
	for _, f := range fixes {
		if !slices.Contains(dry, f) {
			t.Errorf("the real run made fix %s, the dry run did not say it: %v", f, dry)
		}
	}
}

// TestAdoptGigAPIItems: a merge item GigAPI's library pushed into an :idle
// list is adopted as a published item, so deleting one of its files
// withdraws it, and the rest is published again without that file; an
// item listing a file deleted before is reported and left alone.
func TestAdoptGigAPIItems(t *testing.T) {
	ck := newClock()
	x, c := queueIndex(t, index.QueueConfig{}, ck)
	l, _ := index.NewLayout("")
	adoptItems(t, x, c, l, ck)
}

// TestClusterAdoptItems: the same in the cluster layout, the item pushed
// into its Part's :idle list by another writer.
func TestClusterAdoptItems(t *testing.T) {
	ck := newClock()
	x, c, _ := clusterIndex(t, index.Config{Now: ck.Now})
	l, _ := index.NewClusterLayout("")
	adoptItems(t, x, c, l, ck)
}

func adoptItems(t *testing.T, x *index.Index, c redis.Cmdable, l index.Layout, ck *clock) {
	t.Helper()
	ctx := context.Background()
	a, b, gone := file(14, "a"), file(14, "b"), file(14, "gone")
	gigapiWriteTo(t, c, l, "db", "t", a)
	gigapiWriteTo(t, c, l, "db", "t", b)
	idle := l.Idle(l.MergeQueue("db", "t", 1, a.Dir(), "default", ""))
	item := fmt.Sprintf(`{"id":"gigapi-1","time_s":%d,"paths":[%q,%q],"size":%d}`, ck.S()-5, a.Path, b.Path, a.SizeBytes+b.SizeBytes)
	stale := fmt.Sprintf(`{"id":"gigapi-2","time_s":%d,"paths":[%q],"size":1}`, ck.S()-5, gone.Path)
	c.RPush(ctx, idle, item, stale)

	if rep := adopt(t, x, index.AdoptConfig{DryRun: true}); rep.Items != 2 || rep.ItemsAdopted != 0 {
		t.Fatalf("dry run: %+v", rep)
	}
	rep := adopt(t, x, index.AdoptConfig{})
	if rep.Items != 2 || rep.ItemsAdopted != 1 || len(rep.ItemProblems) != 1 || !strings.Contains(rep.ItemProblems[0], "gigapi-2") {
		t.Fatalf("adopt: items %d adopted %d problems %v", rep.Items, rep.ItemsAdopted, rep.ItemProblems)
	}
	if rep := adopt(t, x, index.AdoptConfig{}); rep.ItemsAdopted != 0 {
		t.Errorf("adopting again adopted %d items", rep.ItemsAdopted)
	}
	c.LRem(ctx, idle, 1, stale) // an operator removes it

	apply(t, x, deleted(a))
	publish(t, x)
	items := list(t, c, idle)
	if len(items) != 1 || fmt.Sprint(items[0]["paths"]) != fmt.Sprint([]any{b.Path}) || items[0]["id"] != "gigapi-1" {
		t.Fatalf("after deleting a: items %v, want gigapi-1 listing only b", items)
	}
	if ds := drifts(t, x); len(ds) != 0 {
		t.Fatalf("check: %v", ds)
	}
}
