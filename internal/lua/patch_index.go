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
// PatchIndex collapses the ops of each path into one kind (C created, D
// deleted, B both) and sends the paths folder by folder, folders files
// group by files group. KEYS: Registry; for each table its Folders,
// Tombstones and Stats keys; each files group's key. ARGV: NowMillis, the
// numbers of tables, files groups and dirs; per table its registry member
// and newest event time; per files group its table (1-based) and date; per
// dir its files group (1-based), name, its paths' kinds (one letter each)
// and the sums of its created paths' sizes and row counts; then per path
// the path and, when created, the entry of its first create. The script
// returns each path's initial state, from which PatchIndex labels every op.
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

// pathOps gathers the ops of one path in a call.
type pathOps struct {
	op     int32 // first op; later ones follow next[]
	last   int32
	create int32 // the first create op, -1 if none
	del    bool  // some op deletes
}

// PatchIndex runs patch_index for p and returns one outcome per op, in
// the order of p.Ops. The call is atomic: on error nothing was written.
func PatchIndex(ctx context.Context, c redis.Scripter, p *Patch) ([]Outcome, error) {
	if len(p.Ops) == 0 {
		return nil, nil
	}
	// Collapse ops per path (a path lies in one dir), keeping first
	// appearance order within each dir.
	type key struct {
		dir  int
		path string
	}
	paths := make([]pathOps, 0, len(p.Ops))
	next := make([]int32, len(p.Ops))
	byDir := make([][]int32, len(p.Dirs))
	seen := make(map[key]int32, len(p.Ops))
	for i := range p.Ops {
		op := &p.Ops[i]
		if op.Dir < 0 || op.Dir >= len(p.Dirs) {
			return nil, fmt.Errorf("patch_index: op %d names dir %d of %d", i, op.Dir, len(p.Dirs))
		}
		next[i] = -1
		k := key{op.Dir, op.Path}
		pi, ok := seen[k]
		if !ok {
			pi = int32(len(paths))
			seen[k] = pi
			paths = append(paths, pathOps{op: int32(i), last: int32(i), create: -1})
			byDir[op.Dir] = append(byDir[op.Dir], pi)
		} else {
			next[paths[pi].last] = int32(i)
			paths[pi].last = int32(i)
		}
		if op.Delete {
			paths[pi].del = true
		} else if paths[pi].create < 0 {
			paths[pi].create = int32(i)
		}
	}
	// Dirs grouped by files group, so each group's paths are contiguous.
	dirOrder := make([]int, 0, len(p.Dirs))
	for f := range p.Files {
		if t := p.Files[f].Table; t < 0 || t >= len(p.Tables) {
			return nil, fmt.Errorf("patch_index: files group %s names table %d of %d", p.Files[f].Key, t, len(p.Tables))
		}
		for d := range p.Dirs {
			if p.Dirs[d].Files == f && len(byDir[d]) > 0 {
				dirOrder = append(dirOrder, d)
			}
		}
	}

	keys := make([]string, 0, 1+3*len(p.Tables)+len(p.Files))
	keys = append(keys, p.Registry)
	args := make([]any, 0, 4+2*(len(p.Tables)+len(p.Files))+5*len(dirOrder)+2*len(paths))
	args = append(args, strconv.FormatInt(p.NowMillis, 10),
		strconv.Itoa(len(p.Tables)), strconv.Itoa(len(p.Files)), strconv.Itoa(len(dirOrder)))
	for _, t := range p.Tables {
		keys = append(keys, t.Folders, t.Tombstones, t.Stats)
		args = append(args, t.Member, strconv.FormatInt(t.LastEventNanos, 10))
	}
	for _, f := range p.Files {
		keys = append(keys, f.Key)
		args = append(args, strconv.Itoa(f.Table+1), f.Date)
	}
	kinds := make([]byte, 0, len(paths))
	for _, d := range dirOrder {
		kinds = kinds[:0]
		var size, rows int64
		for _, pi := range byDir[d] {
			po := &paths[pi]
			switch {
			case po.create >= 0 && po.del:
				kinds = append(kinds, 'B')
			case po.del:
				kinds = append(kinds, 'D')
			default:
				kinds = append(kinds, 'C')
			}
			if po.create >= 0 {
				size += p.Ops[po.create].SizeBytes
				rows += p.Ops[po.create].RowCount
			}
		}
		args = append(args, strconv.Itoa(p.Dirs[d].Files+1), p.Dirs[d].Name, string(kinds),
			strconv.FormatInt(size, 10), strconv.FormatInt(rows, 10))
	}
	for _, d := range dirOrder {
		for _, pi := range byDir[d] {
			po := &paths[pi]
			args = append(args, p.Ops[po.op].Path)
			if po.create >= 0 {
				args = append(args, p.Ops[po.create].Entry)
			}
		}
	}

	res, err := patchIndex.Run(ctx, c, keys, args...).Text()
	if err != nil {
		return nil, fmt.Errorf("patch_index: %w", err)
	}
	if len(res) != len(paths) {
		return nil, fmt.Errorf("patch_index: %d states for %d paths", len(res), len(paths))
	}
	out := make([]Outcome, len(p.Ops))
	k := 0
	for _, d := range dirOrder {
		for _, pi := range byDir[d] {
			label(res[k], paths[pi].op, next, p.Ops, out)
			k++
		}
	}
	return out, nil
}

// label runs a path's ops, in order, through the state machine from the
// path's initial state ('0' absent, '1' live, '2' tombstoned) and records
// each op's outcome.
func label(state byte, op int32, next []int32, ops []PatchOp, out []Outcome) {
	for ; op >= 0; op = next[op] {
		if ops[op].Delete {
			switch state {
			case '1':
				out[op] = Applied
			case '0':
				out[op] = Tombstoned
			default:
				out[op] = Duplicate
			}
			state = '2'
			continue
		}
		switch state {
		case '0':
			out[op] = Applied
			state = '1'
		case '1':
			out[op] = Duplicate
		default:
			out[op] = Ignored
		}
	}
}
