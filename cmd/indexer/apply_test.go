package main

import (
	"strconv"
	"strings"
	"testing"
)

// createdLine is a file.created event of table t at path, as NDJSON.
func createdLine(id, table, path string, minTime, maxTime int64) string {
	return `{"v":1,"id":"` + id + `","type":"file.created","time":1,"database":"db","table":"` + table +
		`","layer":"default","path":"` + path + `","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":` +
		itoa(minTime) + `,"max_time":` + itoa(maxTime) + `}`
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestApplyGoesOnPastRefusedEvents: an event the index refuses (its table's
// folders key holds a string) is reported and skipped, the others are
// applied, and events whose data leaves their hour folder are applied with
// a warning.
func TestApplyGoesOnPastRefusedEvents(t *testing.T) {
	env, srv := redisEnv(t)
	c := srv.Client(t)
	c.Set(t.Context(), "folders:db:bad", "damaged", 0)
	const h14 = 1705327200000000000 // 2024-01-15T14:00:00Z
	input := strings.Join([]string{
		createdLine("a", "good", "date=2024-01-15/hour=14/a.1.parquet", h14, h14+1),
		createdLine("b", "bad", "date=2024-01-15/hour=14/b.1.parquet", h14, h14+1),
		createdLine("c", "good", "date=2024-01-15/hour=14/c.1.parquet", h14, h14+3_600_000_000_000), // one ns into hour 15
		createdLine("d", "good", "date=2024-01-15/hour=14/d.1.parquet", h14, h14+1),
	}, "\n")
	r := indexer(t, env, input, "apply", "--batch-size", "10")
	if r.Code != exitFail {
		t.Fatalf("apply with a refused event: %+v", r)
	}
	if !strings.Contains(r.Stdout, "applied=3 ") || !strings.Contains(r.Stdout, "refused=1") {
		t.Errorf("summary %q, want applied=3 refused=1", r.Stdout)
	}
	if !strings.Contains(r.Stderr, "line 2: refused by the index") || !strings.Contains(r.Stderr, "WRONGTYPE") {
		t.Errorf("stderr %q lacks the refused line 2", r.Stderr)
	}
	if !strings.Contains(r.Stdout, "warning: 1 events put data outside their file's hour folder") || !strings.Contains(r.Stderr, "line 3: warning") {
		t.Errorf("no warning about line 3's time range: %+v", r)
	}
	if n := c.HLen(t.Context(), "files:db:good:date=2024-01-15").Val(); n != 3 {
		t.Errorf("%d files of table good indexed, want 3", n)
	}
}
