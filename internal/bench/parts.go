package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Sections of the report, in table order.
const (
	secCeiling   = "ceiling"
	secNaive     = "naive baseline"
	secRedis     = "redis e2e"
	secNATS      = "nats e2e"
	secNATSAsync = "nats e2e, no Nats-Msg-Id, async persistence"
	secLatency   = "latency"
	secBatch     = "batch size"
	secWorkers   = "workers"
	secIndex     = "index size"
	secQuery     = "query"
	secRatio     = "ratios"
)

// The targets of issue 16 (which replaced issue 8's): Redis Streams
// bound by Redis, lean workers and producer, NATS close to its transport.
var (
	targetRedisE2E     = &Target{AtLeast, 80_000} // on a machine as fast as the 2026-11-21 run
	targetRedisCPU     = &Target{AtMost, 11}
	targetRedisBusy    = &Target{AtLeast, 0.85}
	targetWorkerRedis  = &Target{AtMost, 7}
	targetWorkerNATS   = &Target{AtMost, 9}
	targetProducer     = &Target{AtMost, 4}
	targetTwoWorkers   = &Target{AtLeast, 1}
	targetNATSOverCeil = &Target{AtLeast, 0.8}
	targetOverNaive    = &Target{AtLeast, 25}
	targetPatchUs      = &Target{AtMost, 6}
	targetP99          = &Target{AtMost, 50}
	targetRSS          = &Target{AtMost, 64}
	targetQuery        = &Target{AtMost, 200}
)

// ceilingPart measures the HSET ceiling and the transport ceilings of
// Redis Streams and of NATS with nats-server in its own process (np) and
// in this process (ns).
func (e *env) ceilingPart(ctx context.Context, rs *redisStream, np natsProcStream, ns *natsStream) error {
	n := e.cfg.Events
	e.phase("ceiling: pipelined HSET of %d-byte values, %s writes", hsetValueBytes, formatNumber(float64(n)))
	v, err := e.repeat(ctx, func(ctx context.Context, _ int) ([]float64, error) {
		perS, us, err := e.hsetCeiling(ctx, n)
		return []float64{perS, us}, err
	})
	if err != nil {
		return err
	}
	e.rep.add(secCeiling, "ceiling_hset_per_s", fmt.Sprintf("Redis pipelined HSET, %d-byte values", hsetValueBytes), "writes/s", v[0], nil)
	e.rep.add(secCeiling, "ceiling_hset_us_per_write", "Redis CPU per HSET", "µs", v[1], nil)
	for _, c := range []struct {
		s          stream
		key, label string
	}{
		{rs, "ceiling_redis_transport_per_s", "Redis Streams XADD + XREADGROUP + XACK, no apply"},
		{np, "ceiling_nats_process_transport_per_s", "NATS JetStream publish + fetch + ack, no apply, nats-server in its own process"},
		{ns, "ceiling_nats_transport_per_s", "the same, NATS server in the bench process"},
		{natsProcStream{np.cheaper(false), np.pid}, "ceiling_nats_process_transport_no_msgid_per_s",
			"NATS, nats-server in its own process, published without Nats-Msg-Id (no de-duplication)"},
		{natsProcStream{np.cheaper(true), np.pid}, "ceiling_nats_process_transport_async_per_s",
			"the same, also with asynchronous persistence (opt-in: may lose acknowledged publishes)"},
	} {
		e.phase("ceiling: %s (%s events)", c.label, formatNumber(float64(n)))
		v, err := e.repeat(ctx, func(ctx context.Context, _ int) ([]float64, error) {
			perS, err := e.transportCeiling(ctx, c.s, n)
			return []float64{perS}, err
		})
		if err != nil {
			return err
		}
		e.rep.add(secCeiling, c.key, c.label, "events/s", v[0], nil)
	}
	return nil
}

func (e *env) naivePart(ctx context.Context, rs *redisStream) error {
	n := e.cfg.NaiveEvents
	e.phase("naive baseline: one EVAL + one XACK per event, %s events", formatNumber(float64(n)))
	v, err := e.repeat(ctx, func(ctx context.Context, _ int) ([]float64, error) {
		perS, us, err := e.naive(ctx, rs, n)
		return []float64{perS, us}, err
	})
	if err != nil {
		return err
	}
	e.rep.add(secNaive, "naive_events_per_s", "per event: EVAL (cjson decode + encode) + XACK", "events/s", v[0], nil)
	e.rep.add(secNaive, "naive_redis_us_per_event", "Redis CPU per event in the naive script (commandstats*)", "µs", v[1], nil)
	return nil
}

// e2eFigures names the figures of one stream's end-to-end runs.
type e2eFigures struct {
	section, prefix  string  // section and key prefix of the figures
	patchKey, rssKey string  // the keys of the figures
	target           *Target // of events/s
	redisCPUTarget   *Target // of Redis CPU in all per event
	workerTarget     *Target // of worker CPU per event
	producerTarget   *Target // of the bench process's CPU per event
	streamCommands   bool    // report XADD, XREADGROUP and XACK, and the cores Redis kept busy
}

// e2ePart measures the indexer end to end through Redis Streams (rs) and
// NATS with nats-server in its own process (np).
func (e *env) e2ePart(ctx context.Context, rs *redisStream, np natsProcStream) error {
	runs := []struct {
		s stream
		f e2eFigures
	}{
		{rs, e2eFigures{secRedis, "redis_", "patch_us_per_event", "worker_rss_mb", targetRedisE2E, targetRedisCPU, targetWorkerRedis, targetProducer, true}},
		{np, e2eFigures{secNATS, "nats_", "nats_patch_us_per_event", "nats_worker_rss_mb", nil, nil, targetWorkerNATS, nil, false}},
		// The opt-in settings: no Nats-Msg-Id, asynchronous persistence.
		{natsProcStream{np.cheaper(true), np.pid}, e2eFigures{secNATSAsync, "nats_async_", "nats_async_patch_us_per_event", "nats_async_worker_rss_mb", nil, nil, nil, nil, false}},
	}
	b := e.cfg.BatchSize
	for _, run := range runs {
		e.phase("%s: producer + 1 worker, batch %d, %s events", run.f.section, b, formatNumber(float64(e.cfg.Events)))
		ser, err := e.repeatE2E(ctx, run.s, b, 1, run.f.section)
		if err != nil {
			return err
		}
		if run.s == stream(rs) {
			e.redisE2E = ser
		}
		e.addE2E(run.f, ser)
	}
	return nil
}

// addE2E adds the figures of a series of end-to-end runs.
func (e *env) addE2E(f e2eFigures, ser *e2eSeries) {
	r, sec, p := e.rep, f.section, f.prefix
	r.add(sec, p+"e2e_events_per_s", fmt.Sprintf("indexed, 1 worker, batch %d", e.cfg.BatchSize), "events/s", ser.perS, f.target)
	r.add(sec, p+"e2e_publish_per_s", "published by the producer meanwhile", "events/s", ser.publishPerS, nil)
	r.add(sec, p+"avg_batch", "messages per batch, on average", "events", ser.avgBatch, nil)
	r.add(sec, f.patchKey, fmt.Sprintf("Redis CPU in patch_index, batch %d (commandstats*)", e.cfg.BatchSize), "µs/event", ser.patchUs, targetPatchUs)
	r.add(sec, p+"patch_raw_us_per_event", "the same, raw commandstats (elapsed time)", "µs/event", ser.patchRawUs, nil)
	if f.streamCommands {
		r.add(sec, p+"xadd_us_per_event", "Redis CPU in XADD (producer) (commandstats*)", "µs/event", ser.xaddUs, nil)
		r.add(sec, p+"xreadgroup_us_per_event", "Redis CPU in XREADGROUP (commandstats*)", "µs/event", ser.xreadgroupUs, nil)
		r.add(sec, p+"xack_us_per_event", "Redis CPU in XACK (commandstats*)", "µs/event", ser.xackUs, nil)
	}
	r.add(sec, p+"cmdstat_over_cpu", "commandstats sum / Redis process CPU (> 1: Redis was preempted)", "×", ser.cmdstatOverCPU, nil)
	r.add(sec, p+"cpu_us_per_event", "Redis CPU in all (process user+sys)", "µs/event", ser.redisCPUUs, f.redisCPUTarget)
	r.add(sec, p+"page_faults_per_event", "Redis minor page faults (memory it touched first)", "faults/event", ser.redisFaults, nil)
	if f.streamCommands {
		r.add(sec, "redis_cores_busy_e2e", "cores redis-server kept busy (its CPU / wall time)", "cores", ser.redisBusy, targetRedisBusy)
	}
	r.add(sec, p+"worker_cpu_us_per_event", "worker CPU (process user+sys)", "µs/event", ser.workerCPUUs, f.workerTarget)
	r.add(sec, p+"bench_cpu_us_per_event", "producer CPU (the bench process, with its progress polling)", "µs/event", ser.selfCPUUs, f.producerTarget)
	servers := "Redis + worker + bench"
	if !f.streamCommands {
		r.add(sec, p+"server_cpu_us_per_event", "nats-server CPU (its own process)", "µs/event", ser.serverCPUUs, nil)
		servers = "Redis + worker + bench + nats-server"
	}
	total := ser.totalCPUUs()
	bound := make([]float64, len(total))
	for i := range total {
		bound[i] = float64(e.rep.Machine.Cores) * 1e6 / total[i]
	}
	r.add(sec, p+"total_cpu_us_per_event", "CPU of all processes ("+servers+")", "µs/event", total, nil)
	r.add(sec, p+"cpu_bound_events_per_s", fmt.Sprintf("bound by that CPU on %d cores, if nothing else ran", e.rep.Machine.Cores), "events/s", bound, nil)
	r.add(sec, f.rssKey, "worker peak RSS (VmHWM)", "MB", ser.rssMB, targetRSS)
}

func (e *env) latencyPart(ctx context.Context, rs *redisStream, np natsProcStream) error {
	for _, s := range []stream{rs, np} {
		max := e.rep.Figure(s.name() + "_e2e_events_per_s")
		if max == nil {
			return fmt.Errorf("bench: latency of %s needs its end-to-end rate", s.name())
		}
		rate := max.Median / 2
		e.phase("%s latency: publish→indexed at %s events/s (half of the median maximum) for %v", s.name(),
			formatNumber(rate), e.cfg.LatencyDuration)
		v, err := e.repeat(ctx, func(ctx context.Context, r int) ([]float64, error) {
			p50, p99, err := e.latency(ctx, s, rate, e.cfg.LatencyDuration, e.cfg.LatencyWarmup,
				fmt.Sprintf("%s latency %d/%d", s.name(), r, e.cfg.Repeats))
			return []float64{p50, p99}, err
		})
		if err != nil {
			return err
		}
		prefix := ""
		if s.name() == "nats" {
			prefix = "nats_"
		}
		at := fmt.Sprintf("%s at %s events/s", s.name(), formatNumber(rate))
		e.rep.add(secLatency, prefix+"p50_latency_ms", "p50 publish→indexed, "+at, "ms", v[0], nil)
		e.rep.add(secLatency, prefix+"p99_latency_ms", "p99 publish→indexed, "+at, "ms", v[1], targetP99)
	}
	return nil
}

func (e *env) batchPart(ctx context.Context, rs *redisStream) error {
	for _, b := range e.cfg.BatchSizes {
		ser := e.redisE2E
		if b != e.cfg.BatchSize || ser == nil {
			e.phase("batch size %d: redis end to end, 1 worker", b)
			var err error
			if ser, err = e.repeatE2E(ctx, rs, b, 1, fmt.Sprintf("batch %d", b)); err != nil {
				return err
			}
		}
		k := strconv.Itoa(b)
		e.rep.add(secBatch, "redis_e2e_batch_"+k+"_events_per_s", "redis, 1 worker, batch "+k, "events/s", ser.perS, nil)
		e.rep.add(secBatch, "avg_batch_batch_"+k, "messages per batch, on average, batch "+k, "events", ser.avgBatch, nil)
		e.rep.add(secBatch, "patch_us_per_event_batch_"+k, "Redis CPU in patch_index, batch "+k+" (commandstats*)", "µs/event", ser.patchUs, nil)
	}
	return nil
}

// workersPart measures Redis Streams end to end with each count of
// Workers, the counts interleaved repeat by repeat (1, 2, 3, 1, 2, 3, …),
// so that a machine slower in one part of the bench does not bias the
// ratio of two counts, as it would if one worker's figure came from the
// headline runs minutes earlier.
func (e *env) workersPart(ctx context.Context, rs *redisStream) error {
	e.phase("workers: redis end to end, batch %d, with %v workers in turn", e.cfg.BatchSize, e.cfg.Workers)
	series := make([]e2eSeries, len(e.cfg.Workers))
	for r := 1; r <= e.cfg.Repeats; r++ {
		for i, w := range e.cfg.Workers {
			if err := e.addRun(ctx, &series[i], rs, e.cfg.BatchSize, w, fmt.Sprintf("%d workers %d/%d", w, r, e.cfg.Repeats)); err != nil {
				return err
			}
		}
	}
	for i, w := range e.cfg.Workers {
		k := strconv.Itoa(w)
		e.rep.add(secWorkers, "redis_e2e_workers_"+k+"_events_per_s", fmt.Sprintf("redis, %s worker(s), batch %d", k, e.cfg.BatchSize),
			"events/s", series[i].perS, nil)
		e.rep.add(secWorkers, "redis_e2e_workers_"+k+"_worker_cpu_us_per_event", fmt.Sprintf("worker CPU, %s worker(s), all together", k),
			"µs/event", series[i].workerCPUUs, nil)
		e.rep.add(secWorkers, "redis_e2e_workers_"+k+"_avg_batch", fmt.Sprintf("messages per batch, on average, %s worker(s)", k),
			"events", series[i].avgBatch, nil)
	}
	return nil
}

func (e *env) indexSizePart(ctx context.Context) error {
	for i, p := range e.cfg.Preloads {
		if err := e.flush(ctx); err != nil {
			return err
		}
		e.phase("index size: preloading %s files (index.Apply in batches of %d)", formatNumber(float64(p)), preloadBatch)
		start := time.Now()
		if err := e.preload(ctx, eventsTable, p, time.Time{}, 0, uint64(1000+100*i), "preload"); err != nil {
			return err
		}
		before, err := e.liveFiles(ctx, eventsTable)
		if err != nil {
			return err
		}
		e.phase("index size: %s files indexed in %v; applying %s events per repeat", formatNumber(float64(before)),
			time.Since(start).Round(time.Millisecond), formatNumber(float64(e.cfg.ProbeEvents)))
		v, err := e.repeat(ctx, func(ctx context.Context, r int) ([]float64, error) {
			wall, redisUs, procUs, err := e.probe(ctx, e.cfg.ProbeEvents, uint64(100+10*i+r))
			return []float64{wall, redisUs, procUs}, err
		})
		if err != nil {
			return err
		}
		after, err := e.liveFiles(ctx, eventsTable)
		if err != nil {
			return err
		}
		k := countKey(p)
		files := fmt.Sprintf("%s files (%s after)", formatNumber(float64(before)), formatNumber(float64(after)))
		e.rep.add(secIndex, "patch_us_per_event_"+k+"_files", "Redis CPU in patch_index (commandstats*), "+files, "µs/event", v[1], nil)
		e.rep.add(secIndex, "redis_cpu_us_per_event_"+k+"_files", "Redis CPU in all (process user+sys), "+files, "µs/event", v[2], nil)
		e.rep.add(secIndex, "apply_us_per_event_"+k+"_files", "Apply wall time (1 client, batch 1,000), "+files, "µs/event", v[0], nil)
	}
	return e.flush(ctx)
}

func (e *env) queryPart(ctx context.Context) error {
	if err := e.flush(ctx); err != nil {
		return err
	}
	n := e.cfg.QueryFiles
	e.phase("query: preloading %s files into one day of table %s.%s", formatNumber(float64(n)), benchDatabase, queryTable)
	if err := e.preload(ctx, queryTable, n, queryDay, 24, 5000, "preload"); err != nil {
		return err
	}
	live, err := e.liveFiles(ctx, queryTable)
	if err != nil {
		return err
	}
	e.phase("query: indexer query --after %s --before +24h --format ndjson", queryDay.Format(time.DateOnly))
	v, err := e.repeat(ctx, func(ctx context.Context, _ int) ([]float64, error) {
		took, got, err := e.queryOnce(ctx)
		if err == nil && int64(got) != live {
			err = fmt.Errorf("bench: indexer query printed %d entries; the table holds %d files", got, live)
		}
		return []float64{float64(took) / float64(time.Millisecond)}, err
	})
	if err != nil {
		return err
	}
	e.rep.add(secQuery, "query_100k_ms", fmt.Sprintf("indexer query, one day, %s files (process start included)", formatNumber(float64(live))),
		"ms", v[0], targetQuery)
	return e.flush(ctx)
}

// ratios adds the ratios of the headline medians.
func (e *env) ratios() {
	r := e.rep
	r.ratio(secRatio, "redis_e2e_over_ceiling", "redis e2e / HSET ceiling", "redis_e2e_events_per_s", "ceiling_hset_per_s", nil)
	r.ratio(secRatio, "redis_e2e_over_transport", "redis e2e / redis transport ceiling", "redis_e2e_events_per_s", "ceiling_redis_transport_per_s", nil)
	r.ratio(secRatio, "nats_e2e_over_transport", "nats e2e / nats transport ceiling (nats-server in its own process in both)",
		"nats_e2e_events_per_s", "ceiling_nats_process_transport_per_s", targetNATSOverCeil)
	r.ratio(secRatio, "nats_async_e2e_over_transport", "the same with no Nats-Msg-Id and asynchronous persistence in both",
		"nats_async_e2e_events_per_s", "ceiling_nats_process_transport_async_per_s", nil)
	r.ratio(secRatio, "redis_2_workers_over_1", "redis e2e, 2 workers / 1 worker (runs interleaved)", "redis_e2e_workers_2_events_per_s", "redis_e2e_workers_1_events_per_s", targetTwoWorkers)
	r.ratio(secRatio, "redis_e2e_over_naive", "redis e2e / naive baseline", "redis_e2e_events_per_s", "naive_events_per_s", targetOverNaive)
	r.ratio(secRatio, "nats_e2e_over_naive", "nats e2e / naive baseline", "nats_e2e_events_per_s", "naive_events_per_s", nil)
}

// countKey names a count in a key: 10000 → "10k", 1000000 → "1m".
func countKey(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "m"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}
