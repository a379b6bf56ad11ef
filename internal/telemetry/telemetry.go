// Package telemetry owns the worker's Prometheus metrics and its HTTP
// endpoints: /metrics, /healthz (the process is alive) and /readyz (the
// worker can reach its source and Redis and applies batches), and, only
// when asked for on a listener of its own, Go's profiles under
// /debug/pprof/ (see PprofHandler).
//
// Every series exists from the start: counters with labels are created at
// 0 for every label value the caller declares (Labels), and the gauges
// hold 0 until first set, so that increase() and absent() alerts work from
// a worker's first scrape. A scrape only reads values: nothing is asked of
// Redis or NATS when /metrics is served (the source's backlog is refreshed
// by the consume loop on an interval, see SetBacklog).
//
// Every method of *Metrics is safe on a nil receiver, so components take an
// optional *Metrics.
package telemetry

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamindex/indexer/internal/buildinfo"
)

// Labels are the label values the labelled counters are created with (at
// 0), so that each of their series exists before it first counts. Values
// not declared here still count; their series appear when first used.
type Labels struct {
	// Outcomes of applied events (indexer_events_total{outcome}).
	Outcomes []string
	// DeadLetterKinds (indexer_dead_letters_total{kind}).
	DeadLetterKinds []string
	// FailureSteps and FailureClasses: every step × class pair of
	// indexer_failures_total{step,class}.
	FailureSteps, FailureClasses []string
}

// processMaxAge is how long the process metrics (CPU, memory, open files)
// are served before they are read again: reading them costs more than all
// the rest of a scrape.
const processMaxAge = time.Second

// Metrics are the worker's metrics, on their own registry.
type Metrics struct {
	reg *prometheus.Registry

	events       *prometheus.CounterVec
	batches      prometheus.Counter
	batchSize    prometheus.Histogram
	applySeconds prometheus.Histogram
	redeliveries prometheus.Counter
	deadLetters  *prometheus.CounterVec
	acks         prometheus.Counter
	lost         prometheus.Counter
	failures     *prometheus.CounterVec
	lag          prometheus.Gauge
	pending      prometheus.Gauge
	dlqLength    prometheus.Gauge
	lastApply    prometheus.Gauge
	eventAge     prometheus.Histogram
	outsideHour  prometheus.Counter

	ready atomic.Bool
}

// NewMetrics returns the metrics of a worker reading source ("redis" or
// "nats"), every labelled counter created at 0 for the values in labels,
// with indexer_build_info and Go and process collectors.
func NewMetrics(source string, labels Labels) *Metrics {
	cl := prometheus.Labels{"source": source}
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "indexer_events_total",
			Help: "Events applied, by outcome (applied, tombstoned, duplicate, ignored_tombstoned, superseded).", ConstLabels: cl}, []string{"outcome"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_batches_total",
			Help: "Batches applied and acknowledged.", ConstLabels: cl}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "indexer_batch_size",
			Help: "Messages per batch.", ConstLabels: cl, Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "indexer_apply_seconds",
			Help: "Time to apply one batch to the index (patch_index calls).", ConstLabels: cl,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_redeliveries_total",
			Help: "Messages received that had been delivered before.", ConstLabels: cl}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "indexer_dead_letters_total",
			Help: "Messages moved to the dead-letter destination by this worker, by kind (invalid, max_deliver, server_max_deliver).", ConstLabels: cl}, []string{"kind"}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_acks_total",
			Help: "Messages acknowledged after they were applied.", ConstLabels: cl}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_lost_messages_total",
			Help: "Messages trimmed from the stream before they were applied (ALARM: events lost).", ConstLabels: cl}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "indexer_failures_total",
			Help: "Failures by step (fetch, apply, ack, dead_letter, backlog) and class (retry, poison, fatal).", ConstLabels: cl}, []string{"step", "class"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "indexer_consumer_lag",
			Help: "Messages in the stream the group has not read yet (the whole group's, as last refreshed).", ConstLabels: cl}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "indexer_pending_messages",
			Help: "Messages delivered to the group and not yet acknowledged (the whole group's, as last refreshed).", ConstLabels: cl}),
		dlqLength: prometheus.NewGauge(prometheus.GaugeOpts{Name: "indexer_dead_letter_messages",
			Help: "Messages held by the dead-letter destination (as last refreshed).", ConstLabels: cl}),
		lastApply: prometheus.NewGauge(prometheus.GaugeOpts{Name: "indexer_last_apply_timestamp_seconds",
			Help: "When this worker last applied and acknowledged a batch, Unix seconds; 0 until its first.", ConstLabels: cl}),
		eventAge: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "indexer_event_age_seconds",
			Help: "Age of events when applied (apply time minus event time).", ConstLabels: cl,
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}),
		outsideHour: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_events_outside_hour_total",
			Help: "Events applied whose files' min_time..max_time leave their hour folder (GigAPI's readers prune by folder and miss that data).", ConstLabels: cl}),
	}
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "indexer_ready",
		Help: "1 while the worker reaches its source and Redis and applies batches (what /readyz says), else 0.", ConstLabels: cl},
		func() float64 {
			if m.ready.Load() {
				return 1
			}
			return 0
		})
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "indexer_build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"source": source, "version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion}})
	build.Set(1)
	for _, o := range labels.Outcomes {
		m.events.WithLabelValues(o)
	}
	for _, k := range labels.DeadLetterKinds {
		m.deadLetters.WithLabelValues(k)
	}
	for _, s := range labels.FailureSteps {
		for _, c := range labels.FailureClasses {
			m.failures.WithLabelValues(s, c)
		}
	}
	reg.MustRegister(m.events, m.batches, m.batchSize, m.applySeconds, m.redeliveries, m.deadLetters,
		m.acks, m.lost, m.failures, m.lag, m.pending, m.dlqLength, m.lastApply, m.eventAge, m.outsideHour, ready, build,
		collectors.NewGoCollector(),
		&cachedCollector{c: collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), maxAge: processMaxAge, now: time.Now})
	return m
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Outcomes counts events by outcome.
func (m *Metrics) Outcomes(outcome string, n int) {
	if m != nil && n > 0 {
		m.events.WithLabelValues(outcome).Add(float64(n))
	}
}

// Batch records a batch applied and acknowledged at time done.
func (m *Metrics) Batch(size int, apply time.Duration, done time.Time) {
	if m != nil {
		m.batches.Inc()
		m.batchSize.Observe(float64(size))
		m.applySeconds.Observe(apply.Seconds())
		m.lastApply.Set(float64(done.UnixNano()) / 1e9)
	}
}

// Redelivered counts messages delivered before.
func (m *Metrics) Redelivered(n int) {
	if m != nil && n > 0 {
		m.redeliveries.Add(float64(n))
	}
}

// DeadLettered counts dead letters of a kind.
func (m *Metrics) DeadLettered(kind string, n int) {
	if m != nil && n > 0 {
		m.deadLetters.WithLabelValues(kind).Add(float64(n))
	}
}

// Acked counts acknowledged messages.
func (m *Metrics) Acked(n int) {
	if m != nil && n > 0 {
		m.acks.Add(float64(n))
	}
}

// Lost counts messages lost to trimming.
func (m *Metrics) Lost(n int) {
	if m != nil && n > 0 {
		m.lost.Add(float64(n))
	}
}

// OutsideHour counts applied events whose files' time range leaves their
// hour folder (see index.OutsideHour).
func (m *Metrics) OutsideHour(n int) {
	if m != nil && n > 0 {
		m.outsideHour.Add(float64(n))
	}
}

// Failure counts a failure of a step, by class.
func (m *Metrics) Failure(step, class string) {
	if m != nil {
		m.failures.WithLabelValues(step, class).Inc()
	}
}

// SetBacklog sets the group's backlog gauges: its lag (messages not read
// yet), its pending messages (read, not acknowledged) and the length of
// the dead-letter destination. A negative value leaves its gauge as it is
// (the source could not tell).
func (m *Metrics) SetBacklog(lag, pending, deadLetters int64) {
	if m == nil {
		return
	}
	for _, g := range [...]struct {
		g prometheus.Gauge
		v int64
	}{{m.lag, lag}, {m.pending, pending}, {m.dlqLength, deadLetters}} {
		if g.v >= 0 {
			g.g.Set(float64(g.v))
		}
	}
}

// EventAge records the age of an applied event.
func (m *Metrics) EventAge(d time.Duration) {
	if m != nil {
		m.eventAge.Observe(d.Seconds())
	}
}

// SetReady sets what /readyz and indexer_ready report.
func (m *Metrics) SetReady(ok bool) {
	if m != nil {
		m.ready.Store(ok)
	}
}

// Ready reports what /readyz reports.
func (m *Metrics) Ready() bool { return m != nil && m.ready.Load() }

// cachedCollector serves what its collector collected for up to maxAge,
// so that frequent scrapes do not redo expensive collections (the process
// collector reads several files under /proc each time).
type cachedCollector struct {
	c      prometheus.Collector
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	at      time.Time
	metrics []prometheus.Metric
}

func (c *cachedCollector) Describe(ch chan<- *prometheus.Desc) { c.c.Describe(ch) }

// Collect sends the cached metrics, collecting them again first if they
// are older than maxAge. The metrics a collector sends are immutable, so
// sending them again is safe.
func (c *cachedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.metrics == nil || now.Sub(c.at) >= c.maxAge {
		fresh := make(chan prometheus.Metric, 32)
		done := make(chan struct{})
		var ms []prometheus.Metric
		go func() {
			for m := range fresh {
				ms = append(ms, m)
			}
			close(done)
		}()
		c.c.Collect(fresh)
		close(fresh)
		<-done
		c.metrics, c.at = ms, now
	}
	for _, m := range c.metrics {
		ch <- m
	}
}
