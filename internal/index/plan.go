package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/lua"
)

// ErrNoItem is returned by Next when no item of the queue is due.
var ErrNoItem = errors.New("index: no item is due")

// ErrStaleLease is returned (wrapped) by Done when the lease is no longer
// held with the token: it was delivered again to another worker, or done.
var ErrStaleLease = lua.ErrStaleLease

// ErrQueuesOff is returned by Publish, Next and Done when the queue asked
// for is not kept (QueueConfig.Disable).
var ErrQueuesOff = errors.New("index: the queue is not kept (see --queues)")

// PlanKind is a queue: event.PlanMerge, event.PlanMove or PlanDrop.
type PlanKind = event.PlanKind

// PlanDrop is the drop queue, which files.replaced events never complete.
const PlanDrop PlanKind = "drop"

// QueueRef selects a queue of a table: GigAPI's compactor, mover and
// dropper each work one at a time.
type QueueRef struct {
	Kind            PlanKind
	Database, Table string
	Layer           string
	Writer          string // usually ""
	// Iteration selects the merge iteration N; 0 takes any. Unused for
	// moves and drops.
	Iteration int
}

// Lease is an item leased by Next.
type Lease struct {
	Kind        PlanKind        `json:"kind"`
	Database    string          `json:"database"`
	Table       string          `json:"table"`
	Layer       string          `json:"layer"`
	Writer      string          `json:"writer_id"`
	Iteration   int             `json:"iteration,omitempty"` // merge: N of the inputs
	Folder      string          `json:"folder,omitempty"`    // the folder of the item's files (merge, move)
	ID          string          `json:"id"`
	Token       string          `json:"token"`
	ExpiresUnix int64           `json:"expires"`    // lease expiry, Unix seconds (the item's time_s)
	Processing  string          `json:"processing"` // the :processing list holding the item
	Item        json.RawMessage `json:"item"`       // the item as GigAPI's workers read it
}

// patchPlan returns the plan of a files.replaced event for patch_index:
// where its leased item is, or Stale when it is not leased at all.
//
// In the cluster layout the item's lease is looked up in the event's Part:
// a plan completed by files of another date (which GigAPI's merges and
// moves never produce) finds no lease there, and is superseded.
func (x *Index) patchPlan(ctx context.Context, e *event.Event) (*lua.PatchPlan, error) {
	part := x.partOf(e)
	k := x.layout.QueueKeys(part)
	rec, err := x.c.HGet(ctx, k.State, "l"+e.Plan.ID).Result()
	if errors.Is(err, redis.Nil) {
		return &lua.PatchPlan{Stale: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("index: plan %s: %w", e.Plan.ID, err)
	}
	_, _, gid, err := parseLease(rec)
	if err != nil || gid == "" || gid[0] != kindLetter(e.Plan.Kind) || gid[0] == 'd' {
		// Not a lease of the kind the event completes.
		return &lua.PatchPlan{Stale: true}, nil
	}
	q, err := x.layout.queueOf(part, gid)
	if err != nil {
		return &lua.PatchPlan{Stale: true}, nil
	}
	return &lua.PatchPlan{Processing: x.layout.Processing(q), Leases: k.Leases, ID: e.Plan.ID, Token: e.Plan.Token}, nil
}

// parseLease splits a lease record "<token> <expiry> <group>".
func parseLease(rec string) (token string, expiry int64, gid string, err error) {
	f := strings.Fields(rec)
	if len(f) != 3 {
		return "", 0, "", fmt.Errorf("index: lease record %q is malformed", rec)
	}
	expiry, err = strconv.ParseInt(f[1], 10, 64)
	return f[0], expiry, f[2], err
}

// record is a pending queue item record (see internal/lua/queue.go):
// "<kind> <time_s> <id> <group>".
type record struct {
	seq   string
	kind  byte // 'm' merge, 'v' move batch
	timeS int64
	id    string // merge: its id; move batch: the hash of its ids
	gid   string
}

func parseRecord(seq, v string) (record, error) {
	r := record{seq: seq}
	f := strings.Fields(v)
	if len(f) != 4 || len(f[0]) != 1 {
		return r, fmt.Errorf("index: queue record %s %q is malformed", seq, v)
	}
	r.kind = f[0][0]
	var err error
	if r.timeS, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return r, fmt.Errorf("index: queue record %s %q is malformed", seq, v)
	}
	r.id, r.gid = f[2], f[3]
	return r, nil
}

// kindLetter is the letter of a queue kind in group IDs and item ids.
func kindLetter(k PlanKind) byte {
	switch k {
	case event.PlanMerge:
		return 'm'
	case event.PlanMove:
		return 'v'
	case PlanDrop:
		return 'd'
	}
	return 0
}

// matches reports whether a record's group belongs to queue ref.
func (ref QueueRef) matches(gid string) bool {
	kind, n, _, layer, writer, ok := groupParts(gid)
	return ok && kind == kindLetter(ref.Kind) && layer == ref.Layer && writer == ref.Writer &&
		(kind != 'm' || ref.Iteration == 0 || n == ref.Iteration)
}

// publishBatch bounds the items one queue_publish call publishes.
const publishBatch = 256

// Publish publishes every merge and move item that is due into its :idle
// list, in every Part of every registered table, and returns how many
// items it pushed.
// GigAPI's compactor and mover can only take an item once it is due, so
// items wait under indexer's own keys until then; 'indexer run' calls
// Publish every --publish-interval, and Next publishes the table's due
// items itself. Safe for concurrent use by many processes.
func (x *Index) Publish(ctx context.Context) (int, error) {
	if x.queue.kinds&(MergeQueue|MoveQueue) == 0 {
		return 0, nil
	}
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
		if parts, err = x.due(ctx, parts); err != nil {
			return total, err
		}
		for _, p := range parts {
			n, err := x.publishPart(ctx, p)
			total += n
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// due returns the Parts among parts with an item due for publication, in
// one pipelined round trip (with a single Part, it is returned as is).
func (x *Index) due(ctx context.Context, parts []Part) ([]Part, error) {
	if len(parts) < 2 {
		return parts, nil
	}
	max := strconv.FormatInt(x.now().Unix(), 10)
	cmds := make([]*redis.IntCmd, len(parts))
	_, err := x.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.ZCount(ctx, x.layout.QueueKeys(p).Pending, "-inf", max)
		}
		return nil
	})
	if err != nil {
		return nil, wrapQueueErr("publish", err)
	}
	out := parts[:0:0]
	for i, c := range cmds {
		if c.Val() > 0 {
			out = append(out, parts[i])
		}
	}
	return out, nil
}

// publishPart publishes the due items of one Part.
func (x *Index) publishPart(ctx context.Context, part Part) (int, error) {
	k := x.layout.QueueKeys(part)
	total := 0
	for {
		nowS := x.now().Unix()
		seqs, err := x.c.ZRangeByScore(ctx, k.Pending, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(nowS, 10), Count: publishBatch}).Result()
		if err != nil || len(seqs) == 0 {
			return total, wrapQueueErr("publish", err)
		}
		fields := make([]string, len(seqs))
		for i, s := range seqs {
			fields[i] = "i" + s
		}
		vals, err := x.c.HMGet(ctx, k.State, fields...).Result()
		if err != nil {
			return total, wrapQueueErr("publish", err)
		}
		items := make([]lua.PublishItem, 0, len(seqs))
		for i, v := range vals {
			it := lua.PublishItem{Seq: seqs[i]}
			if s, ok := v.(string); ok {
				r, err := parseRecord(seqs[i], s)
				if err != nil {
					return total, err
				}
				if it, err = x.publishItem(part, r); err != nil {
					return total, err
				}
			} else {
				// No record: the script drops the pending entry. Any
				// valid key of the right type does for the rest.
				it.Files, it.Chunks, it.Published, it.Idle = k.State, k.State, k.State, k.State
			}
			items = append(items, it)
		}
		n, done, err := lua.QueuePublish(ctx, x.c, k, nowS, items)
		total += n
		if err != nil {
			return total, fmt.Errorf("index: %w", err)
		}
		if len(seqs) < publishBatch || done == 0 {
			// All due items read, or no progress (they changed meanwhile):
			// the next Publish picks up the rest.
			return total, nil
		}
	}
}

// publishItem lays out the keys (and, for moves, the JSON) of a pending
// item for queue_publish.
func (x *Index) publishItem(part Part, r record) (lua.PublishItem, error) {
	db, table := part.Database, part.Table
	kind, _, dir, layer, writer, ok := groupParts(r.gid)
	if !ok || kind != r.kind || len(dir) != len("date=2006-01-02/hour=15") {
		return lua.PublishItem{}, fmt.Errorf("index: queue record %s names group %q", r.seq, r.gid)
	}
	q, _ := x.layout.queueOf(part, r.gid)
	date := dir[:len("date=2006-01-02")]
	it := lua.PublishItem{Seq: r.seq, Files: x.layout.Files(db, table, date), Chunks: x.layout.QueueChunks(db, table, date),
		Published: x.layout.QueuePublished(db, table, date), Idle: x.layout.Idle(q)}
	if kind == 'v' {
		it.Move = &lua.MoveJSON{
			IDPrefix:  "v" + r.id + "-",
			Mid:       `","writer_id":"` + writer + `","database":"` + db + `","table":"` + table + `","path_from":"`,
			To:        `","path_to":"`,
			Tail:      `","layer_to":"` + x.queue.layers[layer].next + `","time_s":` + strconv.FormatInt(r.timeS, 10) + `}`,
			Seed:      db + "\x00" + table + "\x00" + layer + "\x00",
			LayerFrom: layer,
		}
	}
	return it, nil
}

func wrapQueueErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("index: %s: %w", what, err)
}

// candidates bounds the records Next considers per read.
const candidates = 500

// Next leases the next due item of queue ref: an expired lease of the
// queue first (delivered again under a new token), else the due item
// with the earliest time_s (for drops, the head of the :idle list, as
// GigAPI's dropper takes it). The item moves to its :processing list with
// time_s = now + the lease, as GigAPI's lease script does, and the lease
// gets a fencing token; Done with that token releases it, and a
// files.replaced naming it as its plan completes it. Each lease is one
// atomic script call; the reads before it only choose the candidate.
// Returns ErrNoItem when nothing is due.
//
// In the cluster layout, where each Part (a table's date) has its own
// queues, Next looks at the Parts oldest date first: an expired lease in
// any of them first, then the first Part with a due item.
func (x *Index) Next(ctx context.Context, ref QueueRef) (Lease, error) {
	if err := x.checkRef(ref); err != nil {
		return Lease{}, err
	}
	parts, err := x.Parts(ctx, ref.Database, ref.Table)
	if err != nil {
		return Lease{}, err
	}
	for _, p := range parts {
		if l, err := x.redeliver(ctx, ref, p); err == nil || !errors.Is(err, ErrNoItem) {
			return l, err
		}
	}
	for _, p := range parts {
		if l, err := x.next(ctx, ref, p); err == nil || !errors.Is(err, ErrNoItem) {
			return l, err
		}
	}
	return Lease{}, ErrNoItem
}

// next leases the next due item of ref's queue in one Part.
func (x *Index) next(ctx context.Context, ref QueueRef, part Part) (Lease, error) {
	k := x.layout.QueueKeys(part)
	if ref.Kind == PlanDrop {
		q := x.layout.DropQueue(part, ref.Layer, ref.Writer)
		nowS := x.now().Unix()
		r, err := lua.QueueLeaseDrop(ctx, x.c, k, x.layout.Idle(q), x.layout.Processing(q),
			groupID('d', 0, "", ref.Layer, ref.Writer), nowS, nowS+x.queue.leaseS)
		if err != nil {
			return Lease{}, fmt.Errorf("index: %w", err)
		}
		if r.Status != lua.LeaseOK {
			return Lease{}, ErrNoItem
		}
		return x.lease(ref, x.layout.Processing(q), "", 0, r, nowS+x.queue.leaseS), nil
	}
	if _, err := x.publishPart(ctx, part); err != nil {
		return Lease{}, err
	}
	for range 8 {
		nowS := x.now().Unix()
		ids, gids, err := x.ready(ctx, ref, k, nowS)
		if err != nil || len(ids) == 0 {
			if err == nil {
				err = ErrNoItem
			}
			return Lease{}, err
		}
		for i, id := range ids {
			_, n, dir, _, _, _ := groupParts(gids[i])
			q, err := x.layout.queueOf(part, gids[i])
			if err != nil {
				return Lease{}, err
			}
			expiry := nowS + x.queue.leaseS
			res, err := lua.QueueLease(ctx, x.c, k, x.layout.Processing(q), x.layout.Idle(q),
				x.layout.QueuePublished(ref.Database, ref.Table, dir[:len("date=2006-01-02")]), id, nowS, expiry)
			if err != nil {
				return Lease{}, fmt.Errorf("index: %w", err)
			}
			if res.Status == lua.LeaseOK {
				return x.lease(ref, x.layout.Processing(q), dir, n, res, expiry), nil
			}
		}
	}
	return Lease{}, ErrNoItem
}

func (x *Index) lease(ref QueueRef, processing, folder string, n int, r lua.Leased, expiry int64) Lease {
	return Lease{Kind: ref.Kind, Database: ref.Database, Table: ref.Table, Layer: ref.Layer, Writer: ref.Writer,
		Iteration: n, Folder: folder, ID: r.ID, Token: r.Token, ExpiresUnix: expiry, Processing: processing,
		Item: json.RawMessage(r.JSON)}
}

func (x *Index) checkRef(ref QueueRef) error {
	var need QueueKinds
	switch ref.Kind {
	case event.PlanMerge:
		need = MergeQueue
	case event.PlanMove:
		need = MoveQueue
	case PlanDrop:
		need = DropQueue
	default:
		return fmt.Errorf("index: queue kind %q: use merge, move or drop", ref.Kind)
	}
	if x.queue.kinds&need == 0 {
		return ErrQueuesOff
	}
	for _, n := range []string{ref.Database, ref.Table, ref.Layer} {
		if !event.ValidName(n) {
			return fmt.Errorf("index: %q is not a valid database, table or layer name", n)
		}
	}
	if ref.Writer != "" && !event.ValidName(ref.Writer) {
		return fmt.Errorf("index: writer %q is not a valid name", ref.Writer)
	}
	return nil
}

// redeliver delivers again the earliest expired lease of ref's queue in
// one Part.
func (x *Index) redeliver(ctx context.Context, ref QueueRef, part Part) (Lease, error) {
	k := x.layout.QueueKeys(part)
	nowS := x.now().Unix()
	for off := int64(0); ; off += candidates {
		ids, err := x.c.ZRangeByScore(ctx, k.Leases, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(nowS, 10),
			Offset: off, Count: candidates}).Result()
		if err != nil {
			return Lease{}, wrapQueueErr("next", err)
		}
		if len(ids) == 0 {
			return Lease{}, ErrNoItem
		}
		fields := make([]string, len(ids))
		for i, id := range ids {
			fields[i] = "l" + id
		}
		recs, err := x.c.HMGet(ctx, k.State, fields...).Result()
		if err != nil {
			return Lease{}, wrapQueueErr("next", err)
		}
		for i, v := range recs {
			s, _ := v.(string)
			_, _, gid, err := parseLease(s)
			if err != nil || !ref.matches(gid) {
				continue
			}
			q, err := x.layout.queueOf(part, gid)
			if err != nil {
				continue
			}
			expiry := nowS + x.queue.leaseS
			r, err := lua.QueueRedeliver(ctx, x.c, k, x.layout.Processing(q), ids[i], nowS, expiry)
			if err != nil {
				return Lease{}, fmt.Errorf("index: %w", err)
			}
			if r.Status == lua.LeaseOK {
				_, n, folder, _, _, _ := groupParts(gid)
				return x.lease(ref, x.layout.Processing(q), folder, n, r, expiry), nil
			}
		}
		if len(ids) < candidates {
			return Lease{}, ErrNoItem
		}
	}
}

// ready returns the ids and groups of ref's published items, earliest
// time_s first.
func (x *Index) ready(ctx context.Context, ref QueueRef, k lua.QueueKeys, nowS int64) (ids, gids []string, err error) {
	for off := int64(0); ; off += candidates {
		zs, err := x.c.ZRangeByScore(ctx, k.Ready, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(nowS, 10),
			Offset: off, Count: candidates}).Result()
		if err != nil {
			return nil, nil, wrapQueueErr("next", err)
		}
		if len(zs) == 0 {
			return ids, gids, nil
		}
		fields := make([]string, len(zs))
		for i, id := range zs {
			fields[i] = "G" + id
		}
		vals, err := x.c.HMGet(ctx, k.State, fields...).Result()
		if err != nil {
			return nil, nil, wrapQueueErr("next", err)
		}
		for i, v := range vals {
			if gid, ok := v.(string); ok && ref.matches(gid) {
				ids, gids = append(ids, zs[i]), append(gids, gid)
			}
		}
		if len(ids) >= 16 || len(zs) < candidates {
			return ids, gids, nil
		}
	}
}

// Done releases the lease of item id of queue ref held with token,
// removing the item from its :processing list: the worker finished it
// (GigAPI's EndMerge/EndMove/EndDrop). One atomic call. A stale token (the
// lease was delivered again, or released) fails with an error wrapping
// ErrStaleLease and changes nothing.
//
// ref needs Kind, Database and Table; Layer and Writer, when Layer is set,
// must be those of the item's queue.
func (x *Index) Done(ctx context.Context, ref QueueRef, id, token string) error {
	check := ref
	if check.Layer == "" {
		check.Layer = "x"
	}
	if err := x.checkRef(check); err != nil {
		return err
	}
	part, rec, err := x.findLease(ctx, ref.Database, ref.Table, id)
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("index: %w: item %s is not leased: it was done already, or its lease was taken over and completed; nothing was changed", ErrStaleLease, id)
	}
	if err != nil {
		return wrapQueueErr("done", err)
	}
	k := x.layout.QueueKeys(part)
	_, _, gid, err := parseLease(rec)
	if err != nil {
		return err
	}
	if gid == "" || gid[0] != kindLetter(ref.Kind) || (ref.Layer != "" && !ref.matches(gid)) {
		return fmt.Errorf("index: item %s is leased from queue %s, not from the %s queue asked for", id, gid, ref.Kind)
	}
	q, err := x.layout.queueOf(part, gid)
	if err != nil {
		return err
	}
	if err := lua.QueueDone(ctx, x.c, k, x.layout.Processing(q), id, token); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// findLease returns the Part holding the lease record of item id of a
// table, and the record; redis.Nil if none does. (In the cluster layout it
// asks every Part of the table, in one pipelined round trip.)
func (x *Index) findLease(ctx context.Context, db, table, id string) (Part, string, error) {
	parts, err := x.Parts(ctx, db, table)
	if err != nil {
		return Part{}, "", err
	}
	cmds := make([]*redis.StringCmd, len(parts))
	_, err = x.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.HGet(ctx, x.layout.QueueKeys(p).State, "l"+id)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Part{}, "", err
	}
	for i, c := range cmds {
		if rec, err := c.Result(); err == nil {
			return parts[i], rec, nil
		}
	}
	return Part{}, "", redis.Nil
}

// Expires returns the lease expiry as a time.
func (l Lease) Expires() time.Time { return time.Unix(l.ExpiresUnix, 0) }
