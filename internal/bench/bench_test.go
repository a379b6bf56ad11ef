package bench_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamindex/indexer/internal/bench"
	"github.com/streamindex/indexer/internal/testserver"
)

// buildIndexer builds the indexer binary, whose 'run' and 'query'
// commands the bench starts as child processes.
func buildIndexer(t *testing.T) string {
	t.Helper()
	bin, err := testserver.BuildIndexer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestRunTiny runs every part of the bench in a tiny configuration and
// checks that the report holds every headline figure, positive, in its
// JSON and its table.
func TestRunTiny(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found on PATH: install it with `sudo apt-get install -y redis-server`; tests never skip for a missing server")
	}
	natsServer, err := testserver.BuildNATSServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	cfg := bench.Config{
		WorkerBinary:    buildIndexer(t),
		NATSServer:      natsServer,
		Dir:             t.TempDir(),
		Repeats:         1,
		Events:          3000,
		NaiveEvents:     300,
		BatchSizes:      []int{100, 1000},
		Workers:         []int{1, 2},
		LatencyDuration: 1500 * time.Millisecond,
		LatencyWarmup:   300 * time.Millisecond,
		Preloads:        []int{1000, 3000},
		ProbeEvents:     1000,
		QueryFiles:      2000,
		Progress:        &progress,
	}
	rep, err := bench.Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, js.String())
	}
	keys := append([]string{
		"ceiling_redis_transport_per_s", "ceiling_nats_transport_per_s", "nats_p99_latency_ms", "nats_server_cpu_us_per_event",
		"redis_e2e_batch_100_events_per_s", "redis_e2e_workers_1_events_per_s", "redis_e2e_workers_2_events_per_s",
		"redis_e2e_workers_2_worker_cpu_us_per_event", "redis_e2e_workers_2_avg_batch",
		"patch_us_per_event_1k_files", "patch_us_per_event_3k_files",
		"ceiling_nats_process_transport_no_msgid_per_s", "ceiling_nats_process_transport_async_per_s",
		"nats_async_e2e_events_per_s", "nats_async_server_cpu_us_per_event", "nats_async_e2e_over_transport",
		"redis_page_faults_per_event", "nats_page_faults_per_event",
	}, bench.Headline...)
	for _, k := range keys {
		v, ok := doc[k].(float64)
		if !ok || v <= 0 {
			t.Errorf("JSON report: %s = %v, want a positive number", k, doc[k])
		}
	}
	if doc["machine"].(map[string]any)["load_average_before"] == "" {
		t.Error("JSON report: no load average")
	}
	for _, f := range rep.Figures {
		if len(f.Samples) != cfg.Repeats && f.Section != "ratios" {
			t.Errorf("figure %s has %d samples, want %d", f.Key, len(f.Samples), cfg.Repeats)
		}
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"redis e2e", "nats e2e", "p99 publish→indexed", "load average", "not 200,000", "not 1,000,000"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestConfigRefused checks that Run refuses a configuration before it
// starts anything.
func TestConfigRefused(t *testing.T) {
	for name, cfg := range map[string]bench.Config{
		"no binary":       {},
		"unknown part":    {WorkerBinary: "indexer", Parts: []string{"e2e", "everything"}},
		"latency alone":   {WorkerBinary: "indexer", Parts: []string{bench.PartLatency}},
		"negative events": {WorkerBinary: "indexer", Events: -1},
		"no nats-server":  {WorkerBinary: "indexer", NATSServer: "/nonexistent/nats-server", Parts: []string{bench.PartCeiling}},
	} {
		if rep, err := bench.Run(t.Context(), cfg); err == nil || rep != nil {
			t.Errorf("%s: Run = %v, %v; want no report and an error", name, rep, err)
		}
	}
}
