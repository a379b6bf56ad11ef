// Package telemetry owns the worker's Prometheus metrics and its HTTP
// endpoints: /metrics, /healthz (the process is alive), /readyz (the
// worker can reach its source and Redis and applies batches) and Go's
// profiles under /debug/pprof/.
//
// Every method of *Metrics is safe on a nil receiver, so components take an
// optional *Metrics.
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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
	eventAge     prometheus.Histogram
	outsideHour  prometheus.Counter

	ready atomic.Bool
}

// NewMetrics returns the metrics of a worker reading source ("redis" or
// "nats"), with Go and process collectors.
func NewMetrics(source string) *Metrics {
	labels := prometheus.Labels{"source": source}
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "indexer_events_total",
			Help: "Events applied, by outcome (applied, tombstoned, duplicate, ignored_tombstoned).", ConstLabels: labels}, []string{"outcome"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_batches_total",
			Help: "Batches applied and acknowledged.", ConstLabels: labels}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "indexer_batch_size",
			Help: "Messages per batch.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "indexer_apply_seconds",
			Help: "Time to apply one batch to the index (patch_index calls).", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_redeliveries_total",
			Help: "Messages received that had been delivered before.", ConstLabels: labels}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "indexer_dead_letters_total",
			Help: "Messages moved to the dead-letter destination, by kind (invalid, max_deliver, server_max_deliver).", ConstLabels: labels}, []string{"kind"}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_acks_total",
			Help: "Messages acknowledged after they were applied.", ConstLabels: labels}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_lost_messages_total",
			Help: "Pending messages whose payload was trimmed from the stream before they were applied (ALARM: events lost).", ConstLabels: labels}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "indexer_failures_total",
			Help: "Failures by step (fetch, apply, ack, dead_letter) and class (retry, poison, fatal).", ConstLabels: labels}, []string{"step", "class"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "indexer_consumer_lag",
			Help: "Messages in the stream the group has not read yet.", ConstLabels: labels}),
		eventAge: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "indexer_event_age_seconds",
			Help: "Age of events when applied (apply time minus event time).", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}),
		outsideHour: prometheus.NewCounter(prometheus.CounterOpts{Name: "indexer_events_outside_hour_total",
			Help: "Events applied whose files' min_time..max_time leave their hour folder (GigAPI's readers prune by folder and miss that data).", ConstLabels: labels}),
	}
	reg.MustRegister(m.events, m.batches, m.batchSize, m.applySeconds, m.redeliveries, m.deadLetters,
		m.acks, m.lost, m.failures, m.lag, m.eventAge, m.outsideHour,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

// Batch records an applied and acknowledged batch.
func (m *Metrics) Batch(size int, apply time.Duration) {
	if m != nil {
		m.batches.Inc()
		m.batchSize.Observe(float64(size))
		m.applySeconds.Observe(apply.Seconds())
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

// SetLag sets the consumer lag.
func (m *Metrics) SetLag(n int64) {
	if m != nil {
		m.lag.Set(float64(n))
	}
}

// EventAge records the age of an applied event.
func (m *Metrics) EventAge(d time.Duration) {
	if m != nil {
		m.eventAge.Observe(d.Seconds())
	}
}

// SetReady sets what /readyz reports.
func (m *Metrics) SetReady(ok bool) {
	if m != nil {
		m.ready.Store(ok)
	}
}

// Ready reports what /readyz reports.
func (m *Metrics) Ready() bool { return m != nil && m.ready.Load() }

// Handler serves /metrics, /healthz, /readyz and Go's profiles under
// /debug/pprof/ (the listener is loopback unless configured otherwise).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !m.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

// Server serves a handler until its context ends.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr ("127.0.0.1:0" picks a free port).
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx is done, then shuts down within 5 s.
func (s *Server) Serve(ctx context.Context, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		log.Warn("metrics server shutdown", "err", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
