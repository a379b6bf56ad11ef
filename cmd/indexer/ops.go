package main

import (
	"context"
	"flag"
	"log/slog"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/redisconn"
)

// opsOptions are the flags the operator commands (replay, group, status,
// dlq, gc) share: the source, Redis (the index, and the stream with
// --source redis), NATS and logs.
type opsOptions struct {
	ro *redisOptions
	so *streamOptions
	no *natsOptions
	lo *logOptions
}

func addOpsFlags(fs *flag.FlagSet) *opsOptions {
	return &opsOptions{ro: addIndexFlags(fs), so: addStreamFlags(fs, true), no: addNATSFlags(fs, false), lo: addLogFlags(fs)}
}

// conns are the connections an operator command opened; close closes
// them all.
type conns struct {
	rc      redis.UniversalClient // the Redis connection's client
	x       *index.Index
	js      natsjs.JetStream
	log     *slog.Logger
	closers []func()
}

func (c *conns) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// indexUse is what an operator command does with the index.
type indexUse int

const (
	noIndex     indexUse = iota
	readsIndex           // only reads: no script is loaded
	writesIndex          // writes: the index's scripts are loaded
)

// open validates the flags and connects: to Redis if the command uses the
// index or the source is Redis, to NATS if the source is NATS.
func (o *opsOptions) open(ctx context.Context, a *app, use indexUse) (*conns, error) {
	if err := o.so.validate(); err != nil {
		return nil, err
	}
	if err := checkStreamSlot(o.so.source, o.ro.url, o.so.stream, o.so.deadLetter); err != nil {
		return nil, err
	}
	log, err := o.lo.logger(a)
	if err != nil {
		return nil, err
	}
	c := &conns{log: log.With("source", o.so.source, "stream", o.so.stream, "group", o.so.group)}
	if use != noIndex || o.so.source == sourceRedis {
		var conn *redisconn.Conn
		switch use {
		case writesIndex:
			c.x, conn, err = o.ro.openIndex(ctx, index.Config{})
		case readsIndex:
			c.x, conn, err = o.ro.readIndex(ctx)
		default:
			conn, err = o.ro.connect(ctx)
		}
		if err != nil {
			return nil, err
		}
		c.rc = conn.Client
		c.closers = append(c.closers, func() { conn.Close() })
	}
	if o.so.source == sourceNATS {
		_, js, closeNATS, err := o.no.connect(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), "indexer ops")
		if err != nil {
			c.close()
			return nil, err
		}
		c.js = js
		c.closers = append(c.closers, closeNATS)
	}
	return c, nil
}

// oldest returns the function that tells when the source's oldest entry
// was stored, for tombstone collection.
func (c *conns) oldest(so *streamOptions) func(context.Context) (time.Time, bool, error) {
	if so.source == sourceNATS {
		return func(ctx context.Context) (time.Time, bool, error) { return jetstream.Oldest(ctx, c.js, so.stream) }
	}
	return func(ctx context.Context) (time.Time, bool, error) { return redisstream.Oldest(ctx, c.rc, so.stream) }
}

// posKind is what an operator's position names.
type posKind int

const (
	posID       posKind = iota // a Redis entry id or a JetStream sequence
	posTime                    // a time
	posEarliest                // the stream's first entry
	posLatest                  // after the stream's last entry
)

// position is a position flag: "<id>" (redis: <ms>-<seq> or <ms>),
// "<sequence>" (nats), an RFC 3339 time, "earliest" or "latest".
type position struct {
	kind posKind
	id   string // redis, normalized by redisstream.ParseID
	seq  uint64 // nats
	t    time.Time
}

// parsePosition reads a position flag. first says how a bare Redis
// millisecond id is read: its first entry (a start) or its last (an end).
func parsePosition(flagName, s, source string, first bool) (position, error) {
	switch s {
	case "earliest", "first", "beginning":
		return position{kind: posEarliest}, nil
	case "latest", "last", "end":
		return position{kind: posLatest}, nil
	case "":
		return position{}, usagef("--%s is required: an entry id (redis) or sequence (nats), an RFC 3339 time, earliest or latest", flagName)
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return position{kind: posTime, t: t}, nil
	}
	if source == sourceNATS {
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil || seq == 0 {
			return position{}, usagef("--%s %q: give a stream sequence (1, 2, …), an RFC 3339 time (2024-01-15T14:00:00Z), earliest or latest", flagName, s)
		}
		return position{kind: posID, seq: seq}, nil
	}
	id, err := redisstream.ParseID(s, first)
	if err != nil {
		return position{}, usagef("--%s: %v; give an entry id (1700000000000-0), an RFC 3339 time (2024-01-15T14:00:00Z), earliest or latest", flagName, err)
	}
	return position{kind: posID, id: id}, nil
}

// ago renders how long ago t was, rounded for people.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return roundDuration(now.Sub(t)) + " ago"
}

func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + roundDuration(-d)
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// utc renders a time in UTC, RFC 3339 with milliseconds.
func utc(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// seconds renders a duration in JSON as seconds with millisecond precision.
func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// preview shortens a payload to n characters on one line.
func preview(data []byte, n int) string {
	s := strings.ToValidUTF8(string(data), "?")
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// stringList is a flag that may be repeated and takes comma-separated
// values.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
