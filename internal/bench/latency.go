package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/index"
)

const (
	latencyTick    = time.Millisecond       // the producer publishes a chunk, and the poller looks, this often
	markerTimeout  = 30 * time.Second       // a marker not visible this long after the last publish fails the run
	maxChunkEvents = 5000                   // the most events one chunk catches up with
	pollTimeout    = 200 * time.Millisecond // bound of one poll round trip
)

// latency measures publish→indexed latency: one worker reads s while
// the producer publishes at a fixed rate (events per second) for dur: a
// chunk every millisecond, each led by a marker, a file.created event of
// its own table. A poller asks Redis every millisecond, with one
// pipelined HEXISTS per marker still missing, whether the marker's path
// is in its files: hash; a marker's latency is from just before its chunk
// was published to the reply that showed it. Markers published in the
// first warm part of the run are not counted. It returns the 50th and
// 99th percentiles in milliseconds.
func (e *env) latency(ctx context.Context, s stream, rate float64, dur, warm time.Duration, label string) (p50, p99 float64, err error) {
	if err := e.flush(ctx); err != nil {
		return 0, 0, err
	}
	if err := s.reset(ctx); err != nil {
		return 0, 0, err
	}
	total := int(rate * dur.Seconds())
	ticks := int(dur / latencyTick)
	events, err := e.pool.take(total)
	if err != nil {
		return 0, 0, err
	}
	layout, err := index.NewLayout("")
	if err != nil {
		return 0, 0, err
	}
	marks, err := markers(ticks+1, func(date string) string { return layout.Files(benchDatabase, markersTable, date) })
	if err != nil {
		return 0, 0, err
	}
	ws, err := startWorkers(ctx, e.cfg.WorkerBinary, 1, "bench-"+s.name(),
		append(s.workerArgs(), "--batch-size", strconv.Itoa(e.cfg.BatchSize)))
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if serr := ws.stop(); err == nil && serr != nil {
			err = serr
		}
	}()

	bar := e.bar(label, total)
	defer bar.Stop()
	w := &watch{rc: e.rc}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var pollErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		pollErr = w.poll(pctx)
	}()

	start := time.Now()
	sent, next, used := 0, 0, 0 // events published, of them from the history, of them markers
	var pubErr error
	for tick := 1; sent < total && pubErr == nil && ctx.Err() == nil; tick++ {
		time.Sleep(time.Until(start.Add(time.Duration(tick) * latencyTick)))
		k := min(total, int(rate*time.Since(start).Seconds())) - sent
		if k <= 0 {
			continue
		}
		k = min(k, maxChunkEvents)
		chunk := make([]payload, 0, k)
		if used < len(marks) {
			m := marks[used]
			used++
			chunk = append(chunk, m.payload)
			m.sent = time.Now()
			w.add(m)
		}
		h := k - len(chunk)
		chunk = append(chunk, events[next:next+h]...)
		next += h
		pubErr = s.publish(ctx, chunk)
		sent += k
		bar.Set(int64(sent))
	}
	w.finish()
	wg.Wait()
	switch {
	case ctx.Err() != nil:
		return 0, 0, ctx.Err()
	case pubErr != nil:
		return 0, 0, fmt.Errorf("bench: %s: publish: %w", label, pubErr)
	case pollErr != nil:
		return 0, 0, fmt.Errorf("bench: %s: %w; worker log:\n%s", label, pollErr, ws[0].log())
	}
	var lat []float64
	for _, m := range marks[:used] {
		if m.sent.Sub(start) >= warm {
			lat = append(lat, float64(m.seen.Sub(m.sent))/float64(time.Millisecond))
		}
	}
	if len(lat) == 0 {
		return 0, 0, fmt.Errorf("bench: %s: no marker after the warm-up of %v", label, warm)
	}
	return percentile(lat, 0.50), percentile(lat, 0.99), nil
}

// watch is the set of markers published and not yet seen in the index.
type watch struct {
	rc      *redis.Client
	mu      sync.Mutex
	pending []*marker
	done    bool // no more markers will be added
	doneAt  time.Time
}

func (w *watch) add(m *marker) {
	w.mu.Lock()
	w.pending = append(w.pending, m)
	w.mu.Unlock()
}

// finish says that every marker was added.
func (w *watch) finish() {
	w.mu.Lock()
	w.done, w.doneAt = true, time.Now()
	w.mu.Unlock()
}

// poll looks for the pending markers every latencyTick until all were
// seen after finish, or ctx ends. It fails if markers are still missing
// markerTimeout after finish.
func (w *watch) poll(ctx context.Context) error {
	t := time.NewTicker(latencyTick)
	defer t.Stop()
	var cmds []*redis.BoolCmd
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		w.mu.Lock()
		pending, done, doneAt := slices.Clone(w.pending), w.done, w.doneAt
		w.mu.Unlock()
		if len(pending) == 0 {
			if done {
				return nil
			}
			continue
		}
		if done && time.Since(doneAt) > markerTimeout {
			return fmt.Errorf("%d markers not indexed %v after the last publish", len(pending), markerTimeout)
		}
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		pipe := w.rc.Pipeline()
		cmds = cmds[:0]
		for _, m := range pending {
			cmds = append(cmds, pipe.HExists(pctx, m.key, m.path))
		}
		_, err := pipe.Exec(pctx)
		cancel()
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			continue // a slow poll is retried; the latency keeps counting
		}
		seen := map[*marker]bool{}
		for i, c := range cmds {
			if c.Val() {
				pending[i].seen = now
				seen[pending[i]] = true
			}
		}
		if len(seen) > 0 {
			w.mu.Lock()
			w.pending = slices.DeleteFunc(w.pending, func(m *marker) bool { return seen[m] })
			w.mu.Unlock()
		}
	}
}

// percentile returns the q-quantile of v (nearest rank); it sorts v.
func percentile(v []float64, q float64) float64 {
	slices.Sort(v)
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}
