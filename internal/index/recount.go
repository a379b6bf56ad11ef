package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/streamindex/indexer/internal/lua"
)

// ErrGigAPILayout is returned by Recount and Adopt in the cluster layout:
// they work on GigAPI's layout (the one GigAPI's library writes).
var ErrGigAPILayout = errors.New("index: adopt and check --repair work on the gigapi layout only; in the cluster layout rebuild with 'indexer replay'")

// Fix is a counter a recount changed, or would change: Stored is its
// value before ("" when absent), Recounted its value from the entries
// ("0" for a folder count or date field that goes away).
type Fix struct {
	Key, Field        string
	Stored, Recounted string
}

func (f Fix) String() string {
	stored := f.Stored
	if stored == "" {
		stored = "absent"
	}
	return fmt.Sprintf("%s %s: %s -> %s", f.Key, f.Field, stored, f.Recounted)
}

// Recount rebuilds a table's folder counts and statistics from its
// entries and, with write, sets every one that differs; it returns them
// (what it changed, or with write false what it would change). It also
// registers the table. Safe while workers apply events: each date is
// recounted and set in one atomic script call (lua.RecountDate), which a
// patch_index call sees entirely before or after it, and the totals are
// then set to the sums of the per-date fields in another (patch_index
// changes both by the same deltas in one call, so that equality holds
// whenever no call is halfway through). Counts follow what patch_index
// looks up: every field of a files: hash that is a path of that hash's
// date, with the size and row count patch_index would subtract when it
// is deleted, whether or not GigAPI's reader can read the entry (Check
// reports those).
//
// Running it again changes nothing. GigAPI's own library writing to the
// table (its compactor committing with its own Batch) breaks the counts
// again; Recount repairs them afresh.
func (x *Index) Recount(ctx context.Context, db, table string, write bool) ([]Fix, error) {
	if x.layout.Cluster() {
		return nil, ErrGigAPILayout
	}
	dates, err := x.tableDates(ctx, db, table)
	if err != nil {
		return nil, err
	}
	var fixes []Fix
	for _, date := range dates {
		f, err := x.recountDate(ctx, db, table, date, write)
		if err != nil {
			return fixes, err
		}
		fixes = append(fixes, f...)
	}
	f, err := x.recountTotals(ctx, db, table, write)
	return append(fixes, f...), err
}

// recountDate runs lua.RecountDate for one date and lists its fixes.
func (x *Index) recountDate(ctx context.Context, db, table, date string, write bool) ([]Fix, error) {
	l := x.layout
	p := l.Part(db, table, date)
	k := lua.DateKeys{Files: l.Files(db, table, date), Folders: l.Folders(p), Stats: l.Stats(p), Registry: l.Tables()}
	r, err := lua.RecountDate(ctx, x.c, k, date, l.Member(db, table), write)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	var fixes []Fix
	gone := r.Stats[0].Recounted == "0" // a date without files has no fields
	for _, c := range r.Stats {
		if gone && c.Stored != "" || !gone && c.Stored != c.Recounted {
			fixes = append(fixes, Fix{Key: k.Stats, Field: c.Field, Stored: c.Stored, Recounted: c.Recounted})
		}
	}
	for _, c := range r.Folders {
		fixes = append(fixes, Fix{Key: k.Folders, Field: c.Field, Stored: c.Stored, Recounted: c.Recounted})
	}
	return fixes, nil
}

func (x *Index) recountTotals(ctx context.Context, db, table string, write bool) ([]Fix, error) {
	key := x.layout.Stats(x.layout.Part(db, table, ""))
	tot, err := lua.RecountTotals(ctx, x.c, key, write)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	var fixes []Fix
	for _, c := range tot {
		if c.Stored != c.Recounted {
			fixes = append(fixes, Fix{Key: key, Field: c.Field, Stored: c.Stored, Recounted: c.Recounted})
		}
	}
	return fixes, nil
}

// tableDates returns, sorted, every date a table's counters or entries
// name: its files: keys, its folder counts and its per-date statistics
// (a counter left for a date without entries must go too).
func (x *Index) tableDates(ctx context.Context, db, table string) ([]string, error) {
	var dates []string
	add := func(d string) {
		if _, err := time.Parse("date=2006-01-02", d); err == nil {
			dates = append(dates, d)
		}
	}
	prefix := x.layout.Files(db, table, "")
	var cursor uint64
	for {
		page, next, err := x.c.Scan(ctx, cursor, x.layout.FilesPattern(db, table), scanCount).Result()
		if err != nil {
			return nil, fmt.Errorf("index: recount: %w", err)
		}
		for _, k := range page {
			add(k[len(prefix):])
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	whole := x.layout.Part(db, table, "")
	dirs, err := x.c.HKeys(ctx, x.layout.Folders(whole)).Result()
	if err != nil {
		return nil, fmt.Errorf("index: recount: %w", err)
	}
	for _, d := range dirs {
		add(d[:min(len(d), len("date=2006-01-02"))])
	}
	fields, err := x.c.HKeys(ctx, x.layout.Stats(whole)).Result()
	if err != nil {
		return nil, fmt.Errorf("index: recount: %w", err)
	}
	for _, f := range fields {
		if _, d, ok := strings.Cut(f, ":"); ok {
			add(d)
		}
	}
	slices.Sort(dates)
	return slices.Compact(dates), nil
}
