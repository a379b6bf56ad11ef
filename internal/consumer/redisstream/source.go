// Package redisstream is the Redis Streams source of the consume loop
// (consumer.Source), with the publisher writers use and the setup that
// creates the stream and its consumer group.
//
// A Source reads as one consumer of a consumer group: XREADGROUP with a
// short positive BLOCK for new entries; every ClaimEvery, from inside
// Fetch, a claim pass that takes over entries other consumers (crashed,
// or too slow) left idle longer than ClaimMinIdle, and removes consumers
// that are long dead; after a fetch that did not finish cleanly, a
// recovery read of the consumer's own pending entries, so nothing
// delivered to it is left waiting for a claim. Acknowledgement (XACK),
// dead-lettering (an atomic script that moves entries to the dead-letter
// stream and acknowledges them) and lease renewal (XCLAIM JUSTID) are one
// round trip per call.
//
// Entries carry the encoded event in the field data and its encoding in
// the field ct ("json" or "msgpack"; absent means JSON). Entries whose
// payload was trimmed from the stream while they were pending come back as
// consumer.Message with Lost set.
//
// Workers never create the group: a missing group or stream is an error
// wrapping consumer.ErrGroupMissing that says to run 'indexer setup'.
// Setup creates both, idempotently.
//
// With Redis Cluster, the stream and its dead-letter stream must share a
// hash tag ("{idx:events}" and "{idx:events}:dlq"): dead-lettering writes
// both in one script.
package redisstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/lua"
	"github.com/streamindex/indexer/publish/redispub"
)

// Defaults of Config and PublisherConfig.
const (
	DefaultStream = redispub.DefaultStream
	DefaultGroup  = "indexer"
	// DeadLetterSuffix is appended to the stream's name to name its
	// default dead-letter stream.
	DeadLetterSuffix = ":dlq"
	// DefaultDeadLetterMaxLen is how many dead letters the dead-letter
	// stream keeps by default (about: MAXLEN ~).
	DefaultDeadLetterMaxLen = 100_000
)

// Config configures a Source. Zero fields mean the defaults; New validates
// it.
type Config struct {
	// Stream is the key of the stream. Default "idx:events".
	Stream string
	// Group is the consumer group, created beforehand by Setup. Default
	// "indexer".
	Group string
	// Consumer is this worker's name in the group, unique among the
	// group's live workers (cmd/indexer uses hostname-pid). Required.
	Consumer string
	// DeadLetterStream is the key of the stream dead letters are added
	// to; it must differ from Stream. Default Stream + ":dlq".
	DeadLetterStream string
	// DeadLetterMaxLen is the dead-letter stream's retention: each dead
	// letter added trims it to about this many entries (XADD MAXLEN ~),
	// the oldest first. Negative: no limit. Default DefaultDeadLetterMaxLen.
	DeadLetterMaxLen int64
	// ClaimMinIdle is the lease of a delivered entry: entries of any
	// consumer (this one included) idle longer than this are claimed and
	// delivered again. Extend renews the lease; ExtendEvery is a third of
	// it. At least 1ms. Default 60s.
	ClaimMinIdle time.Duration
	// ClaimEvery is how often Fetch runs the claim pass (take over idle
	// entries, remove dead consumers). Default ClaimMinIdle/4, at least
	// 100ms.
	ClaimEvery time.Duration
	// MaxBlock is the longest single XREADGROUP BLOCK; Fetch waits longer
	// in several reads, so a cancelled context or Close ends a blocked
	// Fetch within about MaxBlock. At least 1ms. Default 250ms.
	MaxBlock time.Duration
	// DeadConsumerIdle: the claim pass deletes from the group consumers
	// (never this one) idle longer than this that own no pending entry,
	// so restarted workers (a new hostname-pid each time) do not pile up.
	// Negative disables it. Default 1h.
	DeadConsumerIdle time.Duration
	// Logger receives the source's logs. The source adds no attributes:
	// the caller's logger names the stream, group and consumer once
	// (Logger.With), so no log line repeats a key. Default slog.Default().
	Logger *slog.Logger
}

// ErrClosed is returned by Fetch on a closed Source.
var ErrClosed = errors.New("redisstream: source closed")

// Source reads a stream as one consumer of a consumer group. It
// implements consumer.Source, consumer.Extender, consumer.BacklogReporter
// and consumer.TrimCounter.
//
// Fetch must be called from one goroutine at a time; Ack, DeadLetter,
// Extend, Backlog and Lag may be called from other goroutines concurrently with it
// and with each other. Close may be called from any goroutine; it is
// idempotent.
type Source struct {
	c   redis.UniversalClient
	cfg Config
	g   lua.StreamGroup
	log *slog.Logger
	now func() time.Time

	closed    atomic.Bool
	closeOnce sync.Once

	// mu guards inflight: ids handed to the loop (or buffered in backlog)
	// and not yet acknowledged or dead-lettered, each with the time its
	// lease ends (delivery or last renewal + ClaimMinIdle). Recovery skips
	// them; the claim pass forgets those whose lease ended (they can be
	// claimed again by anyone, this consumer included).
	mu       sync.Mutex
	inflight map[string]time.Time

	// Owned by the goroutine calling Fetch.
	counting    bool               // the group's read counter is known to be set (see countReads)
	recovering  bool               // the own pending list may hold entries not handed out
	recoverFrom string             // XPENDING cursor of the recovery ("-" or "(id")
	claimFrom   string             // XAUTOCLAIM cursor
	nextClaim   time.Time          // when the next claim pass is due
	backlog     []consumer.Message // fetched beyond max; handed out first
	readArgs    redis.XReadGroupArgs
	replySize   int // the size of the largest XREADGROUP reply lately: the next reply's buffer (see read)
}

var (
	_ consumer.Source          = (*Source)(nil)
	_ consumer.Extender        = (*Source)(nil)
	_ consumer.BacklogReporter = (*Source)(nil)
	_ consumer.TrimCounter     = (*Source)(nil)
)

// LoadScripts loads the source's Redis scripts into c's script cache, so
// that a broken script fails at start-up rather than at the first dead
// letter or claim; a worker calls it once. (Scripts run with EVALSHA and
// fall back to EVAL, so skipping it changes nothing else.)
func LoadScripts(ctx context.Context, c redis.Scripter) error { return lua.LoadStream(ctx, c) }

// New validates cfg, applies its defaults and returns a Source reading
// through c. It starts no goroutine and does not contact Redis: a missing
// group shows at the first Fetch. c is shared: Close does not close it.
func New(c redis.UniversalClient, cfg Config) (*Source, error) {
	if c == nil {
		return nil, errors.New("redisstream: nil redis client")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if _, ok := c.(*redis.ClusterClient); ok && (hashTag(cfg.Stream) == "" || hashTag(cfg.Stream) != hashTag(cfg.DeadLetterStream)) {
		return nil, fmt.Errorf("redisstream: with Redis Cluster, stream %q and dead-letter stream %q must share a hash tag, e.g. \"{idx:events}\" and \"{idx:events}:dlq\"",
			cfg.Stream, cfg.DeadLetterStream)
	}
	s := &Source{
		c:   c,
		cfg: cfg,
		g:   lua.StreamGroup{Stream: cfg.Stream, Group: cfg.Group, Consumer: cfg.Consumer},
		log: cfg.Logger,
		now: time.Now,

		inflight:    make(map[string]time.Time),
		recovering:  true, // a previous process of the same name may have left entries
		recoverFrom: "-",
		claimFrom:   "0-0",
	}
	s.readArgs = redis.XReadGroupArgs{
		Group:    cfg.Group,
		Consumer: cfg.Consumer,
		Streams:  []string{cfg.Stream, ">"},
	}
	return s, nil
}

func (cfg *Config) setDefaults() error {
	if cfg.Consumer == "" {
		return errors.New("redisstream: Consumer is required (a name unique in the group, e.g. hostname-pid)")
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.DeadLetterStream == "" {
		cfg.DeadLetterStream = cfg.Stream + DeadLetterSuffix
	}
	switch {
	case cfg.DeadLetterMaxLen == 0:
		cfg.DeadLetterMaxLen = DefaultDeadLetterMaxLen
	case cfg.DeadLetterMaxLen < 0:
		cfg.DeadLetterMaxLen = 0 // no MAXLEN
	}
	if cfg.DeadLetterStream == cfg.Stream {
		return fmt.Errorf("redisstream: dead-letter stream %q must differ from the stream", cfg.DeadLetterStream)
	}
	if cfg.ClaimMinIdle == 0 {
		cfg.ClaimMinIdle = 60 * time.Second
	}
	if cfg.ClaimMinIdle < time.Millisecond {
		return fmt.Errorf("redisstream: ClaimMinIdle %v must be at least 1ms", cfg.ClaimMinIdle)
	}
	if cfg.ClaimEvery == 0 {
		cfg.ClaimEvery = max(cfg.ClaimMinIdle/4, 100*time.Millisecond)
	}
	if cfg.ClaimEvery < 0 {
		return fmt.Errorf("redisstream: ClaimEvery %v must be positive", cfg.ClaimEvery)
	}
	if cfg.MaxBlock == 0 {
		cfg.MaxBlock = 250 * time.Millisecond
	}
	if cfg.MaxBlock < time.Millisecond {
		return fmt.Errorf("redisstream: MaxBlock %v must be at least 1ms (a zero BLOCK would wait forever)", cfg.MaxBlock)
	}
	if cfg.DeadConsumerIdle == 0 {
		cfg.DeadConsumerIdle = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// Fetch returns up to max messages, waiting at most wait for the first
// one; it returns no messages and no error when none came in time, and
// returns within about MaxBlock when ctx is done (with ctx's error, unless
// messages were read) or Close is called (with no error). On a closed
// Source it returns ErrClosed.
//
// In order, it hands out: messages fetched beyond an earlier call's max;
// after a fetch that did not finish cleanly (and at the first call), this
// consumer's own pending entries not handed out yet, with their delivery
// count; when the claim pass is due, entries claimed from idle consumers
// (delivery count >= 2); else new entries (XREADGROUP >, delivery count
// 1). Entries whose payload was trimmed from the stream come back with
// Lost set. The caller owns the returned slice and the Data it points to.
//
// A missing group or stream is an error wrapping consumer.ErrGroupMissing.
func (s *Source) Fetch(ctx context.Context, max int, wait time.Duration) ([]consumer.Message, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if max <= 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(s.backlog) > 0 {
		return s.fromBacklog(max), nil
	}
	if s.recovering {
		msgs, err := s.recoverOwn(ctx, max)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
	}
	if !s.counting {
		if err := s.countReads(ctx); err != nil {
			return nil, err
		}
	}
	deadline := s.now().Add(wait)
	for {
		if now := s.now(); !now.Before(s.nextClaim) {
			msgs, err := s.claimPass(ctx, max, now)
			if err != nil || len(msgs) > 0 {
				return msgs, err
			}
		}
		msgs, err := s.read(ctx, max, deadline.Sub(s.now()))
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		switch {
		case s.closed.Load():
			return nil, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case !s.now().Before(deadline):
			return nil, nil
		}
	}
}

// countReads makes sure, before this consumer's first read, that Redis
// counts the group's reads (see lua.StreamInitReadCounter), so entries
// trimmed before any worker read them show in the group's lag and Trimmed
// counts them.
//
// A missing group is an error; a refused command (a worker ACL without
// +xgroup|setid) is logged, and the worker reads on without it.
func (s *Source) countReads(ctx context.Context) error {
	set, err := lua.StreamInitReadCounter(ctx, s.c, s.cfg.Stream, s.cfg.Group)
	if err != nil {
		err = s.wrap("", err)
		if errors.Is(err, consumer.ErrGroupMissing) || consumer.Classify(err) != consumer.Fatal {
			return err
		}
		s.log.Error("cannot give the group a read counter; entries trimmed before the group's first read will not be counted (a refused command: grant the worker's Redis user +xgroup|setid, see README, Security)",
			"err", err)
		s.counting = true
		return nil
	}
	if set {
		s.log.Info("the group had read nothing and had no read counter; set it to 0, so entries trimmed before they are read are counted")
	}
	s.counting = true
	return nil
}

// read runs one XREADGROUP > for up to count entries, blocking at most
// min(wait, MaxBlock, ctx's deadline); under 1ms it does not block.
func (s *Source) read(ctx context.Context, count int, wait time.Duration) ([]consumer.Message, error) {
	block := min(wait, s.cfg.MaxBlock)
	if d, ok := ctx.Deadline(); ok {
		block = min(block, time.Until(d))
	}
	if block < time.Millisecond {
		block = -1 // no BLOCK argument; go-redis's zero Block would wait forever
	}
	a := &s.readArgs
	a.Count, a.Block = int64(count), block
	args := [...]any{"XREADGROUP", "GROUP", a.Group, a.Consumer, "COUNT", a.Count, "BLOCK", a.Block.Milliseconds(), "STREAMS", s.cfg.Stream, ">"}
	cmdArgs := args[:]
	if block < 0 {
		cmdArgs = append(args[:6:6], args[8:]...) // no BLOCK
	}
	// The raw reply keeps every field of an entry in order (see message);
	// payloads are not copied out of it. It is read into a new buffer the
	// size of the largest reply lately (the messages keep pointing into
	// it), which spares growing one from nothing for every batch: that
	// doubled the bytes allocated and copied. go-redis does not retry
	// this command: a failed read starts the recovery below instead.
	buf := bytes.NewBuffer(make([]byte, 0, s.replySize))
	cmd := redis.NewRawWriteToCmd(ctx, buf, cmdArgs...)
	_ = s.c.Process(ctx, cmd)
	_, err := cmd.Result()
	raw := buf.Bytes()
	s.replySize = max(len(raw)+len(raw)/8, s.replySize-s.replySize/16)
	var entries []entry
	if err == nil {
		entries, err = parseReadGroup(raw)
	}
	if err != nil {
		// The server may have delivered entries whose reply was lost:
		// they sit in this consumer's pending list.
		s.startRecovery()
		return nil, s.wrap("xreadgroup", err)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	msgs := make([]consumer.Message, len(entries))
	for i := range entries {
		msgs[i] = s.message(&entries[i], 1)
	}
	s.hold(msgs)
	return msgs, nil
}

// startRecovery makes the next Fetch read this consumer's pending list
// from its start.
func (s *Source) startRecovery() {
	s.recovering, s.recoverFrom = true, "-"
}

// fromBacklog hands out up to max buffered messages.
func (s *Source) fromBacklog(max int) []consumer.Message {
	n := min(max, len(s.backlog))
	out := make([]consumer.Message, n)
	copy(out, s.backlog)
	clear(s.backlog[:n])
	s.backlog = s.backlog[n:]
	if len(s.backlog) == 0 {
		s.backlog = nil
	}
	return out
}

// handOut returns up to max of msgs and keeps the rest for the next
// Fetch. msgs are held (in flight) already.
func (s *Source) handOut(msgs []consumer.Message, max int) []consumer.Message {
	if len(msgs) <= max {
		return msgs
	}
	s.backlog = append(s.backlog, msgs[max:]...)
	return msgs[:max:max]
}

// hold records msgs as in flight, their lease ending ClaimMinIdle from now.
func (s *Source) hold(msgs []consumer.Message) {
	until := s.now().Add(s.cfg.ClaimMinIdle)
	s.mu.Lock()
	for i := range msgs {
		s.inflight[msgs[i].ID] = until
	}
	s.mu.Unlock()
}

// release forgets ids that were acknowledged or dead-lettered.
func (s *Source) release(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.inflight, id)
	}
	s.mu.Unlock()
}

// Ack acknowledges msgs with one XACK. Acknowledging an entry that is no
// longer pending (acknowledged already, or lost) is not an error.
func (s *Source) Ack(ctx context.Context, msgs []consumer.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ids := make([]string, len(msgs))
	for i := range msgs {
		ids[i] = msgs[i].ID
	}
	if err := s.c.XAck(ctx, s.cfg.Stream, s.cfg.Group, ids...).Err(); err != nil {
		return s.wrap("xack", err)
	}
	s.release(ids)
	return nil
}

// DeadLetter moves msgs to the dead-letter stream and acknowledges them,
// atomically, in one script call: each becomes an entry of
// DeadLetterStream with the fields data, ct, reason, original_id,
// deliveries, data_size and data_sha256 (of the whole payload, which data
// may hold only the first bytes of), stream, group, consumer and
// dead_lettered_at (Unix ms); the dead-letter stream is trimmed to about
// DeadLetterMaxLen entries. A failed call moves and acknowledges nothing. Entries no longer pending
// (acknowledged meanwhile by a consumer that took them over) are skipped,
// so nothing is dead-lettered twice. Lost messages have nothing to move:
// they are only acknowledged.
func (s *Source) DeadLetter(ctx context.Context, msgs []consumer.DeadLetter) error {
	if len(msgs) == 0 {
		return nil
	}
	entries := make([]lua.DeadLetterEntry, 0, len(msgs))
	ids := make([]string, 0, len(msgs))
	var lost []consumer.Message
	for i := range msgs {
		m := &msgs[i]
		if m.Lost {
			lost = append(lost, m.Message)
			continue
		}
		size, sha := m.Payload()
		entries = append(entries, lua.DeadLetterEntry{
			ID: m.ID, Data: m.Data, ContentType: m.ContentType, Reason: m.Reason, Deliveries: m.Deliveries, Size: size, SHA256: sha,
		})
		ids = append(ids, m.ID)
	}
	moved, err := lua.StreamDeadLetter(ctx, s.c, s.g, s.cfg.DeadLetterStream, s.now().UnixMilli(), s.cfg.DeadLetterMaxLen, entries)
	if err != nil {
		return s.wrap("", err)
	}
	s.release(ids)
	if moved < len(entries) {
		s.log.Info("some messages were no longer pending (acknowledged by another consumer); not dead-lettered again",
			"dead_letter_stream", s.cfg.DeadLetterStream, "requested", len(entries), "moved", moved)
	}
	return s.Ack(ctx, lost)
}

// ExtendEvery is how often the loop renews the lease of messages being
// applied: a third of ClaimMinIdle.
func (s *Source) ExtendEvery() time.Duration { return s.cfg.ClaimMinIdle / 3 }

// Extend renews the lease of msgs this consumer still owns: it resets
// their idle time without counting a delivery (XCLAIM ... JUSTID), so no
// claim pass takes them over for another ClaimMinIdle. Messages no longer
// pending, or owned by another consumer since, are left alone (and
// forgotten). One script call.
func (s *Source) Extend(ctx context.Context, msgs []consumer.Message) error {
	ids := make([]string, 0, len(msgs))
	for i := range msgs {
		if !msgs[i].Lost {
			ids = append(ids, msgs[i].ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	renewed, err := lua.StreamExtend(ctx, s.c, s.g, ids)
	if err != nil {
		return s.wrap("", err)
	}
	owned := make(map[string]bool, len(renewed))
	for _, id := range renewed {
		owned[id] = true
	}
	until := s.now().Add(s.cfg.ClaimMinIdle)
	s.mu.Lock()
	for _, id := range ids {
		if _, held := s.inflight[id]; !held {
			continue // acknowledged meanwhile
		}
		if owned[id] {
			s.inflight[id] = until
		} else {
			delete(s.inflight, id)
		}
	}
	s.mu.Unlock()
	return nil
}

// Lag returns how many entries of the stream the group has not read yet:
// Backlog's Lag.
func (s *Source) Lag(ctx context.Context) (int64, error) {
	b, err := s.Backlog(ctx)
	return b.Lag, err
}

// Backlog returns the group's lag and pending count (XINFO GROUPS) and the
// length of the dead-letter stream (XLEN), in one round trip. When Redis cannot tell the lag (entries deleted from
// the middle of the stream, or a group set to an arbitrary id), the lag is
// 0 if the group has read up to the stream's last entry, else the stream's
// length, an upper bound (one more call: XINFO STREAM).
func (s *Source) Backlog(ctx context.Context) (consumer.Backlog, error) {
	var b consumer.Backlog
	var groups *redis.XInfoGroupsCmd
	var dlq *redis.IntCmd
	_, _ = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		groups = p.XInfoGroups(ctx, s.cfg.Stream)
		dlq = p.XLen(ctx, s.cfg.DeadLetterStream)
		return nil
	})
	gs, err := groups.Result()
	if err != nil {
		return b, s.wrap("backlog: xinfo groups", err)
	}
	info, err := findGroup(gs, s.cfg.Stream, s.cfg.Group)
	if err != nil {
		return b, err
	}
	if b.DeadLetters, err = dlq.Result(); err != nil {
		return b, wrapErr("backlog: xlen", s.cfg.DeadLetterStream, s.cfg.Group, err)
	}
	b.Lag, b.Pending = info.Lag, info.Pending
	if b.Lag >= 0 {
		return b, nil
	}
	st, err := s.c.XInfoStream(ctx, s.cfg.Stream).Result()
	if err != nil {
		return b, s.wrap("backlog: xinfo stream", err)
	}
	b.Lag = st.Length
	if st.Length == 0 || compareIDs(info.LastDeliveredID, st.LastGeneratedID) >= 0 {
		b.Lag = 0
	}
	return b, nil
}

// Trimmed returns how many entries were trimmed from the stream (MAXLEN,
// MINID) before the group read them, each counted once for the whole group
// (see lua.StreamTrimmed): entries trimmed while pending are handed out
// with Lost set instead. It counts only once the group has read up to the
// stream's last entry, and only while Redis knows the group's read counter
// (see XINFO GROUPS entries-read; a group created with setup --from an id,
// or one no worker has read from since its creation, has none yet).
func (s *Source) Trimmed(ctx context.Context) (int64, error) {
	n, err := lua.StreamTrimmed(ctx, s.c, s.cfg.Stream, s.cfg.Group)
	if err != nil {
		return 0, s.wrap("", err)
	}
	return n, nil
}

// Close stops the source: a blocked Fetch returns within about MaxBlock,
// and later Fetches return ErrClosed. Messages fetched and not
// acknowledged stay pending: the group delivers them again after
// ClaimMinIdle. Close does not close the Redis client. It is idempotent
// and always returns nil.
func (s *Source) Close() error {
	s.closeOnce.Do(func() { s.closed.Store(true) })
	return nil
}
