package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/index"
)

func init() {
	register(&command{
		name: "gc",
		summary: "collect the tombstones no replay can need any more: older than --tombstone-min-age and than the stream's oldest entry; " +
			"one process at a time (a Redis lock); prints how many it removed",
		setup: setupGC,
	})
}

// gcLockTTL bounds a tombstone collection; it stops well before.
const gcLockTTL = 5 * time.Minute

// gcOptions are the tombstone collection flags of gc and run.
type gcOptions struct {
	minAge   time.Duration
	interval time.Duration
}

func addGCFlags(fs *flag.FlagSet, periodic bool) *gcOptions {
	o := &gcOptions{}
	durationVar(fs, &o.minAge, "tombstone-min-age", index.DefaultTombstoneMinAge, "the stream bound only",
		"collect only tombstones last touched longer ago than this age (and before the stream's oldest entry)")
	if periodic {
		durationVar(fs, &o.interval, "gc-interval", time.Hour, "never",
			"collect tombstones about this often (one worker at a time, under a Redis lock)")
	}
	return o
}

func (o *gcOptions) config(oldest func(context.Context) (time.Time, bool, error), dryRun bool) index.GCConfig {
	minAge := o.minAge
	if minAge == 0 {
		minAge = -1 // no minimum: GCConfig's zero is the default
	}
	return index.GCConfig{MinAge: minAge, Oldest: oldest, DryRun: dryRun}
}

// gcDoc is the JSON report of 'indexer gc'.
type gcDoc struct {
	Removed    int        `json:"removed"`
	DryRun     bool       `json:"dry_run,omitempty"`
	Busy       bool       `json:"busy,omitempty"`
	Partial    bool       `json:"partial,omitempty"`
	Before     *time.Time `json:"before,omitempty"`
	MinAgeTime *time.Time `json:"min_age_bound,omitempty"`
	Oldest     *time.Time `json:"oldest_entry,omitempty"`
	Lock       string     `json:"lock"`
}

func setupGC(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	oo := addOpsFlags(fs)
	gco := addGCFlags(fs, false)
	dryRun := fs.Bool("dry-run", false, "count the tombstones that would be removed; remove none")
	format := fs.String("format", "text", "output `format`: text or json")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if *format != "text" && *format != "json" {
			return usagef("--format %q: use text or json", *format)
		}
		if gco.minAge < 0 {
			return usagef("--tombstone-min-age must not be negative")
		}
		c, err := oo.open(ctx, a, writesIndex)
		if err != nil {
			return err
		}
		defer c.close()
		lock, err := index.NewLock(c.rc, c.x.Layout().Lock("gc"), gcLockTTL)
		if err != nil {
			return err
		}
		rep, err := c.x.GC(ctx, lock, gco.config(c.oldest(oo.so), *dryRun))
		if err != nil {
			return explainRun(err, oo.so)
		}
		if *format == "json" {
			doc := gcDoc{Removed: rep.Removed, DryRun: *dryRun, Busy: rep.Busy, Partial: rep.Partial, Lock: lock.Key()}
			opt := func(t time.Time) *time.Time {
				if t.IsZero() {
					return nil
				}
				t = t.UTC()
				return &t
			}
			doc.Before, doc.MinAgeTime, doc.Oldest = opt(rep.Before), opt(rep.MinAgeBound), opt(rep.Oldest)
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(doc)
		}
		fmt.Fprintln(a.stdout, describeGC(rep, *dryRun, lock.Key(), oo.so.stream))
		return nil
	}
}

func describeGC(rep index.GCReport, dryRun bool, lock, stream string) string {
	if rep.Busy {
		return fmt.Sprintf("another process is collecting tombstones (it holds the lock %s); nothing done", lock)
	}
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	s := fmt.Sprintf("%s %d tombstones last touched before %s", verb, rep.Removed, utc(rep.Before))
	switch {
	case rep.Oldest.IsZero():
		s += fmt.Sprintf(" (stream %s is empty; bound by --tombstone-min-age)", stream)
	case !rep.MinAgeBound.IsZero() && !rep.MinAgeBound.After(rep.Before):
		s += fmt.Sprintf(" (bound by --tombstone-min-age; the oldest entry of %s is from %s)", stream, utc(rep.Oldest))
	default:
		s += fmt.Sprintf(" (bound by the oldest entry of %s, from %s, less 5 minutes for clock skew)", stream, utc(rep.Oldest))
	}
	if rep.Partial {
		s += "; stopped before its lock ran out, the rest is collected next time"
	}
	return s
}

// startGC runs tombstone collection in the background every interval (the
// first after a random part of it, so workers started together spread
// out), until ctx is done; the returned function stops it and waits. With
// interval 0 it does nothing.
func startGC(ctx context.Context, o *gcOptions, x *index.Index, rc redis.UniversalClient,
	oldest func(context.Context) (time.Time, bool, error), log *slog.Logger) (stop func()) {
	if o.interval <= 0 || o.minAge < 0 {
		if o.minAge < 0 {
			log.Error("--tombstone-min-age is negative: tombstone collection is disabled")
		}
		return func() {}
	}
	lock, err := index.NewLock(rc, x.Layout().Lock("gc"), gcLockTTL)
	if err != nil {
		log.Error("tombstone collection disabled", "err", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wait := o.interval/2 + rand.N(o.interval/2+1)
		for {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = o.interval
			start := time.Now()
			rep, err := x.GC(ctx, lock, o.config(oldest, false))
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn("tombstone collection failed; trying again later", "err", err, "retry_in", wait)
			case err != nil:
			case rep.Busy:
				log.Info("tombstone collection skipped: another worker holds the lock", "lock", lock.Key())
			default:
				log.Info("tombstones collected", "removed", rep.Removed, "before", rep.Before.UTC(), "oldest_entry", rep.Oldest.UTC(),
					"partial", rep.Partial, "took", time.Since(start), "lock", lock.Key(),
					"locked_at", rep.Locked.UTC(), "released_at", rep.Released.UTC())
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}
