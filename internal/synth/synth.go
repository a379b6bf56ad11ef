// Package synth generates synthetic, valid event histories as GigAPI's
// writers and compactors would produce them, and models the index they
// should lead to. publish --generate, the demo, benchmarks and tests use it.
//
// A history is in writer order: a file is created before it is deleted or
// merged away, and a path is never created twice. Model computes the
// index that applying each distinct event once in that order gives, which
// is what any delivery order with any duplication must give too.
package synth

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/streamindex/indexer/event"
)

// Config configures a Generator. The zero value means the defaults.
type Config struct {
	// Seed makes the history reproducible. Default 1.
	Seed uint64
	// Database and Table name the table. Defaults "demo" and "events".
	Database, Table string
	// Layer of every file. Default "default".
	Layer string
	// DeleteRatio is the fraction of events that delete a live file.
	// Default 0.3.
	DeleteRatio float64
	// ReplaceRatio is the fraction of events that merge 2-4 live files of
	// one folder into one (files.replaced). Default 0.05.
	ReplaceRatio float64
	// Start is the time of the first folder. Default 2024-01-15T22:00Z, so
	// histories cross midnight.
	Start time.Time
	// Hours is the number of hourly folders files spread over. Default 6.
	Hours int
}

// Generator produces a history one event at a time. It is not safe for
// concurrent use.
type Generator struct {
	cfg   Config
	rng   *rand.Rand
	live  []event.File
	seq   uint64
	clock int64
}

// New returns a Generator for cfg.
func New(cfg Config) *Generator {
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Database == "" {
		cfg.Database = "demo"
	}
	if cfg.Table == "" {
		cfg.Table = "events"
	}
	if cfg.Layer == "" {
		cfg.Layer = "default"
	}
	if cfg.DeleteRatio == 0 {
		cfg.DeleteRatio = 0.3
	}
	if cfg.ReplaceRatio == 0 {
		cfg.ReplaceRatio = 0.05
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2024, 1, 15, 22, 0, 0, 0, time.UTC)
	}
	if cfg.Hours == 0 {
		cfg.Hours = 6
	}
	return &Generator{
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		clock: cfg.Start.UnixNano(),
	}
}

// Next returns the next event of the history.
func (g *Generator) Next() event.Event {
	g.seq++
	g.clock += int64(time.Millisecond)
	e := event.Event{
		ID:       fmt.Sprintf("%s-%s-%d-%d", g.cfg.Database, g.cfg.Table, g.cfg.Seed, g.seq),
		Time:     g.clock,
		Database: g.cfg.Database,
		Table:    g.cfg.Table,
	}
	r := g.rng.Float64()
	switch {
	case r < g.cfg.DeleteRatio && len(g.live) > 0:
		e.Type = event.FileDeleted
		f := g.take(g.rng.IntN(len(g.live)))
		e.File = event.File{Layer: f.Layer, WriterID: f.WriterID, Path: f.Path}
	case r < g.cfg.DeleteRatio+g.cfg.ReplaceRatio && len(g.live) >= 2:
		g.replace(&e)
	default:
		e.Type = event.FileCreated
		e.File = g.file(g.rng.IntN(g.cfg.Hours), 1)
		g.live = append(g.live, e.File)
	}
	return e
}

// Events returns the next n events.
func (g *Generator) Events(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

// replace merges 2-4 live files of the folder of a random live file into
// one file of the next iteration.
func (g *Generator) replace(e *event.Event) {
	e.Type = event.FilesReplaced
	first := g.live[g.rng.IntN(len(g.live))]
	dir := first.Dir()
	want := 2 + g.rng.IntN(3)
	var size, rows int64
	iter := 1
	for i := 0; i < len(g.live) && len(e.Remove) < want; {
		if g.live[i].Dir() != dir {
			i++
			continue
		}
		f := g.take(i)
		size += f.SizeBytes
		rows += f.RowCount
		iter = max(iter, f.Iteration())
		e.Remove = append(e.Remove, event.File{Layer: f.Layer, Path: f.Path})
	}
	hour := int((mustHour(dir) - g.cfg.Start.Unix()) / 3600)
	out := g.file(hour, iter+1)
	out.SizeBytes, out.RowCount = size, rows
	e.Add = []event.File{out}
	g.live = append(g.live, out)
}

func mustHour(dir string) int64 {
	t, err := time.Parse("date=2006-01-02/hour=15", dir)
	if err != nil {
		panic(err)
	}
	return t.Unix()
}

// take removes and returns live file i.
func (g *Generator) take(i int) event.File {
	f := g.live[i]
	last := len(g.live) - 1
	g.live[i] = g.live[last]
	g.live = g.live[:last]
	return f
}

// file makes a new file in hourly folder hour of iteration iter.
func (g *Generator) file(hour, iter int) event.File {
	t := g.cfg.Start.Add(time.Duration(hour) * time.Hour).UTC()
	minT := t.UnixNano() + g.rng.Int64N(int64(30*time.Minute))
	maxT := minT + g.rng.Int64N(int64(30*time.Minute))
	lo, _ := event.StatsFromMap(map[string]any{"__timestamp": minT, "value": g.rng.Float64()})
	hi, _ := event.StatsFromMap(map[string]any{"__timestamp": maxT, "value": 1 + g.rng.Float64()})
	return event.File{
		Layer:     g.cfg.Layer,
		Path:      fmt.Sprintf("%s/%016x%016x.%d.parquet", t.Format("date=2006-01-02/hour=15"), g.rng.Uint64(), g.rng.Uint64(), iter),
		SizeBytes: 1000 + g.rng.Int64N(1<<20),
		RowCount:  1 + g.rng.Int64N(100000),
		ChunkTime: t.UnixNano(),
		MinTime:   minT,
		MaxTime:   maxT,
		Min:       lo,
		Max:       hi,
	}
}
