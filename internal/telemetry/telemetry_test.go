package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestEndpoints(t *testing.T) {
	m := NewMetrics("redis")
	srv, err := Listen("127.0.0.1:0", m.Handler())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, slog.New(slog.DiscardHandler)) }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
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
	m.Batch(3, 2*time.Millisecond)
	_, body := get("/metrics")
	for _, want := range []string{
		`indexer_events_total{outcome="applied",source="redis"} 3`,
		`indexer_acks_total{source="redis"} 3`,
		`indexer_lost_messages_total{source="redis"} 1`,
		`indexer_batch_size_count{source="redis"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get("/debug/pprof/cmdline"); code != 200 {
		t.Errorf("/debug/pprof = %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	var nilMetrics *Metrics
	nilMetrics.Outcomes("applied", 1) // safe on a nil receiver
	if nilMetrics.Ready() {
		t.Error("nil metrics ready")
	}
}
