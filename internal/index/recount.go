package index

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/streamindex/indexer/internal/lua"
)

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
// In the cluster layout the same holds Part by Part: each date's
// counters and its Part's totals are set in two calls on the Part's slot,
// and the date is added to the registry (Layout.Dates) before them, as
// Apply does.
//
// Running it again changes nothing. GigAPI's own library writing to the
// table (its compactor committing with its own Batch) breaks the counts
// again; Recount repairs them afresh.
func (x *Index) Recount(ctx context.Context, db, table string, write bool) ([]Fix, error) {
	dates, err := x.tableDates(ctx, db, table)
	if err != nil {
		return nil, err
	}
	var fixes []Fix
	var all deltas
	for _, date := range dates {
		f, d, err := x.recountPart(ctx, db, table, date, write)
		fixes = append(fixes, f...)
		if err != nil {
			return fixes, err
		}
		all.add(d)
	}
	f, err := x.recountTable(ctx, db, table, write, all)
	return append(fixes, f...), err
}

// deltas are, for files, bytes and rows, how much the recounted per-date
// fields differ from the stored ones: a dry run (write false) leaves the
// stored fields, so the totals it reports are their sums plus deltas.
type deltas [3]int64

func (d *deltas) add(o deltas) {
	for i := range d {
		d[i] += o[i]
	}
}

// recountPart recounts one date (recountDate) and, in the cluster layout,
// its Part's totals.
func (x *Index) recountPart(ctx context.Context, db, table, date string, write bool) ([]Fix, deltas, error) {
	fixes, d, err := x.recountDate(ctx, db, table, date, write)
	if err != nil || !x.layout.cluster {
		return fixes, d, err
	}
	f, err := x.recountTotals(ctx, x.layout.Part(db, table, date), write, d)
	return append(fixes, f...), d, err
}

// recountTable sets, in the gigapi layout, the table's totals to the sums
// of its dates' fields, once recountPart recounted every date; in the
// cluster layout recountPart did it Part by Part.
func (x *Index) recountTable(ctx context.Context, db, table string, write bool, d deltas) ([]Fix, error) {
	if x.layout.cluster {
		return nil, nil
	}
	return x.recountTotals(ctx, x.layout.Part(db, table, ""), write, d)
}

// recountDate runs lua.RecountDate for one date and lists its fixes, and
// how much its recounted statistics differ from the stored ones. In the
// cluster layout, with write, it first registers the date's Part.
func (x *Index) recountDate(ctx context.Context, db, table, date string, write bool) ([]Fix, deltas, error) {
	l := x.layout
	p := l.Part(db, table, date)
	k := lua.DateKeys{Files: l.Files(db, table, date), Folders: l.Folders(p), Stats: l.Stats(p), Registry: l.Tables()}
	if l.cluster {
		k.Registry = ""
		if write {
			if err := x.register(ctx, []Part{p}); err != nil {
				return nil, deltas{}, err
			}
		}
	}
	r, err := lua.RecountDate(ctx, x.c, k, date, l.Member(db, table), write)
	if err != nil {
		return nil, deltas{}, fmt.Errorf("index: %w", err)
	}
	var fixes []Fix
	var d deltas
	gone := r.Stats[0].Recounted == "0" // a date without files has no fields
	for i, c := range r.Stats {
		if gone && c.Stored != "" || !gone && c.Stored != c.Recounted {
			fixes = append(fixes, Fix{Key: k.Stats, Field: c.Field, Stored: c.Stored, Recounted: c.Recounted})
		}
		d[i] = counterValue(c.Recounted) - counterValue(c.Stored)
	}
	for _, c := range r.Folders {
		fixes = append(fixes, Fix{Key: k.Folders, Field: c.Field, Stored: c.Stored, Recounted: c.Recounted})
	}
	return fixes, d, nil
}

// counterValue is a counter's value; a missing or unreadable field
// counts 0, as the scripts' sums count it.
func counterValue(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// recountTotals sets a Part's totals to the sums of its per-date fields
// (lua.RecountTotals) and lists its fixes. Without write the per-date
// fields were left as stored, d off what the recount found: the totals
// listed are their sums plus d.
func (x *Index) recountTotals(ctx context.Context, p Part, write bool, d deltas) ([]Fix, error) {
	key := x.layout.Stats(p)
	tot, err := lua.RecountTotals(ctx, x.c, key, write)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	var fixes []Fix
	for i, c := range tot {
		if !write && d[i] != 0 {
			c.Recounted = strconv.FormatInt(counterValue(c.Recounted)+d[i], 10)
		}
		if c.Stored != c.Recounted {
			fixes = append(fixes, Fix{Key: key, Field: c.Field, Stored: c.Stored, Recounted: c.Recounted})
		}
	}
	return fixes, nil
}

// tableDates returns, sorted, every date a table's counters or entries
// name: its files: keys (found by SCAN, on every master of a cluster), and
// a counter left for a date without entries must go too: in the gigapi
// layout its folder counts and per-date statistics, in the cluster layout
// the registered dates (Parts).
func (x *Index) tableDates(ctx context.Context, db, table string) ([]string, error) {
	var dates []string
	add := func(d string) {
		if validDate(d) {
			dates = append(dates, d)
		}
	}
	keys, err := x.scan(ctx, x.layout.FilesPattern(db, table))
	if err != nil {
		return nil, fmt.Errorf("index: recount: %w", err)
	}
	for _, k := range keys {
		if d, ok := x.layout.FilesDate(db, table, k); ok {
			add(d)
		}
	}
	if x.layout.cluster {
		parts, err := x.Parts(ctx, db, table)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			add(p.Date)
		}
	} else {
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
	}
	slices.Sort(dates)
	return slices.Compact(dates), nil
}
