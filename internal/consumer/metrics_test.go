package consumer_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/telemetry"
)

// backlogSource is a memSource that reports a backlog, or an error.
type backlogSource struct {
	*memSource
	mu    sync.Mutex
	b     consumer.Backlog
	err   error
	calls int
}

func (s *backlogSource) Backlog(context.Context) (consumer.Backlog, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.b, s.err
}

func (s *backlogSource) set(b consumer.Backlog, err error) {
	s.mu.Lock()
	s.b, s.err = b, err
	s.mu.Unlock()
}

// sample returns the value of the series of a family whose labels include
// want, and whether there is one.
func sample(t *testing.T, m *telemetry.Metrics, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.Metric {
			have := map[string]string{}
			for _, l := range s.Label {
				have[l.GetName()] = l.GetValue()
			}
			if !matches(have, want) {
				continue
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue(), true
			case s.Gauge != nil:
				return s.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// TestBacklogGauges: the loop sets the lag, pending and dead-letter gauges
// from the source every LagEvery; a failure is counted and leaves them.
func TestBacklogGauges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &backlogSource{memSource: newMemSource()}
		src.set(consumer.Backlog{Lag: 7, Pending: 3, DeadLetters: 2}, nil)
		m := telemetry.NewMetrics("test", consumer.MetricLabels())
		stop := runLoop(t, consumer.Config{Source: src, Index: &memIndex{}, Metrics: m, LagEvery: 5 * time.Second})
		synctest.Wait()
		gauges := func() [3]float64 {
			var g [3]float64
			for i, n := range []string{"indexer_consumer_lag", "indexer_pending_messages", "indexer_dead_letter_messages"} {
				g[i], _ = sample(t, m, n, nil)
			}
			return g
		}
		if g := gauges(); g != [3]float64{7, 3, 2} {
			t.Errorf("gauges at start = %v, want [7 3 2]", g)
		}
		src.set(consumer.Backlog{}, redisError("NOPERM this user has no permissions to run the 'xlen' command"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if g := gauges(); g != [3]float64{7, 3, 2} {
			t.Errorf("gauges after a failed refresh = %v, want the last values", g)
		}
		if n, _ := sample(t, m, "indexer_failures_total", map[string]string{"step": "backlog", "class": "fatal"}); n != 1 {
			t.Errorf("backlog failures counted = %v, want 1", n)
		}
		src.set(consumer.Backlog{Lag: 1, Pending: 0, DeadLetters: -1}, nil)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if g := gauges(); g != [3]float64{1, 0, 2} {
			t.Errorf("gauges after recovery = %v, want [1 0 2] (an unknown count keeps its value)", g)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMetricsAfterBatch: a batch sets the time of the last apply, counts
// the outcomes; every declared series exists from the start.
func TestMetricsAfterBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		m := telemetry.NewMetrics("test", consumer.MetricLabels())
		for _, l := range []map[string]string{
			{"outcome": "applied"}, {"outcome": "tombstoned"}, {"outcome": "duplicate"}, {"outcome": "ignored_tombstoned"}, {"outcome": "superseded"},
		} {
			if _, ok := sample(t, m, "indexer_events_total", l); !ok {
				t.Errorf("no indexer_events_total%v at start", l)
			}
		}
		for _, step := range []string{"fetch", "apply", "ack", "dead_letter", "backlog"} {
			for _, class := range []string{"retry", "poison", "fatal"} {
				if _, ok := sample(t, m, "indexer_failures_total", map[string]string{"step": step, "class": class}); !ok {
					t.Errorf("no indexer_failures_total{step=%q,class=%q} at start", step, class)
				}
			}
		}
		for _, kind := range []string{"invalid", "max_deliver"} {
			if _, ok := sample(t, m, "indexer_dead_letters_total", map[string]string{"kind": kind}); !ok {
				t.Errorf("no indexer_dead_letters_total{kind=%q} at start", kind)
			}
		}
		if v, _ := sample(t, m, "indexer_last_apply_timestamp_seconds", nil); v != 0 {
			t.Errorf("last apply before any = %v, want 0", v)
		}
		start := time.Now()
		stop := runLoop(t, consumer.Config{Source: src, Index: &memIndex{}, Metrics: m})
		src.push(msgs(0, 3)...)
		time.Sleep(time.Second)
		synctest.Wait()
		if v, _ := sample(t, m, "indexer_last_apply_timestamp_seconds", nil); v < float64(start.Unix()) || v > float64(time.Now().Unix()+1) {
			t.Errorf("last apply = %v, want about %v", v, start.Unix())
		}
		if v, _ := sample(t, m, "indexer_events_total", map[string]string{"outcome": "applied"}); v != 3 {
			t.Errorf("applied = %v, want 3", v)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}
