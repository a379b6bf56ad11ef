package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/lua"
)

// AdoptConfig configures Adopt. The zero value adopts every table and
// rewrites no entry.
type AdoptConfig struct {
	// DryRun reports what Adopt would do and writes nothing.
	DryRun bool
	// Repair rewrites the entries GigAPI's reader cannot read that can be
	// rebuilt exactly (numbers in another form than plain integers), each
	// only while it still holds the value read (compare and set).
	// Default: report them only.
	Repair bool
	// Layers, when not nil, are the layers GigAPI's readers have
	// configured; entries naming another are reported. Default: any.
	Layers map[string]bool
	// Restart ignores the progress a killed run recorded and adopts every
	// key again. Default: resume.
	Restart bool
	// MaxListed bounds the unreadable entries listed in the report (all are
	// counted). Default 100.
	MaxListed int
	// Total, when set, is told the number of entries to read once it is
	// known; Progress is told how many were read as they are.
	Total    func(entries int64)
	Progress func(entries int)
}

// AdoptReport is what Adopt did, or with DryRun would do.
type AdoptReport struct {
	Tables    [][2]string // tables adopted
	NewTables int         // of them, those not registered before
	Keys      int         // files: keys adopted in this run
	Resumed   int         // files: keys adopted by the killed run it resumed
	// NotKeys are keys under files: that name no table's date; GigAPI's
	// readers never read them, and Adopt leaves them alone.
	NotKeys []string
	Entries int64 // entries read
	// Unreadable counts the entries GigAPI's reader cannot read, Listed
	// the first MaxListed of them, Repaired those rewritten.
	Unreadable int64
	Listed     []Unreadable
	Repaired   int64
	// Repairable counts unreadable entries that --repair would rewrite.
	Repairable int64
	// LiveTombstoned counts paths that have an entry and a tombstone: an
	// entry written by another program after indexer deleted the path
	// (whose file GigAPI's dropper may have removed). Adopt leaves them;
	// 'indexer backfill --reconcile' tells whether the file exists.
	LiveTombstoned int64
	// Fixes are the counters set to their recount (or that would be).
	Fixes []Fix
	// Items counts the merge and move items found in :idle lists that
	// indexer had not published, ItemsAdopted those registered as
	// indexer's published items (so a delete withdraws them and 'indexer
	// plan next' leases them), ItemProblems says why the others were not.
	Items, ItemsAdopted int
	ItemProblems        []string
}

// Adopt takes over an index written by GigAPI's library (or any program
// writing GigAPI's keys): it scans every files: key, checks every entry as
// GigAPI's Go reader reads it, registers the tables, and rebuilds their
// folder counts and statistics from the entries (see Recount: each date
// in one atomic call, so it is safe while workers apply events). A path
// with an entry is live to patch_index, so once its counters are rebuilt
// later events apply to adopted files exactly as to files indexer
// indexed: a delete subtracts what the recount added, a create is a
// duplicate.
//
// In the cluster layout Adopt finds the files: keys on every master and
// adopts them Part by Part, as Recount recounts them.
//
// Adopt records each key it completes under Layout.Adoption, so a run
// that was killed resumes where it stopped (Restart starts afresh); a run
// that completes clears the record, and running it again changes nothing.
// The record is written after the key's calls (in the cluster layout it
// lies in another slot than the key's Part): a run killed in between
// adopts that key again, which changes nothing.
// Unreadable entries are reported, and with Repair rewritten.
func (x *Index) Adopt(ctx context.Context, cfg AdoptConfig) (AdoptReport, error) {
	var rep AdoptReport
	if cfg.MaxListed == 0 {
		cfg.MaxListed = 100
	}
	tables, err := x.filesKeys(ctx, &rep)
	if err != nil {
		return rep, err
	}
	registered, err := x.Tables(ctx)
	if err != nil {
		return rep, err
	}
	progress := x.layout.Adoption()
	done := map[string]string{}
	if !cfg.DryRun {
		if cfg.Restart {
			err = x.c.Del(ctx, progress).Err()
		} else {
			done, err = x.c.HGetAll(ctx, progress).Result()
		}
		if err != nil {
			return rep, fmt.Errorf("index: adopt: %w", err)
		}
	}
	names := slices.SortedFunc(func(yield func([2]string) bool) {
		for t := range tables {
			if !yield(t) {
				return
			}
		}
	}, func(a, b [2]string) int { return strings.Compare(a[0]+":"+a[1], b[0]+":"+b[1]) })
	if cfg.Total != nil {
		var total int64
		for _, t := range names {
			for _, d := range tables[t] {
				n, err := x.c.HLen(ctx, x.layout.Files(t[0], t[1], d)).Result()
				if err != nil {
					return rep, fmt.Errorf("index: adopt: %w", err)
				}
				total += n
			}
		}
		cfg.Total(total)
	}
	for _, t := range names {
		if !slices.Contains(registered, t) {
			rep.NewTables++
		}
		rep.Tables = append(rep.Tables, t)
		seen := map[string]bool{}
		var all deltas // a dry run's recounts, for the totals (see recountTotals)
		for _, date := range tables[t] {
			seen[date] = true
			key := x.layout.Files(t[0], t[1], date)
			if v, ok := done[key]; ok && (!cfg.Repair || strings.HasSuffix(v, " 0")) {
				rep.Resumed++
				continue
			}
			left, d, err := x.adoptKey(ctx, t[0], t[1], date, cfg, &rep)
			if err != nil {
				return rep, err
			}
			all.add(d)
			rep.Keys++
			if !cfg.DryRun {
				v := strconv.FormatInt(x.now().Unix(), 10) + " " + strconv.FormatInt(left, 10)
				if err := x.c.HSet(ctx, progress, key, v).Err(); err != nil {
					return rep, fmt.Errorf("index: adopt: %w", err)
				}
			}
		}
		// Counters left for dates without entries, then the totals.
		dates, err := x.tableDates(ctx, t[0], t[1])
		if err != nil {
			return rep, err
		}
		for _, date := range dates {
			if seen[date] {
				continue
			}
			f, d, err := x.recountPart(ctx, t[0], t[1], date, !cfg.DryRun)
			rep.Fixes = append(rep.Fixes, f...)
			if err != nil {
				return rep, err
			}
			all.add(d)
		}
		f, err := x.recountTable(ctx, t[0], t[1], !cfg.DryRun, all)
		if err != nil {
			return rep, err
		}
		rep.Fixes = append(rep.Fixes, f...)
		if x.queue.kinds&(MergeQueue|MoveQueue) != 0 {
			if err := x.adoptItems(ctx, t[0], t[1], cfg, &rep); err != nil {
				return rep, err
			}
		}
	}
	if !cfg.DryRun {
		if err := x.c.Del(ctx, progress).Err(); err != nil {
			return rep, fmt.Errorf("index: adopt: %w", err)
		}
	}
	return rep, nil
}

// filesKeys lists every files: key by table (dates sorted), scanning
// every master of a cluster; keys naming no table's date go to
// rep.NotKeys.
func (x *Index) filesKeys(ctx context.Context, rep *AdoptReport) (map[[2]string][]string, error) {
	tables := map[[2]string][]string{}
	keys, err := x.scan(ctx, x.layout.AllFilesPattern())
	if err != nil {
		return nil, fmt.Errorf("index: adopt: %w", err)
	}
	for _, k := range keys {
		db, table, date, ok := x.layout.ParseFiles(k)
		if !ok || !validDate(date) || checkPath(date+"/hour=00/a.1.parquet") != nil {
			rep.NotKeys = append(rep.NotKeys, k)
			continue
		}
		t := [2]string{db, table}
		tables[t] = append(tables[t], date) // sorted, no repeats: so are keys
	}
	return tables, nil
}

// adoptKey checks one files: key's entries, repairs them with
// cfg.Repair, and recounts its date. It returns how many unreadable
// entries are left, and the recount's deltas (see recountTotals).
func (x *Index) adoptKey(ctx context.Context, db, table, date string, cfg AdoptConfig, rep *AdoptReport) (int64, deltas, error) {
	key := x.layout.Files(db, table, date)
	var left int64
	for kv, err := range x.hscanPages(ctx, key) {
		if err != nil {
			return 0, deltas{}, fmt.Errorf("index: adopt %s: %w", key, err)
		}
		var rewrites []lua.Rewrite
		var live []string
		for i := 0; i+1 < len(kv); i += 2 {
			field, value := kv[i], kv[i+1]
			rep.Entries++
			if checkPath(field) == nil && strings.HasPrefix(field, date) {
				live = append(live, field)
			}
			reason, repair := readEntry(db, table, date, field, value, cfg.Layers)
			if reason == "" {
				continue
			}
			rep.Unreadable++
			if len(rep.Listed) < cfg.MaxListed {
				rep.Listed = append(rep.Listed, Unreadable{Key: key, Field: field, Reason: reason, Repair: repair})
			}
			if repair == "" {
				left++
				continue
			}
			rep.Repairable++
			if cfg.Repair && !cfg.DryRun {
				rewrites = append(rewrites, lua.Rewrite{Path: field, Old: value, New: repair})
			} else {
				left++
			}
		}
		n, err := lua.RewriteEntries(ctx, x.c, key, rewrites)
		if err != nil {
			return 0, deltas{}, fmt.Errorf("index: adopt: %w", err)
		}
		rep.Repaired += int64(n)
		left += int64(len(rewrites) - n) // changed meanwhile: checked again by the next run
		if err := x.countTombstoned(ctx, x.layout.Part(db, table, date), live, rep); err != nil {
			return 0, deltas{}, err
		}
		if cfg.Progress != nil {
			cfg.Progress(len(kv) / 2)
		}
	}
	f, d, err := x.recountPart(ctx, db, table, date, !cfg.DryRun)
	rep.Fixes = append(rep.Fixes, f...)
	return left, d, err
}

// countTombstoned counts the paths among live (of Part p) that also have
// a tombstone.
func (x *Index) countTombstoned(ctx context.Context, p Part, live []string, rep *AdoptReport) error {
	if len(live) == 0 {
		return nil
	}
	key := x.layout.Tombstones(p)
	scores, err := x.c.ZMScore(ctx, key, live...).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("index: adopt %s: %w", key, err)
	}
	for _, s := range scores {
		if s != 0 {
			rep.LiveTombstoned++
		}
	}
	return nil
}

// adoptItems registers the merge and move items waiting in a table's
// :idle lists that indexer did not publish (GigAPI's library pushed
// them) as published items, as queue_publish would have (lua.AdoptItem):
// a later delete of one of their files then withdraws the item, as for
// items indexer published.
func (x *Index) adoptItems(ctx context.Context, db, table string, cfg AdoptConfig, rep *AdoptReport) error {
	problem := func(format string, args ...any) {
		if len(rep.ItemProblems) < cfg.MaxListed {
			rep.ItemProblems = append(rep.ItemProblems, fmt.Sprintf(format, args...))
		}
	}
	for _, pattern := range x.layout.QueuePatterns(db, table) {
		keys, err := x.scan(ctx, pattern)
		if err != nil {
			return fmt.Errorf("index: adopt: %w", err)
		}
		for _, key := range keys {
			q, ok := strings.CutSuffix(key, ":idle")
			kind, n, dir, layer, writer, ok2 := x.layout.ParseQueue(q)
			if !ok || !ok2 {
				continue
			}
			items, err := x.c.LRange(ctx, key, 0, -1).Result()
			if err != nil {
				return fmt.Errorf("index: adopt %s: %w", key, err)
			}
			for _, raw := range items {
				var it queueItem
				if json.Unmarshal([]byte(raw), &it) != nil || it.ID == "" || it.TimeS == nil {
					problem("%s: item %.60q is not GigAPI's item JSON with an id and time_s", key, raw)
					continue
				}
				paths := it.Paths
				if kind == 'v' {
					paths = []string{it.PathFrom}
				}
				if len(paths) == 0 || checkPath(paths[0]) != nil {
					problem("%s: item %s lists no valid path", key, it.ID)
					continue
				}
				if kind == 'v' {
					dir = paths[0][:len("date=2006-01-02/hour=15")]
				}
				bad := false
				for _, p := range paths {
					bad = bad || checkPath(p) != nil || !strings.HasPrefix(p, dir+"/")
				}
				if bad {
					problem("%s: item %s lists a path outside its folder %s", key, it.ID, dir)
					continue
				}
				date := dir[:len("date=2006-01-02")]
				k := x.layout.QueueKeys(x.layout.Part(db, table, date))
				if x.layout.cluster && HashTag(key) != HashTag(k.State) {
					problem("%s: item %s lists paths of another date's Part (%s)", key, it.ID, date)
					continue
				}
				ai := lua.AdoptedItem{Idle: key, JSON: raw, ID: it.ID, Group: groupID(kind, n, dir, layer, writer),
					TimeS: *it.TimeS, Paths: paths,
					Files: x.layout.Files(db, table, date), Published: x.layout.QueuePublished(db, table, date)}
				if cfg.DryRun {
					had, err := x.c.HExists(ctx, k.State, "J"+it.ID).Result()
					if err != nil {
						return fmt.Errorf("index: adopt: %w", err)
					}
					if !had {
						rep.Items++
					}
					continue
				}
				verdict, err := lua.AdoptItem(ctx, x.c, k, ai)
				if err != nil {
					return fmt.Errorf("index: %w", err)
				}
				switch verdict {
				case "ok":
					rep.Items++
					rep.ItemsAdopted++
				case "had", "gone":
				case "dead":
					rep.Items++
					problem("%s: item %s lists a file that is not indexed (deleted since; GigAPI's compactor would fail on it): left as it is", key, it.ID)
				case "clash":
					rep.Items++
					problem("%s: item %s has the id of another item: left as it is", key, it.ID)
				default:
					rep.Items++
					problem("%s: item %s lists a file another item lists: left as it is", key, it.ID)
				}
			}
		}
	}
	return nil
}
