// Package redispub publishes indexer events to a Redis stream: each event
// is one entry with the field data (the encoded event) and, for msgpack,
// ct "msgpack" (JSON, the contract's default, goes without ct: see CT),
// appended with XADD, many per round trip (pipelining).
//
// It keeps the contract of package publish: events are validated with the
// workers' rules before anything is sent; Publish returns once Redis
// stored every entry; transient failures (connection loss, LOADING,
// READONLY after a failover, …) are retried with backoff, sending again
// the entries whose XADD did not reply. An entry whose reply was lost may
// so be stored twice: harmless, since applying an event twice changes the
// index once (every event is idempotent), and the workers count it as a
// duplicate.
//
// The least privilege a writer needs is XADD on the stream's key:
//
//	ACL SETUSER writer on >PASSWORD resetkeys ~idx:events resetchannels -@all +xadd
package redispub

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/redisconn"
	"github.com/streamindex/indexer/publish"
)

// DefaultStream is the events stream the workers read by default.
const DefaultStream = "idx:events"

// The entry fields of an event (DESIGN.md §2).
const (
	FieldData = "data"
	FieldCT   = "ct"
)

// CT returns the value of the field ct for events encoded as f: "" (no
// field) for JSON, the contract's default, and the format's name
// otherwise. Leaving the field out for JSON changes nothing for the
// workers and spares Redis a field on every XADD and in every
// XREADGROUP reply (about 0.25 µs of Redis CPU per event, BENCHMARKS.md).
func CT(f event.Format) string {
	if f == event.JSON {
		return ""
	}
	return f.String()
}

// Config configures a Publisher. The zero value means the defaults.
type Config struct {
	publish.Options

	// Stream is the key of the stream. Default "idx:events".
	Stream string
	// MaxLen, when positive, trims the stream to about this many entries
	// as it grows (XADD MAXLEN ~ MaxLen: Redis trims whole nodes, so the
	// stream keeps somewhat more). WARNING: trimming does not wait for
	// the workers. An entry trimmed away before they applied it is lost
	// to the index: they count it (indexer_lost_messages_total) and raise
	// an alarm, but cannot apply it; only publishing the event again
	// repairs that. Size MaxLen well above the backlog the workers may
	// build (hours of traffic), or leave it 0 and trim by other means.
	// Default 0: never trim.
	MaxLen int64
	// Pipeline is the most XADDs sent in one round trip. Default 1000.
	Pipeline int
	// WaitReplicas, when positive, ends each round trip with Redis's
	// WAIT: a Publish returns only once that many replicas have the
	// entries, so that a failover (Sentinel promoting a replica) cannot
	// lose an event reported as published. Fewer confirmations within
	// WaitTimeout make the round trip's entries unconfirmed (they may
	// still be in the stream): they are sent again under Options'
	// retries, which is safe since events are idempotent. The client's
	// read timeout must exceed WaitTimeout. Default 0: no waiting.
	WaitReplicas int
	// WaitTimeout bounds one WAIT. Default 1 s.
	WaitTimeout time.Duration
}

// Message is one raw stream entry for PublishRaw.
type Message struct {
	// Data is the field data: an encoded event, or anything (tests of
	// the workers' dead-lettering).
	Data []byte
	// CT is the field ct: "json", "msgpack", or anything; "" leaves the
	// field out (the workers then read JSON).
	CT string
}

// Publisher appends events to a Redis stream. It is safe for concurrent
// use; see package publish for the contract.
type Publisher struct {
	c      redis.UniversalClient
	cfg    Config
	enc    *publish.Encoder
	closed atomic.Bool
}

var _ publish.Publisher = (*Publisher)(nil)

// New returns a Publisher writing through c, which stays the caller's.
// It does not contact Redis.
func New(c redis.UniversalClient, cfg Config) (*Publisher, error) {
	if c == nil {
		return nil, errors.New("redispub: no Redis client")
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Pipeline <= 0 {
		cfg.Pipeline = 1000
	}
	if cfg.MaxLen < 0 {
		return nil, fmt.Errorf("redispub: MaxLen %d: want 0 (no trimming) or a positive entry count", cfg.MaxLen)
	}
	enc, err := cfg.NewEncoder()
	if err != nil {
		return nil, err
	}
	return &Publisher{c: c, cfg: cfg, enc: enc}, nil
}

// Publish validates and encodes events, appends each as an entry with the
// field data (and ct, see CT), and returns once Redis stored all of them. An
// invalid event fails the call before anything is sent, with an
// *publish.EventError.
func (p *Publisher) Publish(ctx context.Context, events ...event.Event) error {
	if p.closed.Load() {
		return publish.ErrClosed
	}
	data, err := p.enc.Encode(events)
	if err != nil {
		return fmt.Errorf("redispub: %w", err)
	}
	ct := CT(p.enc.Format())
	msgs := make([]Message, len(data))
	for i := range data {
		msgs[i] = Message{Data: data[i], CT: ct}
	}
	_, err = p.PublishRaw(ctx, msgs)
	return err
}

// PublishRaw appends msgs as they are, without validating them (to test
// how workers treat bad input, or to forward entries already encoded),
// with the retries of Publish, and returns their entry ids, in the order
// of msgs. On error, ids holds the ids of the entries known to be stored
// and "" for the others.
func (p *Publisher) PublishRaw(ctx context.Context, msgs []Message) (ids []string, err error) {
	if p.closed.Load() {
		return nil, publish.ErrClosed
	}
	ids = make([]string, len(msgs))
	pending := make([]int, len(msgs))
	for i := range pending {
		pending[i] = i
	}
	err = publish.Retry(ctx, p.cfg.Options, func(ctx context.Context) error {
		var err error
		pending, err = p.appendEntries(ctx, msgs, pending, ids)
		return err
	})
	if err != nil {
		return ids, fmt.Errorf("redispub: publish to %s: %d of %d entries not confirmed: %w", p.cfg.Stream, len(pending), len(msgs), err)
	}
	return ids, nil
}

// appendEntries sends msgs[i] for every i of pending, Pipeline per round
// trip, records the ids of those stored, and returns those that were not,
// with the first error.
func (p *Publisher) appendEntries(ctx context.Context, msgs []Message, pending []int, ids []string) ([]int, error) {
	var failed []int
	var firstErr error
	cmds := make([]*redis.Cmd, 0, min(len(pending), p.cfg.Pipeline))
	// The arguments of every XADD: the command, the stream, MAXLEN ~ n when
	// trimming, then ID "*" and the fields, filled in per message.
	head := []any{"xadd", p.cfg.Stream}
	if p.cfg.MaxLen > 0 {
		head = append(head, "maxlen", "~", p.cfg.MaxLen)
	}
	head = append(head, "*")
	for start := 0; start < len(pending); start += p.cfg.Pipeline {
		chunk := pending[start:min(start+p.cfg.Pipeline, len(pending))]
		pipe := p.c.Pipeline()
		cmds = cmds[:0]
		for _, i := range chunk {
			args := make([]any, len(head), len(head)+4)
			copy(args, head)
			args = append(args, FieldData, msgs[i].Data)
			if msgs[i].CT != "" {
				args = append(args, FieldCT, msgs[i].CT)
			}
			cmds = append(cmds, pipe.Do(ctx, args...))
		}
		var wait *redis.IntCmd
		if w := p.wait(); w.Enabled() {
			wait = w.Queue(ctx, pipe)
		}
		_, err := pipe.Exec(ctx)
		if err == nil && wait != nil {
			err = p.wait().Check(wait)
		}
		if err != nil && wait != nil { // none of this round trip is confirmed
			if firstErr == nil {
				firstErr = err
			}
			return append(append(failed, chunk...), pending[start+len(chunk):]...), firstErr
		}
		for j, cmd := range cmds {
			id, cerr := cmd.Text()
			if cerr != nil {
				failed = append(failed, chunk[j])
				continue
			}
			ids[chunk[j]] = id
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if publish.Transient(err) { // the connection is gone or the server refuses writes: stop here
				return append(failed, pending[start+len(chunk):]...), firstErr
			}
		}
	}
	return failed, firstErr
}

// wait is the WAIT of WaitReplicas and WaitTimeout.
func (p *Publisher) wait() redisconn.Wait {
	return redisconn.Wait{Replicas: p.cfg.WaitReplicas, Timeout: p.cfg.WaitTimeout}
}

// Close makes later calls fail with publish.ErrClosed. It does not close
// the Redis client.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}
