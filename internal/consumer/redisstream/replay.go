package redisstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

// ReplayGroupPrefix starts the name of every temporary replay group.
const ReplayGroupPrefix = "indexer-replay-"

// ReplayConfig configures NewReplay. Zero fields mean the defaults.
type ReplayConfig struct {
	// Stream is the key of the stream. Default "idx:events".
	Stream string
	// From is the first entry to replay, an id "<ms>-<seq>"; the replay
	// starts at the first entry at or after it. Default: the stream's
	// first entry.
	From string
	// To is the last entry to replay, an id. Default: the stream's last
	// entry when NewReplay runs, so entries added during the replay are
	// left to the workers.
	To string
	// Group names the temporary consumer group. Default
	// "indexer-replay-<unix ms>-<random>".
	Group string
	// ClaimMinIdle: an entry of the replay that was not applied (a failed
	// batch) is delivered again after this long. Default 10 s.
	ClaimMinIdle time.Duration
	// Logger receives the source's logs. Default slog.Default().
	Logger *slog.Logger
}

// Replay is a temporary consumer group that reads a stream from one entry
// to another, for 'indexer replay'. NewReplay creates the group; Close
// removes it. It never touches any other group, so workers running
// meanwhile are not disturbed.
type Replay struct {
	c     redis.UniversalClient
	cfg   ReplayConfig
	src   *Source
	end   string
	total int64
}

// ErrNothingToReplay: the range holds no entry; no group was created.
var ErrNothingToReplay = errors.New("redisstream: nothing to replay: no entry in the range")

// NewReplay creates the temporary group, positioned before From, and its
// Source (one consumer, "replay"). It returns ErrNothingToReplay if the
// stream holds no entry between From and To, and a *StreamMissingError if
// the stream does not exist.
func NewReplay(ctx context.Context, c redis.UniversalClient, cfg ReplayConfig) (*Replay, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.From == "" {
		cfg.From = "0-0"
	}
	if cfg.ClaimMinIdle == 0 {
		cfg.ClaimMinIdle = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Group == "" {
		var b [3]byte
		rand.Read(b[:])
		cfg.Group = ReplayGroupPrefix + strconv.FormatInt(time.Now().UnixMilli(), 10) + "-" + hex.EncodeToString(b[:])
	}
	end := cfg.To
	if end == "" {
		last, err := c.XRevRangeN(ctx, cfg.Stream, "+", "-", 1).Result()
		if err != nil {
			return nil, wrapErr("xrevrange", cfg.Stream, cfg.Group, err)
		}
		if len(last) == 0 {
			if n, err := c.Exists(ctx, cfg.Stream).Result(); err == nil && n == 0 {
				return nil, &StreamMissingError{Stream: cfg.Stream}
			}
			return nil, ErrNothingToReplay
		}
		end = last[0].ID
	}
	start := StartBefore(cfg.From)
	if first, err := NextEntry(ctx, c, cfg.Stream, start); err != nil {
		return nil, err
	} else if first == nil || compareIDs(first.ID, end) > 0 {
		return nil, ErrNothingToReplay
	}
	if err := c.XGroupCreate(ctx, cfg.Stream, cfg.Group, start).Err(); err != nil {
		if redis.HasErrorPrefix(err, "The XGROUP subcommand requires the key to exist") {
			return nil, &StreamMissingError{Stream: cfg.Stream, Err: err}
		}
		return nil, fmt.Errorf("redisstream: replay: create group %q of stream %q at %s: %w", cfg.Group, cfg.Stream, start, err)
	}
	r := &Replay{c: c, cfg: cfg, end: end}
	src, err := New(c, Config{Stream: cfg.Stream, Group: cfg.Group, Consumer: "replay",
		ClaimMinIdle: cfg.ClaimMinIdle, DeadConsumerIdle: -1, Logger: cfg.Logger.With("replay_group", cfg.Group)})
	if err != nil {
		r.Close(ctx)
		return nil, err
	}
	r.src = src
	r.total = estimateRange(ctx, c, cfg.Stream, start, end, countLimit)
	return r, nil
}

// estimateRange estimates how many entries lie after start up to end
// (inclusive), for progress. Counting reads the entries, so it reads at
// most limit of them in each of the range, the part before it and the
// part after it: the estimate is exact when the range, or both parts
// outside it, hold fewer than limit entries (a replay from a recent time
// to the end, or of all but the newest entries); otherwise it spreads the
// stream's length evenly over the time its ids span. It returns 0 (no
// estimate) only if Redis fails.
func estimateRange(ctx context.Context, c redis.UniversalClient, stream, start, end string, limit int64) int64 {
	n, exact, err := countRange(ctx, c, stream, start, end, limit)
	if err != nil || exact {
		return n
	}
	length, err := c.XLen(ctx, stream).Result()
	if err != nil {
		return n
	}
	before, exactBefore, err1 := countRange(ctx, c, stream, "0-0", start, limit) // entries up to start
	after, exactAfter, err2 := countRange(ctx, c, stream, end, "+", limit)       // entries past end
	outside := int64(0)
	if err1 == nil && exactBefore {
		outside += before
	}
	if err2 == nil && exactAfter {
		outside += after
	}
	if err1 == nil && err2 == nil && exactBefore && exactAfter {
		return max(length-outside, n)
	}
	first, err1 := c.XRangeN(ctx, stream, "-", "+", 1).Result()
	last, err2 := c.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err1 != nil || err2 != nil || len(first) == 0 || len(last) == 0 {
		return max(length-outside, n)
	}
	lo, hi := idTime(first[0].ID).UnixMilli(), idTime(last[0].ID).UnixMilli()
	from, to := max(idTime(start).UnixMilli(), lo), min(idTime(end).UnixMilli(), hi)
	est := length
	if hi > lo {
		est = int64(float64(length) * float64(to-from+1) / float64(hi-lo+1))
	}
	return min(max(est, n), length-outside)
}

// Source reads the temporary group. Its DeadLetter must not be used: the
// replay's messages are dead-lettered, if at all, by the live group.
func (r *Replay) Source() consumer.Source { return r.src }

// Group is the temporary group's name.
func (r *Replay) Group() string { return r.cfg.Group }

// End is the id of the last entry the replay covers.
func (r *Replay) End() string { return r.end }

// Total estimates how many entries the replay reads, for progress: their
// count, or the stream's length if there are more than 100,000.
func (r *Replay) Total() int64 { return r.total }

// Past reports whether m lies after the replay's last entry.
func (r *Replay) Past(m *consumer.Message) bool { return compareIDs(m.ID, r.end) > 0 }

// Done reports whether the group has been delivered every entry up to the
// replay's last one and none of them is pending any more.
func (r *Replay) Done(ctx context.Context) (bool, error) {
	info, err := groupInfo(ctx, r.c, r.cfg.Stream, r.cfg.Group)
	if err != nil {
		return false, wrapErr("xinfo groups", r.cfg.Stream, r.cfg.Group, err)
	}
	if compareIDs(info.LastDeliveredID, r.end) < 0 {
		// Not read up to the end, unless the rest was deleted meanwhile.
		next, err := NextEntry(ctx, r.c, r.cfg.Stream, info.LastDeliveredID)
		if err != nil || next != nil && compareIDs(next.ID, r.end) <= 0 {
			return false, err
		}
	}
	if info.Pending == 0 {
		return true, nil
	}
	p, err := r.c.XPending(ctx, r.cfg.Stream, r.cfg.Group).Result()
	if err != nil {
		return false, wrapErr("xpending", r.cfg.Stream, r.cfg.Group, err)
	}
	return p.Count == 0 || compareIDs(p.Lower, r.end) > 0, nil
}

// Close closes the Source and removes the temporary group (XGROUP
// DESTROY); call it also when the replay failed or was interrupted. It
// uses ctx even if it is done (for at most 5 s), so an interrupted replay
// still cleans up.
func (r *Replay) Close(ctx context.Context) error {
	if r.src != nil {
		r.src.Close()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.c.XGroupDestroy(ctx, r.cfg.Stream, r.cfg.Group).Err(); err != nil {
		return fmt.Errorf("redisstream: remove the replay group %q of stream %q (remove it by hand: XGROUP DESTROY %s %s): %w",
			r.cfg.Group, r.cfg.Stream, r.cfg.Stream, r.cfg.Group, err)
	}
	return nil
}

// RemoveStaleReplayGroups removes the stream's replay groups (named
// ReplayGroupPrefix…) left behind by replays that were killed: those
// created more than idle ago whose consumers have all been idle longer
// than idle. It returns the names removed.
func RemoveStaleReplayGroups(ctx context.Context, c redis.UniversalClient, stream string, idle time.Duration) ([]string, error) {
	groups, err := c.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return nil, wrapErr("xinfo groups", stream, "", err)
	}
	var removed []string
	for _, g := range groups {
		rest, ok := strings.CutPrefix(g.Name, ReplayGroupPrefix)
		if !ok {
			continue
		}
		msPart, _, _ := strings.Cut(rest, "-")
		ms, err := strconv.ParseInt(msPart, 10, 64)
		if err != nil || time.Since(time.UnixMilli(ms)) < idle {
			continue
		}
		cs, err := c.XInfoConsumers(ctx, stream, g.Name).Result()
		if err != nil {
			return removed, wrapErr("xinfo consumers", stream, g.Name, err)
		}
		active := false
		for _, x := range cs {
			active = active || x.Idle < idle
		}
		if active {
			continue
		}
		if err := c.XGroupDestroy(ctx, stream, g.Name).Err(); err != nil {
			return removed, wrapErr("xgroup destroy", stream, g.Name, err)
		}
		removed = append(removed, g.Name)
	}
	return removed, nil
}
