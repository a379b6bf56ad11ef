package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

const dashboardFile = "grafana/indexer.json"

// grafanaVars are Grafana's variables in the dashboard's queries, with
// values that make them PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "${job}", "indexer", "$job", "indexer")

// dashboardPanel is the part of a Grafana panel the test reads.
type dashboardPanel struct {
	ID      int              `json:"id"`
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"` // of a collapsed row
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
}

// TestDashboard: the dashboard is a Grafana dashboard whose every query is
// PromQL naming only series the worker exports, with labels they have;
// its variables query exported series too.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string           `json:"uid"`
		Title      string           `json:"title"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: no uid or title", dashboardFile)
	}
	c := exported(t)
	ids := map[int]bool{}
	queries := 0
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				expr := grafanaVars.Replace(tg.Expr)
				if strings.Contains(expr, "$") {
					t.Errorf("panel %q: unknown variable in %s", p.Title, tg.Expr)
				}
				for _, problem := range c.check(expr) {
					t.Errorf("panel %q: %s: %s", p.Title, tg.Expr, problem)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if queries < 10 {
		t.Errorf("%d queries, want a dashboard over the worker's series", queries)
	}
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(series, label)", v.Name, v.Definition)
			continue
		}
		if p := c.check(fmt.Sprintf("%s{%s!=\"\"}", m[1], m[2])); len(p) > 0 {
			t.Errorf("variable %s: %v", v.Name, p)
		}
	}
}
