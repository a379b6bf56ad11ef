package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/redisconn"
)

func init() {
	register(&command{
		name:    "get",
		args:    "PATH",
		summary: "print the index entry of one file (exit 1 if it is not indexed)",
		setup:   setupGet,
	})
	register(&command{
		name:    "query",
		summary: "list a table's files for a time range, folder or merge iteration, as GigAPI's readers select them (exact in UTC)",
		setup:   setupQuery,
	})
	register(&command{
		name:    "stats",
		summary: "print files, bytes, rows and freshness per table",
		setup:   setupStats,
	})
	register(&command{
		name:    "check",
		summary: "recount folder counts and statistics from the entries; print every drift and exit 1 if there is any",
		setup:   setupCheck,
	})
}

type tableFlags struct{ database, table string }

func addTableFlags(fs *flag.FlagSet, what string) *tableFlags {
	t := &tableFlags{}
	fs.StringVar(&t.database, "database", "", "`database` "+what)
	fs.StringVar(&t.table, "table", "", "`table` "+what)
	return t
}

func (t *tableFlags) required() error {
	if t.database == "" || t.table == "" {
		return usagef("--database and --table are required")
	}
	return nil
}

func setupGet(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	tf := addTableFlags(fs, "of the file (required)")
	return func(ctx context.Context, args []string) error {
		if err := tf.required(); err != nil {
			return err
		}
		if len(args) != 1 {
			return usagef("give exactly one PATH (date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet)")
		}
		x, c, err := ro.readIndex(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		e, err := x.Get(ctx, tf.database, tf.table, args[0])
		if errors.Is(err, index.ErrNotFound) {
			return fmt.Errorf("%s is not indexed in %s.%s", args[0], tf.database, tf.table)
		}
		if err != nil {
			return err
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
}

func setupQuery(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	tf := addTableFlags(fs, "to query (required)")
	after := fs.String("after", "", "keep files with data at or after this `time` (RFC 3339 or Unix ns)")
	before := fs.String("before", "", "keep files with data at or before this `time` (RFC 3339 or Unix ns)")
	folder := fs.String("folder", "", "keep folders starting with this `prefix`, e.g. date=2024-01-15 or date=2024-01-15/hour=14")
	iteration := fs.Int("iteration", 0, "keep files of this merge iteration `N` (<name>.N.parquet); 0 keeps all")
	format := fs.String("format", "table", "output `format`: table, json (one array) or ndjson (one entry per line)")
	limit := fs.Int("limit", 0, "print at most `N` entries (0: all)")
	return func(ctx context.Context, args []string) error {
		if err := tf.required(); err != nil {
			return err
		}
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if *limit < 0 {
			return usagef("--limit must not be negative")
		}
		q := index.Query{Database: tf.database, Table: tf.table, Folder: *folder, Iteration: *iteration}
		var err error
		if q.After, err = parseTime("after", *after); err != nil {
			return err
		}
		if q.Before, err = parseTime("before", *before); err != nil {
			return err
		}
		if !q.After.IsZero() && !q.Before.IsZero() && q.Before.Before(q.After) {
			return usagef("--before is earlier than --after")
		}
		w, err := newEntryWriter(a.stdout, *format)
		if err != nil {
			return err
		}
		applyQueryGC()
		x, c, err := ro.readIndex(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		for e, err := range x.Query(ctx, q) {
			if err != nil {
				w.close()
				return err
			}
			if err := w.write(e); err != nil {
				return err
			}
			if *limit > 0 && w.n >= *limit {
				break
			}
		}
		return w.close()
	}
}

// entryWriter streams entries in one of the output formats.
type entryWriter struct {
	w       *bufio.Writer
	format  string
	n       int
	scratch []byte
}

func newEntryWriter(out io.Writer, format string) (*entryWriter, error) {
	switch format {
	case "table", "json", "ndjson":
	default:
		return nil, usagef("--format %q: use table, json or ndjson", format)
	}
	return &entryWriter{w: bufio.NewWriterSize(out, 64<<10), format: format}, nil // a pipe's capacity: few writes for 100k entries
}

func (w *entryWriter) write(e index.Entry) error {
	switch w.format {
	case "table":
		if w.n == 0 {
			fmt.Fprintf(w.w, "%-72s %12s %10s %-30s %-30s\n", "PATH", "SIZE_BYTES", "ROWS", "MIN_TIME", "MAX_TIME")
		}
		fmt.Fprintf(w.w, "%-72s %12d %10d %-30s %-30s\n", e.Path, e.SizeBytes, e.RowCount, formatTime(e.MinTime), formatTime(e.MaxTime))
	default:
		w.scratch = e.AppendJSON(w.scratch[:0])
		if w.format == "json" {
			if w.n == 0 {
				w.w.WriteString("[\n")
			} else {
				w.w.WriteString(",\n")
			}
		}
		w.w.Write(w.scratch)
		if w.format == "ndjson" {
			w.w.WriteByte('\n')
		}
	}
	w.n++
	return nil
}

func (w *entryWriter) close() error {
	if w.format == "json" {
		if w.n == 0 {
			w.w.WriteString("[")
		}
		w.w.WriteString("\n]\n")
	}
	return w.w.Flush()
}

func setupStats(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	tf := addTableFlags(fs, "to show (default all)")
	format := fs.String("format", "table", "output `format`: table or json")
	return func(ctx context.Context, args []string) error {
		if *format != "table" && *format != "json" {
			return usagef("--format %q: use table or json", *format)
		}
		x, c, err := ro.readIndex(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		keep := func(db, table string) bool {
			return (tf.database == "" || db == tf.database) && (tf.table == "" || table == tf.table)
		}
		all, err := tableDocs(ctx, x, keep, time.Now(), *format == "json")
		if err != nil {
			return err
		}
		if *format == "json" {
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(all)
		}
		printTables(a.stdout, all)
		return nil
	}
}

func setupCheck(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	tf := addTableFlags(fs, "to check (default all; give both to check one table)")
	repair := fs.Bool("repair", false, "first set every folder count and statistic that differs from its recount (safe while workers run), then check")
	return func(ctx context.Context, args []string) error {
		if (tf.database == "") != (tf.table == "") {
			return usagef("give both --database and --table, or neither")
		}
		open := ro.readIndex // a check only reads; a repair writes, with scripts
		if *repair {
			open = func(ctx context.Context) (*index.Index, *redisconn.Conn, error) {
				return ro.openIndex(ctx, index.Config{})
			}
		}
		x, c, err := open(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		var tables [][2]string
		if tf.database != "" {
			tables = [][2]string{{tf.database, tf.table}}
		}
		if *repair {
			if err := repairCounters(ctx, a, x, tables); err != nil {
				return err
			}
		}
		rep, err := x.Check(ctx, tables)
		if err != nil {
			return err
		}
		for _, d := range rep.Drifts {
			fmt.Fprintf(a.stdout, "drift: %s\n", d)
		}
		if len(rep.Drifts) > 0 {
			fmt.Fprintf(a.stdout, "%d drifts in %d tables (%d files recounted); counters: 'indexer check --repair'; "+
				"unregistered tables and unreadable entries: 'indexer adopt [--repair]'; lost entries: 'indexer replay' from before the damage\n",
				len(rep.Drifts), rep.Tables, rep.Files)
			return errSilentFailure
		}
		fmt.Fprintf(a.stdout, "ok: %d tables, %d files, no drift\n", rep.Tables, rep.Files)
		return nil
	}
}
