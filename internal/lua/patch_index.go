package lua

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Patch is the input of one patch_index call: file operations on one or
// more tables, with every key they touch.
//
// KEYS: Registry; for each table its Folders, Tombstones and Stats keys;
// each files group's key. ARGV: NowMillis, the numbers of tables, files
// groups and dirs; per table its registry member and newest event time; per
// files group its table (1-based) and date; per dir its files group
// (1-based), name, op kinds ("C" create, "D" delete, one letter per op) and
// the sums of its creates' sizes and row counts; then the ops dir by dir,
// each a path followed, for a create, by its entry.
type Patch struct {
	// NowMillis is the apply time, Unix milliseconds; tombstones created or
	// touched by the call are scored with it.
	NowMillis int64
	// Registry is the key of the set of tables.
	Registry string
	Tables   []PatchTable
	Files    []PatchFiles
	Dirs     []PatchDir
	Ops      []PatchOp
}

// PatchTable is one table touched by a call.
type PatchTable struct {
	Folders    string // key of the folders: hash
	Tombstones string // key of the tombstone set
	Stats      string // key of the statistics hash
	Member     string // the table's member in the registry set
	// LastEventNanos is the newest event time of the call's events on this
	// table; the stats field last_event_ns keeps the maximum ever seen.
	LastEventNanos int64
}

// PatchFiles is one files: hash (a table and a date) touched by a call.
type PatchFiles struct {
	Key   string // key of the files: hash
	Table int    // index into Patch.Tables
	Date  string // "date=YYYY-MM-DD", names the per-date statistics
}

// PatchDir is one folder ("date=YYYY-MM-DD/hour=HH") touched by a call.
type PatchDir struct {
	Files int    // index into Patch.Files
	Name  string // the folders: field
}

// PatchOp is one file operation. SizeBytes and RowCount must be those in
// Entry: patch_index reads them back from it for creates without effect.
type PatchOp struct {
	Delete bool
	Dir    int    // index into Patch.Dirs; the path lies in that folder
	Path   string // valid: date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet
	// For creates only:
	Entry     string // the entry JSON, stored verbatim
	SizeBytes int64  // < 2^53
	RowCount  int64  // < 2^53
}

// Outcome is what patch_index did with one op.
type Outcome byte

// Outcomes of an op.
const (
	// Applied: a create stored a new entry, or a delete removed a live one.
	Applied Outcome = 'a'
	// Tombstoned: a delete of a path not indexed; only its tombstone was
	// recorded (the create, if it comes, will be ignored).
	Tombstoned Outcome = 't'
	// Duplicate: the path was already in the state the op leads to.
	Duplicate Outcome = 'd'
	// Ignored: a create of a path already deleted (delete wins).
	Ignored Outcome = 'i'
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Tombstoned:
		return "tombstoned"
	case Duplicate:
		return "duplicate"
	case Ignored:
		return "ignored_tombstoned"
	}
	return "unknown"
}

// PatchIndex runs patch_index for p and returns one outcome per op, in
// the order of p.Ops. The call is atomic: on error nothing was written.
func PatchIndex(ctx context.Context, c redis.Scripter, p *Patch) ([]Outcome, error) {
	if len(p.Ops) == 0 {
		return nil, nil
	}
	// Ops go dir by dir, keeping their order within a dir (a path lies in
	// one dir, so each path's ops keep their order).
	byDir := make([][]int, len(p.Dirs))
	for i := range p.Ops {
		d := p.Ops[i].Dir
		if d < 0 || d >= len(p.Dirs) {
			return nil, fmt.Errorf("patch_index: op %d names dir %d of %d", i, d, len(p.Dirs))
		}
		byDir[d] = append(byDir[d], i)
	}

	keys := make([]string, 0, 1+3*len(p.Tables)+len(p.Files))
	keys = append(keys, p.Registry)
	args := make([]any, 0, 4+2*(len(p.Tables)+len(p.Files))+5*len(p.Dirs)+2*len(p.Ops))
	args = append(args, strconv.FormatInt(p.NowMillis, 10),
		strconv.Itoa(len(p.Tables)), strconv.Itoa(len(p.Files)), strconv.Itoa(len(p.Dirs)))
	for _, t := range p.Tables {
		keys = append(keys, t.Folders, t.Tombstones, t.Stats)
		args = append(args, t.Member, strconv.FormatInt(t.LastEventNanos, 10))
	}
	for _, f := range p.Files {
		if f.Table < 0 || f.Table >= len(p.Tables) {
			return nil, fmt.Errorf("patch_index: files group %s names table %d of %d", f.Key, f.Table, len(p.Tables))
		}
		keys = append(keys, f.Key)
		args = append(args, strconv.Itoa(f.Table+1), f.Date)
	}
	kinds := make([]byte, 0, len(p.Ops))
	for d, dir := range p.Dirs {
		if dir.Files < 0 || dir.Files >= len(p.Files) {
			return nil, fmt.Errorf("patch_index: dir %s names files group %d of %d", dir.Name, dir.Files, len(p.Files))
		}
		kinds = kinds[:0]
		var size, rows int64
		for _, i := range byDir[d] {
			op := &p.Ops[i]
			if op.Delete {
				kinds = append(kinds, 'D')
			} else {
				kinds = append(kinds, 'C')
				size += op.SizeBytes
				rows += op.RowCount
			}
		}
		args = append(args, strconv.Itoa(dir.Files+1), dir.Name, string(kinds),
			strconv.FormatInt(size, 10), strconv.FormatInt(rows, 10))
	}
	for _, ops := range byDir {
		for _, i := range ops {
			op := &p.Ops[i]
			if op.Delete {
				args = append(args, op.Path)
			} else {
				args = append(args, op.Path, op.Entry)
			}
		}
	}

	res, err := patchIndex.Run(ctx, c, keys, args...).Text()
	if err != nil {
		return nil, fmt.Errorf("patch_index: %w", err)
	}
	if len(res) != len(p.Ops) {
		return nil, fmt.Errorf("patch_index: %d outcomes for %d ops", len(res), len(p.Ops))
	}
	out := make([]Outcome, len(p.Ops))
	k := 0
	for _, ops := range byDir {
		for _, i := range ops {
			out[i] = Outcome(res[k])
			k++
		}
	}
	return out, nil
}
