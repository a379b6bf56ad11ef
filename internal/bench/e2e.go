package bench

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"
)

const (
	ackPollEvery = 10 * time.Millisecond // how often an end-to-end run reads the group's acks from the stream's server
	stallTimeout = 30 * time.Second      // a run fails when no event is indexed for this long
)

// e2eResult is what one end-to-end run measured.
type e2eResult struct {
	perS        float64  // events indexed per second, from the first publish to the last acknowledgement
	publishPerS float64  // events published per second by the producer
	stats       cmdStats // Redis commandstats over the run
	redisCPU    float64  // CPU microseconds redis-server used during the run
	redisBusy   float64  // redisCPU over the run's wall time: the cores redis-server kept busy
	redisFaults float64  // minor page faults redis-server took during the run
	workerCPU   float64  // CPU microseconds the workers used during the run
	selfCPU     float64  // CPU microseconds this process used: producer, progress polling, and an in-process NATS server
	serverCPU   float64  // CPU microseconds the stream's server used, when it runs in its own process
	rssMB       float64  // the largest peak RSS of a worker
	avgBatch    float64  // messages per batch the workers handled, on average
}

// e2e runs the indexer end to end: it starts workers 'indexer run' child
// processes reading s with --batch-size batch, waits until they are
// ready, then publishes the first n events of the history at full speed
// from this process and waits until the workers acknowledged all of them
// (as the stream's server counts acks, read every 10 ms: see acked). Each
// run starts from an empty index and stream.
func (e *env) e2e(ctx context.Context, s stream, n, batch, workers int, label string) (res e2eResult, err error) {
	if err := e.flush(ctx); err != nil {
		return res, err
	}
	if err := s.reset(ctx); err != nil {
		return res, err
	}
	events, err := e.pool.take(n)
	if err != nil {
		return res, err
	}
	ws, err := startWorkers(ctx, e.cfg.WorkerBinary, workers, "bench-"+s.name(),
		append(s.workerArgs(), "--batch-size", strconv.Itoa(batch)))
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := ws.stop(); err == nil && serr != nil {
			err = serr
		}
	}()
	workerCPU0, _, err := ws.usage()
	if err != nil {
		return res, err
	}
	if err := e.resetStats(ctx); err != nil {
		return res, err
	}
	redisCPU0, err := e.redisCPUMicros(ctx)
	if err != nil {
		return res, err
	}
	redisFaults0, err := e.redisMinorFaults(ctx)
	if err != nil {
		return res, err
	}
	selfCPU0 := selfCPUMicros()
	serverCPU0, err := serverCPUMicros(s)
	if err != nil {
		return res, err
	}

	bar := e.bar(label, n)
	defer bar.Stop()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pubDone := make(chan error, 1)
	var pubTook time.Duration
	start := time.Now()
	go func() {
		err := s.publish(pctx, events)
		pubTook = time.Since(start)
		pubDone <- err
	}()
	defer func() {
		cancel()
		if pubDone != nil {
			<-pubDone
		}
	}()

	tick := time.NewTicker(ackPollEvery)
	defer tick.Stop()
	var acked int64
	progressed := time.Now()
	for acked < int64(n) {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-pubDone:
			pubDone = nil
			if err != nil {
				return res, fmt.Errorf("bench: %s: publish: %w", label, err)
			}
			continue
		case <-tick.C:
		}
		if err := ws.running(); err != nil {
			return res, err
		}
		a, err := s.acked(ctx)
		if err != nil {
			return res, err
		}
		if a > acked {
			acked, progressed = a, time.Now()
			bar.Set(acked)
		}
		if time.Since(progressed) > stallTimeout {
			return res, fmt.Errorf("bench: %s: no event indexed for %v after %d of %d; last worker log:\n%s",
				label, stallTimeout, acked, n, ws[0].log())
		}
	}
	took := time.Since(start)
	selfCPU1 := selfCPUMicros()
	serverCPU1, err := serverCPUMicros(s)
	if err != nil {
		return res, err
	}
	if pubDone != nil {
		if err := <-pubDone; err != nil {
			return res, fmt.Errorf("bench: %s: publish: %w", label, err)
		}
		pubDone = nil
	}

	if res.stats, err = e.commandStats(ctx); err != nil {
		return res, err
	}
	redisCPU1, err := e.redisCPUMicros(ctx)
	if err != nil {
		return res, err
	}
	redisFaults1, err := e.redisMinorFaults(ctx)
	if err != nil {
		return res, err
	}
	workerCPU1, rss, err := ws.usage()
	if err != nil {
		return res, err
	}
	m, err := ws.scrape(ctx, metricBatchSum, metricBatchCount)
	if err != nil {
		return res, err
	}
	if m[metricBatchCount] > 0 {
		res.avgBatch = m[metricBatchSum] / m[metricBatchCount]
	}
	res.perS = float64(n) / took.Seconds()
	res.publishPerS = float64(n) / pubTook.Seconds()
	res.redisCPU = redisCPU1 - redisCPU0
	res.redisBusy = res.redisCPU / float64(took.Microseconds())
	res.redisFaults = redisFaults1 - redisFaults0
	res.serverCPU = serverCPU1 - serverCPU0
	res.workerCPU = workerCPU1 - workerCPU0
	res.selfCPU = selfCPU1 - selfCPU0
	res.rssMB = rss
	return res, nil
}

// e2eSeries repeats an end-to-end run and collects its figures. The
// per-command Redis figures come from INFO commandstats, corrected for
// preemption (see cmdStats.perEvent).
type e2eSeries struct {
	perS, publishPerS, avgBatch, rssMB                 []float64
	patchUs, patchRawUs, xaddUs, xreadgroupUs, xackUs  []float64
	redisCPUUs, workerCPUUs, selfCPUUs, cmdstatOverCPU []float64
	serverCPUUs, redisBusy, redisFaults                []float64
}

// totalCPUUs is the CPU of every process per event, run by run: Redis,
// the workers, this process and a stream server in its own process.
func (s *e2eSeries) totalCPUUs() []float64 {
	total := make([]float64, len(s.perS))
	for i := range total {
		total[i] = s.redisCPUUs[i] + s.workerCPUUs[i] + s.selfCPUUs[i] + s.serverCPUUs[i]
	}
	return total
}

// repeatE2E runs e2e Repeats times.
func (e *env) repeatE2E(ctx context.Context, s stream, batch, workers int, what string) (*e2eSeries, error) {
	var out e2eSeries
	for r := 1; r <= e.cfg.Repeats; r++ {
		if err := e.addRun(ctx, &out, s, batch, workers, fmt.Sprintf("%s %d/%d", what, r, e.cfg.Repeats)); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

// addRun runs e2e once with Events events and adds its figures to out.
func (e *env) addRun(ctx context.Context, out *e2eSeries, s stream, batch, workers int, label string) error {
	n := e.cfg.Events
	res, err := e.e2e(ctx, s, n, batch, workers, label)
	if err != nil {
		return err
	}
	st, cpu := res.stats, res.redisCPU
	per := func(usec float64) float64 { return usec / float64(n) }
	out.perS = append(out.perS, res.perS)
	out.publishPerS = append(out.publishPerS, res.publishPerS)
	out.avgBatch = append(out.avgBatch, res.avgBatch)
	out.rssMB = append(out.rssMB, res.rssMB)
	out.patchUs = append(out.patchUs, st.perEvent(cpu, n, "evalsha", "eval"))
	out.patchRawUs = append(out.patchRawUs, per(st.scriptUsec()))
	out.xaddUs = append(out.xaddUs, st.perEvent(cpu, n, "xadd"))
	out.xreadgroupUs = append(out.xreadgroupUs, st.perEvent(cpu, n, "xreadgroup"))
	out.xackUs = append(out.xackUs, st.perEvent(cpu, n, "xack"))
	out.redisCPUUs = append(out.redisCPUUs, per(cpu))
	out.workerCPUUs = append(out.workerCPUUs, per(res.workerCPU))
	out.selfCPUUs = append(out.selfCPUUs, per(res.selfCPU))
	out.serverCPUUs = append(out.serverCPUUs, per(res.serverCPU))
	out.redisBusy = append(out.redisBusy, res.redisBusy)
	out.redisFaults = append(out.redisFaults, res.redisFaults/float64(n))
	out.cmdstatOverCPU = append(out.cmdstatOverCPU, st.total()/cpu)
	return nil
}

// serverCPUMicros returns the CPU time the stream's server process used
// so far, or 0 if it runs in this process.
func serverCPUMicros(s stream) (float64, error) {
	if sp, ok := s.(serverProcess); ok {
		return processCPUMicros(sp.serverPID())
	}
	return 0, nil
}

// selfCPUMicros returns the CPU time (user + system) this process used so
// far.
func selfCPUMicros() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}
