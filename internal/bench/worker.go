package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	workerStartTimeout = 30 * time.Second // until a worker logs "worker started"
	workerStopTimeout  = 15 * time.Second // SIGTERM to exit, before SIGKILL
	clockTicks         = 100              // USER_HZ: the unit of utime and stime in /proc/<pid>/stat on Linux
	stderrTail         = 30               // lines of a worker's log quoted in errors
)

// worker is one 'indexer run' child process. Its only goroutine reads the
// process's log; stop waits for it.
type worker struct {
	name    string
	cmd     *exec.Cmd
	metrics string // host:port serving /metrics
	http    *http.Client

	mu   sync.Mutex
	tail []string // last lines of its log, for errors

	logDone chan struct{} // closed when the log reader returned
	exited  chan struct{} // closed when the process was waited for
	exitErr error
}

// startWorker starts bin with args (the 'run' command and its flags, with
// --metrics-addr 127.0.0.1:0 and --log-format json) and returns once the
// worker logged that it started, with the address of its /metrics. The
// worker's environment has no INDEXER_* variables, so only args configure
// it.
func startWorker(ctx context.Context, bin, name string, args []string) (*worker, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = sysProcAttr()
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start worker %s: %w", bin, err)
	}
	w := &worker{name: name, cmd: cmd, http: &http.Client{Timeout: 5 * time.Second},
		logDone: make(chan struct{}), exited: make(chan struct{})}
	ready := make(chan string, 1) // the metrics address, once started
	go w.readLog(stderr, ready)
	go func() {
		<-w.logDone // Wait closes the pipe: read it to the end first
		w.exitErr = cmd.Wait()
		close(w.exited)
	}()

	timer := time.NewTimer(workerStartTimeout)
	defer timer.Stop()
	select {
	case w.metrics = <-ready:
		return w, nil
	case <-w.exited:
		return nil, fmt.Errorf("bench: worker %s exited at start (%v):\n%s", name, w.exitErr, w.log())
	case <-timer.C:
		w.stop()
		return nil, fmt.Errorf("bench: worker %s did not start within %v:\n%s", name, workerStartTimeout, w.log())
	case <-ctx.Done():
		w.stop()
		return nil, ctx.Err()
	}
}

// cleanEnv is the bench's environment without INDEXER_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "INDEXER_") {
			env = append(env, kv)
		}
	}
	return env
}

// readLog keeps the tail of the worker's JSON log and sends the metrics
// address on ready once the worker logged "worker started".
func (w *worker) readLog(r io.Reader, ready chan<- string) {
	defer close(w.logDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var addr string
	sent := false
	for sc.Scan() {
		line := sc.Text()
		w.mu.Lock()
		w.tail = append(w.tail, line)
		if len(w.tail) > stderrTail {
			w.tail = w.tail[len(w.tail)-stderrTail:]
		}
		w.mu.Unlock()
		if sent {
			continue
		}
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch {
		case strings.HasPrefix(rec.Msg, "serving /metrics"):
			addr = rec.Addr
		case rec.Msg == "worker started" && addr != "":
			ready <- addr
			sent = true
		}
	}
}

// log returns the tail of the worker's log.
func (w *worker) log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, "\n")
}

// scrape reads the worker's /metrics and returns the values of the
// named series (the sum over their labels); a series it does not serve
// is absent from the map.
func (w *worker) scrape(ctx context.Context, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: scrape worker %s: %w", w.name, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if !slices.Contains(names, name) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bench: worker %s: metrics line %q: %w", w.name, line, err)
		}
		out[name] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: scrape worker %s: %w", w.name, err)
	}
	return out, nil
}

// cpuMicros returns the CPU time (user + system) the worker used so far.
func (w *worker) cpuMicros() (float64, error) {
	return processCPUMicros(w.cmd.Process.Pid)
}

// peakRSSMB returns the worker's peak resident set size (VmHWM), in MB.
func (w *worker) peakRSSMB() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("bench: worker %s: %w", w.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("bench: worker %s: VmHWM %q: %w", w.name, v, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("bench: worker %s: no VmHWM in /proc/%d/status", w.name, w.cmd.Process.Pid)
}

// running returns an error if the worker has exited.
func (w *worker) running() error {
	select {
	case <-w.exited:
		return fmt.Errorf("bench: worker %s exited (%v):\n%s", w.name, w.exitErr, w.log())
	default:
		return nil
	}
}

// stop sends SIGTERM and waits for the worker to exit (SIGKILL after
// workerStopTimeout). It fails if the worker did not exit cleanly. It is
// idempotent.
func (w *worker) stop() error {
	select {
	case <-w.exited:
	default:
		w.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(workerStopTimeout)
		defer t.Stop()
		select {
		case <-w.exited:
		case <-t.C:
			w.cmd.Process.Kill()
			<-w.exited
			return fmt.Errorf("bench: worker %s ignored SIGTERM for %v; killed:\n%s", w.name, workerStopTimeout, w.log())
		}
	}
	w.http.CloseIdleConnections()
	if w.exitErr != nil {
		return fmt.Errorf("bench: worker %s: %v:\n%s", w.name, w.exitErr, w.log())
	}
	return nil
}

// processCPUMicros reads utime + stime of a process from /proc/<pid>/stat.
func processCPUMicros(pid int) (float64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseFloat(f[14], 64)
	stime, err2 := strconv.ParseFloat(f[15], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) * 1e6 / clockTicks, nil
}

// processMinorFaults reads the minor page faults a process took so far
// (minflt) from /proc/<pid>/stat.
func processMinorFaults(pid int) (float64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(f[10], 64)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
	}
	return v, nil
}

// procStat returns the fields of /proc/<pid>/stat numbered as in proc(5):
// f[1] is the pid, f[2] the command name, and so on up to f[15] (stime)
// at least; f[0] is empty.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// The command name (field 2) may hold spaces; fields after ") " are plain.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	j := strings.IndexByte(s, '(')
	if i < 0 || j < 0 || j > i {
		return nil, errors.New("bench: unreadable /proc/<pid>/stat")
	}
	f := append([]string{"", strings.TrimSpace(s[:j]), s[j+1 : i]}, strings.Fields(s[i+1:])...)
	if len(f) < 16 {
		return nil, errors.New("bench: short /proc/<pid>/stat")
	}
	return f, nil
}

// workers is a set of workers started together.
type workers []*worker

// startWorkers starts n workers with args, named prefix-1 … prefix-n
// (their --consumer). On error it stops those already started.
func startWorkers(ctx context.Context, bin string, n int, prefix string, args []string) (workers, error) {
	var ws workers
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		a := append(append([]string{"run"}, args...), "--consumer", name,
			"--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info")
		w, err := startWorker(ctx, bin, name, a)
		if err != nil {
			ws.stop()
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// Series the bench reads from the workers' /metrics.
const (
	metricBatchSum   = "indexer_batch_size_sum"
	metricBatchCount = "indexer_batch_size_count"
)

// scrape sums the named series over the workers. It fails if a worker
// exited.
func (ws workers) scrape(ctx context.Context, names ...string) (map[string]float64, error) {
	sum := map[string]float64{}
	for _, w := range ws {
		if err := w.running(); err != nil {
			return nil, err
		}
		m, err := w.scrape(ctx, names...)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}

// running returns an error if a worker has exited.
func (ws workers) running() error {
	for _, w := range ws {
		if err := w.running(); err != nil {
			return err
		}
	}
	return nil
}

// usage returns the workers' total CPU time and their largest peak RSS.
func (ws workers) usage() (cpuMicros, rssMB float64, err error) {
	for _, w := range ws {
		c, err := w.cpuMicros()
		if err != nil {
			return 0, 0, err
		}
		r, err := w.peakRSSMB()
		if err != nil {
			return 0, 0, err
		}
		cpuMicros += c
		rssMB = max(rssMB, r)
	}
	return cpuMicros, rssMB, nil
}

// stop stops every worker and returns their errors.
func (ws workers) stop() error {
	var errs []error
	for _, w := range ws {
		errs = append(errs, w.stop())
	}
	return errors.Join(errs...)
}
