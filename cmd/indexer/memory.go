package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
)

// defaultMemoryLimit is the worker's soft heap limit. Measured on two
// shared cores (docs in README, "Worker memory"): with the collector
// driven by this limit instead of GOGC=100, the worker spends 36–40 % less
// CPU per event (fewer collections, and no heap returned to the OS and
// faulted in again), at a resident set of about 50 MB.
const defaultMemoryLimit = 40 << 20

// memoryOptions is the worker's --memory-limit.
type memoryOptions struct{ limit string }

func addMemoryFlags(fs *flag.FlagSet) *memoryOptions {
	o := &memoryOptions{}
	fs.StringVar(&o.limit, "memory-limit", "40MiB",
		"soft limit of the worker's Go heap (B, KiB, MiB, GiB); the collector runs only as the heap nears it (GOGC off): "+
			"less CPU per event for a resident set near the limit; 0 keeps Go's default collector; the GOGC or GOMEMLIMIT environment variables override it")
	return o
}

// apply sets the process's collector: GOGC off and a soft limit of the
// flag's value, unless the flag is 0 or the environment sets GOGC or
// GOMEMLIMIT (then Go's runtime already applied those). The limit must
// leave room for the batches in flight: the loop holds two of at most
// batchBytes payload bytes each, and their decoded events.
//
// It returns what it set, for the worker's start-up log.
func (o *memoryOptions) apply(batchBytes int, log *slog.Logger) (string, error) {
	limit := int64(0)
	if o.limit != "0" {
		var err error
		if limit, err = parseSize(o.limit); err != nil {
			return "", usagef("--memory-limit %q: %v, or 0 for Go's default collector", o.limit, err)
		}
	}
	if min := 8 * int64(batchBytes); limit > 0 && limit < min {
		return "", usagef("--memory-limit %s is below 8 × --batch-bytes (%d MiB): the heap would sit at the limit and collect without end; raise it, or lower --batch-bytes",
			o.limit, (min+1<<20-1)>>20)
	}
	if env := envSet("GOGC", "GOMEMLIMIT"); env != "" {
		log.Info("memory settings from the environment; --memory-limit ignored", "env", env)
		return env, nil
	}
	if limit == 0 {
		return "Go's default (GOGC=100)", nil
	}
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(limit)
	return "GOGC=off, limit " + o.limit, nil
}

// queryGCPercent is the GOGC of 'indexer query'. A query streams every
// HSCAN reply of the dates it reads (some 56 MB for a day of 100,000
// files) through a live heap of a few pages, so at GOGC=100 the collector
// runs every few MB and the heap it frees goes back to the OS only to be
// faulted in again. Measured on two shared cores (100,000 files, output
// piped, 8 interleaved runs): median 0.26 s against 0.31 s at GOGC=100,
// for a peak resident set of about 33 MB instead of 27.
const queryGCPercent = 300

// applyQueryGC sets queryGCPercent, unless the environment sets GOGC or
// GOMEMLIMIT (then Go's runtime already applied those).
func applyQueryGC() {
	if envSet("GOGC", "GOMEMLIMIT") == "" {
		debug.SetGCPercent(queryGCPercent)
	}
}

// envSet returns the first of names set in the environment, as NAME=value.
func envSet(names ...string) string {
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			return fmt.Sprintf("%s=%s", n, v)
		}
	}
	return ""
}
