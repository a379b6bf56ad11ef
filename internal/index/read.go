package index

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
)

// ErrNotFound is returned by Get for a path that is not indexed.
var ErrNotFound = errors.New("index: file not indexed")

// Get returns the entry of a path, or ErrNotFound.
func (x *Index) Get(ctx context.Context, db, table, path string) (Entry, error) {
	f := event.File{Path: path}
	if err := checkPath(path); err != nil {
		return Entry{}, err
	}
	v, err := x.c.HGet(ctx, x.layout.Files(db, table, f.Date()), path).Bytes()
	if errors.Is(err, redis.Nil) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("index: get %s: %w", path, err)
	}
	return ParseEntry(v)
}

// checkPath validates a path given by a caller (for example on the command
// line) with the event contract's rules.
func checkPath(path string) error {
	e := event.Event{ID: "x", Type: event.FileDeleted, Database: "x", Table: "x",
		File: event.File{Layer: "x", Path: path}}
	return event.Validate(&e)
}

// Query selects files of one table, as GigAPI's reader does but exactly:
// all times are UTC whatever the process's time zone.
type Query struct {
	Database, Table string
	// After and Before bound the time range; a zero time is unbounded. A
	// file is selected when its hour folder starts within
	// [After truncated to the hour, Before] and its [min_time, max_time]
	// overlaps [After, Before].
	After, Before time.Time
	// Folder keeps only folders with this prefix, e.g.
	// "date=2024-01-15" or "date=2024-01-15/hour=14".
	Folder string
	// Iteration keeps only files "<name>.<Iteration>.parquet"; 0 keeps all.
	Iteration int
}

// scanCount is the COUNT hint of SCAN, HSCAN and ZSCAN: about how many
// entries one page holds.
const scanCount = 1000

// hscanPages yields the pages of HSCAN over key (field, value, field,
// value, …), fetching the next page while the caller processes one, so
// that Redis and the caller work at the same time. At most three pages are
// in memory: the caller's, one ready, one being read. A failed HSCAN is
// yielded as the last page's error. Stopping early cancels the read in
// flight; the reading goroutine has ended when the iteration returns.
func (x *Index) hscanPages(ctx context.Context, key string) iter.Seq2[[]string, error] {
	return func(yield func([]string, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		type page struct {
			kv  []string
			err error
		}
		pages := make(chan page, 1)
		go func() {
			defer close(pages)
			var cursor uint64
			for {
				kv, next, err := x.c.HScan(ctx, key, cursor, "", scanCount).Result()
				select {
				case pages <- page{kv, err}:
				case <-ctx.Done():
					return
				}
				if cursor = next; err != nil || cursor == 0 {
					return
				}
			}
		}()
		defer func() {
			cancel()
			for range pages { // wait for the reader
			}
		}()
		for p := range pages {
			if !yield(p.kv, p.err) || p.err != nil {
				return
			}
		}
	}
}

// Query returns the selected entries: dates in ascending order, entries in
// no particular order within a date. It holds at most three HSCAN pages
// in memory (see hscanPages). Candidate folders come from the folders:
// hashes, which Check proves exact (in the cluster layout, those of the
// table's registered dates in the range). Iteration stops at the first
// error, which is yielded.
func (x *Index) Query(ctx context.Context, q Query) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		dirs, err := x.folders(ctx, q)
		if err != nil {
			yield(Entry{}, fmt.Errorf("index: query: %w", err))
			return
		}
		byDate := selectDirs(dirs, q)
		dates := slices.Sorted(func(yield func(string) bool) {
			for d := range byDate {
				if !yield(d) {
					return
				}
			}
		})
		var suffix string
		if q.Iteration > 0 {
			suffix = "." + strconv.Itoa(q.Iteration) + ".parquet"
		}
		for _, date := range dates {
			want := byDate[date]
			key := x.layout.Files(q.Database, q.Table, date)
			for kv, err := range x.hscanPages(ctx, key) {
				if err != nil {
					yield(Entry{}, fmt.Errorf("index: query %s: %w", key, err))
					return
				}
				for i := 0; i+1 < len(kv); i += 2 {
					path := kv[i]
					if len(path) < len("date=2006-01-02/hour=15/") || !want[path[:len("date=2006-01-02/hour=15")]] ||
						(suffix != "" && !strings.HasSuffix(path, suffix)) {
						continue
					}
					e, err := ParseEntry(kv[i+1])
					if err != nil {
						if !yield(Entry{}, fmt.Errorf("index: query %s %s: %w", key, path, err)) {
							return
						}
						continue
					}
					if !q.After.IsZero() && e.MaxTime < q.After.UnixNano() ||
						!q.Before.IsZero() && e.MinTime > q.Before.UnixNano() {
						continue
					}
					if !yield(e, nil) {
						return
					}
				}
			}
		}
	}
}

// folders returns the folders of the query's table, from the folders:
// hash of each of its Parts that may hold selected files.
func (x *Index) folders(ctx context.Context, q Query) ([]string, error) {
	parts, err := x.Parts(ctx, q.Database, q.Table)
	if err != nil {
		return nil, err
	}
	if x.layout.cluster {
		parts = slices.DeleteFunc(parts, func(p Part) bool { return !dateSelected(p.Date, q) })
	}
	cmds := make([]*redis.StringSliceCmd, len(parts))
	_, err = x.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.HKeys(ctx, x.layout.Folders(p))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, c := range cmds {
		dirs = append(dirs, c.Val()...)
	}
	return dirs, nil
}

// dateSelected reports whether a date ("date=YYYY-MM-DD") may hold files
// the query selects.
func dateSelected(date string, q Query) bool {
	day, err := time.Parse("date=2006-01-02", date)
	if err != nil || !strings.HasPrefix(q.Folder, date) && !strings.HasPrefix(date, q.Folder) {
		return false
	}
	return (q.After.IsZero() || day.Add(24*time.Hour).After(q.After.UTC().Truncate(time.Hour))) &&
		(q.Before.IsZero() || !day.After(q.Before.UTC()))
}

// selectDirs keeps the folders whose hour lies in the query's range and
// whose name has its prefix, grouped by date ("date=YYYY-MM-DD").
func selectDirs(dirs []string, q Query) map[string]map[string]bool {
	var from, to time.Time
	if !q.After.IsZero() {
		from = q.After.UTC().Truncate(time.Hour)
	}
	if !q.Before.IsZero() {
		to = q.Before.UTC()
	}
	out := make(map[string]map[string]bool)
	for _, d := range dirs {
		hour, err := time.Parse("date=2006-01-02/hour=15", d)
		if err != nil || !strings.HasPrefix(d, q.Folder) {
			continue
		}
		if !from.IsZero() && hour.Before(from) || !to.IsZero() && hour.After(to) {
			continue
		}
		date := d[:len("date=2006-01-02")]
		if out[date] == nil {
			out[date] = make(map[string]bool)
		}
		out[date][d] = true
	}
	return out
}

// TableStats are a table's counters as patch_index maintains them.
type TableStats struct {
	Database, Table string
	Files           int64
	Bytes           int64
	Rows            int64
	// LastEventNanos is the newest event time applied to the table, Unix
	// nanoseconds, 0 if none.
	LastEventNanos int64
	// Dates holds the counters per date ("date=YYYY-MM-DD") with files.
	Dates map[string]DateStats
}

// DateStats are a table's counters for one date.
type DateStats struct {
	Files, Bytes, Rows int64
}

// Tables lists the indexed tables as (database, table) pairs, sorted.
func (x *Index) Tables(ctx context.Context) ([][2]string, error) {
	members, err := x.c.SMembers(ctx, x.layout.Tables()).Result()
	if err != nil {
		return nil, fmt.Errorf("index: tables: %w", err)
	}
	sort.Strings(members)
	out := make([][2]string, 0, len(members))
	for _, m := range members {
		if db, t, ok := x.layout.ParseMember(m); ok {
			out = append(out, [2]string{db, t})
		}
	}
	return out, nil
}

// Stats returns a table's counters: in the cluster layout the sums over
// its Parts (and the newest event time among them).
func (x *Index) Stats(ctx context.Context, db, table string) (TableStats, error) {
	s := TableStats{Database: db, Table: table, Dates: make(map[string]DateStats)}
	parts, err := x.Parts(ctx, db, table)
	if err != nil {
		return s, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(parts))
	_, err = x.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.HGetAll(ctx, x.layout.Stats(p))
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("index: stats %s.%s: %w", db, table, err)
	}
	for _, c := range cmds {
		if err := s.add(c.Val()); err != nil {
			return s, err
		}
	}
	return s, nil
}

// add adds the fields of a statistics hash to s.
func (s *TableStats) add(h map[string]string) error {
	db, table := s.Database, s.Table
	for k, v := range h {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("index: stats %s.%s: field %s holds %q, not an integer", db, table, k, v)
		}
		name, date, _ := strings.Cut(k, ":")
		if date == "" {
			switch name {
			case "files":
				s.Files += n
			case "bytes":
				s.Bytes += n
			case "rows":
				s.Rows += n
			case "last_event_ns":
				s.LastEventNanos = max(s.LastEventNanos, n)
			}
			continue
		}
		d := s.Dates[date]
		switch name {
		case "files":
			d.Files += n
		case "bytes":
			d.Bytes += n
		case "rows":
			d.Rows += n
		}
		s.Dates[date] = d
	}
	return nil
}
