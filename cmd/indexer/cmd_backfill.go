package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/backfill"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/progress"
	"github.com/streamindex/indexer/publish"
)

func init() {
	register(&command{
		name: "backfill",
		summary: "index the Parquet files of a GigAPI data tree (--root) that the index lacks, reading their footers; " +
			"--reconcile lists entries without a file and files without an entry",
		setup: setupBackfill,
	})
}

// backfillOptions are backfill's own flags.
type backfillOptions struct {
	root, layer, writer        string
	publish, dryRun, reconcile bool
	apply                      bool
	workers, batch, list       int
}

func setupBackfill(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	addQueueFlags(fs, ro, nil, false)
	addWaitFlags(fs, ro, "each batch (applied, or published with --publish --source redis)")
	so := addStreamFlags(fs, false)
	no := addNATSFlags(fs, false)
	tf := addTableFlags(fs, "to backfill (default every one under --root)")
	o := &backfillOptions{}
	fs.StringVar(&o.root, "root", "", "GigAPI's data `directory`: <root>/<database>/<table>/date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet (required)")
	fs.StringVar(&o.layer, "layer", "default", "the `layer` the files under --root are on")
	fs.StringVar(&o.writer, "writer-id", "", "writer_id of the events (GigAPI's own is empty)")
	fs.BoolVar(&o.publish, "publish", false, "publish the events to the stream (--source, --stream) for the workers instead of applying them to the index")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the events as NDJSON on stdout and change nothing")
	fs.BoolVar(&o.reconcile, "reconcile", false, "list index entries whose file is gone and files the index lacks, and change nothing (unless --apply)")
	fs.BoolVar(&o.apply, "apply", false, "with --reconcile: emit the file.deleted and file.created events that bring the index in line with the files")
	fs.IntVar(&o.workers, "workers", 4, "Parquet footers read at once (each holds one file open)")
	fs.IntVar(&o.batch, "batch-size", 1000, "events applied or published per call")
	fs.IntVar(&o.list, "list", 20, "list at most `N` files of each kind (all are counted)")
	return func(ctx context.Context, args []string) error {
		switch {
		case len(args) > 0:
			return usagef("unexpected argument %q", args[0])
		case o.root == "":
			return usagef("--root is required")
		case o.publish && o.dryRun:
			return usagef("--publish and --dry-run exclude each other")
		case o.apply && !o.reconcile:
			return usagef("--apply goes with --reconcile")
		case o.workers < 1 || o.batch < 1:
			return usagef("--workers and --batch-size must be at least 1")
		case tf.table != "" && tf.database == "":
			return usagef("--table needs --database")
		}
		if !event.ValidName(o.layer) || o.writer != "" && !event.ValidName(o.writer) {
			return usagef("--layer and --writer-id must be valid names (A-Z a-z 0-9 _ . -)")
		}
		x, c, err := ro.openIndex(ctx, index.Config{MaxEventsPerCall: o.batch})
		if err != nil {
			return err
		}
		defer c.Close()
		var out sink
		switch {
		case o.dryRun || o.reconcile && !o.apply:
			w := bufio.NewWriter(a.stdout)
			defer w.Flush()
			out = &ndjsonSink{w: w, quiet: !o.dryRun}
		case o.publish:
			if err := so.validate(); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			pub, closePub, err := openPublisher(ctx, ro, so, no, publish.Options{Logger: log}, log, "indexer backfill", "", "", 0, false)
			if err != nil {
				return err
			}
			defer closePub()
			out = &publishSink{pub: pub}
		default:
			out = &applySink{x: x, a: a}
		}
		return runBackfill(ctx, a, x, o, tf, out)
	}
}

// sink is where backfill's events go.
type sink interface {
	emit(ctx context.Context, events []event.Event) error
	summary() string
}

// applySink applies events as 'indexer apply' does: an event the index
// refuses is reported, the others go through.
type applySink struct {
	x       *index.Index
	a       *app
	counts  map[index.Outcome]int
	refused int
}

func (s *applySink) emit(ctx context.Context, events []event.Event) error {
	if s.counts == nil {
		s.counts = map[index.Outcome]int{}
	}
	outs, err := consumer.ApplyIsolating(ctx, events, s.x.Apply, func(i int, err error) {
		s.refused++
		fmt.Fprintf(s.a.stderr, "refused by the index: %s %s: %v\n", events[i].Type, events[i].File.Path, err)
	})
	for _, o := range outs {
		if o != 0 {
			s.counts[o]++
		}
	}
	return err
}

func (s *applySink) summary() string {
	var parts []string
	for _, o := range index.AllOutcomes {
		parts = append(parts, fmt.Sprintf("%s=%d", o, s.counts[o]))
	}
	return "applied to the index: " + strings.Join(parts, " ") + fmt.Sprintf(" refused=%d", s.refused)
}

type publishSink struct {
	pub  publisher
	sent int
}

func (s *publishSink) emit(ctx context.Context, events []event.Event) error {
	if err := s.pub.publish(ctx, events); err != nil {
		return fmt.Errorf("publish after %d events: %w", s.sent, err)
	}
	s.sent += len(events)
	return nil
}

func (s *publishSink) summary() string {
	return fmt.Sprintf("published %d events to the stream; the workers apply them", s.sent)
}

// ndjsonSink prints events (--dry-run), or with quiet only counts them
// (--reconcile without --apply).
type ndjsonSink struct {
	w     *bufio.Writer
	quiet bool
	n     int
}

func (s *ndjsonSink) emit(_ context.Context, events []event.Event) error {
	s.n += len(events)
	if s.quiet {
		return nil
	}
	for i := range events {
		b, err := event.Encode(event.JSON, &events[i])
		if err != nil {
			return err
		}
		s.w.Write(b)
		s.w.WriteByte('\n')
	}
	return nil
}

func (s *ndjsonSink) summary() string {
	if s.quiet {
		return fmt.Sprintf("reconcile: nothing changed (%d events would be emitted; --apply emits them)", s.n)
	}
	return fmt.Sprintf("dry run: %d events printed, nothing changed", s.n)
}

// backfillReport counts what backfill found.
type backfillReport struct {
	files, indexed, tombstoned, created, unreadable, gone int
	lists                                                 map[string][]string
}

func (r *backfillReport) note(kind string, max int, line string) {
	if len(r.lists[kind]) < max {
		r.lists[kind] = append(r.lists[kind], line)
	}
}

func runBackfill(ctx context.Context, a *app, x *index.Index, o *backfillOptions, tf *tableFlags, out sink) error {
	rep := &backfillReport{lists: map[string][]string{}}
	bar := progress.New(a.stderr, a.stderrTTY, "files", 0)
	bar.Start()
	var pending []event.Event
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := out.emit(ctx, pending)
		pending = pending[:0]
		return err
	}
	add := func(e event.Event) error {
		pending = append(pending, e)
		if len(pending) >= o.batch {
			return flush()
		}
		return nil
	}
	cfg := backfill.Config{Root: o.root, Layer: o.layer, WriterID: o.writer, Database: tf.database, Table: tf.table, Workers: o.workers,
		// Files already live are not read again: a rerun, or a run resumed
		// after a kill, reads only what is left. Tombstoned ones were
		// deleted: a create would be ignored.
		Skip: func(ctx context.Context, db, table, path string) (string, error) {
			switch st, err := x.State(ctx, db, table, path); {
			case err != nil:
				return "", err
			case st == index.PathLive:
				return "indexed", nil
			case st == index.PathTombstoned:
				return "tombstoned", nil
			}
			return "", nil
		}}
	err := backfill.Scan(ctx, cfg, func(f backfill.File) error {
		bar.Add(1)
		rep.files++
		switch {
		case f.Err != nil:
			rep.unreadable++
			rep.note("not indexed", o.list, fmt.Sprintf("%s: %v", f.Name, f.Err))
		case f.Skipped == "tombstoned":
			rep.tombstoned++
			rep.note("deleted in the index but still on disk", o.list, f.Name)
		case f.Skipped != "":
			rep.indexed++
		default:
			rep.created++
			if o.reconcile {
				rep.note("missing from the index", o.list, fmt.Sprintf("%s (%d rows)", f.Name, f.Event.File.RowCount))
			}
			return add(f.Event)
		}
		return nil
	})
	if err == nil && o.reconcile {
		err = reconcileGone(ctx, x, o, tf, rep, add)
	}
	if err == nil {
		err = flush()
	}
	bar.Stop()
	printBackfill(a, o, rep, out)
	if err != nil {
		return fmt.Errorf("%v (interrupted: run it again; files indexed so far are skipped)", err)
	}
	if s, ok := out.(*applySink); ok && s.refused > 0 {
		return fmt.Errorf("the index refused %d events (listed above; 'indexer check' names the damaged keys)", s.refused)
	}
	if rep.unreadable > 0 {
		return fmt.Errorf("%d files could not be indexed (listed above with the reason)", rep.unreadable)
	}
	return nil
}

// reconcileGone lists the entries of the tables under --root whose file
// is gone, and passes their file.deleted events to add.
func reconcileGone(ctx context.Context, x *index.Index, o *backfillOptions, tf *tableFlags, rep *backfillReport, add func(event.Event) error) error {
	tables, err := treeTables(o.root, tf)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	for _, t := range tables {
		for e, err := range x.Query(ctx, index.Query{Database: t[0], Table: t[1]}) {
			if err != nil {
				return err
			}
			name := filepath.Join(o.root, t[0], t[1], filepath.FromSlash(e.Path))
			if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
				continue
			}
			rep.gone++
			rep.note("indexed but gone", o.list, name)
			err := add(event.Event{ID: backfill.DeletedID(t[0], t[1], e.Layer, e.Path), Type: event.FileDeleted, Time: now,
				Database: t[0], Table: t[1], File: event.File{Layer: e.Layer, WriterID: e.WriterID, Path: e.Path}})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// treeTables lists the <database>/<table> directories under root.
func treeTables(root string, tf *tableFlags) ([][2]string, error) {
	dbs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for _, db := range dbs {
		if !db.IsDir() || tf.database != "" && db.Name() != tf.database || !event.ValidName(db.Name()) {
			continue
		}
		tables, err := os.ReadDir(filepath.Join(root, db.Name()))
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			if t.IsDir() && (tf.table == "" || t.Name() == tf.table) && event.ValidName(t.Name()) {
				out = append(out, [2]string{db.Name(), t.Name()})
			}
		}
	}
	return out, nil
}

func printBackfill(a *app, o *backfillOptions, rep *backfillReport, out sink) {
	w := a.stdout
	if o.dryRun {
		w = a.stderr // stdout holds the NDJSON
	}
	kinds := make([]string, 0, len(rep.lists))
	for k := range rep.lists {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		for _, l := range rep.lists[k] {
			fmt.Fprintf(w, "%s: %s\n", k, l)
		}
	}
	fmt.Fprintf(w, "files:       %d .parquet files under %s\n", rep.files, o.root)
	fmt.Fprintf(w, "indexed:     %d already (footer not read again)\n", rep.indexed)
	fmt.Fprintf(w, "new:         %d files the index lacks (file.created)\n", rep.created)
	fmt.Fprintf(w, "not indexed: %d unreadable, not Parquet, empty or misplaced (listed with the reason)\n", rep.unreadable)
	if rep.tombstoned > 0 {
		fmt.Fprintf(w, "deleted:     %d files deleted in the index are still on disk (left alone: GigAPI's dropper removes them)\n", rep.tombstoned)
	}
	if o.reconcile {
		fmt.Fprintf(w, "gone:        %d index entries whose file is gone (file.deleted)\n", rep.gone)
	}
	fmt.Fprintln(w, out.summary())
}
