package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/progress"
)

func init() {
	register(&command{
		name:    "adopt",
		summary: "take over an index GigAPI's library wrote: check every entry as GigAPI's reader reads it, register the tables, rebuild their counters (--dry-run first)",
		setup:   setupAdopt,
	})
}

func setupAdopt(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	dryRun := fs.Bool("dry-run", false, "report what adopt would change and change nothing")
	repair := fs.Bool("repair", false, "rewrite the entries GigAPI's reader cannot read (numbers in exponent form) in the exact form, where that loses nothing")
	restart := fs.Bool("restart", false, "adopt every key again instead of resuming a run that was interrupted")
	layers := fs.String("layers", "*", "the `layers` GigAPI's readers have configured (name[:ttl],…); entries naming another are reported. \"*\" checks no layer")
	list := fs.Int("list", 20, "list at most `N` unreadable entries (all are counted)")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if *dryRun && (*repair || *restart) {
			return usagef("--dry-run changes nothing: drop --repair and --restart, or --dry-run")
		}
		ls, err := parseLayers(*layers)
		if err != nil {
			return err
		}
		cfg := index.AdoptConfig{DryRun: *dryRun, Repair: *repair, Restart: *restart, MaxListed: max(*list, 0)}
		if ls != nil {
			cfg.Layers = map[string]bool{}
			for _, l := range ls {
				cfg.Layers[l.Name] = true
			}
		}
		x, c, err := ro.openIndex(ctx, index.Config{})
		if err != nil {
			return err
		}
		defer c.Close()
		bar := progress.New(a.stderr, a.stderrTTY, "entries checked", 0)
		cfg.Total = bar.SetTotal
		cfg.Progress = func(n int) { bar.Add(int64(n)) }
		bar.Start()
		rep, err := x.Adopt(ctx, cfg)
		bar.Stop()
		printAdopt(a.stdout, rep, cfg)
		if err != nil {
			return fmt.Errorf("%v (interrupted: run adopt again to resume; what it completed stays done)", err)
		}
		if left := rep.Unreadable - rep.Repaired; left > 0 && !*dryRun {
			return fmt.Errorf("%d entries GigAPI's reader cannot read are left (listed above)%s", left, repairHint(rep, cfg))
		}
		return nil
	}
}

func repairHint(rep index.AdoptReport, cfg index.AdoptConfig) string {
	if rep.Repairable > rep.Repaired && !cfg.Repair {
		return fmt.Sprintf("; %d can be rewritten exactly: run adopt --repair", rep.Repairable)
	}
	return "; fix or delete the others by hand, then run adopt again"
}

// printAdopt writes adopt's summary: what it changed (or, in a dry run,
// would change) and what it left alone.
func printAdopt(w io.Writer, rep index.AdoptReport, cfg index.AdoptConfig) {
	verb, did := "set", "changed"
	if cfg.DryRun {
		verb, did = "would set", "would change"
	}
	for _, u := range rep.Listed {
		fmt.Fprintf(w, "unreadable: %s\n", u)
	}
	if n := rep.Unreadable - int64(len(rep.Listed)); n > 0 {
		fmt.Fprintf(w, "... and %d more unreadable entries (--list N shows more)\n", n)
	}
	for _, f := range rep.Fixes {
		fmt.Fprintf(w, "counter: %s %s\n", verb, f)
	}
	for _, k := range rep.NotKeys {
		fmt.Fprintf(w, "left alone: %s (not a files key of a table and date; GigAPI's readers never read it)\n", k)
	}
	fmt.Fprintf(w, "tables:      %d (%d not registered before)\n", len(rep.Tables), rep.NewTables)
	fmt.Fprintf(w, "keys:        %d checked, %d done by an interrupted run and skipped\n", rep.Keys, rep.Resumed)
	fmt.Fprintf(w, "entries:     %d checked, %d unreadable by GigAPI's reader (%d repairable), %d rewritten\n",
		rep.Entries, rep.Unreadable, rep.Repairable, rep.Repaired)
	fmt.Fprintf(w, "counters:    %d %s (folder counts and statistics, from the entries)\n", len(rep.Fixes), did)
	for _, p := range rep.ItemProblems {
		fmt.Fprintf(w, "queue item: %s\n", p)
	}
	if cfg.DryRun {
		fmt.Fprintf(w, "queue items: %d merge and move items in :idle lists not published by indexer would be adopted\n", rep.Items)
	} else {
		fmt.Fprintf(w, "queue items: %d merge and move items in :idle lists not published by indexer, %d adopted (a delete now withdraws them)\n", rep.Items, rep.ItemsAdopted)
	}
	if rep.LiveTombstoned > 0 {
		fmt.Fprintf(w, "warning: %d paths have an entry and a tombstone (written after indexer deleted them; their files may be gone): left as they are; 'indexer backfill --reconcile' finds entries without a file\n", rep.LiveTombstoned)
	}
	switch {
	case cfg.DryRun:
		fmt.Fprintln(w, "dry run: nothing changed")
	case len(rep.Fixes) == 0 && rep.Repaired == 0 && rep.NewTables == 0 && rep.ItemsAdopted == 0:
		fmt.Fprintln(w, "nothing changed: the index was adopted already")
	default:
		fmt.Fprintln(w, "entries were not changed except those rewritten; nothing was deleted")
	}
}

// repairCounters is check --repair: it recounts the tables (nil: every
// registered one) and sets the counters that differ, listing each.
func repairCounters(ctx context.Context, a *app, x *index.Index, tables [][2]string) error {
	if tables == nil {
		var err error
		if tables, err = x.Tables(ctx); err != nil {
			return err
		}
	}
	n := 0
	for _, t := range tables {
		fixes, err := x.Recount(ctx, t[0], t[1], true)
		for _, f := range fixes {
			fmt.Fprintf(a.stdout, "repaired: %s\n", f)
		}
		n += len(fixes)
		if err != nil {
			return fmt.Errorf("%v (%d counters repaired before the failure; check --repair again is safe)", err, n)
		}
	}
	fmt.Fprintf(a.stdout, "repaired %d counters in %d tables; entries were not changed\n", n, len(tables))
	return nil
}
