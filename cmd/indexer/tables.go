package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/streamindex/indexer/internal/index"
)

// tableDoc is one table in the JSON of 'indexer status' and 'indexer
// stats' (the same keys in both). Durations are seconds.
type tableDoc struct {
	Database         string     `json:"database"`
	Table            string     `json:"table"`
	Files            int64      `json:"files"`
	Bytes            int64      `json:"bytes"`
	Rows             int64      `json:"rows"`
	Tombstones       int64      `json:"tombstones"`
	NewestEvent      *time.Time `json:"newest_event"`
	FreshnessSeconds *float64   `json:"freshness_seconds"`
	// Dates are the counters per date ("date=YYYY-MM-DD"); stats only.
	Dates map[string]dateDoc `json:"dates,omitempty"`
}

// dateDoc is a table's counters for one date.
type dateDoc struct {
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
	Rows  int64 `json:"rows"`
}

// tableDocs describes the indexed tables that keep accepts (nil: all),
// freshness measured at now, with their counters per date if dates.
func tableDocs(ctx context.Context, x *index.Index, keep func(db, table string) bool, now time.Time, dates bool) ([]tableDoc, error) {
	tables, err := x.Tables(ctx)
	if err != nil {
		return nil, err
	}
	docs := []tableDoc{}
	for _, t := range tables {
		if keep != nil && !keep(t[0], t[1]) {
			continue
		}
		s, err := x.Stats(ctx, t[0], t[1])
		if err != nil {
			return nil, err
		}
		tombs, err := x.Tombstones(ctx, t[0], t[1])
		if err != nil {
			return nil, err
		}
		td := tableDoc{Database: s.Database, Table: s.Table, Files: s.Files, Bytes: s.Bytes, Rows: s.Rows, Tombstones: tombs}
		if s.LastEventNanos > 0 {
			ev := time.Unix(0, s.LastEventNanos).UTC()
			age := seconds(now.Sub(ev))
			td.NewestEvent, td.FreshnessSeconds = &ev, &age
		}
		if dates {
			td.Dates = make(map[string]dateDoc, len(s.Dates))
			for d, c := range s.Dates {
				td.Dates[d] = dateDoc{Files: c.Files, Bytes: c.Bytes, Rows: c.Rows}
			}
		}
		docs = append(docs, td)
	}
	return docs, nil
}

// printTables prints the tables as a table, one line each.
func printTables(w io.Writer, docs []tableDoc) {
	if len(docs) == 0 {
		fmt.Fprintln(w, "no tables indexed yet")
		return
	}
	fmt.Fprintf(w, "%-20s %-20s %10s %15s %15s %10s %-30s %s\n", "DATABASE", "TABLE", "FILES", "BYTES", "ROWS", "TOMBSTONES", "NEWEST_EVENT", "AGE")
	for _, t := range docs {
		newest, age := "-", "-"
		if t.NewestEvent != nil {
			newest, age = t.NewestEvent.Format(time.RFC3339Nano), roundDuration(time.Duration(*t.FreshnessSeconds*float64(time.Second)))
		}
		fmt.Fprintf(w, "%-20s %-20s %10d %15d %15d %10d %-30s %s\n", t.Database, t.Table, t.Files, t.Bytes, t.Rows, t.Tombstones, newest, age)
	}
}
