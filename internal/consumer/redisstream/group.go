package redisstream

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
)

// GroupPosition returns the group's current position and counters (XINFO
// GROUPS). A missing group or stream is a *GroupMissingError.
func GroupPosition(ctx context.Context, c redis.UniversalClient, stream, group string) (GroupInfo, error) {
	info, err := groupInfo(ctx, c, stream, group)
	if err != nil {
		return info, wrapErr("xinfo groups", stream, group, err)
	}
	return info, nil
}

// SetGroupPosition moves the group so that it delivers next the first
// entry after lastDelivered ("0" for the stream's first entry, "$" for
// only entries added from now on, or an entry id; see StartBefore and
// StartAtTime), with XGROUP SETID, and returns the group's info before
// and after. Entries pending in the group stay pending, with their owners;
// workers running meanwhile simply go on from the new position. A missing
// group is a *GroupMissingError: it is never created here.
func SetGroupPosition(ctx context.Context, c redis.UniversalClient, stream, group, lastDelivered string) (before, after GroupInfo, err error) {
	if !startID.MatchString(lastDelivered) {
		return before, after, fmt.Errorf("redisstream: position %q is not 0, $ or a stream entry id", lastDelivered)
	}
	if before, err = GroupPosition(ctx, c, stream, group); err != nil {
		return before, after, err
	}
	// Tell Redis how many entries the group has read, when the entries
	// after the new position can be counted cheaply, so the group's lag
	// stays known.
	args := []any{"XGROUP", "SETID", stream, group, lastDelivered}
	if pos, err := resolveStart(ctx, c, stream, lastDelivered); err == nil && pos.counted {
		args = []any{"XGROUP", "SETID", stream, group, pos.id, "ENTRIESREAD", pos.entriesRead}
	}
	if err = c.Do(ctx, args...).Err(); err != nil {
		return before, after, wrapErr("xgroup setid", stream, group, err)
	}
	after, err = GroupPosition(ctx, c, stream, group)
	return before, after, err
}

// NextEntry returns the first entry of the stream after position (a group
// position: "0-0", "0" or an entry id; "$" means none), or nil if there is
// none yet.
func NextEntry(ctx context.Context, c redis.UniversalClient, stream, position string) (*consumer.Position, error) {
	if position == "$" {
		return nil, nil
	}
	if position == "0" {
		position = "0-0"
	}
	xs, err := c.XRangeN(ctx, stream, "("+position, "+", 1).Result()
	if err != nil {
		return nil, wrapErr("xrange", stream, "", err)
	}
	if len(xs) == 0 {
		return nil, nil
	}
	return &consumer.Position{ID: xs[0].ID, Time: idTime(xs[0].ID)}, nil
}

// countLimit bounds the entries CountAfter reads for the operator tools.
const countLimit = 100_000

// CountAfter counts the stream's entries after position (an entry id, "0"
// or "$"), reading at most limit of them (in pages of 10,000); exact is
// false when it stopped at limit.
func CountAfter(ctx context.Context, c redis.UniversalClient, stream, position string, limit int64) (n int64, exact bool, err error) {
	return countRange(ctx, c, stream, position, "+", limit)
}

// countRange counts the entries after position up to end, inclusive,
// reading at most limit of them.
func countRange(ctx context.Context, c redis.UniversalClient, stream, position, end string, limit int64) (n int64, exact bool, err error) {
	switch position {
	case "$":
		return 0, true, nil
	case "0":
		position = "0-0"
	}
	const page = 10_000
	for n < limit {
		xs, err := c.XRangeN(ctx, stream, "("+position, end, page).Result()
		if err != nil {
			return n, false, wrapErr("xrange", stream, "", err)
		}
		n += int64(len(xs))
		if len(xs) < page {
			return n, true, nil
		}
		position = xs[len(xs)-1].ID
	}
	return n, false, nil
}
