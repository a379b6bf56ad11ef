package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/streamindex/indexer/internal/bench"
)

func init() {
	register(&command{
		name: "bench",
		summary: "measure throughput, latency, Redis CPU per event and scaling against the ceilings and a naive baseline, " +
			"on loopback servers of its own (several minutes; --quick for a smoke check)",
		setup: setupBench,
	})
}

func setupBench(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	jsonPath := fs.String("json", "", "also write the report as JSON to this `file` (every figure's median at the top level)")
	quick := fs.Bool("quick", false, "a reduced run for smoke checks (one repeat, 50,000 events, indexes up to 100,000 files), under 2 minutes")
	repeats := fs.Int("repeats", 0, "measure each figure this many `times` (default 3; 1 with --quick)")
	events := fs.Int("events", 0, "`events` per end-to-end and ceiling run (default 200,000; 50,000 with --quick)")
	parts := fs.String("only", "", "measure only these comma-separated `parts`: "+strings.Join(bench.AllParts, ", ")+" (latency needs e2e)")
	redisServer := fs.String("redis-server", "redis-server", "redis-server `executable` to start")
	natsServer := fs.String("nats-server", "nats-server", "nats-server `executable` to start in its own process, as operators run it, for the NATS ceiling, end-to-end and latency runs (make bench builds bin/nats-server)")
	dir := fs.String("tmpdir", "", "create the servers' temporary data directory under this `dir` (default the system's temporary directory)")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if *repeats < 0 || *events < 0 {
			return usagef("--repeats and --events must not be negative")
		}
		bin, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the indexer executable to start workers with: %w", err)
		}
		cfg := bench.Config{}
		if *quick {
			cfg = bench.Quick()
		}
		cfg.WorkerBinary, cfg.RedisServer, cfg.NATSServer, cfg.Dir = bin, *redisServer, *natsServer, *dir
		if *repeats > 0 {
			cfg.Repeats = *repeats
		}
		if *events > 0 {
			cfg.Events = *events
		}
		if *parts != "" {
			for _, p := range strings.Split(*parts, ",") {
				cfg.Parts = append(cfg.Parts, strings.TrimSpace(p))
			}
		}
		if !*quiet {
			cfg.Progress, cfg.ProgressTTY = a.stderr, a.stderrTTY
		}
		var out *os.File
		if *jsonPath != "" { // fail before a run of several minutes, not after
			if out, err = os.Create(*jsonPath); err != nil {
				return fmt.Errorf("--json: %w", err)
			}
			defer out.Close()
		}
		rep, err := bench.Run(ctx, cfg)
		if rep == nil { // the configuration was refused
			if out != nil {
				out.Close()
				os.Remove(*jsonPath)
			}
			return usagef("%v", err)
		}
		if len(rep.Figures) > 0 {
			if terr := rep.WriteTable(a.stdout); terr != nil {
				return terr
			}
		}
		if out != nil {
			if jerr := rep.WriteJSON(out); jerr != nil {
				return fmt.Errorf("--json: %w", jerr)
			}
			if cerr := out.Close(); cerr != nil && !errors.Is(cerr, os.ErrClosed) {
				return fmt.Errorf("--json: %w", cerr)
			}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return errors.New("interrupted; the figures above were measured before")
		case err != nil:
			return fmt.Errorf("%w (the figures above were measured before it failed)", err)
		}
		return nil
	}
}
