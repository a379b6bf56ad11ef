package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/natsserver"
	"github.com/streamindex/indexer/internal/progress"
	"github.com/streamindex/indexer/internal/testserver"
)

// env is what one Run works with: its servers, clients, event pool and
// report.
type env struct {
	cfg   Config
	dir   string
	redis *testserver.RedisServer
	rc    *redis.Client
	// nodes are the Redis servers whose statistics a run reads and which
	// it flushes: rc, or in the cluster part the cluster's masters.
	nodes []*redis.Client
	nats  *natsserver.Server // in this process: a transport ceiling, the cluster part
	nc    *nats.Conn
	js    natsjs.JetStream
	// natsProc is nats-server in its own process, as operators run it:
	// a transport ceiling, NATS end to end and latency.
	natsProc *testserver.NATSProcess
	ncProc   *nats.Conn
	jsProc   natsjs.JetStream
	pool     *pool
	rep      *Report
	// redisE2E is the headline Redis run (batch BatchSize, one worker),
	// which the batch-size part reuses for its BatchSize row.
	redisE2E *e2eSeries
}

// start creates the temporary directory and starts redis-server and the
// in-process NATS server on free loopback ports.
func (e *env) start(ctx context.Context) error {
	var err error
	if e.dir, err = os.MkdirTemp(e.cfg.Dir, "indexer-bench-"); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	redisDir, natsDir := filepath.Join(e.dir, "redis"), filepath.Join(e.dir, "nats")
	for _, d := range []string{redisDir, natsDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	e.redis, err = testserver.StartRedis(ctx, testserver.RedisConfig{Dir: redisDir, Binary: e.cfg.RedisServer})
	if err != nil {
		return fmt.Errorf("bench: %w (is redis-server installed? sudo apt-get install -y redis-server)", err)
	}
	e.rc = redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
	e.nodes = []*redis.Client{e.rc}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if e.cfg.Progress != nil {
		quiet = slog.New(slog.NewTextHandler(e.cfg.Progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	e.nats, err = natsserver.Start(natsserver.Config{Dir: natsDir, Listen: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		return err
	}
	if e.nc, e.js, err = dialNATS(e.nats.ClientURL(), quiet); err != nil {
		return err
	}
	if !e.cfg.needsNATSProcess() {
		return nil
	}
	procDir := filepath.Join(e.dir, "nats-process")
	if err := os.Mkdir(procDir, 0o700); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if e.natsProc, err = testserver.StartNATSProcessIn(ctx, e.cfg.NATSServer, procDir); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	e.ncProc, e.jsProc, err = dialNATS(e.natsProc.ClientURL(), quiet)
	return err
}

func dialNATS(url string, logger *slog.Logger) (*nats.Conn, natsjs.JetStream, error) {
	nc, err := jetstream.Dial(jetstream.ConnConfig{URL: url, Name: "indexer bench", Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	js, err := natsjs.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// close stops what start started and removes the temporary directory.
func (e *env) close() error {
	var errs []error
	if e.nc != nil {
		e.nc.Close()
	}
	if e.ncProc != nil {
		e.ncProc.Close()
	}
	if e.natsProc != nil {
		e.natsProc.Stop()
	}
	if e.nats != nil {
		e.nats.Shutdown()
	}
	if e.rc != nil {
		errs = append(errs, e.rc.Close())
	}
	if e.redis != nil {
		errs = append(errs, e.redis.Stop())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// phase announces a step on the progress writer.
func (e *env) phase(format string, args ...any) {
	if e.cfg.Progress != nil {
		fmt.Fprintf(e.cfg.Progress, "bench: "+format+"\n", args...)
	}
}

// bar returns a started progress bar counting towards total; Stop it.
func (e *env) bar(label string, total int) *progress.Bar {
	w := e.cfg.Progress
	if w == nil {
		w = io.Discard
	}
	b := progress.New(w, e.cfg.ProgressTTY, "  "+label, int64(total))
	b.Start()
	return b
}

// flush empties Redis (every node): the index, the streams and the
// statistics.
func (e *env) flush(ctx context.Context) error {
	for _, n := range e.nodes {
		if err := n.FlushAll(ctx).Err(); err != nil {
			return fmt.Errorf("bench: FLUSHALL: %w", err)
		}
	}
	return e.resetStats(ctx)
}

// resetStats resets INFO commandstats (CONFIG RESETSTAT) of every node.
func (e *env) resetStats(ctx context.Context) error {
	for _, n := range e.nodes {
		if err := n.ConfigResetStat(ctx).Err(); err != nil {
			return fmt.Errorf("bench: CONFIG RESETSTAT: %w", err)
		}
	}
	return nil
}

// cmdStats is INFO commandstats: per command, calls and CPU microseconds.
type cmdStats map[string]struct{ calls, usec float64 }

// usec returns the CPU microseconds Redis spent in the named commands.
func (s cmdStats) usec(names ...string) float64 {
	var t float64
	for _, n := range names {
		t += s[n].usec
	}
	return t
}

// total is the time in all commands.
func (s cmdStats) total() float64 {
	var t float64
	for _, st := range s {
		t += st.usec
	}
	return t
}

// scriptUsec is the time in scripts (EVALSHA and EVAL): patch_index's,
// in the runs of the indexer, Redis CPU which includes the commands the
// script calls.
func (s cmdStats) scriptUsec() float64 { return s.usec("evalsha", "eval") }

// perEvent returns the microseconds per event of n events spent in the
// named commands, corrected for preemption: commandstats measures each
// command's elapsed time, so on a busy host it also counts the time
// redis-server was descheduled mid-command, and all commands together
// then take longer than the CPU time the process used (cpuUsec). In that
// case every command's time is scaled down by the same factor; on a
// quiet host (commands take less than the process's CPU time, the rest
// being network I/O) the figures are commandstats' own.
func (s cmdStats) perEvent(cpuUsec float64, n int, names ...string) float64 {
	inflation := 1.0
	if cpuUsec > 0 {
		inflation = max(1, s.total()/cpuUsec)
	}
	return s.usec(names...) / inflation / float64(n)
}

// commandStats reads INFO commandstats, summed over the nodes.
func (e *env) commandStats(ctx context.Context) (cmdStats, error) {
	out := cmdStats{}
	for _, n := range e.nodes {
		info, err := n.Info(ctx, "commandstats").Result()
		if err != nil {
			return nil, fmt.Errorf("bench: INFO commandstats: %w", err)
		}
		out.add(info)
	}
	return out, nil
}

// add adds the figures of an INFO commandstats reply.
func (out cmdStats) add(info string) {
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		st := out[name]
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				st.calls += f
			case "usec":
				st.usec += f
			}
		}
		out[name] = st
	}
}

// redisCPUMicros returns the CPU time (user + system) the redis-server
// nodes used so far, from INFO cpu (getrusage, in microseconds: finer
// than the clock ticks of /proc/<pid>/stat).
func (e *env) redisCPUMicros(ctx context.Context) (float64, error) {
	return e.sumNodes(ctx, "cpu", cpuMicros)
}

// redisMinorFaults returns the minor page faults the redis-server nodes
// took so far, from /proc/<pid>/stat of each node's process_id (INFO
// server): the bench's servers run on this machine. A first touch of a
// page the process never used is one; Redis storing more data takes them.
func (e *env) redisMinorFaults(ctx context.Context) (float64, error) {
	return e.sumNodes(ctx, "server", func(info string) (float64, error) {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
				if pid, err := strconv.Atoi(v); err == nil && pid > 0 {
					return processMinorFaults(pid)
				}
			}
		}
		return 0, errors.New("bench: INFO server lacks process_id")
	})
}

// sumNodes sums, over the redis-server nodes, what read makes of each
// node's INFO section.
func (e *env) sumNodes(ctx context.Context, section string, read func(info string) (float64, error)) (float64, error) {
	var total float64
	for _, n := range e.nodes {
		info, err := n.Info(ctx, section).Result()
		if err != nil {
			return 0, fmt.Errorf("bench: INFO %s: %w", section, err)
		}
		v, err := read(info)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

// cpuMicros reads used_cpu_sys + used_cpu_user of an INFO cpu reply, in
// microseconds.
func cpuMicros(info string) (float64, error) {
	var total float64
	found := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: INFO cpu %s: %w", line, err)
			}
			total += f
			found++
		}
	}
	if found != 2 {
		return 0, errors.New("bench: INFO cpu lacks used_cpu_sys or used_cpu_user")
	}
	return total * 1e6, nil
}
