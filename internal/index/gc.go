package index

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/failpoint"
)

// GCConfig configures GC. Zero fields mean the defaults.
type GCConfig struct {
	// MinAge: only tombstones last touched longer ago than this are
	// collected. Default 7 days; negative means no minimum age (the
	// source's oldest entry alone bounds the collection).
	MinAge time.Duration
	// Oldest returns when the oldest entry the source still holds was
	// stored, and false if it holds none. Required: it is what guarantees
	// that no replay can deliver a collected path's create again.
	Oldest func(ctx context.Context) (t time.Time, ok bool, err error)
	// Skew is taken off the oldest entry's time, for workers' clocks
	// (which score tombstones) running behind the source's (which stamps
	// entries). Default 5 minutes; negative means none.
	Skew time.Duration
	// DryRun counts the tombstones that would be collected, removes none
	// and takes no lock.
	DryRun bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DefaultTombstoneMinAge is GCConfig.MinAge's default.
const DefaultTombstoneMinAge = 7 * 24 * time.Hour

// GCReport is what GC did.
type GCReport struct {
	// Before: tombstones last touched before this time were collected.
	// It is the earlier of MinAgeBound and Oldest minus the skew.
	Before time.Time
	// MinAgeBound is now minus MinAge; zero without a minimum age.
	MinAgeBound time.Time
	// Oldest is when the source's oldest entry was stored; zero if the
	// source holds none.
	Oldest time.Time
	// Removed counts the tombstones removed (with DryRun: that would be).
	Removed int
	// Busy: another process holds the lock; nothing was done.
	Busy bool
	// Partial: the lease was about to run out before every table was
	// done; the rest is collected next time.
	Partial bool
	// Locked and Released bound the time GC held the lock (zero with
	// DryRun or Busy).
	Locked, Released time.Time
}

// GC collects the tombstones that no source can need any more: those last
// touched before both now minus MinAge and the source's oldest entry
// (minus Skew), so that no replay can deliver a collected path's create
// again and resurrect a deleted file. It holds lock while it works, so one
// process collects at a time: if another holds it, GC returns at once with
// Busy set. It works at most until the lease's end, less a margin, and
// then stops with Partial set; it releases the lock before it returns.
//
// A create delivered later than MinAge after its delete was applied (a
// writer publishing out of order, or a dead letter requeued long after)
// can resurrect a file whose tombstone was collected; MinAge is the margin
// against that.
func (x *Index) GC(ctx context.Context, lock *Lock, cfg GCConfig) (rep GCReport, err error) {
	if cfg.Oldest == nil {
		return rep, errors.New("index: gc: GCConfig.Oldest is required")
	}
	if cfg.MinAge == 0 {
		cfg.MinAge = DefaultTombstoneMinAge
	}
	if cfg.Skew == 0 {
		cfg.Skew = 5 * time.Minute
	}
	cfg.Skew = max(cfg.Skew, 0)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	work := ctx
	if !cfg.DryRun {
		ok, err := lock.TryAcquire(ctx)
		if err != nil {
			return rep, err
		}
		if !ok {
			rep.Busy = true
			return rep, nil
		}
		rep.Locked = time.Now()
		defer func() {
			lock.Release(context.WithoutCancel(ctx))
			rep.Released = time.Now()
		}()
		// Stop well before the lease ends: past it, another process may
		// take the lock.
		until := lock.Until()
		var cancel context.CancelFunc
		work, cancel = context.WithDeadline(ctx, until.Add(-time.Until(until)/4))
		defer cancel()
		failpoint.Inject(failpoint.GCLocked)
	}
	// The bound is computed under the lock, from fresh readings.
	now := cfg.Now()
	rep.Before = now
	if cfg.MinAge > 0 {
		rep.MinAgeBound = now.Add(-cfg.MinAge)
		rep.Before = rep.MinAgeBound
	}
	oldest, ok, err := cfg.Oldest(ctx)
	if err != nil {
		return rep, fmt.Errorf("index: gc: the source's oldest entry: %w", err)
	}
	if ok {
		rep.Oldest = oldest
		if b := oldest.Add(-cfg.Skew); b.Before(rep.Before) {
			rep.Before = b
		}
	}
	if cfg.DryRun {
		rep.Removed, err = x.CountTombstones(ctx, rep.Before)
		return rep, err
	}
	rep.Removed, err = x.CollectTombstones(work, rep.Before)
	if err != nil && work.Err() != nil && ctx.Err() == nil {
		rep.Partial, err = true, nil
	}
	return rep, err
}

// CountTombstones counts, in every Part of every registered table, the
// tombstones last touched before `before`.
func (x *Index) CountTombstones(ctx context.Context, before time.Time) (int, error) {
	tables, err := x.Tables(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, t := range tables {
		n, err := x.countTombstones(ctx, t[0], t[1], fmt.Sprintf("(%d", before.UnixMilli()))
		if err != nil {
			return total, err
		}
		total += int(n)
	}
	return total, nil
}

// Tombstones counts a table's tombstones.
func (x *Index) Tombstones(ctx context.Context, db, table string) (int64, error) {
	return x.countTombstones(ctx, db, table, "+inf")
}

// countTombstones counts a table's tombstones scored up to max (a ZCOUNT
// bound), over its Parts.
func (x *Index) countTombstones(ctx context.Context, db, table, max string) (int64, error) {
	parts, err := x.Parts(ctx, db, table)
	if err != nil {
		return 0, err
	}
	cmds := make([]*redis.IntCmd, len(parts))
	_, err = x.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.ZCount(ctx, x.layout.Tombstones(p), "-inf", max)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("index: tombstones of %s.%s: %w", db, table, err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
