package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
)

const (
	preloadBatch    = 5000   // events per Apply while preloading
	preloadPerSeed  = 50_000 // events per generator, so no generator holds many live files in memory
	preloadAppliers = 2      // concurrent Apply calls while preloading: Redis never waits for Go
	probeBatch      = 1000   // events per Apply while probing: the workers' batch
	// createOnly makes a synth history of creates only: synth reads a zero
	// ratio as its default, so a negligible one stands for zero.
	createOnly = 1e-12
)

// newIndex returns an index over the bench's Redis with the workers'
// settings and its scripts loaded.
func (e *env) newIndex(ctx context.Context, maxEvents int) (*index.Index, error) {
	x, err := index.New(e.rc, index.Config{MaxEventsPerCall: maxEvents})
	if err != nil {
		return nil, err
	}
	return x, x.Load(ctx)
}

// preload adds n files to a table of the index fast, straight through
// index.Apply in big batches from several goroutines (not through a
// stream): created files spread over hours hourly folders from start. Seeds
// are seed, seed+1, …, so histories of different seeds never share a path.
func (e *env) preload(ctx context.Context, table string, n int, start time.Time, hours int, seed uint64, label string) error {
	x, err := e.newIndex(ctx, preloadBatch)
	if err != nil {
		return err
	}
	bar := e.bar(label, n)
	defer bar.Stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []event.Event, preloadAppliers*2)
	errs := make(chan error, preloadAppliers)
	var wg sync.WaitGroup
	for range preloadAppliers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if _, err := x.Apply(ctx, b); err != nil {
					errs <- fmt.Errorf("bench: preload: %w", err)
					cancel()
					return
				}
				bar.Add(int64(len(b)))
			}
		}()
	}
	var g *synth.Generator
	for done := 0; done < n && ctx.Err() == nil; {
		if done%preloadPerSeed == 0 {
			g = synth.New(synth.Config{Seed: seed + uint64(done/preloadPerSeed), Database: benchDatabase, Table: table,
				Start: start, Hours: hours, DeleteRatio: createOnly, ReplaceRatio: createOnly})
		}
		k := min(preloadBatch, n-done, preloadPerSeed-done%preloadPerSeed)
		select {
		case batches <- g.Events(k):
		case <-ctx.Done():
		}
		done += k
	}
	close(batches)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// probe applies n events of a realistic history (30% deletes, 5% merges,
// its own seed) on top of what the table holds, in calls of 1,000 events
// from one goroutine, and returns, in microseconds per event, the wall
// time, the Redis time in patch_index (INFO commandstats, corrected for
// preemption) and the CPU time of the redis-server process.
func (e *env) probe(ctx context.Context, n int, seed uint64) (wallUs, scriptUs, redisUs float64, err error) {
	x, err := e.newIndex(ctx, probeBatch)
	if err != nil {
		return 0, 0, 0, err
	}
	g := synth.New(synth.Config{Seed: seed, Database: benchDatabase, Table: eventsTable})
	events := g.Events(n)
	if err := e.resetStats(ctx); err != nil {
		return 0, 0, 0, err
	}
	cpu0, err := e.redisCPUMicros(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	for lo := 0; lo < n; lo += probeBatch {
		if _, err := x.Apply(ctx, events[lo:min(lo+probeBatch, n)]); err != nil {
			return 0, 0, 0, fmt.Errorf("bench: probe: %w", err)
		}
	}
	took := time.Since(start)
	cpu1, err := e.redisCPUMicros(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	st, err := e.commandStats(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	per := float64(n)
	return float64(took.Microseconds()) / per, st.perEvent(cpu1-cpu0, n, "evalsha", "eval"), (cpu1 - cpu0) / per, nil
}

// liveFiles counts the files of a table from its folders: hash, the
// per-folder counts the index keeps.
func (e *env) liveFiles(ctx context.Context, table string) (int64, error) {
	layout, err := index.NewLayout("")
	if err != nil {
		return 0, err
	}
	counts, err := e.rc.HVals(ctx, layout.Folders(layout.Part(benchDatabase, table, ""))).Result()
	if err != nil {
		return 0, fmt.Errorf("bench: count files: %w", err)
	}
	var n int64
	for _, c := range counts {
		var v int64
		fmt.Sscan(c, &v)
		n += v
	}
	return n, nil
}
