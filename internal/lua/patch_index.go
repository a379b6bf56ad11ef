package lua

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Patch is the input of one patch_index call: file operations on one or
// more tables, with every key they touch.
//
// PatchIndex collapses the ops of each path into one kind (C created, D
// deleted, B both) and sends the paths folder by folder, folders files
// group by files group. KEYS: Registry (when set); for each table its Folders,
// Tombstones and Stats keys (and, with Queues, its queue State, Pending
// and Ready keys); each files group's key (and, with Queues, its Chunks
// and Published keys); each drop list; the Extra keys; the plan's
// Processing and Leases keys. ARGV: NowMillis; the numbers of tables,
// files groups and dirs; the queues flag; the numbers of drop lists and
// extra keys; the plan mode; the time in seconds; the registry flag; the
// number of Alt and per Alt its table (1-based), group and extra key; per table its registry
// member and newest event time; per files group its table (1-based) and
// date; the plan's id and token; per dir its files group (1-based), name,
// its paths' kinds (one letter each) and the sums of its created paths'
// sizes and row counts, and with Queues its paths' groups, kinds and drop
// lists (three bytes each),
// their sizes (one little-endian double each) and its groups ("L" and ID,
// Hash, the chunk of their created paths joined by newlines, their numbers
// packed, their cuts: see appendCuts); then per path the path, when
// created the entry of its first
// create, and the drop item of a delete (or, in a call with a plan, of
// any op). The script returns each path's initial state, from which
// PatchIndex labels every op.
type Patch struct {
	// NowMillis is the apply time, Unix milliseconds; tombstones created or
	// touched by the call are scored with it, and merge items are timed
	// with it (due at now + timeout).
	NowMillis int64
	// Registry is the key of the set of tables, to which the call adds
	// its tables' members; "" adds them nowhere (the cluster layout, whose
	// registry lies in another hash slot: the caller registers the tables
	// itself).
	Registry string
	Tables   []PatchTable
	Files    []PatchFiles
	Dirs     []PatchDir
	Ops      []PatchOp
	// Queues turns on the merge, move and drop queues: every table and
	// files group then has its queue keys and every dir its Groups.
	Queues bool
	// Drops are the drop lists (:idle) the call may push to.
	Drops []string
	// Extra are the :idle lists groups name, which deletes may withdraw a
	// published item from.
	Extra []string
	// Plan, when set, is the plan the call's single files.replaced event
	// completes; its lease is released with the event's changes.
	Plan *PatchPlan
	// Alt are the :idle lists of published items that deletes naming
	// another layer or writer than the item's withdraw a file from; the
	// call asks for them with an ItemGroupError.
	Alt []PatchAlt
}

// PatchAlt is the :idle list of a table's queue group, for a delete that
// names another group than its file's item.
type PatchAlt struct {
	Table int    // index into Patch.Tables
	Group string // the item's group ID, as the ItemGroupError named it
	Idle  int    // its :idle list, 1-based in Patch.Extra
}

// ItemGroupError is patch_index asking for the :idle list of a published
// item: a delete names another layer or writer than the item listing its
// file, and the path alone names the file. Nothing was written; the
// caller adds the list to Patch.Alt and calls again.
type ItemGroupError struct {
	Table int    // index into Patch.Tables
	Group string // the item's group ID
}

func (e *ItemGroupError) Error() string {
	return fmt.Sprintf("patch_index: table %d needs the :idle list of queue group %s", e.Table, e.Group)
}

// itemGroup parses an ITEMGROUP refusal: "ITEMGROUP <table> <group> …".
func itemGroup(err error) (*ItemGroupError, bool) {
	if !redis.HasErrorPrefix(err, "ITEMGROUP") {
		return nil, false
	}
	f := strings.Fields(strings.TrimPrefix(err.Error(), "ERR "))
	if len(f) < 3 {
		return nil, false
	}
	t, perr := strconv.Atoi(f[1])
	if perr != nil || t < 1 {
		return nil, false
	}
	return &ItemGroupError{Table: t - 1, Group: f[2]}, true
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
	Queue          QueueKeys // with Patch.Queues
}

// QueueKeys are a table's own queue keys (see queue.go).
type QueueKeys struct {
	State   string // HASH: counters, item records, last-item pointers, published items, leases
	Pending string // ZSET: item seq -> time_s, items not yet published
	Ready   string // ZSET: item id -> time_s, items published in an :idle list
	Leases  string // ZSET: leased item id -> lease expiry (Unix s)
}

// PatchFiles is one files: hash (a table and a date) touched by a call.
type PatchFiles struct {
	Key   string // key of the files: hash
	Table int    // index into Patch.Tables
	Date  string // "date=YYYY-MM-DD", names the per-date statistics
	// With Patch.Queues, the date's queue keys (see queue.go): the LIST of
	// pending items' chunks and the HASH of paths listed by published
	// items.
	Chunks, Published string
}

// PatchDir is one folder ("date=YYYY-MM-DD/hour=HH") touched by a call.
type PatchDir struct {
	Files int    // index into Patch.Files
	Name  string // the folders: field
	// Groups are the queue groups of the dir's paths (with Patch.Queues),
	// at most 255.
	Groups []PatchGroup
}

// PatchGroup is where the paths of one dir with one iteration, layer and
// writer (and, for moves, one time_s) are queued.
type PatchGroup struct {
	// Kind is what a path becoming live gets: 'm' a merge item, 'v' a move
	// item, '-' nothing.
	Kind byte
	// ID names the group in item records: "m|N|dir|layer|writer" for a
	// merge key, "v|dir|layer|writer" for a folder's moves.
	ID string
	// Hash is the group's 16 hex digits that item ids carry:
	// "<kind letter><Hash>-<name>.<N>" of the item's first path.
	Hash string
	// Timeout (seconds) and MaxSize (bytes) of the merge iteration.
	Timeout, MaxSize int64
	// MoveTime is when the group's moves are due (Unix s).
	MoveTime int64
	// Idle is the group's :idle list (1-based in Patch.Extra), from which
	// deletes withdraw a published item; 0 for none.
	Idle int
	// Drop is the group's drop list (1-based in Patch.Drops); 0 keeps no
	// drop items.
	Drop int

	size int64 // scratch: the size of the group's created paths
}

// PatchPlan is the plan a files.replaced event completes.
type PatchPlan struct {
	// Stale is set when the caller already knows the plan is not leased
	// (its lease record is gone): the event is then superseded without a
	// check, and the other fields are unused.
	Stale      bool
	Processing string // the item's :processing list
	Leases     string // the table's Queue.Leases
	ID, Token  string
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
	// Group is the op's queue group in its dir's Groups, 1-based; 0 for
	// none.
	Group int
	// Drop is the drop item of the path (GigAPI's JSON), for deletes and,
	// in a call with a plan, for creates; empty without a drop queue.
	Drop string
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
	// Superseded: the op belongs to a files.replaced whose plan is no
	// longer leased with its token (a stale worker's commit): its removals
	// were not applied, and its outputs not live were tombstoned and
	// queued for dropping.
	Superseded Outcome = 's'
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
	case Superseded:
		return "superseded"
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

// IsRange reports whether err is patch_index refusing a call whose sizes
// or row counts, with those of the entries it deletes, sum to 2^53 or
// more (beyond exact arithmetic in Lua). Nothing was written; smaller
// calls go through.
func IsRange(err error) bool { return redis.HasErrorPrefix(err, "RANGE") }

// PatchIndexHash is the SHA1 that EVALSHA names patch_index by (fault
// tests aim at its calls with it).
func PatchIndexHash() string { return patchIndex.Hash() }

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

	nk := 3
	queues := "0"
	if p.Queues {
		nk, queues = 6, "1"
	}
	planMode := ""
	if p.Plan != nil {
		if len(p.Tables) != 1 || !p.Queues {
			return nil, fmt.Errorf("patch_index: a plan needs queues and a call of one event")
		}
		planMode = "P"
		if p.Plan.Stale {
			planMode = "S"
		}
	}
	nf := 1
	if p.Queues {
		nf = 3
	}
	keys := make([]string, 0, 3+nk*len(p.Tables)+nf*len(p.Files)+len(p.Drops)+len(p.Extra))
	registry := "0"
	if p.Registry != "" {
		keys = append(keys, p.Registry)
		registry = "1"
	}
	args := make([]any, 0, 11+3*len(p.Alt)+2*(len(p.Tables)+len(p.Files))+8*len(dirOrder)+3*len(paths))
	args = append(args, strconv.FormatInt(p.NowMillis, 10),
		strconv.Itoa(len(p.Tables)), strconv.Itoa(len(p.Files)), strconv.Itoa(len(dirOrder)),
		queues, strconv.Itoa(len(p.Drops)), strconv.Itoa(len(p.Extra)), planMode,
		strconv.FormatInt(floorDiv(p.NowMillis, 1000), 10), registry, strconv.Itoa(len(p.Alt)))
	for _, al := range p.Alt {
		if al.Table < 0 || al.Table >= len(p.Tables) || al.Idle < 1 || al.Idle > len(p.Extra) {
			return nil, fmt.Errorf("patch_index: alternative :idle list of group %s is out of range", al.Group)
		}
		args = append(args, strconv.Itoa(al.Table+1), al.Group, strconv.Itoa(al.Idle))
	}
	for _, t := range p.Tables {
		keys = append(keys, t.Folders, t.Tombstones, t.Stats)
		if p.Queues {
			keys = append(keys, t.Queue.State, t.Queue.Pending, t.Queue.Ready)
		}
		args = append(args, t.Member, strconv.FormatInt(t.LastEventNanos, 10))
	}
	for _, f := range p.Files {
		keys = append(keys, f.Key)
		if p.Queues {
			keys = append(keys, f.Chunks, f.Published)
		}
		args = append(args, strconv.Itoa(f.Table+1), f.Date)
	}
	keys = append(keys, p.Drops...)
	keys = append(keys, p.Extra...)
	if planMode == "P" {
		keys = append(keys, p.Plan.Processing, p.Plan.Leases)
		args = append(args, p.Plan.ID, p.Plan.Token)
	}
	drops := p.Queues && len(p.Drops) > 0
	if len(p.Drops) > 255 {
		return nil, fmt.Errorf("patch_index: %d drop lists in one call, more than 255", len(p.Drops))
	}
	kinds := make([]byte, 0, len(paths))
	var qg, nums, meta []byte
	var chunks [][]byte
	var totals []float64
	var sizes [][]int64 // per group, the sizes of its created paths in chunk order
	var cuts []byte
	for _, d := range dirOrder {
		kinds, qg, nums = kinds[:0], qg[:0], nums[:0]
		var size, rows int64
		pd := &p.Dirs[d]
		if p.Queues {
			if len(pd.Groups) > 255 {
				return nil, fmt.Errorf("patch_index: dir %s has %d queue groups, more than 255", pd.Name, len(pd.Groups))
			}
			for i := range chunks {
				chunks[i] = chunks[i][:0]
				sizes[i] = sizes[i][:0]
			}
			for len(chunks) < len(pd.Groups) {
				chunks = append(chunks, nil)
				sizes = append(sizes, nil)
			}
			totals = append(totals[:0], make([]float64, len(pd.Groups))...)
		}
		for _, pi := range byDir[d] {
			po := &paths[pi]
			switch {
			case po.create >= 0 && po.del:
				kinds = append(kinds, 'B')
			case po.del:
				kinds = append(kinds, 'D')
			case p.Queues && p.Ops[po.create].Group > 0 && pd.Groups[p.Ops[po.create].Group-1].Kind != '-':
				kinds = append(kinds, 'E')
			default:
				kinds = append(kinds, 'C')
			}
			if po.create >= 0 {
				size += p.Ops[po.create].SizeBytes
				rows += p.Ops[po.create].RowCount
			}
			if !p.Queues {
				continue
			}
			// The group of the path's delete (which decides where it is
			// withdrawn from and dropped), else of its create.
			op := p.Ops[po.op:po.op]
			if po.create >= 0 {
				op = p.Ops[po.create : po.create+1]
			}
			if po.del {
				for o := po.op; o >= 0; o = next[o] {
					if p.Ops[o].Delete {
						op = p.Ops[o : o+1]
						break
					}
				}
			}
			g := op[0].Group
			if g < 0 || g > len(pd.Groups) {
				return nil, fmt.Errorf("patch_index: op on %s names group %d of %d", op[0].Path, g, len(pd.Groups))
			}
			qg = append(qg, byte(g))
			var sz int64
			if po.create >= 0 {
				sz = p.Ops[po.create].SizeBytes
			}
			nums = binary.LittleEndian.AppendUint64(nums, math.Float64bits(float64(sz)))
			if !po.del && g > 0 && pd.Groups[g-1].Kind != '-' {
				if len(chunks[g-1]) > 0 {
					chunks[g-1] = append(chunks[g-1], '\n')
				}
				chunks[g-1] = append(chunks[g-1], p.Ops[po.create].Path...)
				totals[g-1]++
				pd.Groups[g-1].size += sz
				sizes[g-1] = append(sizes[g-1], sz, int64(len(chunks[g-1])))
			}
		}
		args = append(args, strconv.Itoa(pd.Files+1), pd.Name, string(kinds),
			strconv.FormatInt(size, 10), strconv.FormatInt(rows, 10))
		if p.Queues {
			gd := make([]byte, len(pd.Groups))
			for i := range pd.Groups {
				gd[i] = byte(pd.Groups[i].Drop)
			}
			args = append(args, string(qg), string(gd), string(nums), strconv.Itoa(len(pd.Groups)))
			for i := range pd.Groups {
				g := &pd.Groups[i]
				if g.Kind == '-' {
					args = append(args, "", "", "", "", "")
					continue
				}
				if g.Idle < 0 || g.Idle > len(p.Extra) || g.Drop < 0 || g.Drop > len(p.Drops) || len(p.Extra) > math.MaxUint16 {
					return nil, fmt.Errorf("patch_index: group %s names a key out of range", g.ID)
				}
				// '<BdddddHH': kind, timeout, max size, size and number
				// of its created paths, move time, idle list, drop list.
				meta = append(meta[:0], g.Kind)
				for _, v := range [...]float64{float64(g.Timeout), float64(g.MaxSize), float64(g.size), totals[i], float64(g.MoveTime)} {
					meta = binary.LittleEndian.AppendUint64(meta, math.Float64bits(v))
				}
				meta = binary.LittleEndian.AppendUint16(meta, uint16(g.Idle))
				meta = binary.LittleEndian.AppendUint16(meta, uint16(g.Drop))
				g.size = 0
				cuts = appendCuts(cuts[:0], sizes[i], g.MaxSize)
				args = append(args, "L"+g.ID, g.Hash, string(chunks[i]), string(meta), string(cuts))
			}
		}
	}
	for _, d := range dirOrder {
		for _, pi := range byDir[d] {
			po := &paths[pi]
			args = append(args, p.Ops[po.op].Path)
			if po.create >= 0 {
				args = append(args, p.Ops[po.create].Entry)
			}
			if !drops {
				continue
			}
			switch {
			case po.del:
				for o := po.op; o >= 0; o = next[o] {
					if p.Ops[o].Delete {
						args = append(args, p.Ops[o].Drop)
						break
					}
				}
			case planMode != "":
				args = append(args, p.Ops[po.create].Drop)
			}
		}
	}

	res, err := patchIndex.Run(ctx, c, keys, args...).Text()
	if err != nil {
		if ig, ok := itemGroup(err); ok {
			return nil, ig
		}
		return nil, fmt.Errorf("patch_index: %w", err)
	}
	out := make([]Outcome, len(p.Ops))
	if planMode != "" {
		if len(res) != len(paths)+1 {
			return nil, fmt.Errorf("patch_index: %d states for %d paths and a plan", len(res), len(paths))
		}
		// 'r' released, 'd' a replay of a committed event (labelled as
		// usual: duplicates), 's' superseded.
		if res[len(paths)] == 's' {
			for i := range out {
				out[i] = Superseded
			}
			return out, nil
		}
		res = res[:len(paths)]
	}
	if len(res) != len(paths) {
		return nil, fmt.Errorf("patch_index: %d states for %d paths", len(res), len(paths))
	}
	k := 0
	for _, d := range dirOrder {
		for _, pi := range byDir[d] {
			label(res[k], paths[pi].op, next, p.Ops, out)
			k++
		}
	}
	return out, nil
}

// appendCuts appends, per path j of a group's chunk, three little-endian
// numbers '<dII': P, the size of paths 1..j; E, the 1-based offset where
// path j ends in the chunk; N, the first path an item starting at j cannot
// take (the sizes of paths j..N-1 sum to at most max, and the path at j
// always joins; n+1 when all fit). With them patch_index splits a chunk
// into items without a step per path. sizeEnd holds per path its size and
// its end in the chunk.
func appendCuts(dst []byte, sizeEnd []int64, max int64) []byte {
	n := len(sizeEnd) / 2
	prefix := make([]int64, n+1)
	for j := 1; j <= n; j++ {
		prefix[j] = prefix[j-1] + sizeEnd[2*j-2]
	}
	k := 1 // the first path an item starting at j cannot take
	for j := 1; j <= n; j++ {
		if k <= j {
			k = j + 1
		}
		for k <= n && prefix[k]-prefix[j-1] <= max {
			k++
		}
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(float64(prefix[j])))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(sizeEnd[2*j-1]))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(k))
	}
	return dst
}

// floorDiv is a/b rounded towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
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
