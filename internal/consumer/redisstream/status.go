package redisstream

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

// Status describes the stream, the group the workers share and the
// dead-letter stream deadLetters, for operators ('indexer status'). It only
// reads. A missing group is reported (GroupStatus.Missing), not an error; a
// missing stream is a *StreamMissingError.
//
// It needs XINFO STREAM, XINFO GROUPS, XINFO CONSUMERS, XPENDING, XLEN and
// XRANGE.
func Status(ctx context.Context, c redis.UniversalClient, stream, group, deadLetters string) (consumer.StreamStatus, error) {
	st := consumer.StreamStatus{Stream: stream, Group: consumer.GroupStatus{Name: group}}
	info, err := c.XInfoStream(ctx, stream).Result()
	if err != nil {
		return st, wrapErr("status: xinfo stream", stream, group, err)
	}
	st.Length = info.Length
	if info.Length > 0 {
		st.First = &consumer.Position{ID: info.FirstEntry.ID, Time: idTime(info.FirstEntry.ID)}
		st.Last = &consumer.Position{ID: info.LastEntry.ID, Time: idTime(info.LastEntry.ID)}
	}

	groups, err := c.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return st, wrapErr("status: xinfo groups", stream, group, err)
	}
	var gi *redis.XInfoGroup
	for i := range groups {
		if groups[i].Name == group {
			gi = &groups[i]
		} else {
			st.OtherGroups = append(st.OtherGroups, groups[i].Name)
		}
	}
	if gi == nil {
		st.Group.Missing = true
	} else if err := groupStatus(ctx, c, stream, info, gi, &st.Group); err != nil {
		return st, err
	}

	st.DeadLetters.Name = deadLetters
	if deadLetters != "" {
		if st.DeadLetters.Count, err = c.XLen(ctx, deadLetters).Result(); err != nil {
			return st, wrapErr("status: xlen", deadLetters, group, err)
		}
		first, err := c.XRangeN(ctx, deadLetters, "-", "+", 1).Result()
		if err != nil {
			return st, wrapErr("status: xrange", deadLetters, group, err)
		}
		if len(first) == 1 {
			st.DeadLetters.Oldest = &consumer.Position{ID: first[0].ID, Time: idTime(first[0].ID)}
		}
	}
	return st, nil
}

func groupStatus(ctx context.Context, c redis.UniversalClient, stream string, info *redis.XInfoStream, gi *redis.XInfoGroup, g *consumer.GroupStatus) error {
	g.LastDelivered, g.Pending = gi.LastDeliveredID, gi.Pending
	g.Lag = gi.Lag
	if g.Lag < 0 { // Redis cannot tell: count, up to a limit
		n, exact, err := CountAfter(ctx, c, stream, gi.LastDeliveredID, countLimit)
		if err != nil {
			return err
		}
		g.Lag, g.LagEstimated = n, !exact
		if !exact {
			g.Lag = info.Length // an upper bound
		}
	}
	if gi.Pending > 0 {
		p, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: gi.Name, Start: "-", End: "+", Count: 1}).Result()
		if err != nil {
			return wrapErr("status: xpending", stream, gi.Name, err)
		}
		if len(p) == 1 {
			g.OldestPending = &consumer.Pending{
				Position:   consumer.Position{ID: p[0].ID, Time: idTime(p[0].ID)},
				Idle:       p[0].Idle,
				Deliveries: p[0].RetryCount,
				Consumer:   p[0].Consumer,
			}
		}
	}
	cs, err := c.XInfoConsumers(ctx, stream, gi.Name).Result()
	if err != nil {
		return wrapErr("status: xinfo consumers", stream, gi.Name, err)
	}
	for _, x := range cs {
		g.Consumers = append(g.Consumers, consumer.ConsumerStatus{Name: x.Name, Pending: x.Pending, Idle: x.Idle})
	}
	return nil
}

// Oldest returns when the oldest entry the stream holds was added (by its
// id), and false if the stream is empty. A missing stream is a
// *StreamMissingError: tombstone collection must not guess. It needs TYPE
// and XRANGE.
func Oldest(ctx context.Context, c redis.UniversalClient, stream string) (time.Time, bool, error) {
	t, err := c.Type(ctx, stream).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("redisstream: type %s: %w", stream, err)
	}
	switch t {
	case "stream":
	case "none":
		return time.Time{}, false, &StreamMissingError{Stream: stream}
	default:
		return time.Time{}, false, fmt.Errorf("redisstream: %s holds a %s, not a stream", stream, t)
	}
	first, err := c.XRangeN(ctx, stream, "-", "+", 1).Result()
	if err != nil {
		return time.Time{}, false, wrapErr("xrange", stream, "", err)
	}
	if len(first) == 0 {
		return time.Time{}, false, nil
	}
	return idTime(first[0].ID), true, nil
}
