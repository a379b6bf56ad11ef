package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Op compares a measured median with a target.
type Op string

// The comparisons of a Target.
const (
	AtLeast Op = ">="
	AtMost  Op = "<="
)

// Target is a goal of the issue for one figure.
type Target struct {
	Op    Op      `json:"op"`
	Value float64 `json:"value"`
}

// Met reports whether v meets the target.
func (t Target) Met(v float64) bool {
	if t.Op == AtLeast {
		return v >= t.Value
	}
	return v <= t.Value
}

func (t Target) String() string {
	sign := "≥"
	if t.Op == AtMost {
		sign = "≤"
	}
	return sign + " " + formatNumber(t.Value)
}

// Figure is one measured quantity, repeated: every sample is one run.
type Figure struct {
	// Key names the figure in the JSON report, e.g. "redis_e2e_events_per_s".
	Key string `json:"key"`
	// Section groups figures in the table: ceiling, baseline, redis, nats,
	// latency, scaling, index size, query.
	Section string `json:"section"`
	// Label describes the figure in words.
	Label string `json:"label"`
	// Unit is the unit of the samples: "events/s", "µs/event", "ms", "MB", "×".
	Unit string `json:"unit"`
	// Samples holds one value per repeat, in run order.
	Samples []float64 `json:"samples"`
	// Min, Median and Max summarize Samples.
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	// Target is the goal for the median, if it sets one.
	Target *Target `json:"target,omitempty"`
	// Met says whether the median meets Target (absent without a target).
	Met *bool `json:"met,omitempty"`
}

// summarize fills Min, Median, Max and Met from Samples.
func (f *Figure) summarize() {
	s := slices.Clone(f.Samples)
	slices.Sort(s)
	if len(s) == 0 {
		return
	}
	f.Min, f.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		f.Median = s[n/2]
	} else {
		f.Median = (s[n/2-1] + s[n/2]) / 2
	}
	if f.Target != nil {
		met := f.Target.Met(f.Median)
		f.Met = &met
	}
}

// Machine describes where the bench ran.
type Machine struct {
	CPU           string `json:"cpu"`
	Cores         int    `json:"cores"`
	MemoryMB      int    `json:"memory_mb"`
	Kernel        string `json:"kernel"`
	RedisVersion  string `json:"redis_version"`
	NATSVersion   string `json:"nats_server_version"`
	GoVersion     string `json:"go_version"`
	LoadAvgBefore string `json:"load_average_before"`
	LoadAvgAfter  string `json:"load_average_after"`
}

// Report is the result of Run.
type Report struct {
	// Quick is set for a reduced run (Config.Quick): its figures are for
	// smoke checks; Notes say how it differs from the full run.
	Quick bool
	// Notes say how the run differed from the full one and what each
	// figure depends on; the table prints them.
	Notes []string
	// Machine describes the host.
	Machine Machine
	// Config is the configuration the run used, defaults applied.
	Config Config
	// Figures in the order they were measured.
	Figures []*Figure
	// Seconds is the run's wall time.
	Seconds float64
}

// Figure returns the figure with key, or nil.
func (r *Report) Figure(key string) *Figure {
	for _, f := range r.Figures {
		if f.Key == key {
			return f
		}
	}
	return nil
}

// add records a figure and returns it.
func (r *Report) add(section, key, label, unit string, samples []float64, target *Target) *Figure {
	f := &Figure{Key: key, Section: section, Label: label, Unit: unit, Samples: samples, Target: target}
	f.summarize()
	r.Figures = append(r.Figures, f)
	return f
}

// ratio records the ratio of two figures' medians as a figure of one
// sample; it does nothing when either is missing or the divisor is 0.
func (r *Report) ratio(section, key, label, num, den string, target *Target) {
	a, b := r.Figure(num), r.Figure(den)
	if a == nil || b == nil || b.Median == 0 {
		return
	}
	r.add(section, key, label, "×", []float64{a.Median / b.Median}, target)
}

// Headline lists the figures the issue asks for at the top level of the
// JSON report (a full run has all of them; a run of some Parts only has
// theirs).
var Headline = []string{
	"ceiling_hset_per_s", "naive_events_per_s", "redis_e2e_events_per_s", "nats_e2e_events_per_s",
	"patch_us_per_event", "p99_latency_ms", "worker_rss_mb", "query_100k_ms",
	"redis_e2e_over_ceiling", "redis_e2e_over_naive",
	// issue 16
	"redis_cpu_us_per_event", "redis_cores_busy_e2e", "worker_cpu_us_per_event_redis",
	"worker_cpu_us_per_event_nats", "producer_cpu_us_per_event", "redis_2_workers_over_1",
	"nats_transport_ceiling_per_s", "nats_e2e_over_transport",
}

// aliases are top-level JSON keys the issues name for figures the report
// keeps under another key: alias → figure key.
var aliases = map[string]string{
	"worker_cpu_us_per_event_redis": "redis_worker_cpu_us_per_event",
	"worker_cpu_us_per_event_nats":  "nats_worker_cpu_us_per_event",
	"producer_cpu_us_per_event":     "redis_bench_cpu_us_per_event",
	"nats_transport_ceiling_per_s":  "ceiling_nats_process_transport_per_s",
}

// MarshalJSON writes every figure's median as a top-level number under
// its key and its aliases (Headline lists those the issues ask for), plus "figures" with
// each figure's samples, min, median, max and target, "machine",
// "config", "quick", "notes" and "seconds". Keys come out sorted.
func (r *Report) MarshalJSON() ([]byte, error) {
	out := map[string]any{
		"figures": r.Figures,
		"machine": r.Machine,
		"config":  r.Config,
		"quick":   r.Quick,
		"notes":   r.Notes,
		"seconds": round(r.Seconds, 1),
	}
	for _, f := range r.Figures {
		out[f.Key] = round(f.Median, 3)
	}
	for alias, key := range aliases {
		if v, ok := out[key]; ok {
			out[alias] = v
		}
	}
	return json.Marshal(out)
}

// WriteJSON writes the report as indented JSON (see MarshalJSON).
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteTable writes the report as an aligned text table: one row per
// figure with min, median and max (min and max are left out with one
// repeat), the target and whether the median meets it; then the machine,
// the load average and the notes.
func (r *Report) WriteTable(w io.Writer) error {
	rows := [][]string{{"section", "figure", "unit", "min", "median", "max", "target", ""}}
	section := ""
	for _, f := range r.Figures {
		s := ""
		if f.Section != section {
			section, s = f.Section, f.Section
		}
		target, met := "", ""
		if f.Target != nil {
			target, met = f.Target.String(), "MISSED"
			if *f.Met {
				met = "met"
			}
		}
		lo, hi := formatNumber(f.Min), formatNumber(f.Max)
		if len(f.Samples) == 1 {
			lo, hi = "", ""
		}
		rows = append(rows, []string{s, f.Label, f.Unit, lo, formatNumber(f.Median), hi, target, met})
	}
	right := []bool{false, false, false, true, true, true, true, false}
	widths := make([]int, len(right))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				line.WriteString("  ")
			}
			if right[i] {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	m := r.Machine
	fmt.Fprintf(&b, "\nmachine: %s, %d cores, %d MB; %s; redis %s; nats-server %s; %s\n",
		m.CPU, m.Cores, m.MemoryMB, m.Kernel, m.RedisVersion, m.NATSVersion, m.GoVersion)
	fmt.Fprintf(&b, "load average (1, 5, 15 min): %s before, %s after; %d repeat(s) per figure; took %.0f s\n",
		m.LoadAvgBefore, m.LoadAvgAfter, r.Config.Repeats, r.Seconds)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatNumber prints v with thousands separators and a precision that
// suits its size: 123,456 · 12.3 · 1.23 · 0.123.
func formatNumber(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return groupThousands(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
