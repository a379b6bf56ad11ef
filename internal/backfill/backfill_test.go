package backfill_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/streamindex/indexer/internal/backfill"
	"github.com/streamindex/indexer/internal/backfill/backfilltest"
)

// h14 is 2024-01-15T14:00:00Z.
var h14 = time.Date(2024, 1, 15, 14, 0, 0, 0, time.UTC)

type nsRow struct {
	TS    int64   `parquet:"__timestamp"`
	Value float64 `parquet:"value"`
}

type msRow struct {
	TS    time.Time `parquet:"__timestamp,timestamp(millisecond)"`
	Value float64   `parquet:"value"`
}

func writeRaw(t *testing.T, root, rel string, data []byte) {
	t.Helper()
	name := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// nsRows are n rows one second apart from h14+offset, out of order (the
// extremes are in the middle row groups).
func nsRows(n int, offset time.Duration) []nsRow {
	rows := make([]nsRow, n)
	for i := range rows {
		j := (i*7 + 3) % n // a permutation for n not divisible by 7
		rows[i] = nsRow{TS: h14.Add(offset + time.Duration(j)*time.Second).UnixNano(), Value: float64(i)}
	}
	return rows
}

func scan(t *testing.T, cfg backfill.Config) map[string]backfill.File {
	t.Helper()
	out := map[string]backfill.File{}
	err := backfill.Scan(context.Background(), cfg, func(f backfill.File) error {
		out[f.Database+"/"+f.Table+"/"+f.Path] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestScan reads real Parquet files written with parquet-go: several row
// groups with statistics, row groups without statistics (the column is
// scanned), a timestamp logical type in milliseconds; and reports, never
// indexes, a corrupt footer, a file that is not Parquet, an empty file, a
// file without rows and a path GigAPI would not write.
func TestScan(t *testing.T) {
	root := t.TempDir()
	dir := "db/cpu/date=2024-01-15/hour=14/"
	stats := backfilltest.WriteParquet(t, root, dir+"stats.1.parquet", nsRows(50, 0), parquet.MaxRowsPerRowGroup(10))
	backfilltest.WriteParquet(t, root, dir+"nostats.1.parquet", nsRows(30, time.Minute), parquet.MaxRowsPerRowGroup(8),
		parquet.SkipPageBounds("__timestamp"), parquet.SkipPageStatistics("__timestamp"))
	noStatsFile, _ := os.Open(filepath.Join(root, dir+"nostats.1.parquet"))
	st, _ := noStatsFile.Stat()
	pf, err := parquet.OpenFile(noStatsFile, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if rgs := pf.Metadata().RowGroups; len(rgs) < 3 || len(rgs[1].Columns[0].MetaData.Statistics.MinValue) != 0 {
		t.Fatalf("the file without statistics has %d row groups, statistics %+v", len(rgs), rgs[1].Columns[0].MetaData.Statistics)
	}
	noStatsFile.Close()
	ms := []msRow{{h14.Add(2 * time.Second), 1}, {h14.Add(1500 * time.Millisecond), 2}, {h14.Add(59 * time.Minute), 3}}
	backfilltest.WriteParquet(t, root, dir+"millis.2.parquet", ms, parquet.MaxRowsPerRowGroup(2))
	backfilltest.WriteParquet(t, root, dir+"norows.1.parquet", []nsRow{})
	good, err := os.ReadFile(stats)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), good...)
	copy(corrupt[len(corrupt)-8:], []byte{0xff, 0xff, 0xff, 0x7f, 'P', 'A', 'R', '1'}) // a footer length past the file
	writeRaw(t, root, dir+"corrupt.1.parquet", corrupt)
	garbled := append([]byte(nil), good...)
	for i := len(garbled) - 200; i < len(garbled)-8; i++ {
		garbled[i] ^= 0x5a
	}
	writeRaw(t, root, dir+"garbled.1.parquet", garbled)
	writeRaw(t, root, dir+"text.1.parquet", []byte("date,value\n2024-01-15,1\n"))
	writeRaw(t, root, dir+"empty.1.parquet", nil)
	writeRaw(t, root, "db/cpu/tmp/x.1.parquet", good)
	writeRaw(t, root, dir+"notes.txt", []byte("ignored"))
	backfilltest.WriteParquet(t, root, "db/mem/date=2024-01-16/hour=00/m.1.parquet", nsRows(3, 0))

	got := scan(t, backfill.Config{Root: root, Workers: 3})
	if len(got) != 10 {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Fatalf("%d files passed, want 10: %v", len(got), keys)
	}
	ok := func(name string, rows int64, lo, hi time.Time) {
		t.Helper()
		f := got["db/cpu/date=2024-01-15/hour=14/"+name]
		if f.Err != nil {
			t.Errorf("%s: %v", name, f.Err)
			return
		}
		st, _ := os.Stat(f.Name)
		e := f.Event.File
		if e.RowCount != rows || e.MinTime != lo.UnixNano() || e.MaxTime != hi.UnixNano() || e.SizeBytes != st.Size() ||
			e.Layer != "default" || f.Event.Database != "db" || f.Event.Table != "cpu" || !strings.HasPrefix(f.Event.ID, "bf-") {
			t.Errorf("%s: event %+v, want %d rows from %v to %v, size %d", name, f.Event, rows, lo, hi, st.Size())
		}
	}
	ok("stats.1.parquet", 50, h14, h14.Add(49*time.Second))
	ok("nostats.1.parquet", 30, h14.Add(time.Minute), h14.Add(time.Minute+29*time.Second))
	ok("millis.2.parquet", 3, h14.Add(1500*time.Millisecond), h14.Add(59*time.Minute))
	bad := func(name, reason string) {
		t.Helper()
		f := got[name]
		if f.Err == nil || !strings.Contains(f.Err.Error(), reason) || f.Event.ID != "" {
			t.Errorf("%s: err %v, want one saying %q and no event", name, f.Err, reason)
		}
	}
	bad("db/cpu/date=2024-01-15/hour=14/corrupt.1.parquet", "not a readable Parquet file")
	bad("db/cpu/date=2024-01-15/hour=14/text.1.parquet", "not a readable Parquet file")
	bad("db/cpu/date=2024-01-15/hour=14/empty.1.parquet", "empty file")
	bad("db/cpu/date=2024-01-15/hour=14/norows.1.parquet", "without rows")
	bad("db/cpu/tmp/x.1.parquet", "not a file GigAPI writes there")
	if f := got["db/cpu/date=2024-01-15/hour=14/garbled.1.parquet"]; f.Err == nil {
		t.Errorf("a garbled footer was read: %+v", f.Event)
	}

	// Deterministic: the same tree gives the same events.
	again := scan(t, backfill.Config{Root: root, Workers: 1})
	for k, f := range got {
		if f.Event.ID != again[k].Event.ID || f.Event.File != again[k].Event.File {
			t.Errorf("%s: event id %q then %q", k, f.Event.ID, again[k].Event.ID)
		}
	}
	// Filters and Skip.
	only := scan(t, backfill.Config{Root: root, Database: "db", Table: "mem",
		Skip: func(_ context.Context, db, table, path string) (string, error) { return "", nil }})
	if len(only) != 1 || only["db/mem/date=2024-01-16/hour=00/m.1.parquet"].Err != nil {
		t.Errorf("--table mem: %v", only)
	}
	skipped := scan(t, backfill.Config{Root: root, Skip: func(context.Context, string, string, string) (string, error) { return "indexed", nil }})
	if f := skipped["db/cpu/date=2024-01-15/hour=14/stats.1.parquet"]; f.Skipped != "indexed" || f.Event.ID != "" {
		t.Errorf("a skipped file: %+v", f)
	}
}
