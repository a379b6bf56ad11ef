package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var testLabels = Labels{
	Outcomes:        []string{"applied", "duplicate"},
	DeadLetterKinds: []string{"invalid", "max_deliver"},
	FailureSteps:    []string{"fetch", "apply"},
	FailureClasses:  []string{"retry", "fatal"},
}

// serve runs h on a free loopback port until the test ends and returns a
// GET function.
func serve(t *testing.T, h http.Handler) func(path string) (int, string) {
	t.Helper()
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

func TestEndpoints(t *testing.T) {
	m := NewMetrics("redis", testLabels)
	get := serve(t, m.Handler())
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the first batch = %d, want 503", code)
	}
	m.SetReady(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	m.Outcomes("applied", 3)
	m.Acked(3)
	m.Lost(1)
	m.Batch(3, 2*time.Millisecond, time.Unix(1700000000, 500e6))
	m.SetBacklog(7, 2, 5)
	m.SetBacklog(-1, 3, -1) // unknown values leave their gauges alone
	_, body := get("/metrics")
	for _, want := range []string{
		`indexer_events_total{outcome="applied",source="redis"} 3`,
		`indexer_acks_total{source="redis"} 3`,
		`indexer_lost_messages_total{source="redis"} 1`,
		`indexer_batch_size_count{source="redis"} 1`,
		`indexer_last_apply_timestamp_seconds{source="redis"} 1.7000000005e+09`,
		`indexer_consumer_lag{source="redis"} 7`,
		`indexer_pending_messages{source="redis"} 3`,
		`indexer_dead_letter_messages{source="redis"} 5`,
		`indexer_ready{source="redis"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Profiles are not on the metrics listener.
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		if code, _ := get(p); code != http.StatusNotFound {
			t.Errorf("%s on the metrics handler = %d, want 404", p, code)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.Outcomes("applied", 1) // safe on a nil receiver
	nilMetrics.SetBacklog(1, 1, 1)
	if nilMetrics.Ready() {
		t.Error("nil metrics ready")
	}
}

// TestEverySeriesFromStart: before anything happened, every declared
// label value and every gauge is exposed at 0, and indexer_build_info is 1.
func TestEverySeriesFromStart(t *testing.T) {
	m := NewMetrics("nats", testLabels)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`indexer_events_total{outcome="applied",source="nats"} 0`,
		`indexer_events_total{outcome="duplicate",source="nats"} 0`,
		`indexer_dead_letters_total{kind="invalid",source="nats"} 0`,
		`indexer_dead_letters_total{kind="max_deliver",source="nats"} 0`,
		`indexer_failures_total{class="retry",source="nats",step="fetch"} 0`,
		`indexer_failures_total{class="fatal",source="nats",step="fetch"} 0`,
		`indexer_failures_total{class="retry",source="nats",step="apply"} 0`,
		`indexer_failures_total{class="fatal",source="nats",step="apply"} 0`,
		`indexer_lost_messages_total{source="nats"} 0`,
		`indexer_consumer_lag{source="nats"} 0`,
		`indexer_pending_messages{source="nats"} 0`,
		`indexer_dead_letter_messages{source="nats"} 0`,
		`indexer_last_apply_timestamp_seconds{source="nats"} 0`,
		`indexer_ready{source="nats"} 0`,
		`goversion="` + runtime.Version() + `"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics at start lacks %q", want)
		}
	}
	if !strings.Contains(body, "indexer_build_info{") || !strings.Contains(body, `source="nats",version="`) {
		t.Errorf("no indexer_build_info with its labels:\n%s", grep(body, "indexer_build_info"))
	}
}

func grep(body, s string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestPprofHandler(t *testing.T) {
	get := serve(t, PprofHandler())
	if code, body := get("/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d", code)
	}
	if code, body := get("/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("goroutine profile = %d %.100s", code, body)
	}
	code, body := get("/debug/pprof/cmdline")
	if code != http.StatusNotFound || strings.Contains(body, "telemetry.test") {
		t.Errorf("/debug/pprof/cmdline = %d %q, want 404 without the command line", code, body)
	}
	if code, _ := get("/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the pprof handler = %d", code)
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:6060": true, "127.1.2.3:0": true, "[::1]:6060": true, "localhost:6060": true,
		":6060": false, "0.0.0.0:6060": false, "[::]:6060": false, "10.0.0.1:6060": false, "example.com:6060": false, "6060": false,
	} {
		if err := CheckLoopback(addr); (err == nil) != ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

// BenchmarkScrape measures one /metrics scrape, with and without a
// scraper accepting gzip (Prometheus does): the cost a scrape adds to the
// worker, also as CPU time (user + system, GC included), which a busy
// machine does not inflate as it does the wall time of ns/op.
func BenchmarkScrape(b *testing.B) {
	for _, gz := range []bool{true, false} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			m := NewMetrics("redis", testLabels)
			h := m.Handler()
			b.ReportAllocs()
			before := cpuTime(b)
			for b.Loop() {
				req := httptest.NewRequest("GET", "/metrics", nil)
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
			b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the CPU time the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingCollector counts its collections; its one metric's value is the
// count.
type countingCollector struct {
	desc *prometheus.Desc
	n    int
}

func (c *countingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *countingCollector) Collect(ch chan<- prometheus.Metric) {
	c.n++
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.n))
}

func TestCachedCollector(t *testing.T) {
	now := time.Unix(1000, 0)
	cc := &countingCollector{desc: prometheus.NewDesc("x", "x", nil, nil)}
	c := &cachedCollector{c: cc, maxAge: time.Second, now: func() time.Time { return now }}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	value := func() float64 {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("gather: %v %v", mfs, err)
		}
		return mfs[0].Metric[0].GetGauge().GetValue()
	}
	if v := value(); v != 1 {
		t.Fatalf("first scrape = %v", v)
	}
	now = now.Add(999 * time.Millisecond)
	if v := value(); v != 1 || cc.n != 1 {
		t.Errorf("scrape within maxAge = %v after %d collections, want the cached 1", v, cc.n)
	}
	now = now.Add(time.Millisecond)
	if v := value(); v != 2 {
		t.Errorf("scrape after maxAge = %v, want a fresh 2", v)
	}
}
