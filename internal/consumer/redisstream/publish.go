package redisstream

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/redisconn"
)

// PublisherConfig configures a Publisher. Zero fields mean the defaults.
type PublisherConfig struct {
	// Stream is the key of the stream. Default "idx:events".
	Stream string
	// MaxLen trims the stream to about this many entries as it grows
	// (XADD MAXLEN ~): Redis trims whole nodes, so the stream may hold
	// somewhat more. Pending entries trimmed away are lost to the
	// consumers (they count and alarm them). 0 or negative: no trimming.
	// Default 0.
	MaxLen int64
	// Pipeline is the most XADDs sent in one round trip. Default 1000.
	Pipeline int
	// Wait, when enabled, ends each round trip with WAIT: Publish returns
	// only once that many replicas have the entries, so a failover cannot
	// lose an event Publish reported as published; fewer confirmations in
	// time fail with redisconn.ErrNotReplicated (the entries may still be
	// in the stream: publishing them again is safe). Default: no waiting.
	Wait redisconn.Wait
}

// Outgoing is one encoded event to publish.
type Outgoing struct {
	// Data is the encoded event (field data).
	Data []byte
	// Format is its encoding (field ct: "json" or "msgpack").
	Format event.Format
}

// Publisher appends encoded events to a stream. It is safe for concurrent
// use.
type Publisher struct {
	c   redis.UniversalClient
	cfg PublisherConfig
}

// NewPublisher returns a Publisher writing through c. It does not contact
// Redis.
func NewPublisher(c redis.UniversalClient, cfg PublisherConfig) *Publisher {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Pipeline <= 0 {
		cfg.Pipeline = 1000
	}
	cfg.MaxLen = max(cfg.MaxLen, 0)
	return &Publisher{c: c, cfg: cfg}
}

// Publish appends msgs to the stream, in order, each as an entry with the
// fields data and ct, in one round trip per Pipeline messages, and returns
// their entry ids. The stream is created if absent. On error, ids holds
// the ids of the messages appended (and, with Wait, confirmed) before the
// first failure; later messages may or may not have been appended
// (publishing them again is safe: events are idempotent). Publish does not
// retain msgs.
func (p *Publisher) Publish(ctx context.Context, msgs []Outgoing) (ids []string, err error) {
	ids = make([]string, 0, len(msgs))
	cmds := make([]*redis.StringCmd, 0, min(len(msgs), p.cfg.Pipeline))
	values := make([]any, 4)
	for len(msgs) > 0 {
		n := min(len(msgs), p.cfg.Pipeline)
		pipe := p.c.Pipeline()
		cmds = cmds[:0]
		for i := range msgs[:n] {
			values[0], values[1], values[2], values[3] = fieldData, msgs[i].Data, fieldCT, msgs[i].Format.String()
			cmds = append(cmds, pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: p.cfg.Stream, MaxLen: p.cfg.MaxLen, Approx: true, Values: values,
			}))
		}
		var wait *redis.IntCmd
		if p.cfg.Wait.Enabled() {
			wait = p.cfg.Wait.Queue(ctx, pipe)
		}
		_, err := pipe.Exec(ctx)
		if err == nil && wait != nil {
			err = p.cfg.Wait.Check(wait)
		}
		if err != nil && wait != nil {
			return ids, fmt.Errorf("redisstream: publish to %s: %w", p.cfg.Stream, err) // none of this round trip is confirmed
		}
		for _, cmd := range cmds {
			if cmd.Err() != nil {
				break
			}
			ids = append(ids, cmd.Val())
		}
		if err != nil {
			return ids, fmt.Errorf("redisstream: publish to %s: %w", p.cfg.Stream, err)
		}
		msgs = msgs[n:]
	}
	return ids, nil
}
