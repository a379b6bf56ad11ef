// Package index maintains the GigAPI-compatible file index in Redis.
//
// Apply turns events into patch_index calls (internal/lua), each atomic
// and idempotent: a path is a state machine where delete wins, so applying
// any multiset of events in any order, any number of times, gives the index
// that applying each distinct event once gives. Get, Query and Stats read
// the index; Check recounts its counters from the entries; CollectTombstones
// removes tombstones no source can still need.
//
// Key names come only from Layout. In the cluster layout (see Layout) a
// patch_index call touches one Part (a table's date): Apply splits a batch
// into one call per Part, and readers merge the Parts of a table.
package index

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/failpoint"
	"github.com/streamindex/indexer/internal/lua"
	"github.com/streamindex/indexer/internal/redisconn"
)

// Client is the part of a Redis client the index uses. *redis.Client
// satisfies it.
type Client interface {
	redis.Scripter
	redis.HashCmdable
	redis.SetCmdable
	redis.SortedSetCmdable
	redis.ListCmdable
	redis.GenericCmdable
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

var (
	_ Client = (*redis.Client)(nil)
	_ Client = (*redis.ClusterClient)(nil)
)

// Config configures an Index. The zero value means the defaults.
type Config struct {
	// Layout names the keys. Default: NewLayout(DefaultPrefix).
	Layout *Layout
	// MaxEventsPerCall bounds the events of one patch_index call, so Redis
	// is never blocked long; the file operations of a call are also kept
	// under ten times this (a files.replaced event counts each of its files,
	// and is never split: a call holds at least one event). Default 1000.
	MaxEventsPerCall int
	// Now is the clock; tombstones are scored with it and queue items timed
	// with it. Default time.Now.
	Now func() time.Time
	// Queues configures the merge, move and drop queues. The zero value
	// keeps all three with GigAPI's defaults.
	Queues QueueConfig
	// Decoded promises that every event given to Apply was returned by an
	// event.Decoder, which validated it: Apply then does not validate it
	// again (the workers' hot path validates each message once). An
	// invalid event may then write malformed keys. Default false: Apply
	// validates every event first.
	Decoded bool
	// Wait, when enabled, confirms every patch_index call of Apply with
	// WAIT on the call's own connection (redisconn.Wait.Scripter, with the
	// layout's WaitBarrier key): a call fewer replicas confirmed in time
	// fails with redisconn.ErrNotReplicated, although it was applied on
	// the master (applying it again is harmless). The client must then
	// implement redisconn.Pipeliner, as *redis.Client does; the cluster
	// layout does not support it. Default: no waiting.
	Wait redisconn.Wait
}

// Index reads and writes the index. It is safe for concurrent use.
type Index struct {
	c         Client
	patcher   redis.Scripter // runs Apply's patch_index calls: c, or c confirmed by WAIT
	layout    Layout
	maxEvents int
	now       func() time.Time
	queue     *queueConf
	decoded   bool // Config.Decoded
}

// New returns an Index over c. It does not contact Redis; call Load.
func New(c Client, cfg Config) (*Index, error) {
	x := &Index{c: c, maxEvents: cfg.MaxEventsPerCall, now: cfg.Now, decoded: cfg.Decoded}
	if cfg.Layout != nil {
		x.layout = *cfg.Layout
	} else {
		x.layout, _ = NewLayout("")
	}
	if x.maxEvents == 0 {
		x.maxEvents = 1000
	}
	if x.maxEvents < 1 {
		return nil, errors.New("index: MaxEventsPerCall must be at least 1")
	}
	if x.now == nil {
		x.now = time.Now
	}
	var err error
	if x.queue, err = newQueueConf(cfg.Queues); err != nil {
		return nil, err
	}
	x.patcher = c
	if cfg.Wait.Enabled() && x.layout.cluster {
		// One Part's call, the barrier and WAIT would not share a node.
		return nil, errors.New("index: Config.Wait is not supported with the cluster layout")
	}
	if cfg.Wait.Enabled() {
		p, ok := c.(redisconn.Pipeliner)
		if !ok {
			return nil, fmt.Errorf("index: Config.Wait needs a client with pipelines, not %T", c)
		}
		x.patcher = cfg.Wait.Scripter(p, x.layout.WaitBarrier())
	}
	return x, nil
}

// Layout returns the key layout of the index.
func (x *Index) Layout() Layout { return x.layout }

// Load loads the scripts into Redis. Call it at start-up: a broken script or
// an unreachable server fails here rather than on the first batch.
func (x *Index) Load(ctx context.Context) error { return lua.Load(ctx, x.c) }

// Outcome is what applying one event did.
type Outcome = lua.Outcome

// Outcomes of an event. For files.replaced: Applied if any of its files
// changed state, else Ignored if a file was tombstoned, else Duplicate;
// Superseded if it completes a plan no longer leased with its token.
const (
	Applied    = lua.Applied
	Tombstoned = lua.Tombstoned
	Duplicate  = lua.Duplicate
	Ignored    = lua.Ignored
	Superseded = lua.Superseded
)

// AllOutcomes lists every outcome, for metrics and summaries.
var AllOutcomes = []Outcome{Applied, Tombstoned, Duplicate, Ignored, Superseded}

// Result is what Apply did.
type Result struct {
	// Outcomes has one outcome per event, in order.
	Outcomes []Outcome
	// Calls is the number of patch_index calls made.
	Calls int
}

// Count returns how many events had outcome o.
func (r Result) Count(o Outcome) int {
	n := 0
	for _, x := range r.Outcomes {
		if x == o {
			n++
		}
	}
	return n
}

// Apply applies events to the index in calls of at most MaxEventsPerCall
// events each. Every event is validated first (unless Config.Decoded
// says an event.Decoder did); an invalid one fails the whole Apply before
// anything is written. If a call fails, the calls before
// it stay applied; applying the same events again is harmless, so the
// caller retries the whole slice. On error the Result's Outcomes are
// incomplete. Apply does not retain events.
//
// In the cluster layout every call holds the events of one Part (a table's
// date, one hash slot), in their order; Apply first adds the Parts to the
// registry (one idempotent command), then makes the calls Part by Part, so
// a batch touching n Parts takes at least n calls, and a failure (or a
// crash) between two of them leaves the earlier Parts applied: the caller
// acknowledges only after Apply returned, and a batch delivered again is
// applied again without effect. A files.replaced event whose files lie in
// more than one date is invalid there (event.CheckSingleDate): no call can
// apply it atomically.
//
// A files.replaced event with a plan gets a call of its own: its outputs,
// its removals and the release of the plan's lease happen atomically. If
// the lease is no longer held with the plan's token (it expired and was
// delivered again, or was released), the event is Superseded: its
// removals are not applied (the inputs stay with the item's current
// holder) and its outputs that are not live are tombstoned and get drop
// items, since applying them would index the same rows twice. Replaying a
// committed event changes nothing. With every queue disabled, plans are
// ignored and the event applies as it would without one.
func (x *Index) Apply(ctx context.Context, events []event.Event) (Result, error) {
	for i := range events {
		var err error
		if !x.decoded {
			err = event.Validate(&events[i])
		}
		if err == nil && x.layout.cluster {
			err = event.CheckSingleDate(&events[i])
		}
		if err != nil {
			return Result{}, fmt.Errorf("index: event %d (id %q): %w", i, events[i].ID, err)
		}
	}
	res := Result{Outcomes: make([]Outcome, 0, len(events))}
	if !x.layout.cluster {
		err := x.applyCalls(ctx, events, &res)
		return res, err
	}
	// Group the events by Part, in order of first appearance.
	at := make(map[Part]int)
	var parts []Part
	var members [][]int
	for i := range events {
		p := x.partOf(&events[i])
		k, ok := at[p]
		if !ok {
			k = len(parts)
			at[p] = k
			parts = append(parts, p)
			members = append(members, nil)
		}
		members[k] = append(members[k], i)
	}
	if err := x.register(ctx, parts); err != nil {
		return res, err
	}
	res.Outcomes = res.Outcomes[:len(events)]
	sub := make([]event.Event, 0, len(events))
	var r Result
	for k := range parts {
		if k > 0 {
			failpoint.Inject(failpoint.BetweenParts)
		}
		sub = sub[:0]
		for _, i := range members[k] {
			sub = append(sub, events[i])
		}
		r.Outcomes = r.Outcomes[:0]
		err := x.applyCalls(ctx, sub, &r)
		res.Calls += r.Calls
		r.Calls = 0
		if err != nil {
			return Result{Calls: res.Calls}, err
		}
		for j, i := range members[k] {
			res.Outcomes[i] = r.Outcomes[j]
		}
	}
	return res, nil
}

// partOf returns the Part of a valid event (in the cluster layout, one
// whose files lie in one date).
func (x *Index) partOf(e *event.Event) Part {
	date := ""
	e.Files(func(f *event.File, _ bool) {
		if date == "" {
			date = f.Date()
		}
	})
	return x.layout.Part(e.Database, e.Table, date)
}

// register adds Parts to the registry (the cluster layout's Tables and
// Dates sets), in one pipelined round trip. It runs before the Parts'
// calls, so the registry lists every Part holding data.
func (x *Index) register(ctx context.Context, parts []Part) error {
	l := x.layout
	_, err := x.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		tables := make(map[[2]string]bool)
		for _, pt := range parts {
			if t := [2]string{pt.Database, pt.Table}; !tables[t] {
				tables[t] = true
				p.SAdd(ctx, l.Tables(), l.Member(pt.Database, pt.Table))
			}
			p.SAdd(ctx, l.Dates(pt.Database, pt.Table), pt.Date)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: register tables: %w", err)
	}
	return nil
}

// applyCalls applies events in calls of at most MaxEventsPerCall events,
// appending their outcomes to res.
func (x *Index) applyCalls(ctx context.Context, events []event.Event, res *Result) error {
	var b batch
	start := 0
	for i := range events {
		alone := events[i].Plan != nil && x.queue.enabled
		if i > start && (alone || !b.fits(&events[i], i-start, x.maxEvents)) {
			if err := x.call(ctx, &b, events[start:i], res); err != nil {
				return err
			}
			start = i
		}
		x.add(&b, &events[i])
		if alone {
			if err := x.call(ctx, &b, events[i:i+1], res); err != nil {
				return err
			}
			start = i + 1
		}
	}
	if start < len(events) {
		if err := x.call(ctx, &b, events[start:], res); err != nil {
			return err
		}
	}
	return nil
}

// call runs one patch_index call for the events gathered in b and folds
// the per-op outcomes into per-event outcomes. b is empty afterwards.
//
// fits bounds the sizes the events carry, but a delete need not carry
// its size: patch_index then refuses a call whose sizes, with those of
// the entries it deletes, sum beyond exact arithmetic (lua.IsRange), and
// call applies the events in two halves instead. A single event refused
// so fails.
func (x *Index) call(ctx context.Context, b *batch, events []event.Event, res *Result) error {
	err := x.call1(ctx, b, events, res)
	if err == nil || !lua.IsRange(err) || len(events) < 2 {
		b.reset()
		return err
	}
	mid := len(events) / 2
	for _, part := range [...][]event.Event{events[:mid], events[mid:]} {
		b.reset()
		for i := range part {
			x.add(b, &part[i])
		}
		if err := x.call(ctx, b, part, res); err != nil {
			return err
		}
	}
	return nil
}

func (x *Index) call1(ctx context.Context, b *batch, events []event.Event, res *Result) error {
	b.patch.NowMillis = x.now().UnixMilli()
	b.patch.Registry = ""
	if !x.layout.cluster {
		b.patch.Registry = x.layout.Tables()
	}
	b.patch.Queues = x.queue.enabled
	b.patch.Plan = nil
	if x.queue.enabled {
		b.dropItems(floorDiv(b.patch.NowMillis, 1000))
		if len(events) == 1 && events[0].Plan != nil {
			plan, err := x.patchPlan(ctx, &events[0])
			if err != nil {
				return err
			}
			b.patch.Plan = plan
		}
	}
	outs, err := x.patch(ctx, b)
	if err != nil {
		return err
	}
	res.Calls++
	i := 0
	for e := range events {
		n := events[e].NumFiles()
		res.Outcomes = append(res.Outcomes, eventOutcome(outs[i:i+n]))
		i += n
	}
	return nil
}

// patch runs patch_index for b. A delete naming another layer or writer
// than the published item listing its file still withdraws the file from
// that item (the path alone names a file): patch_index names the item's
// group, whose :idle list only it can find, and patch adds the list and
// calls again. Each round adds a list, so at most one round per op.
func (x *Index) patch(ctx context.Context, b *batch) ([]Outcome, error) {
	for range len(b.patch.Ops) + 1 {
		outs, err := lua.PatchIndex(ctx, x.patcher, &b.patch)
		var ig *lua.ItemGroupError
		if !errors.As(err, &ig) {
			return outs, err
		}
		if ig.Table >= len(b.names) {
			return nil, fmt.Errorf("index: %w", err)
		}
		t := b.names[ig.Table]
		q, qerr := x.layout.queueOf(t, ig.Group)
		if qerr != nil {
			return nil, qerr
		}
		b.patch.Alt = append(b.patch.Alt, lua.PatchAlt{Table: ig.Table, Group: ig.Group,
			Idle: b.queue.key(&b.patch, x.layout.Idle(q))})
	}
	return nil, errors.New("index: patch_index kept asking for more :idle lists")
}

func eventOutcome(ops []Outcome) Outcome {
	if len(ops) == 1 {
		return ops[0]
	}
	out := Duplicate
	for _, o := range ops {
		switch o {
		case Applied, Tombstoned:
			return Applied
		case Superseded:
			return Superseded
		case Ignored:
			out = Ignored
		}
	}
	return out
}

// batch gathers the events of one call into a lua.Patch.
type batch struct {
	patch  lua.Patch
	tables map[Part]int      // -> index in patch.Tables
	names  []Part            // the Parts of patch.Tables
	files  map[[3]string]int // (db, table, date) -> index in patch.Files
	dirs   map[[3]string]int // (db, table, dir) -> index in patch.Dirs
	size   int64             // sum of size_bytes of the call's files
	rows   int64             // sum of row_count of the call's files
	buf    []byte
	queue  queueBatch // with queues
}

// fits reports whether e can join a call holding n events without
// exceeding maxEvents events or 10×maxEvents file operations, or making a
// counter delta inexact in Lua (sums must stay below 2^53).
func (b *batch) fits(e *event.Event, n, maxEvents int) bool {
	if n >= maxEvents || len(b.patch.Ops)+e.NumFiles() > 10*maxEvents || !b.fitsGroups(e) {
		return false
	}
	size, rows := b.size, b.rows
	fit := true
	e.Files(func(f *event.File, deleted bool) {
		size += f.SizeBytes
		rows += f.RowCount
		if size > event.MaxSafeInt || rows > event.MaxSafeInt {
			fit = false
		}
	})
	return fit
}

func (x *Index) add(b *batch, e *event.Event) {
	l := x.layout
	if b.tables == nil {
		b.tables = make(map[Part]int)
		b.files = make(map[[3]string]int)
		b.dirs = make(map[[3]string]int)
		if x.queue.enabled {
			b.queue.groups = make(map[groupKey]int)
			b.queue.extra = make(map[string]int)
			b.queue.drops = make(map[string]int)
		}
	}
	part := x.partOf(e)
	t, ok := b.tables[part]
	if !ok {
		t = len(b.patch.Tables)
		b.tables[part] = t
		b.names = append(b.names, part)
		b.patch.Tables = append(b.patch.Tables, lua.PatchTable{
			Folders:    l.Folders(part),
			Tombstones: l.Tombstones(part),
			Stats:      l.Stats(part),
			Member:     l.Member(e.Database, e.Table),
			Queue:      l.QueueKeys(part),
		})
	}
	pt := &b.patch.Tables[t]
	pt.LastEventNanos = max(pt.LastEventNanos, e.Time)
	e.Files(func(f *event.File, deleted bool) {
		b.size += f.SizeBytes
		b.rows += f.RowCount
		dk := [3]string{e.Database, e.Table, f.Dir()}
		d, ok := b.dirs[dk]
		if !ok {
			fk := [3]string{e.Database, e.Table, f.Date()}
			g, ok := b.files[fk]
			if !ok {
				g = len(b.patch.Files)
				b.files[fk] = g
				b.patch.Files = append(b.patch.Files, lua.PatchFiles{
					Key: l.Files(e.Database, e.Table, f.Date()), Table: t, Date: f.Date(),
					Chunks: l.QueueChunks(e.Database, e.Table, f.Date()), Published: l.QueuePublished(e.Database, e.Table, f.Date()),
				})
			}
			d = len(b.patch.Dirs)
			b.dirs[dk] = d
			b.patch.Dirs = append(b.patch.Dirs, lua.PatchDir{Files: g, Name: f.Dir()})
		}
		op := lua.PatchOp{Delete: deleted, Dir: d, Path: f.Path}
		if !deleted {
			b.buf = appendEntry(b.buf[:0], e.Database, e.Table, f)
			op.Entry = string(b.buf)
			op.SizeBytes, op.RowCount = f.SizeBytes, f.RowCount
		}
		if x.queue.enabled {
			op.Group = x.group(b, e, part, f, d, deleted)
		}
		b.patch.Ops = append(b.patch.Ops, op)
	})
}

func (b *batch) reset() {
	b.patch.Tables = b.patch.Tables[:0]
	b.patch.Files = b.patch.Files[:0]
	b.patch.Dirs = b.patch.Dirs[:0]
	b.patch.Ops = b.patch.Ops[:0]
	b.patch.Drops = b.patch.Drops[:0]
	b.patch.Extra = b.patch.Extra[:0]
	b.patch.Alt = b.patch.Alt[:0]
	b.names = b.names[:0]
	clear(b.tables)
	clear(b.files)
	clear(b.dirs)
	b.queue.reset()
	b.size, b.rows = 0, 0
}
