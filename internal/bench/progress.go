package bench

import (
	"context"
	"fmt"

	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
)

// An end-to-end run follows its progress from the stream's server, not
// from the workers: reading a worker's /metrics (gzipped, with the process
// collector) a hundred times a second took a fifth of its CPU, which the
// run would then report as the worker's cost. The servers answer these
// reads from counters they keep anyway: one XINFO GROUPS, or one consumer
// info request, costs the server a few microseconds per poll.

// acked returns how many entries the group acknowledged: entries-read
// (entries delivered to the group, first deliveries only) less the
// pending ones. Each run starts from an empty stream and a group created
// at its start, so entries-read is exact.
func (s *redisStream) acked(ctx context.Context) (int64, error) {
	groups, err := s.c.XInfoGroups(ctx, redisstream.DefaultStream).Result()
	if err != nil {
		return 0, fmt.Errorf("bench: XINFO GROUPS %s: %w", redisstream.DefaultStream, err)
	}
	for _, g := range groups {
		if g.Name == redisstream.DefaultGroup {
			return g.EntriesRead - g.Pending, nil
		}
	}
	return 0, fmt.Errorf("bench: stream %s has no group %s", redisstream.DefaultStream, redisstream.DefaultGroup)
}

// acked returns how many messages the durable consumer acknowledged: the
// highest stream sequence delivered less the messages awaiting an ack.
// Each run starts from a new stream whose sequences start at 1 and that
// holds only the run's events, so this is exact.
func (s *natsStream) acked(ctx context.Context) (int64, error) {
	c, err := s.js.Consumer(ctx, jetstream.DefaultStream, jetstream.DefaultConsumer)
	if err != nil {
		return 0, fmt.Errorf("bench: consumer %s on %s: %w", jetstream.DefaultConsumer, jetstream.DefaultStream, err)
	}
	info := c.CachedInfo()
	return int64(info.Delivered.Stream) - int64(info.NumAckPending), nil
}

// natsProcStream is the bench's NATS stream on nats-server running in its
// own process (env.natsProc), whose CPU an end-to-end run reads apart
// from the producer's.
type natsProcStream struct {
	*natsStream
	pid int
}

// serverPID is the process id of the stream's server.
func (s natsProcStream) serverPID() int { return s.pid }

// serverProcess is a stream whose server runs in a process of its own.
type serverProcess interface{ serverPID() int }
