package index

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/lua"
)

// QueueKinds is a set of GigAPI's work queues.
type QueueKinds uint8

// The queues patch_index keeps.
const (
	// MergeQueue: merge items, "merge:<db>:<table>:<N>:<dir>:<layer>:<writer>:idle".
	MergeQueue QueueKinds = 1 << iota
	// MoveQueue: move items of files on layers with a TTL.
	MoveQueue
	// DropQueue: drop items, one per deleted path.
	DropQueue

	AllQueues = MergeQueue | MoveQueue | DropQueue
)

// String lists the kinds as the --queues flag writes them: "merge,drop",
// or "none".
func (k QueueKinds) String() string {
	var out []string
	for _, q := range [...]struct {
		k    QueueKinds
		name string
	}{{MergeQueue, "merge"}, {MoveQueue, "move"}, {DropQueue, "drop"}} {
		if k&q.k != 0 {
			out = append(out, q.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// MergeLevel configures merge iteration N, the files "<name>.<N>.parquet".
type MergeLevel struct {
	// Timeout is how long after it starts an item is due (whole seconds,
	// at least 1 s).
	Timeout time.Duration
	// MaxSize bounds an item: a file joins the last item of its key while
	// size + size_bytes <= MaxSize, else it starts a new item. 1 to 2^53-1.
	MaxSize int64
}

// DefaultMergeTimeout is GigAPI's merge timeout base T.
const DefaultMergeTimeout = 10 * time.Second

// DefaultMergeLevels returns GigAPI's merge configuration for timeout base
// t: N=1: t, 100 MiB; N=2: 10·t, 400 MiB; N=3: 100·t, 4000 MiB; N=4:
// 420·t, 4000 MiB.
func DefaultMergeLevels(t time.Duration) []MergeLevel {
	return []MergeLevel{{t, 100 << 20}, {10 * t, 400 << 20}, {100 * t, 4000 << 20}, {420 * t, 4000 << 20}}
}

// Layer is a storage layer of GigAPI's, in the order files move through.
type Layer struct {
	Name string
	// TTL is how long files stay on the layer before they move to the next
	// one (whole seconds); 0 keeps them.
	TTL time.Duration
}

// DefaultLease is how long a leased item stays with its worker, GigAPI's.
const DefaultLease = 30 * time.Minute

// QueueConfig configures the merge, move and drop queues GigAPI's
// compactor, mover and dropper take their work from. The zero value keeps
// all three with GigAPI's defaults, for any layer and no layer TTL (so no
// move items).
//
// Only numbers reach the scripts: layer names, TTLs, timeouts and sizes.
// Layer URLs and credentials are GigAPI's business and never passed.
type QueueConfig struct {
	// Disable lists the queues not kept. Default none: all three are kept,
	// which GigAPI's compactor and dropper depend on.
	Disable QueueKinds
	// Merge configures iterations 1..len(Merge); files of a higher
	// iteration get no merge item. Default DefaultMergeLevels(10 s).
	Merge []MergeLevel
	// Layers lists the storage layers in order. A file on a layer with a
	// TTL gets a move item to the next layer (to "" from the last), due at
	// its chunk time + TTL, unless its merge is due first (GigAPI's
	// earlier-time rule: merge when timeout[N] <= TTL). Default none: any
	// layer, no moves.
	Layers []Layer
	// Lease is how long a leased item stays with its worker before it is
	// delivered again. Default 30 min.
	Lease time.Duration
}

// queueConf is a validated QueueConfig.
type queueConf struct {
	kinds   QueueKinds
	merge   []mergeLevel
	layers  map[string]layerConf
	leaseS  int64
	enabled bool
}

type mergeLevel struct{ timeout, maxSize int64 }

type layerConf struct {
	ttl  int64  // seconds, 0 for none
	next string // the layer files move to
}

func newQueueConf(c QueueConfig) (*queueConf, error) {
	q := &queueConf{kinds: AllQueues &^ c.Disable, layers: make(map[string]layerConf)}
	q.enabled = q.kinds != 0
	levels := c.Merge
	if levels == nil {
		levels = DefaultMergeLevels(DefaultMergeTimeout)
	}
	for i, l := range levels {
		if l.Timeout < time.Second || l.Timeout%time.Second != 0 {
			return nil, fmt.Errorf("index: merge iteration %d: timeout %v must be whole seconds, at least 1s", i+1, l.Timeout)
		}
		if l.MaxSize < 1 || l.MaxSize > event.MaxSafeInt {
			return nil, fmt.Errorf("index: merge iteration %d: max size %d must be 1 to 2^53-1 bytes", i+1, l.MaxSize)
		}
		q.merge = append(q.merge, mergeLevel{int64(l.Timeout / time.Second), l.MaxSize})
	}
	for i, l := range c.Layers {
		if !event.ValidName(l.Name) {
			return nil, fmt.Errorf("index: layer %q: not a valid name", l.Name)
		}
		if _, dup := q.layers[l.Name]; dup {
			return nil, fmt.Errorf("index: layer %q is listed twice", l.Name)
		}
		if l.TTL < 0 || l.TTL%time.Second != 0 {
			return nil, fmt.Errorf("index: layer %s: TTL %v must be whole seconds, or 0 for none", l.Name, l.TTL)
		}
		lc := layerConf{ttl: int64(l.TTL / time.Second)}
		if i+1 < len(c.Layers) {
			lc.next = c.Layers[i+1].Name
		}
		q.layers[l.Name] = lc
	}
	lease := c.Lease
	if lease == 0 {
		lease = DefaultLease
	}
	if lease < time.Second {
		return nil, errors.New("index: the lease must be at least 1s")
	}
	q.leaseS = int64(lease / time.Second)
	return q, nil
}

// kind decides what a file of iteration n on layer gets when it becomes
// live: 'm' a merge item, 'v' a move item, '-' nothing.
func (q *queueConf) kind(n int, layer string) byte {
	merge := q.kinds&MergeQueue != 0 && n >= 1 && n <= len(q.merge)
	var ttl int64
	if q.kinds&MoveQueue != 0 {
		ttl = q.layers[layer].ttl
	}
	switch {
	case merge && (ttl == 0 || q.merge[n-1].timeout <= ttl):
		return 'm'
	case ttl > 0:
		return 'v'
	}
	return '-'
}

// groupID names a queue group in item records: "m|N|dir|layer|writer" (a
// merge key) or "v|dir|layer|writer" (the moves of a folder; see
// internal/lua/queue.go); drop leases use "d|layer|writer".
func groupID(kind byte, n int, dir, layer, writer string) string {
	switch kind {
	case 'm':
		return "m|" + strconv.Itoa(n) + "|" + dir + "|" + layer + "|" + writer
	case 'v':
		return "v|" + dir + "|" + layer + "|" + writer
	case 'd':
		return "d|" + layer + "|" + writer
	}
	return "-"
}

// groupParts splits a group ID: its kind, N, dir, layer and writer.
func groupParts(gid string) (kind byte, n int, dir, layer, writer string, ok bool) {
	parts := strings.Split(gid, "|")
	switch {
	case len(parts) == 5 && parts[0] == "m":
		n, err := strconv.Atoi(parts[1])
		return 'm', n, parts[2], parts[3], parts[4], err == nil && n >= 1
	case len(parts) == 4 && parts[0] == "v":
		return 'v', 0, parts[1], parts[2], parts[3], true
	case len(parts) == 3 && parts[0] == "d":
		return 'd', 0, "", parts[1], parts[2], true
	}
	return 0, 0, "", "", "", false
}

// queueOf returns the queue key (without suffix) a group ID of Part p
// names.
func (l Layout) queueOf(p Part, gid string) (string, error) {
	kind, n, dir, layer, writer, ok := groupParts(gid)
	switch {
	case !ok:
	case kind == 'm':
		return l.MergeQueue(p.Database, p.Table, n, dir, layer, writer), nil
	case kind == 'v':
		return l.MoveQueue(p, layer, writer), nil
	case kind == 'd':
		return l.DropQueue(p, layer, writer), nil
	}
	return "", fmt.Errorf("index: queue group %q is malformed", gid)
}

// groupHash is the part of item ids that names their folder's queues: 16
// hex digits of SHA-256 over the table, folder, layer and writer. An id is
// "<kind letter><hash>-<name>.<N>" of the item's first path ('m' merge,
// 'v' move, 'd' drop), with "<name>.<N>" shortened by idName when long. A path becomes live at most once and is deleted at
// most once, no two paths of a folder share a name, and N is part of the
// name, so ids are unique within a table; the hash keeps them apart
// across tables, folders, layers and writers.
func groupHash(db, table, dir, layer, writer string) string {
	h := sha256.New()
	for _, s := range [...]string{db, table, dir, layer, writer} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}

// ItemID returns the id of the item of queue kind ('m' merge, 'v' move,
// 'd' drop) whose first path is path, as patch_index computes it.
func ItemID(kind byte, db, table, path, layer, writer string) string {
	f := event.File{Path: path}
	return string(kind) + groupHash(db, table, f.Dir(), layer, writer) + "-" + idName(nameN(path))
}

// maxIDName is the longest "<name>.<N>" an item id carries as it is: with
// the 18 characters before it, an id then has at most 128, what a
// files.replaced event's plan.id may carry (the event contract's id rule).
const maxIDName = 128 - len("m0123456789abcdef-")

// idName is the part of an item id that names its first path: "<name>.<N>"
// itself when it has at most maxIDName characters, else its first 40
// characters, ':' and the SHA-1 of the whole in hex (81 characters). ':'
// never occurs in a name, so a shortened name cannot equal another file's;
// patch_index and queue_publish compute the same (redis.sha1hex).
func idName(nameN string) string {
	if len(nameN) <= maxIDName {
		return nameN
	}
	sum := sha1.Sum([]byte(nameN))
	return nameN[:40] + ":" + hex.EncodeToString(sum[:])
}

// nameN is "<name>.<N>" of a valid path.
func nameN(path string) string {
	return path[len("date=2006-01-02/hour=15/") : len(path)-len(".parquet")]
}

// MovePathTo is where the move item of a file on layer moves it: the same
// folder, a new name derived from the path (UUID-shaped hex of the SHA-1
// of database, table, layer and path, which queue_publish computes the
// same way, so a re-published item moves the file to the same place), the
// same iteration.
func MovePathTo(db, table, layer, path string) string {
	sum := sha1.Sum([]byte(db + "\x00" + table + "\x00" + layer + "\x00" + path))
	x := hex.EncodeToString(sum[:])
	f := event.File{Path: path}
	return f.Dir() + "/" + x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32] +
		"." + strconv.Itoa(f.Iteration()) + ".parquet"
}

// queueBatch gathers the queue groups and keys of one call.
type queueBatch struct {
	groups map[groupKey]int // -> 1-based index in its dir's Groups
	extra  map[string]int   // key -> 1-based index in Patch.Extra
	drops  map[string]int   // key -> 1-based index in Patch.Drops
	// dropOps are the ops that carry a drop item, completed at call time.
	dropOps []dropOp
}

type groupKey struct {
	dir           int
	n             int
	layer, writer string
	moveTime      int64
}

type dropOp struct {
	op                  int
	db, table           string
	layer, writer, hash string
}

func (qb *queueBatch) reset() {
	clear(qb.groups)
	clear(qb.extra)
	clear(qb.drops)
	qb.dropOps = qb.dropOps[:0]
}

// key returns the 1-based index of key in p.Extra, adding it.
func (qb *queueBatch) key(p *lua.Patch, key string) int {
	if i, ok := qb.extra[key]; ok {
		return i
	}
	p.Extra = append(p.Extra, key)
	qb.extra[key] = len(p.Extra)
	return len(p.Extra)
}

// group returns the 1-based group of a file of dir d in the call, adding
// it. A delete also needs the group's :idle list, to withdraw an item
// already published.
func (x *Index) group(b *batch, e *event.Event, part Part, f *event.File, d int, deleted bool) int {
	qb, p := &b.queue, &b.patch
	q, l := x.queue, x.layout
	n := f.Iteration()
	kind := q.kind(n, f.Layer)
	gk := groupKey{dir: d, n: n, layer: f.Layer, writer: f.WriterID}
	if kind == 'v' && !deleted {
		gk.moveTime = f.ChunkTime/int64(time.Second) + q.layers[f.Layer].ttl
	}
	dir := &p.Dirs[d]
	gi, ok := qb.groups[gk]
	if !ok {
		g := lua.PatchGroup{Kind: kind, ID: groupID(kind, n, dir.Name, f.Layer, f.WriterID),
			Hash: groupHash(e.Database, e.Table, dir.Name, f.Layer, f.WriterID), MoveTime: gk.moveTime}
		if kind == 'm' {
			g.Timeout, g.MaxSize = q.merge[n-1].timeout, q.merge[n-1].maxSize
		}
		if q.kinds&DropQueue != 0 {
			key := l.Idle(l.DropQueue(part, f.Layer, f.WriterID))
			t, ok := qb.drops[key]
			if !ok {
				p.Drops = append(p.Drops, key)
				t = len(p.Drops)
				qb.drops[key] = t
			}
			g.Drop = t
		}
		dir.Groups = append(dir.Groups, g)
		gi = len(dir.Groups)
		qb.groups[gk] = gi
	}
	g := &dir.Groups[gi-1]
	if deleted && g.Idle == 0 && g.Kind != '-' {
		var key string
		if g.Kind == 'm' {
			key = l.MergeQueue(e.Database, e.Table, n, dir.Name, f.Layer, f.WriterID)
		} else {
			key = l.MoveQueue(part, f.Layer, f.WriterID)
		}
		g.Idle = qb.key(p, l.Idle(key))
	}
	if g.Drop > 0 && (deleted || e.Plan != nil) {
		qb.dropOps = append(qb.dropOps, dropOp{len(p.Ops), e.Database, e.Table, f.Layer, f.WriterID, g.Hash})
	}
	return gi
}

// dropItems completes the drop items of the call's ops, due 30 s from
// nowS as GigAPI's dropper expects: {"id","writer_id","layer","path",
// "database","table","time_s"}.
func (b *batch) dropItems(nowS int64) {
	var buf []byte
	for _, d := range b.queue.dropOps {
		op := &b.patch.Ops[d.op]
		buf = append(buf[:0], `{"id":"d`...)
		buf = append(buf, d.hash...)
		buf = append(buf, '-')
		buf = append(buf, idName(nameN(op.Path))...)
		buf = append(buf, `","writer_id":"`...)
		buf = append(buf, d.writer...)
		buf = append(buf, `","layer":"`...)
		buf = append(buf, d.layer...)
		buf = append(buf, `","path":"`...)
		buf = append(buf, op.Path...)
		buf = append(buf, `","database":"`...)
		buf = append(buf, d.db...)
		buf = append(buf, `","table":"`...)
		buf = append(buf, d.table...)
		buf = append(buf, `","time_s":`...)
		buf = strconv.AppendInt(buf, nowS+30, 10)
		buf = append(buf, '}')
		op.Drop = string(buf)
	}
}

// fitsGroups reports whether e's files add no dir more than 255 groups.
func (b *batch) fitsGroups(e *event.Event) bool {
	if b.queue.groups == nil {
		return true
	}
	fit := true
	e.Files(func(f *event.File, deleted bool) {
		if d, ok := b.dirs[[3]string{e.Database, e.Table, f.Dir()}]; ok && len(b.patch.Dirs[d].Groups) >= 250 {
			fit = false
		}
	})
	return fit
}

// floorDiv is a/b rounded towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
