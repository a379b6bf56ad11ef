package lua

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Scripts that rebuild counters from the entries (indexer adopt, indexer
// check --repair) and repair entries in place.
var (
	//go:embed recount_date.lua
	recountDateSrc string
	//go:embed recount_totals.lua
	recountTotalsSrc string
	//go:embed rewrite_entries.lua
	rewriteEntriesSrc string
	//go:embed adopt_item.lua
	adoptItemSrc string

	recountDate    = redis.NewScript(withShared(recountDateSrc))
	recountTotals  = redis.NewScript(recountTotalsSrc)
	rewriteEntries = redis.NewScript(rewriteEntriesSrc)
	adoptItem      = redis.NewScript(adoptItemSrc)
)

func init() {
	indexScripts["recount_date.lua"] = recountDate
	indexScripts["recount_totals.lua"] = recountTotals
	indexScripts["rewrite_entries.lua"] = rewriteEntries
	indexScripts["adopt_item.lua"] = adoptItem
}

// DateKeys are the keys recount_date reads and writes for one date of a
// table. Registry "" leaves the registry alone (the cluster layout, whose
// registry lies in another hash slot than the date's keys).
type DateKeys struct {
	Files, Folders, Stats, Registry string
}

// Counter is one counter a recount compares: its stored value ("" when
// absent) and the recount.
type Counter struct {
	Field     string
	Stored    string
	Recounted string
}

// DateRecount is what recount_date found for one date.
type DateRecount struct {
	// Stats are the date's files, bytes and rows statistics fields.
	Stats [3]Counter
	// Folders are the date's folder counts that differ from the recount.
	Folders []Counter
}

// RecountDate recounts one date of a table (date "date=YYYY-MM-DD",
// member its registry member) from its entries in one atomic call and,
// with write, sets the date's statistics fields and folder counts to the
// recount and registers the table (unless k.Registry is ""). Safe while patch_index calls run:
// they see the date before or after, and keep its counters by deltas.
func RecountDate(ctx context.Context, c redis.Scripter, k DateKeys, date, member string, write bool) (DateRecount, error) {
	w := "0"
	if write {
		w = "1"
	}
	keys := []string{k.Files, k.Folders, k.Stats, k.Registry}
	if k.Registry == "" {
		keys = keys[:3]
	}
	v, err := recountDate.Run(ctx, c, keys, date, member, w).Slice()
	if err != nil {
		return DateRecount{}, fmt.Errorf("recount_date %s: %w", k.Files, err)
	}
	if len(v) < 6 || (len(v)-6)%3 != 0 {
		return DateRecount{}, fmt.Errorf("recount_date %s: %d values in the reply", k.Files, len(v))
	}
	var r DateRecount
	for i, name := range [...]string{"files:", "bytes:", "rows:"} {
		r.Stats[i] = Counter{Field: name + date, Stored: str(v[i]), Recounted: str(v[3+i])}
	}
	for i := 6; i < len(v); i += 3 {
		r.Folders = append(r.Folders, Counter{Field: str(v[i]), Stored: str(v[i+1]), Recounted: str(v[i+2])})
	}
	return r, nil
}

// RecountTotals sets (with write) the files, bytes and rows totals of the
// statistics hash stats to the sums of its per-date fields, in one atomic
// call, and returns them stored and summed.
func RecountTotals(ctx context.Context, c redis.Scripter, stats string, write bool) ([3]Counter, error) {
	w := "0"
	if write {
		w = "1"
	}
	var out [3]Counter
	v, err := recountTotals.Run(ctx, c, []string{stats}, w).Slice()
	if err != nil {
		return out, fmt.Errorf("recount_totals %s: %w", stats, err)
	}
	if len(v) != 6 {
		return out, fmt.Errorf("recount_totals %s: %d values in the reply", stats, len(v))
	}
	for i, name := range [...]string{"files", "bytes", "rows"} {
		out[i] = Counter{Field: name, Stored: str(v[i]), Recounted: str(v[3+i])}
	}
	return out, nil
}

// Rewrite is one entry to replace: Path's value Old becomes New.
type Rewrite struct{ Path, Old, New string }

// RewriteEntries replaces entries of the files: hash key, each only if it
// still holds Old (compare and set, in one atomic call), and returns how
// many it replaced.
func RewriteEntries(ctx context.Context, c redis.Scripter, key string, rw []Rewrite) (int, error) {
	if len(rw) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 3*len(rw))
	for _, r := range rw {
		args = append(args, r.Path, r.Old, r.New)
	}
	n, err := rewriteEntries.Run(ctx, c, []string{key}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("rewrite_entries %s: %w", key, err)
	}
	return n, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// AdoptedItem is a merge or move item another program put in an :idle
// list, for AdoptItem.
type AdoptedItem struct {
	// Idle is its list; Files and Published the files: hash and the
	// published-path hash of its date.
	Idle, Files, Published string
	JSON, ID, Group        string
	TimeS                  int64
	Paths                  []string
}

// AdoptItem registers it as a published item of the table whose queue
// keys are k (see adopt_item.lua), in one atomic call, and returns the
// script's verdict: "ok", "had", "gone", "clash", "dead" or "twice".
func AdoptItem(ctx context.Context, c redis.Scripter, k QueueKeys, it AdoptedItem) (string, error) {
	args := make([]any, 0, 4+len(it.Paths))
	args = append(args, it.JSON, it.ID, it.Group, it.TimeS)
	for _, p := range it.Paths {
		args = append(args, p)
	}
	v, err := adoptItem.Run(ctx, c, []string{it.Idle, k.State, k.Ready, it.Published, it.Files}, args...).Text()
	if err != nil {
		return "", fmt.Errorf("adopt_item %s: %w", it.Idle, err)
	}
	return v, nil
}
