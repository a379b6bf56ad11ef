package index

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/streamindex/indexer/internal/lua"
)

// Drift is one difference between what the index stores and what its
// entries say.
type Drift struct {
	Key   string // the key at fault
	Field string // its field, when the drift is in one
	What  string // what is wrong, e.g. "stored 3, recount 2"
}

func (d Drift) String() string {
	if d.Field == "" {
		return d.Key + ": " + d.What
	}
	return d.Key + " " + d.Field + ": " + d.What
}

// CheckReport is the result of Check.
type CheckReport struct {
	Tables int   // tables checked
	Files  int64 // entries recounted
	Drifts []Drift
}

// Check recounts folder counts and statistics of tables from their entries
// and reports every difference, every entry that GigAPI's reader could not
// use (unparseable, in the wrong key, with a mismatched path), every path
// that is both live and tombstoned, and every queue item waiting in an
// :idle list that GigAPI's workers could not do right (see checkQueues).
// tables nil means every table in the registry. Check reads without
// locking: run it while no worker writes the tables, or expect differences
// from writes in flight.
func (x *Index) Check(ctx context.Context, tables [][2]string) (CheckReport, error) {
	var rep CheckReport
	all := tables == nil
	if all {
		var err error
		if tables, err = x.Tables(ctx); err != nil {
			return rep, err
		}
	}
	if all {
		if err := x.checkRegistered(ctx, tables, &rep); err != nil {
			return rep, err
		}
	}
	for _, t := range tables {
		if err := x.checkTable(ctx, t[0], t[1], &rep); err != nil {
			return rep, err
		}
		rep.Tables++
	}
	return rep, nil
}

// checkRegistered reports the tables that have files: keys but are not
// in the registry: written by another program (GigAPI's library), so
// indexer keeps no counters for them.
func (x *Index) checkRegistered(ctx context.Context, registered [][2]string, rep *CheckReport) error {
	var ar AdoptReport
	keys, err := x.filesKeys(ctx, &ar)
	if err != nil {
		return err
	}
	var missing []string
	for t := range keys {
		if !slices.Contains(registered, t) {
			missing = append(missing, x.layout.FilesPattern(t[0], t[1]))
		}
	}
	slices.Sort(missing)
	for _, k := range missing {
		rep.Drifts = append(rep.Drifts, Drift{Key: k, What: "a table with entries that is not registered (written by another program); run 'indexer adopt'"})
	}
	return nil
}

type recount struct {
	folders map[string]int64
	stats   map[string]int64 // stats fields as patch_index names them
}

func newRecount() *recount {
	return &recount{folders: make(map[string]int64), stats: map[string]int64{"files": 0, "bytes": 0, "rows": 0}}
}

// checkTable recounts a table Part by Part (one Part in the gigapi
// layout): the files: hashes are found by SCAN (on every master of a
// cluster), so a Part the registry misses is reported too.
func (x *Index) checkTable(ctx context.Context, db, table string, rep *CheckReport) error {
	l := x.layout
	parts, err := x.Parts(ctx, db, table)
	if err != nil {
		return err
	}
	counts := make(map[Part]*recount, len(parts))
	for _, p := range parts {
		counts[p] = newRecount()
	}
	keys, err := x.scan(ctx, l.FilesPattern(db, table))
	if err != nil {
		return fmt.Errorf("index: check: %w", err)
	}
	for _, key := range keys {
		date, ok := l.FilesDate(db, table, key)
		if !ok {
			rep.Drifts = append(rep.Drifts, Drift{Key: key, What: "not a files key of a date; GigAPI's readers ignore it"})
			continue
		}
		p := l.Part(db, table, date)
		rc := counts[p]
		if rc == nil {
			rep.Drifts = append(rep.Drifts, Drift{Key: l.Dates(db, table), Field: date,
				What: "missing: " + key + " holds files the registry does not list"})
			rc = newRecount()
			counts[p] = rc
			parts = append(parts, p)
		}
		if err := x.recountKey(ctx, db, table, key, date, rc, rep); err != nil {
			return err
		}
	}
	for _, p := range parts {
		rc := counts[p]
		stored, err := x.c.HGetAll(ctx, l.Folders(p)).Result()
		if err != nil {
			return fmt.Errorf("index: check: %w", err)
		}
		compare(l.Folders(p), stored, rc.folders, nil, rep)

		stored, err = x.c.HGetAll(ctx, l.Stats(p)).Result()
		if err != nil {
			return fmt.Errorf("index: check: %w", err)
		}
		compare(l.Stats(p), stored, rc.stats, map[string]bool{"last_event_ns": true}, rep)

		if err := x.checkTombstones(ctx, p, rep); err != nil {
			return err
		}
	}
	return x.checkQueues(ctx, db, table, rep)
}

// recountKey adds one files: hash to the recount.
func (x *Index) recountKey(ctx context.Context, db, table, key, date string, rc *recount, rep *CheckReport) error {
	for kv, err := range x.hscanPages(ctx, key) {
		if err != nil {
			return fmt.Errorf("index: check %s: %w", key, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			path := kv[i]
			bad := func(what string) { rep.Drifts = append(rep.Drifts, Drift{Key: key, Field: path, What: what}) }
			if err := checkPath(path); err != nil {
				bad("field is not a valid file path")
				continue
			}
			if path[:len(date)] != date {
				bad("path belongs to another date's key")
				continue
			}
			e, err := ParseEntry(kv[i+1])
			if err != nil {
				bad("entry is not valid: " + err.Error() + " (GigAPI's reader skips it; 'indexer adopt --repair' rewrites what it can)")
				// patch_index treats it as live all the same: counted as
				// its deletes would subtract it.
				e.SizeBytes, e.RowCount = looseSizes(kv[i+1])
				e.Path, e.Database, e.Table = path, db, table
			}
			if e.Path != path || e.Database != db || e.Table != table {
				bad(fmt.Sprintf("entry names %s.%s %s", e.Database, e.Table, e.Path))
				continue
			}
			rep.Files++
			rc.folders[path[:len("date=2006-01-02/hour=15")]]++
			for _, f := range [...]struct {
				name string
				v    int64
			}{{"files", 1}, {"bytes", e.SizeBytes}, {"rows", e.RowCount}} {
				rc.stats[f.name] += f.v
				rc.stats[f.name+":"+date] += f.v
			}
		}
	}
	return nil
}

// compare reports fields whose stored value differs from the recount.
// Fields in skip are not compared.
func compare(key string, stored map[string]string, want map[string]int64, skip map[string]bool, rep *CheckReport) {
	var fields []string
	for f := range want {
		fields = append(fields, f)
	}
	for f := range stored {
		if _, ok := want[f]; !ok && !skip[f] {
			fields = append(fields, f)
		}
	}
	slices.Sort(fields)
	for _, f := range fields {
		have, ok := stored[f]
		w := want[f]
		switch {
		case !ok && w == 0:
			// An absent counter is zero (patch_index only writes changes).
		case !ok:
			rep.Drifts = append(rep.Drifts, Drift{Key: key, Field: f, What: fmt.Sprintf("missing, recount %d", w)})
		case have != strconv.FormatInt(w, 10):
			rep.Drifts = append(rep.Drifts, Drift{Key: key, Field: f, What: fmt.Sprintf("stored %s, recount %d", have, w)})
		}
	}
}

// checkTombstones reports paths of a Part that are both tombstoned and
// live.
func (x *Index) checkTombstones(ctx context.Context, part Part, rep *CheckReport) error {
	db, table := part.Database, part.Table
	key := x.layout.Tombstones(part)
	var cursor uint64
	for {
		kv, next, err := x.c.ZScan(ctx, key, cursor, "", scanCount).Result()
		if err != nil {
			return fmt.Errorf("index: check %s: %w", key, err)
		}
		byDate := make(map[string][]string)
		for i := 0; i+1 < len(kv); i += 2 {
			if p := kv[i]; checkPath(p) == nil {
				byDate[p[:len("date=2006-01-02")]] = append(byDate[p[:len("date=2006-01-02")]], p)
			} else {
				rep.Drifts = append(rep.Drifts, Drift{Key: key, Field: p, What: "tombstone is not a valid file path"})
			}
		}
		for date, paths := range byDate {
			files := x.layout.Files(db, table, date)
			vals, err := x.c.HMGet(ctx, files, paths...).Result()
			if err != nil {
				return fmt.Errorf("index: check %s: %w", files, err)
			}
			for i, v := range vals {
				if v != nil {
					rep.Drifts = append(rep.Drifts, Drift{Key: files, Field: paths[i], What: "live and tombstoned at once"})
				}
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// gcBatch bounds the tombstones one gc_tombstones call removes.
const gcBatch = 1000

// CollectTombstones removes every tombstone last touched before `before`,
// in every Part of every registered table, and returns how many it removed. The caller
// chooses `before` so that no source can deliver a create of a collected
// path again: older than the oldest entry the streams still hold and than
// the configured minimum age.
func (x *Index) CollectTombstones(ctx context.Context, before time.Time) (int, error) {
	tables, err := x.Tables(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, t := range tables {
		parts, err := x.Parts(ctx, t[0], t[1])
		if err != nil {
			return total, err
		}
		for _, p := range parts {
			key := x.layout.Tombstones(p)
			for {
				n, err := lua.GCTombstones(ctx, x.c, key, before.UnixMilli(), gcBatch)
				total += n
				if err != nil {
					return total, fmt.Errorf("index: %w", err)
				}
				if n < gcBatch {
					break
				}
			}
		}
	}
	return total, nil
}
