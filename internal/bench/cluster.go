package bench

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/testserver"
)

// secCluster is the report section of the cluster part.
const secCluster = "redis cluster"

// clusterStream is the bench's NATS stream feeding workers that keep the
// index in the cluster layout on a Redis Cluster: NATS carries the
// events, so Redis's CPU is the index's alone.
type clusterStream struct{ *natsStream }

func (s clusterStream) workerArgs() []string {
	return append(s.natsStream.workerArgs(), "--layout", "cluster")
}

// clusterPart measures the indexer end to end on a Redis Cluster: for
// each of ClusterShards masters with the largest of Workers workers, and
// for the largest shard count with each of Workers workers: events/s,
// and the CPU all processes spent per event (workers, every redis-server,
// the producer and the NATS server), which moves less than events/s on a
// shared machine. The first run is the baseline: the same workers on the
// single server in the gigapi layout.
func (e *env) clusterPart(ctx context.Context) error {
	maxW, maxS := slices.Max(e.cfg.Workers), slices.Max(e.cfg.ClusterShards)
	type run struct{ shards, workers int } // shards 0: the baseline
	runs := []run{{0, maxW}}
	for _, s := range e.cfg.ClusterShards {
		runs = append(runs, run{s, maxW})
	}
	for _, w := range e.cfg.Workers {
		if w != maxW {
			runs = append(runs, run{maxS, w})
		}
	}
	for _, r := range runs {
		var ser *e2eSeries
		var err error
		k := fmt.Sprintf("cluster_%d_shards_%d_workers_", r.shards, r.workers)
		what := fmt.Sprintf("nats → %d shard(s), %d worker(s)", r.shards, r.workers)
		if r.shards == 0 {
			k, what = fmt.Sprintf("cluster_baseline_%d_workers_", r.workers), fmt.Sprintf("nats → 1 server, gigapi layout, %d worker(s)", r.workers)
			e.phase("baseline: one redis-server, gigapi layout, %d worker(s): nats end to end", r.workers)
			ser, err = e.repeatE2E(ctx, newNATSStream(e.js, e.nats.ClientURL(), e.redis.URL()), e.cfg.BatchSize, r.workers, "baseline")
		} else {
			ser, err = e.clusterRuns(ctx, r.shards, r.workers)
		}
		if err != nil {
			return err
		}
		total := ser.totalCPUUs()
		e.rep.add(secCluster, k+"events_per_s", what, "events/s", ser.perS, nil)
		e.rep.add(secCluster, k+"cpu_us_per_event", what+": CPU of all processes", "µs/event", total, nil)
		e.rep.add(secCluster, k+"redis_cpu_us_per_event", what+": CPU of the redis-servers", "µs/event", ser.redisCPUUs, nil)
		e.rep.add(secCluster, k+"worker_cpu_us_per_event", what+": CPU of the workers", "µs/event", ser.workerCPUUs, nil)
	}
	return nil
}

// clusterRuns starts a Redis Cluster of shards masters and repeats the
// end-to-end run on it with workers workers.
func (e *env) clusterRuns(ctx context.Context, shards, workers int) (*e2eSeries, error) {
	e.phase("redis cluster of %d master(s), %d worker(s): nats end to end, cluster layout", shards, workers)
	rc, err := testserver.StartRedisCluster(ctx, testserver.ClusterConfig{Masters: shards, Binary: e.cfg.RedisServer})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer rc.Stop()
	e.nodes = nil
	for _, a := range rc.Masters() {
		n := redis.NewClient(&redis.Options{Addr: a})
		defer n.Close()
		e.nodes = append(e.nodes, n)
	}
	defer func() { e.nodes = []*redis.Client{e.rc} }()
	s := clusterStream{newNATSStream(e.js, e.nats.ClientURL(), rc.URL())}
	return e.repeatE2E(ctx, s, e.cfg.BatchSize, workers, fmt.Sprintf("%d shard(s), %d worker(s)", shards, workers))
}
