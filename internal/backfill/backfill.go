// Package backfill turns Parquet files already in a GigAPI data tree into
// file.created events: the files written before indexer was deployed.
//
// A tree is <root>/<database>/<table>/date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet,
// as GigAPI writes it. Scan walks it and reads each file's Parquet footer
// (with github.com/parquet-go/parquet-go) for the row count and the
// minimum and maximum of its __timestamp column, taken from the column
// statistics and, only where a row group has none, from the column's
// values, page by page. Footers are read by a bounded number of workers,
// one file each at a time, never a whole file into memory. Event ids are
// derived from the file, so the same tree gives the same events: applying
// or publishing them again is a no-op.
package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/streamindex/indexer/event"
)

// Config configures Scan. The zero value is not valid: Root is required.
type Config struct {
	// Root is the data tree: <Root>/<database>/<table>/date=…/hour=…/<name>.<N>.parquet.
	Root string
	// Layer is the layer the files are on. Default "default".
	Layer string
	// WriterID is the writer_id of the events. Default "" (as GigAPI's).
	WriterID string
	// Database and Table, when set, limit the scan to that database or
	// table.
	Database, Table string
	// Workers bounds the files read at once. Default min(4, GOMAXPROCS).
	Workers int
	// Skip, when set, is asked before a file's footer is read; a file it
	// gives a reason for (already indexed, say) is passed on with that
	// reason in Skipped and no event, so reruns are cheap. Called from the
	// workers, concurrently.
	Skip func(ctx context.Context, db, table, path string) (reason string, err error)
}

// File is one file Scan found under a table's folder.
type File struct {
	// Name is the file's path on disk.
	Name string
	// Database, Table and Path (date=…/hour=…/<name>.<N>.parquet) place it.
	Database, Table, Path string
	// Event is its file.created event, when Err is nil and Skipped false.
	Event event.Event
	// Skipped is the reason Config.Skip gave; no footer was read.
	Skipped string
	// Err says why the file cannot be indexed (not Parquet, a corrupt
	// footer, an empty file, no __timestamp, a path GigAPI would not
	// write); such a file is never indexed.
	Err error
}

// Scan walks cfg.Root and calls fn for each .parquet file under a
// table's folder, in no particular order, from the calling goroutine. It
// returns fn's first error, a walk error, or ctx's. Files with another
// extension are not passed; other names under a table ("tmp/x.parquet")
// are passed with Err set.
func Scan(ctx context.Context, cfg Config, fn func(File) error) error {
	if cfg.Root == "" {
		return errors.New("backfill: no root directory")
	}
	if cfg.Layer == "" {
		cfg.Layer = "default"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = min(4, runtime.GOMAXPROCS(0))
	}
	if st, err := os.Stat(cfg.Root); err != nil {
		return fmt.Errorf("backfill: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("backfill: %s is not a directory", cfg.Root)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	todo := make(chan File, cfg.Workers)
	done := make(chan File, cfg.Workers)
	var walkErr error
	go func() {
		defer close(todo)
		walkErr = walk(ctx, cfg, todo)
	}()
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range todo {
				read(ctx, cfg, &f)
				select {
				case done <- f:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	var err error
	for f := range done {
		if err == nil {
			if err = fn(f); err != nil {
				cancel()
			}
		}
	}
	switch {
	case err != nil:
		return err
	case walkErr != nil:
		return walkErr
	}
	return ctx.Err()
}

// walk sends every .parquet file under <root>/<db>/<table>/ to todo.
func walk(ctx context.Context, cfg Config, todo chan<- File) error {
	return filepath.WalkDir(cfg.Root, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(cfg.Root, name)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if d.IsDir() {
			// Prune databases and tables outside the filters.
			if len(parts) == 1 && cfg.Database != "" && parts[0] != cfg.Database && rel != "." ||
				len(parts) == 2 && cfg.Table != "" && parts[1] != cfg.Table {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".parquet") || len(parts) < 3 {
			return nil
		}
		f := File{Name: name, Database: parts[0], Table: parts[1], Path: strings.Join(parts[2:], "/")}
		select {
		case todo <- f:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	})
}

// read fills in f's event, or its Err.
func read(ctx context.Context, cfg Config, f *File) {
	e := event.Event{Type: event.FileCreated, Database: f.Database, Table: f.Table,
		File: event.File{Layer: cfg.Layer, WriterID: cfg.WriterID, Path: f.Path}}
	// The path and names first: a file GigAPI would not write is not read.
	e.ID = "x"
	if err := event.Validate(&e); err != nil {
		f.Err = fmt.Errorf("not a file GigAPI writes there: %w", err)
		return
	}
	if cfg.Skip != nil {
		reason, err := cfg.Skip(ctx, f.Database, f.Table, f.Path)
		if err != nil {
			f.Err = err
			return
		}
		if reason != "" {
			f.Skipped = reason
			return
		}
	}
	st, err := os.Stat(f.Name)
	if err != nil {
		f.Err = err
		return
	}
	if st.Size() == 0 {
		f.Err = errors.New("empty file (0 bytes)")
		return
	}
	fp, err := readFooter(f.Name, st.Size())
	if err != nil {
		f.Err = err
		return
	}
	mtime := st.ModTime().UnixNano()
	e.File.SizeBytes, e.File.RowCount = st.Size(), fp.rows
	e.File.MinTime, e.File.MaxTime, e.File.ChunkTime = fp.min, fp.max, mtime
	e.Time = mtime
	e.ID = EventID(f.Database, f.Table, cfg.Layer, f.Path, st.Size())
	if err := event.Validate(&e); err != nil {
		f.Err = err
		return
	}
	f.Event = e
}

// EventID is the id of the file.created event of a backfilled file: "bf-"
// and 40 hex digits of SHA-256 over its table, layer, path and size, so a
// rerun produces the same ids (NATS drops the duplicate publishes within
// its window; applying one again is a no-op anyway).
func EventID(db, table, layer, path string, size int64) string {
	return id("bf-", db, table, layer, path, strconv.FormatInt(size, 10))
}

// DeletedID is the id of the file.deleted event reconciliation emits for
// an indexed file that is gone from the tree: "rc-" and 40 hex digits over
// its table, layer and path.
func DeletedID(db, table, layer, path string) string {
	return id("rc-", db, table, layer, path)
}

func id(prefix string, parts ...string) string {
	h := sha256.New()
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return prefix + hex.EncodeToString(h.Sum(nil))[:40]
}
