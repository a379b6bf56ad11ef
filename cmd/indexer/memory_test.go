package main

import (
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// TestMemoryLimit checks the worker's collector settings: the default
// turns GOGC off under a 40 MiB soft limit, 0 leaves Go's defaults, the
// environment wins, and a limit too small for the batches is refused.
func TestMemoryLimit(t *testing.T) {
	gcPercent := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gcPercent); debug.SetMemoryLimit(limit) })
	for _, name := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reset := func() { debug.SetGCPercent(100); debug.SetMemoryLimit(1<<63 - 1) }

	reset()
	if got, err := (&memoryOptions{limit: "40MiB"}).apply(4<<20, log); err != nil || got != "GOGC=off, limit 40MiB" {
		t.Fatalf("default: %q, %v", got, err)
	}
	if p, l := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); p != -1 || l != 40<<20 {
		t.Errorf("default: GOGC %d, limit %d; want -1 (off) and %d", p, l, 40<<20)
	}

	reset()
	if _, err := (&memoryOptions{limit: "0"}).apply(4<<20, log); err != nil {
		t.Fatal(err)
	}
	if p, l := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); p != 100 || l != 1<<63-1 {
		t.Errorf("0: GOGC %d, limit %d; want Go's defaults", p, l)
	}

	reset()
	t.Setenv("GOGC", "200")
	if got, err := (&memoryOptions{limit: "40MiB"}).apply(4<<20, log); err != nil || got != "GOGC=200" {
		t.Errorf("GOGC set: %q, %v", got, err)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GOGC set in the environment: the flag changed GOGC to %d", p)
	}
	os.Unsetenv("GOGC")

	for _, tc := range []struct{ limit, want string }{
		{"lots", "use a positive size"},
		{"-5MiB", "use a positive size"},
		{"16MiB", "below 8 × --batch-bytes (32 MiB)"},
	} {
		_, err := (&memoryOptions{limit: tc.limit}).apply(4<<20, log)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--memory-limit %s: %v; want an error with %q", tc.limit, err, tc.want)
		}
	}
}

// TestQueryGC checks the collector setting of 'indexer query': GOGC=300, unless
// the environment sets GOGC or GOMEMLIMIT.
func TestQueryGC(t *testing.T) {
	gcPercent := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(gcPercent) })
	for _, name := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	applyQueryGC()
	if p := debug.SetGCPercent(100); p != queryGCPercent {
		t.Errorf("GOGC %d, want %d", p, queryGCPercent)
	}
	for _, name := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Setenv(name, "1")
		applyQueryGC()
		if p := debug.SetGCPercent(100); p != 100 {
			t.Errorf("%s set in the environment: GOGC changed to %d", name, p)
		}
		os.Unsetenv(name)
	}
}
