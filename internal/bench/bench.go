// Package bench measures, in one run, how close the indexer comes to
// what the machine allows: 'indexer bench' and 'make bench' call Run.
//
// Run starts its own servers on loopback (redis-server as a child process
// with a temporary directory, a NATS server with JetStream in this
// process) and measures, each figure Repeats times:
//
//   - ceilings: pipelined HSET of 300-byte values (the raw write rate of
//     this Redis), and each stream's transport alone: publish, fetch and
//     acknowledge without applying;
//   - the naive baseline: one EVAL of a per-event script and one XACK per
//     event, the design the indexer replaces;
//   - the NATS transport ceiling again with the opt-in settings: without
//     Nats-Msg-Id, and also with asynchronous persistence;
//   - the indexer end to end through Redis Streams and NATS JetStream
//     (NATS also with the opt-in settings):
//     the producer in this process, workers as child processes of the
//     indexer binary ('indexer run'), events per second, Redis CPU per
//     event in patch_index (INFO commandstats), worker CPU and peak RSS;
//   - publish→indexed latency at half the measured maximum rate, from
//     marker events the producer publishes every millisecond and a poller
//     watches for in the index every millisecond;
//   - scaling: batch sizes and worker counts; time per event with small
//     and large indexes; 'indexer query' over one day of a large table.
//
// The result is a Report: a text table and a JSON document with the
// median of every figure at its top level.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Parts of a run, in the order Run measures them.
const (
	PartCeiling   = "ceiling"    // HSET ceiling, Redis and NATS transport ceilings
	PartNaive     = "naive"      // the per-event baseline
	PartE2E       = "e2e"        // the indexer end to end, Redis and NATS
	PartLatency   = "latency"    // publish→indexed latency at half load; needs PartE2E
	PartBatch     = "batch"      // events/s by batch size
	PartWorkers   = "workers"    // events/s by number of workers
	PartIndexSize = "index-size" // time per event by index size
	PartQuery     = "query"      // 'indexer query' over one day
	PartCluster   = "cluster"    // events/s and CPU by Redis Cluster shards and workers
)

// AllParts lists every part in run order.
var AllParts = []string{PartCeiling, PartNaive, PartE2E, PartLatency, PartBatch, PartWorkers, PartIndexSize, PartQuery, PartCluster}

// Config configures Run. The zero value is the full run of the issue,
// except for WorkerBinary, which is required.
type Config struct {
	// WorkerBinary is the indexer executable whose 'run' and 'query'
	// commands the bench starts as child processes; cmd/indexer passes
	// its own (os.Executable). Required unless only ceiling, naive and
	// index-size are measured.
	WorkerBinary string `json:"worker_binary"`
	// RedisServer is the redis-server executable. Default "redis-server"
	// from PATH.
	RedisServer string `json:"redis_server,omitempty"`
	// NATSServer is the nats-server executable the bench runs in its own
	// process, as operators run it, for the NATS transport ceiling, the
	// NATS end-to-end and the NATS latency runs ('make bench' builds
	// bin/nats-server from the version go.mod requires). Default
	// "nats-server" from PATH. The in-process server (the one 'indexer run
	// --embedded-nats' runs) serves a second transport ceiling and the
	// cluster part.
	NATSServer string `json:"nats_server,omitempty"`
	// Dir is where the run's temporary directory (Redis and NATS data) is
	// created and removed. Default os.TempDir().
	Dir string `json:"-"`
	// Quick marks a reduced run for smoke checks; the report says so.
	// Quick() sets it with its reduced sizes.
	Quick bool `json:"quick"`
	// Repeats is how many times each figure is measured. Default 3.
	Repeats int `json:"repeats"`
	// Events is the number of events of each end-to-end run and of each
	// ceiling run. Default 200,000.
	Events int `json:"events"`
	// NaiveEvents is the number of events of each naive-baseline run.
	// Default 50,000.
	NaiveEvents int `json:"naive_events"`
	// BatchSize is the workers' --batch-size in the end-to-end, latency
	// and worker-count runs. Default 1,000.
	BatchSize int `json:"batch_size"`
	// BatchSizes are the batch sizes of the scaling runs (one worker, Redis
	// Streams). Default 100, 500, 1,000, 5,000.
	BatchSizes []int `json:"batch_sizes"`
	// Workers are the worker counts of the scaling runs (Redis Streams).
	// Default 1, 2, 3.
	Workers []int `json:"workers"`
	// LatencyDuration is how long the producer publishes at half the
	// maximum rate in each latency run. Default 6 s.
	LatencyDuration time.Duration `json:"latency_duration_ns"`
	// LatencyWarmup: markers published in the first LatencyWarmup of a
	// latency run are not counted. Default 1 s.
	LatencyWarmup time.Duration `json:"latency_warmup_ns"`
	// ClusterShards are the numbers of Redis Cluster masters of the
	// cluster part's runs (NATS source, cluster layout, the largest of
	// Workers); the largest is also run with each of Workers. Default 1,
	// 2, 3.
	ClusterShards []int `json:"cluster_shards"`
	// Preloads are the index sizes, in files, at which the time per event
	// is measured. Default 10,000, 100,000 and 1,000,000.
	Preloads []int `json:"preloads"`
	// ProbeEvents is the number of events applied per repeat to measure
	// the time per event at each index size. Default 20,000.
	ProbeEvents int `json:"probe_events"`
	// QueryFiles is the number of files of the one-day table that
	// 'indexer query' reads. Default 100,000.
	QueryFiles int `json:"query_files"`
	// Parts selects what to measure (see AllParts); empty means all.
	Parts []string `json:"parts"`
	// Progress receives progress lines and bars; nil means none.
	Progress io.Writer `json:"-"`
	// ProgressTTY redraws progress bars in place (Progress is a terminal).
	ProgressTTY bool `json:"-"`
}

// The sizes of the full run, which the issue asks for.
const (
	fullRepeats = 3
	fullEvents  = 200_000
	fullPreload = 1_000_000
	fullQuery   = 100_000
)

// Quick returns the reduced configuration of 'indexer bench --quick',
// which runs in well under two minutes on two cores: one repeat, 50,000
// events per run, a 3 s latency run, and index sizes of 10,000 and
// 100,000 files instead of 1,000,000. Set WorkerBinary.
func Quick() Config {
	return Config{
		Quick:           true,
		Repeats:         1,
		Events:          50_000,
		NaiveEvents:     5_000,
		LatencyDuration: 3 * time.Second,
		LatencyWarmup:   500 * time.Millisecond,
		Preloads:        []int{10_000, 100_000},
		ProbeEvents:     10_000,
	}
}

func (c *Config) setDefaults() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Repeats, fullRepeats)
	def(&c.Events, fullEvents)
	def(&c.NaiveEvents, 50_000)
	def(&c.BatchSize, 1000)
	def(&c.ProbeEvents, 20_000)
	def(&c.QueryFiles, fullQuery)
	if c.LatencyDuration == 0 {
		c.LatencyDuration = 6 * time.Second
	}
	if c.LatencyWarmup == 0 {
		c.LatencyWarmup = time.Second
	}
	if c.BatchSizes == nil {
		c.BatchSizes = []int{100, 500, 1000, 5000}
	}
	if c.Workers == nil {
		c.Workers = []int{1, 2, 3}
	}
	if c.ClusterShards == nil {
		c.ClusterShards = []int{1, 2, 3}
	}
	if c.Preloads == nil {
		c.Preloads = []int{10_000, 100_000, fullPreload}
	}
	if len(c.Parts) == 0 {
		c.Parts = AllParts
	}
	for _, p := range c.Parts {
		if !slices.Contains(AllParts, p) {
			return fmt.Errorf("bench: unknown part %q (parts: %s)", p, strings.Join(AllParts, ", "))
		}
	}
	if c.has(PartLatency) && !c.has(PartE2E) {
		return errors.New("bench: the latency part needs the e2e part (it runs at half the rate e2e measures)")
	}
	positive := c.Repeats > 0 && c.Events > 0 && c.NaiveEvents > 0 && c.BatchSize > 0 && c.ProbeEvents > 0 && c.QueryFiles > 0
	for _, list := range [][]int{c.BatchSizes, c.Workers, c.Preloads, c.ClusterShards} {
		for _, v := range list {
			positive = positive && v > 0
		}
	}
	if !positive || c.LatencyDuration <= 0 || c.LatencyWarmup < 0 || c.LatencyWarmup >= c.LatencyDuration {
		return errors.New("bench: sizes, counts and repeats must be positive, and the latency warm-up shorter than the latency run")
	}
	needsWorkers := c.has(PartE2E) || c.has(PartLatency) || c.has(PartBatch) || c.has(PartWorkers) || c.has(PartQuery) || c.has(PartCluster)
	if needsWorkers && c.WorkerBinary == "" {
		return errors.New("bench: WorkerBinary (the indexer executable) is required")
	}
	if c.NATSServer == "" {
		c.NATSServer = "nats-server"
	}
	if c.needsNATSProcess() {
		if _, err := exec.LookPath(c.NATSServer); err != nil {
			return fmt.Errorf("bench: nats-server %q not found: 'make bench' builds bin/nats-server and passes it; or build it with 'go build -o bin/nats-server github.com/nats-io/nats-server/v2' and pass --nats-server bin/nats-server", c.NATSServer)
		}
	}
	return nil
}

func (c *Config) has(part string) bool { return slices.Contains(c.Parts, part) }

// needsNATSProcess reports whether a selected part runs NATS with the
// server in its own process.
func (c *Config) needsNATSProcess() bool {
	return c.has(PartCeiling) || c.has(PartE2E) || c.has(PartLatency)
}

// notes say how the configuration differs from the full run of the issue.
func (c *Config) notes() []string {
	var n []string
	if c.Quick {
		n = append(n, "QUICK RUN for smoke checks: fewer events, fewer repeats and smaller indexes than the full run; do not quote these figures")
	}
	if c.Repeats < fullRepeats {
		n = append(n, fmt.Sprintf("each figure was measured %d time(s), not %d: min = median = max", c.Repeats, fullRepeats))
	}
	if c.Events < fullEvents {
		n = append(n, fmt.Sprintf("end-to-end runs publish %s events, not %s", formatNumber(float64(c.Events)), formatNumber(fullEvents)))
	}
	if c.has(PartIndexSize) && slices.Max(c.Preloads) < fullPreload {
		n = append(n, fmt.Sprintf("the largest index measured holds %s files, not %s (the 1M preload was shrunk)",
			formatNumber(float64(slices.Max(c.Preloads))), formatNumber(fullPreload)))
	}
	if c.has(PartQuery) && c.QueryFiles != fullQuery {
		n = append(n, fmt.Sprintf("the query table holds %s files, not %s; its figure keeps the key query_100k_ms",
			formatNumber(float64(c.QueryFiles)), formatNumber(fullQuery)))
	}
	if len(c.Parts) < len(AllParts) {
		n = append(n, "only these parts were measured: "+strings.Join(c.Parts, ", "))
	}
	return n
}

// Run measures what cfg selects and returns the report. It owns every
// server, child process and goroutine it starts, and stops all of them
// before it returns, also when ctx ends. On error it returns the figures
// measured so far with the error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	began := time.Now()
	e := &env{cfg: cfg, pool: newPool(), rep: &Report{Config: cfg, Quick: cfg.Quick}}
	err := e.run(ctx)
	e.rep.Machine.LoadAvgAfter = LoadAverage()
	e.rep.Seconds = time.Since(began).Seconds()
	if cerr := e.close(); err == nil && cerr != nil {
		err = fmt.Errorf("bench: stop servers: %w", cerr)
	}
	return e.rep, err
}

func (e *env) run(ctx context.Context) error {
	if err := e.start(ctx); err != nil {
		return err
	}
	e.rep.Machine = e.machine(ctx)
	e.rep.Notes = append(e.cfg.notes(), methodNotes...)
	e.phase("load average %s; redis-server %s on %s, NATS on %s", e.rep.Machine.LoadAvgBefore,
		e.rep.Machine.RedisVersion, e.redis.Addr(), e.nats.ClientURL())
	rs := newRedisStream(e.rc, e.redis.URL())
	ns := newNATSStream(e.js, e.nats.ClientURL(), e.redis.URL()) // server in this process
	var np natsProcStream                                        // server in its own process
	if e.natsProc != nil {
		np = natsProcStream{newNATSStream(e.jsProc, e.natsProc.ClientURL(), e.redis.URL()), e.natsProc.PID()}
	}
	parts := map[string]func(context.Context) error{
		PartCeiling:   func(ctx context.Context) error { return e.ceilingPart(ctx, rs, np, ns) },
		PartNaive:     func(ctx context.Context) error { return e.naivePart(ctx, rs) },
		PartE2E:       func(ctx context.Context) error { return e.e2ePart(ctx, rs, np) },
		PartLatency:   func(ctx context.Context) error { return e.latencyPart(ctx, rs, np) },
		PartBatch:     func(ctx context.Context) error { return e.batchPart(ctx, rs) },
		PartWorkers:   func(ctx context.Context) error { return e.workersPart(ctx, rs) },
		PartIndexSize: e.indexSizePart,
		PartQuery:     e.queryPart,
		PartCluster:   e.clusterPart,
	}
	for _, p := range AllParts {
		if !e.cfg.has(p) {
			continue
		}
		if err := parts[p](ctx); err != nil {
			return err
		}
	}
	e.ratios()
	return nil
}

// methodNotes say how the figures were measured.
var methodNotes = []string{
	"everything shares this machine: redis-server (child process), nats-server (child process; the cluster part and one transport ceiling use a NATS server in this process), the producer (this process), the workers ('indexer run' child processes)",
	"events/s: from the first publish to the last acknowledgement, as the stream's server counts acks (XINFO GROUPS, or the consumer's info), read every 10 ms without touching the workers; every run starts from an empty index and stream",
	"nats e2e / nats transport ceiling uses the ceiling with nats-server in its own process, as the NATS end-to-end runs have it",
	"nats async: published without Nats-Msg-Id (no de-duplication) to a stream with asynchronous persistence, the opt-in settings that can lose acknowledged publishes when nats-server crashes; the targets use the default settings",
	"Redis page faults: minor faults of redis-server over a run (/proc/<pid>/stat), each a first touch of memory it had not used (every run starts from an empty index and stream)",
	"Redis CPU per event: INFO commandstats, reset before each run; patch_index's figure is all EVALSHA/EVAL time, which includes the commands the script calls",
	"commandstats* : commandstats count elapsed time, so on a busy host they include time redis-server was descheduled; when all commands together exceed the process's CPU time (INFO cpu), each is scaled down by that factor (shown as 'commandstats sum / Redis process CPU'); on a quiet host they are commandstats' own",
	"latency: the producer publishes at half the measured median rate in 1 ms chunks, each led by a marker file; a poller checks every 1 ms (pipelined HEXISTS) when each marker appears in the index",
	"worker RSS: peak resident set (VmHWM, /proc/<pid>/status) of a worker after the run",
}

// discardLogger drops logs: the bench reports errors itself.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// repeat runs fn Repeats times and collects each of its results.
func (e *env) repeat(ctx context.Context, fn func(ctx context.Context, r int) ([]float64, error)) ([][]float64, error) {
	var out [][]float64
	for r := 1; r <= e.cfg.Repeats; r++ {
		v, err := fn(ctx, r)
		if err != nil {
			return nil, err
		}
		for len(out) < len(v) {
			out = append(out, nil)
		}
		for i := range v {
			out[i] = append(out[i], v[i])
		}
	}
	return out, nil
}
