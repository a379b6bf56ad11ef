package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

const alertsFile = "prometheus/alerts.yml"

// loadRules parses and validates the rule file as `promtool check rules`
// does: YAML shape, PromQL of every expression, label names, templates of
// labels and annotations, and no two rules with the same name and labels.
func loadRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", alertsFile, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	var rules []rulefmt.Rule
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			key := r.Alert + r.Record + fmt.Sprint(maps.Collect(maps.All(g.Labels)), r.Labels)
			if seen[key] {
				t.Errorf("%s: duplicate rule %s with labels %v", alertsFile, r.Alert+r.Record, r.Labels)
			}
			seen[key] = true
			rules = append(rules, r)
		}
	}
	return rules
}

// TestAlertRules: the rules are valid, cover what an operator must hear
// of, and name only series the worker exports.
func TestAlertRules(t *testing.T) {
	rules := loadRules(t)
	c := exported(t)
	names := map[string]bool{}
	for _, r := range rules {
		names[r.Alert] = true
		for _, p := range c.check(r.Expr) {
			t.Errorf("%s: %s", r.Alert, p)
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: want a severity label, a summary and a description", r.Alert)
		}
	}
	// worker down, lag growing, dead letters, lost messages, apply
	// failures, freshness
	for _, want := range []string{"IndexerWorkerDown", "IndexerNoWorkerUp", "IndexerLagGrowing", "IndexerDeadLetters",
		"IndexerLostMessages", "IndexerApplyFailures", "IndexerStalled", "IndexerEventsDelayed"} {
		if !names[want] {
			t.Errorf("%s has no alert %s", alertsFile, want)
		}
	}
}

// The alerts are evaluated at evalAt, against series sampled every
// scrapeEvery for the two hours before.
var (
	evalAt      = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	history     = 2 * time.Hour
	scrapeEvery = 15 * time.Second
)

// A series is sampled by a function of the sample's age (evalAt minus its
// time) and time.
type sampler func(age time.Duration, at time.Time) float64

func constant(v float64) sampler { return func(time.Duration, time.Time) float64 { return v } }

// rising counts n per second since the start of the history.
func rising(n float64) sampler {
	return func(age time.Duration, _ time.Time) float64 { return n * (history - age).Seconds() }
}

// stepAt is before until the sample is younger than age, then after.
func stepAt(age time.Duration, before, after float64) sampler {
	return func(a time.Duration, _ time.Time) float64 {
		if a < age {
			return after
		}
		return before
	}
}

// world is a set of series: name and labels → sampler.
type world map[string]sampler

// key renders a series as name{k="v",...}, labels sorted.
func key(name string, lbls map[string]string) string {
	ks := slices.Sorted(maps.Keys(lbls))
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, lbls[k])
	}
	return name + "{" + b.String() + "}"
}

// eventAgeBuckets are the upper bounds of indexer_event_age_seconds.
var eventAgeBuckets = []string{"0.001", "0.004", "0.016", "0.064", "0.256", "1.024", "4.096", "16.384", "65.536", "262.144", "1048.576", "4194.304", "+Inf"}

// healthy is two workers of one group (source nats) keeping up: events
// applied as they come, nothing waiting, nothing failing.
func healthy() world {
	w := world{}
	for _, inst := range []string{"worker-1:9464", "worker-2:9464"} {
		l := func(extra ...string) map[string]string {
			m := map[string]string{"job": "indexer", "instance": inst, "source": "nats"}
			for i := 0; i < len(extra); i += 2 {
				m[extra[i]] = extra[i+1]
			}
			return m
		}
		w[key("up", map[string]string{"job": "indexer", "instance": inst})] = constant(1)
		w[key("indexer_ready", l())] = constant(1)
		w[key("indexer_consumer_lag", l())] = constant(0)
		w[key("indexer_pending_messages", l())] = constant(40)
		w[key("indexer_dead_letter_messages", l())] = constant(3)
		w[key("indexer_last_apply_timestamp_seconds", l())] = func(_ time.Duration, at time.Time) float64 { return float64(at.Unix()) }
		w[key("indexer_events_total", l("outcome", "applied"))] = rising(500)
		w[key("indexer_events_total", l("outcome", "duplicate"))] = rising(2)
		w[key("indexer_dead_letters_total", l("kind", "invalid"))] = constant(3)
		w[key("indexer_dead_letters_total", l("kind", "max_deliver"))] = constant(0)
		w[key("indexer_lost_messages_total", l())] = constant(0)
		w[key("indexer_events_outside_hour_total", l())] = constant(0)
		for _, step := range []string{"fetch", "apply", "ack", "dead_letter", "backlog"} {
			for _, class := range []string{"retry", "poison", "fatal"} {
				w[key("indexer_failures_total", l("step", step, "class", class))] = constant(0)
			}
		}
		w[key("indexer_failures_total", l("step", "fetch", "class", "retry"))] = constant(2) // one blip, long ago
		w.eventAges(inst, 0.5)
	}
	return w
}

// eventAges makes inst's events all about age seconds old when applied.
func (w world) eventAges(inst string, age float64) {
	for _, le := range eventAgeBuckets {
		s := constant(0)
		if b, _ := parseFloat(le); le == "+Inf" || b >= age {
			s = rising(500)
		}
		w[key("indexer_event_age_seconds_bucket", map[string]string{"job": "indexer", "instance": inst, "source": "nats", "le": le})] = s
	}
}

func parseFloat(s string) (float64, error) {
	var f float64
	_, err := fmt.Sscan(s, &f)
	return f, err
}

// set replaces the sampler of a series of the healthy world (both workers
// unless inst is given).
func (w world) set(name string, match map[string]string, s sampler) world {
	n := 0
	for k := range w {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for mk, mv := range match {
			ok = ok && strings.Contains(k, fmt.Sprintf("%s=%q", mk, mv))
		}
		if ok {
			w[k] = s
			n++
		}
	}
	if n == 0 {
		panic(fmt.Sprintf("no series %s%v", name, match))
	}
	return w
}

// TestAlertsFire evaluates every alert's expression with Prometheus's
// PromQL engine in situations that must fire it, and in a healthy one that
// must fire none. ('for' durations are Prometheus's business and are not
// evaluated; each situation has lasted long enough for them.)
func TestAlertsFire(t *testing.T) {
	rules := loadRules(t)
	c := exported(t)
	w1 := map[string]string{"instance": "worker-1:9464"}
	situations := []struct {
		name  string
		world world
		want  []string
	}{
		{"healthy", healthy(), nil},
		{"a worker down", healthy().set("up", w1, constant(0)), []string{"IndexerWorkerDown"}},
		{"every worker down", healthy().set("up", nil, constant(0)), []string{"IndexerWorkerDown", "IndexerNoWorkerUp"}},
		{"a worker not ready", healthy().set("indexer_ready", w1, constant(0)), []string{"IndexerWorkerNotReady"}},
		{"lag growing", healthy().set("indexer_consumer_lag", nil, rising(20)), []string{"IndexerLagGrowing"}},
		{"stalled with a backlog", healthy().
			set("indexer_consumer_lag", nil, constant(500)).
			set("indexer_last_apply_timestamp_seconds", nil, constant(float64(evalAt.Add(-30*time.Minute).Unix()))),
			[]string{"IndexerStalled"}},
		{"idle, nothing waiting", healthy().
			set("indexer_pending_messages", nil, constant(0)).
			set("indexer_last_apply_timestamp_seconds", nil, constant(float64(evalAt.Add(-5*time.Hour).Unix()))), nil},
		{"events late", func() world {
			w := healthy()
			w.eventAges("worker-1:9464", 900)
			w.eventAges("worker-2:9464", 900)
			return w
		}(),
			[]string{"IndexerEventsDelayed"}},
		{"dead letters", healthy().set("indexer_dead_letters_total", map[string]string{"kind": "invalid"}, stepAt(3*time.Minute, 3, 8)),
			[]string{"IndexerDeadLetters"}},
		{"files outside their hour", healthy().set("indexer_events_outside_hour_total", w1, stepAt(20*time.Minute, 0, 4)),
			[]string{"IndexerEventsOutsideHour"}},
		{"lost messages", healthy().set("indexer_lost_messages_total", w1, stepAt(5*time.Minute, 0, 10)), []string{"IndexerLostMessages"}},
		{"apply failing", healthy().set("indexer_failures_total", map[string]string{"step": "apply", "class": "retry"}, rising(0.5)),
			[]string{"IndexerApplyFailures"}},
		{"backlog unreadable", healthy().set("indexer_failures_total", map[string]string{"step": "backlog", "class": "fatal"}, rising(0.2)),
			[]string{"IndexerStepFailures"}},
	}
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, Parser: p})
	for _, s := range situations {
		t.Run(s.name, func(t *testing.T) {
			q := s.world.queryable(t, c)
			var fired []string
			for _, r := range rules {
				iq, err := engine.NewInstantQuery(context.Background(), q, nil, r.Expr, evalAt)
				if err != nil {
					t.Fatalf("%s: %v", r.Alert, err)
				}
				res := iq.Exec(context.Background())
				if res.Err != nil {
					t.Fatalf("%s: %v", r.Alert, res.Err)
				}
				if v, err := res.Vector(); err != nil {
					t.Fatalf("%s: %v", r.Alert, err)
				} else if len(v) > 0 {
					fired = append(fired, r.Alert)
				}
				iq.Close()
			}
			slices.Sort(fired)
			want := slices.Sorted(slices.Values(s.want))
			if !slices.Equal(fired, want) {
				t.Errorf("alerts firing %v, want %v", fired, want)
			}
		})
	}
}

// queryable samples the world into series for the PromQL engine, after
// checking that each is one the worker exports.
func (w world) queryable(t *testing.T, c catalog) storage.Queryable {
	t.Helper()
	var all []storage.Series
	for k, s := range w {
		for _, p := range c.check(k) {
			t.Fatalf("test series %s: %s", k, p)
		}
		m, err := parser.NewParser(parser.Options{}).ParseMetric(k)
		if err != nil {
			t.Fatal(err)
		}
		var samples []chunks.Sample
		for at := evalAt.Add(-history); !at.After(evalAt); at = at.Add(scrapeEvery) {
			samples = append(samples, floatSample{t: at.UnixMilli(), f: s(evalAt.Sub(at), at)})
		}
		all = append(all, storage.NewListSeries(m, samples))
	}
	slices.SortFunc(all, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		return &storage.MockQuerier{SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			out := &seriesSet{i: -1}
			for _, s := range all {
				if matchAll(s.Labels(), ms) {
					out.series = append(out.series, s)
				}
			}
			return out
		}}, nil
	})
}

func matchAll(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// seriesSet iterates a slice of series.
type seriesSet struct {
	series []storage.Series
	i      int // the current one, after Next
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// floatSample is one float sample.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                      { return s.t }
func (s floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                    { return s.f }
func (s floatSample) H() *histogram.Histogram       { return nil }
func (s floatSample) FH() *histogram.FloatHistogram { return nil }
func (s floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample           { return s }
