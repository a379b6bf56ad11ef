package index_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
)

func TestStateMachine(t *testing.T) {
	ctx := context.Background()
	a, b := file(1, "a"), file(1, "b")
	cases := []struct {
		name     string
		events   []event.Event
		outcomes string // one per event
		live     []string
	}{
		{"create", []event.Event{created(a)}, "a", []string{a.Path}},
		{"create twice", []event.Event{created(a), created(a)}, "ad", []string{a.Path}},
		{"create then delete", []event.Event{created(a), deleted(a)}, "aa", nil},
		{"delete then create", []event.Event{deleted(a), created(a)}, "ti", nil},
		{"delete twice", []event.Event{created(a), deleted(a), deleted(a)}, "aad", nil},
		{"delete unknown twice", []event.Event{deleted(a), deleted(a)}, "td", nil},
		{"replace", []event.Event{created(a), replaced([]event.File{b}, []event.File{a})}, "aa", []string{b.Path}},
		{"replace twice", []event.Event{created(a), replaced([]event.File{b}, []event.File{a}), replaced([]event.File{b}, []event.File{a})}, "aad", []string{b.Path}},
		{"replace of a deleted output", []event.Event{deleted(b), replaced([]event.File{b}, nil)}, "ti", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, c := newIndex(t, index.Config{})
			// Every event in its own call, then all in one call on a fresh
			// database: outcomes and results must agree.
			var got strings.Builder
			for _, e := range tc.events {
				got.WriteByte(byte(apply(t, x, e).Outcomes[0]))
			}
			if got.String() != tc.outcomes {
				t.Errorf("outcomes one by one = %q, want %q", got.String(), tc.outcomes)
			}
			one := content(t, c)
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			res := apply(t, x, tc.events...)
			var all strings.Builder
			for _, o := range res.Outcomes {
				all.WriteByte(byte(o))
			}
			if all.String() != tc.outcomes {
				t.Errorf("outcomes in one call = %q, want %q", all.String(), tc.outcomes)
			}
			if d := diff(one, content(t, c)); d != nil {
				t.Errorf("one by one and in one call differ: %v", d)
			}
			var live []string
			for q, err := range x.Query(ctx, index.Query{Database: "db", Table: "t"}) {
				if err != nil {
					t.Fatal(err)
				}
				live = append(live, q.Path)
			}
			if strings.Join(live, ",") != strings.Join(tc.live, ",") {
				t.Errorf("live = %v, want %v", live, tc.live)
			}
			rep, err := x.Check(ctx, nil)
			if err != nil || len(rep.Drifts) > 0 {
				t.Errorf("check: %v %v", rep.Drifts, err)
			}
		})
	}
}

func TestCountersExact(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	a, b, d := file(1, "a"), file(1, "b"), file(26, "d") // d on the next day
	apply(t, x, created(a), created(b), created(d))
	folders := c.HGetAll(ctx, "folders:db:t").Val()
	want := map[string]string{"date=2024-01-15/hour=01": "2", "date=2024-01-16/hour=02": "1"}
	if !maps.Equal(folders, want) {
		t.Errorf("folders = %v, want %v", folders, want)
	}
	apply(t, x, deleted(a), deleted(d))
	folders = c.HGetAll(ctx, "folders:db:t").Val()
	if want := map[string]string{"date=2024-01-15/hour=01": "1"}; !maps.Equal(folders, want) {
		t.Errorf("after deletes folders = %v, want %v (field removed at 0)", folders, want)
	}
	st, err := x.Stats(ctx, "db", "t")
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 1 || st.Bytes != b.SizeBytes || st.Rows != b.RowCount {
		t.Errorf("stats = %+v, want 1 file of %d bytes, %d rows", st, b.SizeBytes, b.RowCount)
	}
	if len(st.Dates) != 1 || st.Dates["date=2024-01-15"].Files != 1 {
		t.Errorf("per-date stats = %v, want only date=2024-01-15 with 1 file", st.Dates)
	}
	if st.LastEventNanos != 2 {
		t.Errorf("last event = %d, want 2 (newest event time)", st.LastEventNanos)
	}
	apply(t, x, deleted(b))
	if n := c.Exists(ctx, "folders:db:t", "files:db:t:date=2024-01-15").Val(); n != 0 {
		t.Errorf("%d empty keys left, want the folders and files keys removed", n)
	}
	if tables, _ := x.Tables(ctx); len(tables) != 1 || tables[0] != [2]string{"db", "t"} {
		t.Errorf("tables = %v, want [db t]", tables)
	}
}

func TestEntryIsGigAPIShape(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	f := file(14, "0b8f2f9e-5c8e-4a67-9d53-4fd0f1d1a0c2")
	f.MinTime = 1705327200123456789
	f.MaxTime = 1705330799987654321
	f.ChunkTime = 1705327200000000000
	var err error
	f.Min, err = event.StatsFromMap(map[string]any{"__timestamp": int64(1705327200123456789), "name": "é"})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, x, created(f))
	got := c.HGet(ctx, "files:db:t:date=2024-01-15", f.Path).Val()
	want := `{"layer":"default","database":"db","table":"t","path":"date=2024-01-15/hour=14/0b8f2f9e-5c8e-4a67-9d53-4fd0f1d1a0c2.1.parquet",` +
		`"size_bytes":136,"row_count":10,"chunk_time":0,"min":{"__timestamp":1705327200123456789,"name":"é"},"max":null,` +
		`"min_time":0,"max_time":0,"writer_id":"","str_min_time":"1705327200123456789","str_max_time":"1705330799987654321",` +
		`"str_chunk_time":"1705327200000000000","cmd":"ADD"}`
	if got != want {
		t.Fatalf("stored entry\n got %s\nwant %s", got, want)
	}
	// GigAPI's reader: encoding/json into its IndexEntry (int64 fields,
	// map[string]any stats) plus the str_* overrides, with UseNumber to see
	// the int64 statistic exactly.
	var gig struct {
		Layer, Database, Table, Path string
		SizeBytes                    int64          `json:"size_bytes"`
		RowCount                     int64          `json:"row_count"`
		ChunkTime                    int64          `json:"chunk_time"`
		Min                          map[string]any `json:"min"`
		MinTime                      int64          `json:"min_time"`
		StrMinTime                   string         `json:"str_min_time"`
	}
	dec := json.NewDecoder(strings.NewReader(got))
	dec.UseNumber()
	if err := dec.Decode(&gig); err != nil {
		t.Fatalf("GigAPI's reader would skip the entry: %v", err)
	}
	if gig.StrMinTime != "1705327200123456789" || gig.Min["__timestamp"].(json.Number).String() != "1705327200123456789" {
		t.Errorf("int64 values changed: %+v", gig)
	}
	e, err := x.Get(ctx, "db", "t", f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if e.MinTime != f.MinTime || e.MaxTime != f.MaxTime || e.ChunkTime != f.ChunkTime || string(e.Min) != f.Min.String() {
		t.Errorf("Get = %+v, want the times and stats of %+v", e, f)
	}
	if _, err := x.Get(ctx, "db", "t", file(3, "nope").Path); err != index.ErrNotFound {
		t.Errorf("Get of a missing path = %v, want ErrNotFound", err)
	}
}

func TestFailingCallWritesNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		key, value string
		errCode    string
		// publish makes the items of a and b due and published first, so
		// the batch's deletes withdraw them.
		publish bool
	}{
		{name: "files key is a string", key: "files:db:t:date=2024-01-16", value: "x", errCode: "WRONGTYPE"},
		{name: "stats key is a string", key: "idx:stats:db:t", value: "x", errCode: "WRONGTYPE"},
		{name: "tombstones key is a string", key: "idx:tomb:db:t", value: "x", errCode: "WRONGTYPE"},
		{name: "registry is a string", key: "idx:tables", value: "x", errCode: "WRONGTYPE"},
		{name: "drop list is a string", key: "drop:db:t:default::idle", value: "x", errCode: "WRONGTYPE"},
		{name: "queue state is a string", key: "idx:q:db:t", value: "x", errCode: "WRONGTYPE"},
		{name: "pending items is a string", key: "idx:qd:db:t", value: "x", errCode: "WRONGTYPE"},
		{name: "chunks of a date is a string", key: "idx:qc:db:t:date=2024-01-16", value: "x", errCode: "WRONGTYPE"},
		{name: "published paths is a string", key: "idx:qx:db:t:date=2024-01-15", value: "x", errCode: "WRONGTYPE", publish: true},
		{name: "merge list is a string", key: "merge:db:t:1:date=2024-01-15/hour=01:default::idle", value: "x", errCode: "WRONGTYPE", publish: true},
		{name: "move list is a string", key: "move:db:t:hot::idle", value: "x", errCode: "WRONGTYPE", publish: true},
		{name: "last-item pointer is corrupt", key: "idx:q:db:t", value: "hash", errCode: "CORRUPT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := newClock()
			x, c := newIndex(t, index.Config{Now: ck.Now, Queues: index.QueueConfig{
				Layers: []index.Layer{{Name: "default"}, {Name: "hot", TTL: time.Second}}}})
			a, b := file(1, "a"), file(2, "b")
			mv := file(1, "mv")
			mv.Layer, mv.ChunkTime = "hot", ck.Now().Add(-time.Hour).UnixNano() // its move is due
			apply(t, x, created(a), created(b), created(mv))
			if tc.publish {
				ck.Add(time.Hour)
				if n, err := x.Publish(ctx); err != nil || n != 3 {
					t.Fatalf("publish: %d %v", n, err)
				}
			}
			if tc.value == "hash" {
				// The last item of a's merge key holds garbage.
				if err := c.HSet(ctx, tc.key, "Lm|1|date=2024-01-15/hour=03|default|", "garbage").Err(); err != nil {
					t.Fatal(err)
				}
			} else if err := c.Set(ctx, tc.key, tc.value, 0).Err(); err != nil {
				t.Fatal(err)
			}
			before := dump(t, c)
			// A batch touching the planted key and others: delete, create,
			// replace across two dates.
			_, err := x.Apply(ctx, []event.Event{deleted(a), created(file(3, "c")), created(file(25, "d")),
				replaced([]event.File{file(2, "e")}, []event.File{b}), deleted(mv)})
			if err == nil || !strings.Contains(err.Error(), tc.errCode) {
				t.Fatalf("apply error = %v, want %s", err, tc.errCode)
			}
			if d := diffDumps(before, dump(t, c)); d != "" {
				t.Fatalf("a failing call changed Redis: %s", d)
			}
		})
	}
	t.Run("folder count is not an integer", func(t *testing.T) {
		x, c := newIndex(t, index.Config{})
		a := file(1, "a")
		apply(t, x, created(a))
		c.HSet(ctx, "folders:db:t", "date=2024-01-15/hour=01", "garbage")
		before := dump(t, c)
		_, err := x.Apply(ctx, []event.Event{created(file(5, "x")), deleted(a)})
		if err == nil || !strings.Contains(err.Error(), "CORRUPT") {
			t.Fatalf("apply error = %v, want CORRUPT", err)
		}
		if d := diffDumps(before, dump(t, c)); d != "" {
			t.Fatalf("a failing call changed Redis: %s", d)
		}
	})
}

func diffDumps(a, b map[string]string) string {
	for k, v := range a {
		if b[k] != v {
			return "key " + k + " changed"
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return "key " + k + " appeared"
		}
	}
	return ""
}

func TestApplyAfterScriptFlush(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	apply(t, x, created(file(1, "a")))
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n := c.ScriptExists(ctx, "0000000000000000000000000000000000000000").Val(); len(n) != 1 {
		t.Fatal("script exists failed")
	}
	res := apply(t, x, created(file(1, "b")))
	if res.Outcomes[0] != index.Applied {
		t.Fatalf("outcome after SCRIPT FLUSH = %v", res.Outcomes[0])
	}
	if n := c.HLen(ctx, "files:db:t:date=2024-01-15").Val(); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
}

func TestApplySplitsCalls(t *testing.T) {
	x, _ := newIndex(t, index.Config{MaxEventsPerCall: 3})
	var events []event.Event
	for i := 0; i < 7; i++ {
		events = append(events, created(file(i, "f")))
	}
	events = append(events, replaced([]event.File{file(1, "g"), file(2, "g")}, []event.File{file(1, "f"), file(2, "f")}))
	res := apply(t, x, events...)
	if res.Calls != 3 {
		t.Errorf("calls = %d, want 3 (3+3+2 events)", res.Calls)
	}
	if len(res.Outcomes) != len(events) || res.Count(index.Applied) != len(events) {
		t.Errorf("outcomes = %v", res.Outcomes)
	}

	// File operations are capped at ten times the events: a replace of 25
	// files is never split, but gets a call of its own.
	x, _ = newIndex(t, index.Config{MaxEventsPerCall: 2})
	var many []event.File
	for i := 0; i < 24; i++ {
		many = append(many, file(5, fmt.Sprintf("m%d", i)))
	}
	big := replaced([]event.File{file(5, "out")}, many)
	res = apply(t, x, created(file(1, "a")), big, created(file(1, "b")))
	if res.Calls != 3 {
		t.Errorf("calls = %d, want 3 (the 25-file replace alone)", res.Calls)
	}
}

func TestApplyRejectsInvalidEvent(t *testing.T) {
	x, c := newIndex(t, index.Config{})
	bad := created(file(1, "a"))
	bad.Database = "no:colons"
	_, err := x.Apply(context.Background(), []event.Event{created(file(1, "ok")), bad})
	if err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("error = %v, want one naming database", err)
	}
	if n := c.DBSize(context.Background()).Val(); n != 0 {
		t.Fatalf("%d keys written, want none", n)
	}
}

// TestProperty: a random history with duplicates, shuffled and applied in
// many calls, gives the index that each distinct event applied once in
// writer order gives, and Check finds no drift.
func TestProperty(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		t.Run("seed="+string(rune('0'+seed)), func(t *testing.T) {
			x, c := newIndex(t, index.Config{MaxEventsPerCall: 97})
			g := synth.New(synth.Config{Seed: seed, DeleteRatio: 0.35, ReplaceRatio: 0.08, Hours: 30})
			history := g.Events(2500)
			paths, deletes := map[string]bool{}, 0
			for i := range history {
				history[i].Files(func(f *event.File, del bool) {
					paths[f.Path] = true
					if del {
						deletes++
					}
				})
			}
			if len(paths) < 300 || float64(deletes) < 0.3*float64(len(history)) {
				t.Fatalf("history too tame: %d paths, %d deletes", len(paths), deletes)
			}

			// Oracle: each distinct event once, in writer order, on DB 1.
			oc := redisDB(t, c, 1)
			ox := openIndex(t, oc, index.Config{})
			if _, err := ox.Apply(ctx, history); err != nil {
				t.Fatal(err)
			}

			rng := rand.New(rand.NewPCG(seed, 7))
			delivered := redeliver(rng, history, 4)
			for len(delivered) > 0 {
				n := min(1+rng.IntN(300), len(delivered))
				if _, err := x.Apply(ctx, delivered[:n]); err != nil {
					t.Fatal(err)
				}
				delivered = delivered[n:]
			}

			if d := diff(content(t, oc), content(t, c)); d != nil {
				t.Fatalf("index differs from the oracle: %v", d)
			}
			// And both agree with the in-memory model.
			m := synth.NewModel()
			m.Apply(history...)
			files, bytes, rows := m.Totals("demo", "events")
			st, err := x.Stats(ctx, "demo", "events")
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != files || st.Bytes != bytes || st.Rows != rows {
				t.Fatalf("stats %+v, model %d files %d bytes %d rows", st, files, bytes, rows)
			}
			got := c.HGetAll(ctx, "folders:demo:events").Val()
			for dir, n := range m.Folders("demo", "events") {
				if got[dir] != itoa(n) {
					t.Fatalf("folder %s = %q, model %d", dir, got[dir], n)
				}
			}
			if len(got) != len(m.Folders("demo", "events")) {
				t.Fatalf("%d folders, model %d", len(got), len(m.Folders("demo", "events")))
			}
			rep, err := x.Check(ctx, nil)
			if err != nil || len(rep.Drifts) > 0 {
				t.Fatalf("check: %v %v", rep.Drifts, err)
			}
			if rep.Files != files {
				t.Fatalf("check recounted %d files, model %d", rep.Files, files)
			}
		})
	}
}

// TestCountersExactWithHugeDeletes: deletes that carry no size_bytes take
// their sizes from the stored entries, and a call whose sizes sum beyond
// 2^53 (where Lua's doubles stop being exact) is split, so the bytes
// statistic stays exact (the case: stored 6, recount 5).
func TestCountersExactWithHugeDeletes(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{})
	keep, huge, small := file(1, "keep"), file(1, "huge"), file(1, "small")
	keep.SizeBytes, huge.SizeBytes, small.SizeBytes = 5, event.MaxSafeInt, 2
	huge.RowCount = event.MaxSafeInt
	apply(t, x, created(keep), created(huge))
	apply(t, x, created(small))
	res := apply(t, x, deleted(huge), deleted(small)) // layer and path only
	if res.Count(index.Applied) != 2 {
		t.Fatalf("outcomes %v, want both applied", res.Outcomes)
	}
	rep, err := x.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Drifts) > 0 {
		t.Fatalf("drift after deleting a %d-byte and a 2-byte file in one call: %v", event.MaxSafeInt, rep.Drifts)
	}
	if b := c.HGet(ctx, "idx:stats:db:t", "bytes").Val(); b != "5" {
		t.Errorf("bytes = %s, want 5", b)
	}
}

// TestLargeDirInOneCall applies calls whose single folder holds more
// paths than patch_index handles in one step of string.byte or unpack
// (4,000), creates and deletes mixed, and compares the index with the
// same events applied in small calls.
func TestLargeDirInOneCall(t *testing.T) {
	ctx := context.Background()
	x, c := newIndex(t, index.Config{MaxEventsPerCall: 20_000})
	oc := redisDB(t, c, 1)
	ox := openIndex(t, oc, index.Config{MaxEventsPerCall: 97})
	var first, second []event.Event
	for i := range 9000 {
		f := file(1, fmt.Sprintf("f%05d", i))
		first = append(first, created(f))
		if i%2 == 0 {
			second = append(second, deleted(f))
		}
		second = append(second, created(file(1, fmt.Sprintf("g%05d", i))))
	}
	for _, batch := range [][]event.Event{first, second} {
		apply(t, x, batch...)
		if _, err := ox.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if d := diff(content(t, oc), content(t, c)); d != nil {
		t.Fatalf("one call per batch differs from calls of 97: %v", d)
	}
	if n := c.HLen(ctx, "files:db:t:date=2024-01-15").Val(); n != 9000+4500 {
		t.Errorf("%d files indexed, want %d", n, 9000+4500)
	}
	rep, err := x.Check(ctx, nil)
	if err != nil || len(rep.Drifts) > 0 {
		t.Fatalf("check: %v %v", rep.Drifts, err)
	}
}
