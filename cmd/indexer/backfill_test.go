package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/streamindex/indexer/internal/backfill/backfilltest"
)

type tsRow struct {
	TS    int64   `parquet:"__timestamp"`
	Value float64 `parquet:"value"`
}

// writeParquet writes n rows a second apart from 2024-01-15T14:00Z into
// root/rel, in row groups of 4.
func writeParquet(t *testing.T, root, rel string, n int) {
	t.Helper()
	h14 := time.Date(2024, 1, 15, 14, 0, 0, 0, time.UTC)
	rows := make([]tsRow, n)
	for i := range rows {
		rows[i] = tsRow{TS: h14.Add(time.Duration(i) * time.Second).UnixNano(), Value: float64(i)}
	}
	backfilltest.WriteParquet(t, root, rel, rows, parquet.MaxRowsPerRowGroup(4))
}

// TestBackfillAndReconcile: backfill indexes the tree's files (a dry run
// first, changing nothing), reports the unreadable ones, is a no-op when
// run again, publishes with --publish, and --reconcile finds what changed
// on disk and with --apply brings the index in line.
func TestBackfillAndReconcile(t *testing.T) {
	env, srv := redisEnv(t)
	c := srv.Client(t)
	ctx := t.Context()
	root := t.TempDir()
	writeParquet(t, root, "db/cpu/date=2024-01-15/hour=14/a.1.parquet", 10)
	writeParquet(t, root, "db/cpu/date=2024-01-15/hour=14/b.1.parquet", 3)
	writeParquet(t, root, "db/mem/date=2024-01-15/hour=14/m.1.parquet", 5)
	os.WriteFile(filepath.Join(root, "db/cpu/date=2024-01-15/hour=14/empty.1.parquet"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "db/cpu/date=2024-01-15/hour=14/csv.1.parquet"), []byte("a,b\n1,2\n"), 0o644)

	r := indexer(t, env, "", "backfill", "--root", root, "--dry-run")
	if n := strings.Count(r.Stdout, `"type":"file.created"`); n != 3 || !strings.Contains(r.Stdout, `"id":"bf-`) || r.Code != exitFail {
		t.Fatalf("dry run: %+v, want 3 events and exit 1 for the 2 unreadable files", r)
	}
	if !strings.Contains(r.Stderr, "empty.1.parquet: empty file") || !strings.Contains(r.Stderr, "csv.1.parquet: not a readable Parquet file") {
		t.Errorf("dry run does not report the unreadable files: %s", r.Stderr)
	}
	if keys := c.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Fatalf("the dry run wrote %v", keys)
	}

	r = indexer(t, env, "", "backfill", "--root", root)
	if !strings.Contains(r.Stdout, "new:         3 ") || !strings.Contains(r.Stdout, "applied=3 ") || !strings.Contains(r.Stdout, "2 files could not") && !strings.Contains(r.Stderr, "2 files could not") {
		t.Fatalf("backfill: %+v", r)
	}
	if r := indexer(t, env, "", "check"); r.Code != exitOK || !strings.Contains(r.Stdout, "ok: 2 tables, 3 files") {
		t.Fatalf("check after backfill: %+v", r)
	}
	r = indexer(t, env, "", "get", "--database", "db", "--table", "cpu", "date=2024-01-15/hour=14/a.1.parquet")
	if !strings.Contains(r.Stdout, `"row_count": 10`) || !strings.Contains(r.Stdout, `"min_time": 1705327200000000000`) || !strings.Contains(r.Stdout, `"max_time": 1705327209000000000`) {
		t.Fatalf("backfilled entry: %+v", r)
	}
	r = indexer(t, env, "", "backfill", "--root", root)
	if !strings.Contains(r.Stdout, "indexed:     3 already") || !strings.Contains(r.Stdout, "new:         0 ") {
		t.Fatalf("backfill again: %+v", r)
	}

	// The tree changes: a file is removed, another is written.
	os.Remove(filepath.Join(root, "db/cpu/date=2024-01-15/hour=14/b.1.parquet"))
	writeParquet(t, root, "db/cpu/date=2024-01-15/hour=15/n.1.parquet", 2)
	before := c.HGetAll(ctx, "files:db:cpu:date=2024-01-15").Val()
	r = indexer(t, env, "", "backfill", "--root", root, "--reconcile")
	if !strings.Contains(r.Stdout, "indexed but gone: "+filepath.Join(root, "db/cpu/date=2024-01-15/hour=14/b.1.parquet")) ||
		!strings.Contains(r.Stdout, "missing from the index: "+filepath.Join(root, "db/cpu/date=2024-01-15/hour=15/n.1.parquet")) ||
		!strings.Contains(r.Stdout, "reconcile: nothing changed (2 events") {
		t.Fatalf("reconcile: %+v", r)
	}
	if after := c.HGetAll(ctx, "files:db:cpu:date=2024-01-15").Val(); len(after) != len(before) {
		t.Fatalf("reconcile without --apply changed the index")
	}
	r = indexer(t, env, "", "backfill", "--root", root, "--reconcile", "--apply")
	if !strings.Contains(r.Stdout, "applied=1 tombstoned=0") && !strings.Contains(r.Stdout, "applied=2 ") {
		t.Fatalf("reconcile --apply: %+v", r)
	}
	if r := indexer(t, env, "", "check"); r.Code != exitOK || !strings.Contains(r.Stdout, "3 files") {
		t.Fatalf("check after reconcile: %+v", r)
	}
	if c.HExists(ctx, "files:db:cpu:date=2024-01-15", "date=2024-01-15/hour=14/b.1.parquet").Val() ||
		!c.HExists(ctx, "files:db:cpu:date=2024-01-15", "date=2024-01-15/hour=15/n.1.parquet").Val() {
		t.Fatalf("the index is not in line with the tree")
	}
	r = indexer(t, env, "", "backfill", "--root", root, "--reconcile")
	if !strings.Contains(r.Stdout, "gone:        0 ") || !strings.Contains(r.Stdout, "new:         0 ") {
		t.Fatalf("reconcile after --apply: %+v", r)
	}

	// --publish: the events go to the stream, with the same ids.
	writeParquet(t, root, "db/disk/date=2024-01-15/hour=14/d.1.parquet", 1)
	r = indexer(t, env, "", "backfill", "--root", root, "--database", "db", "--table", "disk", "--publish")
	if r.Code != exitOK || !strings.Contains(r.Stdout, "published 1 events") {
		t.Fatalf("backfill --publish: %+v", r)
	}
	msgs := c.XRange(ctx, "idx:events", "-", "+").Val()
	if len(msgs) != 1 || !strings.Contains(msgs[0].Values["data"].(string), `"id":"bf-`) {
		t.Fatalf("stream after --publish: %v", msgs)
	}
}
