package index_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// scriptUsec returns the total CPU microseconds Redis spent in EVAL and
// EVALSHA, from INFO commandstats.
func scriptUsec(b *testing.B, c *redis.Client) float64 {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		for _, kv := range strings.Split(strings.TrimSpace(line[strings.IndexByte(line, ':')+1:]), ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return total
}

// BenchmarkApply applies batches of 1,000 events of a realistic history
// (30% deletes, 5% replaces, 5-column stats) and reports the Redis CPU
// time patch_index spends per event: the figure that bounds throughput.
// The index keeps GigAPI's queues with their defaults (BenchmarkQueues
// compares other settings).
func BenchmarkApply(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			srv := testserver.Redis(b)
			c := srv.Client(b)
			x, err := index.New(c, index.Config{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := x.Load(ctx); err != nil {
				b.Fatal(err)
			}
			g := synth.New(synth.Config{Hours: 48})
			// Warm up so the index holds files and deletes hit live paths.
			for i := 0; i < 20; i++ {
				if _, err := x.Apply(ctx, g.Events(batch)); err != nil {
					b.Fatal(err)
				}
			}
			batches := make([][]event.Event, b.N)
			for i := range batches {
				batches[i] = g.Events(batch)
			}
			start := scriptUsec(b, c)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := x.Apply(ctx, batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			usec := scriptUsec(b, c) - start
			b.ReportMetric(usec/float64(b.N*batch), "redis-µs/event")
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// meanFileSize is the mean size_bytes of synth's files.
const meanFileSize = 1000 + (1<<20)/2

// BenchmarkQueues measures the Redis CPU per event of batches of 1,000
// events with the queues off, and on with merge items of about 10, 100
// and 1,000 files (max size = that many mean files), in two regimes:
// apply only (items are not due within the run), and a pipeline where a
// clock advances 1 s per batch, due items are published after every batch
// and a compactor and a dropper lease and finish every due item.
// redis-µs/event is patch_index alone (the Apply calls); the pipeline
// also reports publish-µs/event and lease-µs/event (next and done).
func BenchmarkQueues(b *testing.B) {
	type variant struct {
		name     string
		items    int64 // 0: queues off
		pipeline bool
	}
	var vs []variant
	for _, pipeline := range []bool{false, true} {
		for _, items := range []int64{0, 10, 100, 1000} {
			name := "items=" + strconv.FormatInt(items, 10)
			if items == 0 {
				if pipeline {
					continue
				}
				name = "queues=off"
			}
			if pipeline {
				name = "pipeline/" + name
			}
			vs = append(vs, variant{name, items, pipeline})
		}
	}
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			srv := testserver.Redis(b)
			c := srv.Client(b)
			q := index.QueueConfig{Disable: index.AllQueues}
			if v.items > 0 {
				max := v.items * meanFileSize
				q = index.QueueConfig{Merge: []index.MergeLevel{{Timeout: 10 * time.Second, MaxSize: max},
					{Timeout: 100 * time.Second, MaxSize: max}, {Timeout: 1000 * time.Second, MaxSize: max}, {Timeout: 4200 * time.Second, MaxSize: max}}}
			}
			now := time.Now()
			x, err := index.New(c, index.Config{Queues: q, Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := x.Load(ctx); err != nil {
				b.Fatal(err)
			}
			g := synth.New(synth.Config{Hours: 48})
			var apply, publish, lease float64 // script µs
			timed := func(sum *float64, fn func() error) {
				t0 := scriptUsec(b, c)
				if err := fn(); err != nil {
					b.Fatal(err)
				}
				*sum += scriptUsec(b, c) - t0
			}
			step := func(events []event.Event) {
				timed(&apply, func() error { _, err := x.Apply(ctx, events); return err })
				if !v.pipeline {
					return
				}
				now = now.Add(time.Second)
				timed(&publish, func() error { _, err := x.Publish(ctx); return err })
				timed(&lease, func() error {
					for _, kind := range []index.PlanKind{event.PlanMerge, index.PlanDrop} {
						ref := index.QueueRef{Kind: kind, Database: "demo", Table: "events", Layer: "default"}
						for {
							l, err := x.Next(ctx, ref)
							if errors.Is(err, index.ErrNoItem) {
								break
							}
							if err != nil {
								return err
							}
							if err := x.Done(ctx, ref, l.ID, l.Token); err != nil {
								return err
							}
						}
					}
					return nil
				})
			}
			for i := 0; i < 20; i++ {
				step(g.Events(1000))
			}
			batches := make([][]event.Event, b.N)
			for i := range batches {
				batches[i] = g.Events(1000)
			}
			apply, publish, lease = 0, 0, 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				step(batches[i])
			}
			b.StopTimer()
			n := float64(b.N * 1000)
			b.ReportMetric(apply/n, "redis-µs/event")
			if v.pipeline {
				b.ReportMetric(publish/n, "publish-µs/event")
				b.ReportMetric(lease/n, "lease-µs/event")
			}
		})
	}
}
