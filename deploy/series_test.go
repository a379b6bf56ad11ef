package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/telemetry"
)

// scrapeLabels are the labels Prometheus adds to every series it scrapes;
// their values are the deployment's.
var scrapeLabels = []string{"job", "instance"}

// catalog is what a worker exports: for each series name, its label names
// and, for each, the values it takes.
type catalog map[string]map[string][]string

// exported reads the catalog from the worker's metrics registry (both
// sources), as its /metrics shows it from the start, plus the series
// Prometheus itself writes for each scrape target (up).
func exported(t *testing.T) catalog {
	t.Helper()
	c := catalog{}
	add := func(name string, labels map[string]string) {
		if c[name] == nil {
			c[name] = map[string][]string{}
		}
		for _, l := range scrapeLabels {
			c[name][l] = nil // any value
		}
		for k, v := range labels {
			if !slices.Contains(c[name][k], v) {
				c[name][k] = append(c[name][k], v)
			}
		}
	}
	for source, labels := range map[string]telemetry.Labels{"redis": consumer.MetricLabels(), "nats": jetstream.MetricLabels()} {
		mfs, err := telemetry.NewMetrics(source, labels).Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.Metric {
				labels := map[string]string{}
				for _, l := range m.Label {
					labels[l.GetName()] = l.GetValue()
				}
				switch {
				case m.Histogram != nil:
					add(mf.GetName()+"_sum", labels)
					add(mf.GetName()+"_count", labels)
					for _, b := range m.Histogram.Bucket {
						labels["le"] = fmt.Sprint(b.GetUpperBound())
						add(mf.GetName()+"_bucket", labels)
					}
					labels["le"] = "+Inf"
					add(mf.GetName()+"_bucket", labels)
				case m.Summary != nil:
					add(mf.GetName()+"_sum", labels)
					add(mf.GetName()+"_count", labels)
					for _, q := range m.Summary.Quantile {
						labels["quantile"] = fmt.Sprint(q.GetQuantile())
						add(mf.GetName(), labels)
					}
				default:
					add(mf.GetName(), labels)
				}
			}
		}
	}
	add("up", nil)
	return c
}

// check parses a PromQL expression and returns what is wrong with the
// series it names: a name the worker does not export, a label a series
// does not have, a value a label never takes (for labels with a known set
// of values), a grouping by a label none of its series have.
func (c catalog) check(expr string) []string {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	named := map[string]bool{} // labels of the series the expression names
	var groupings [][]string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := n.Name
			labels, ok := c[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("series %q is not exported by the worker", name))
				return nil
			}
			for l := range labels {
				named[l] = true
			}
			for _, m := range n.LabelMatchers {
				if m.Name == "__name__" {
					continue
				}
				values, ok := labels[m.Name]
				switch {
				case !ok:
					problems = append(problems, fmt.Sprintf("%s has no label %q", name, m.Name))
				case values != nil && m.Name != "le" && (m.Type.String() == "=" || m.Type.String() == "!=") && !slices.Contains(values, m.Value):
					problems = append(problems, fmt.Sprintf("%s{%s} never takes the value %q (it takes %v)", name, m.Name, m.Value, values))
				}
			}
		case *parser.AggregateExpr:
			groupings = append(groupings, n.Grouping)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				groupings = append(groupings, n.VectorMatching.MatchingLabels)
			}
		}
		return nil
	})
	for _, g := range groupings {
		for _, l := range g {
			if !named[l] {
				problems = append(problems, fmt.Sprintf("grouping by %q, a label of none of the series named", l))
			}
		}
	}
	return problems
}

// TestCatalogCheck: the check finds what it must.
func TestCatalogCheck(t *testing.T) {
	c := exported(t)
	for expr, want := range map[string]string{
		`sum by (job, outcome) (rate(indexer_events_total{job="x", outcome="applied"}[5m]))`: "",
		`rate(indexer_apply_seconds_bucket{le="+Inf"}[5m])`:                                  "",
		`up{job="indexer"} == 0`:                                    "",
		`indexer_event_total`:                                       `series "indexer_event_total" is not exported`,
		`indexer_events_total{outcome="aplied"}`:                    `never takes the value "aplied"`,
		`indexer_events_total{step="apply"}`:                        `has no label "step"`,
		`sum by (kind) (indexer_events_total)`:                      `grouping by "kind"`,
		`indexer_failures_total{step="apply", class="retry"}`:       "",
		`max by (job) (indexer_consumer_lag) > on (source, job) up`: "",
		`max by (job) (indexer_consumer_lag) > on (outcome) up`:     `grouping by "outcome"`,
		`go_gc_duration_seconds{quantile="0.5"}`:                    "",
	} {
		got := strings.Join(c.check(expr), "; ")
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("check(%s) = %q, want %q", expr, got, want)
		}
	}
}
