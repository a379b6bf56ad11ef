package redisstream

import (
	"context"
	"fmt"
	"regexp"

	"github.com/redis/go-redis/v9"
)

// GroupInfo describes a consumer group, from XINFO GROUPS.
type GroupInfo struct {
	// LastDeliveredID is the id of the last entry delivered to the group.
	LastDeliveredID string
	// EntriesRead counts the entries delivered to the group (0 when Redis
	// cannot tell).
	EntriesRead int64
	// Lag counts the stream's entries not yet delivered to the group; -1
	// when Redis cannot tell (see Source.Lag).
	Lag int64
	// Pending counts entries delivered and not acknowledged.
	Pending int64
	// Consumers counts the group's consumers.
	Consumers int64
}

// startID is a valid start position of a group: "0", "$" or an entry id.
var startID = regexp.MustCompile(`^(\$|[0-9]+(-[0-9]+)?)$`)

// Setup creates the stream (if absent) and its consumer group at start,
// idempotently: "0" (or "") reads the stream from its first entry, an
// entry id from the entry after it, and "$" only what is added from now
// on (events already in the stream are skipped: pass it only on purpose).
// The group is created with its read counter (ENTRIESREAD) set to the
// entries before its position, when they can be counted, so Redis knows
// its lag from the start and the entries trimmed before the workers read
// them are counted as lost (see Source.Trimmed).
// If the group exists already, Setup changes nothing and returns created
// false with the group's current position; it never moves or recreates
// it. stream and group default to "idx:events" and "indexer". Workers
// never call Setup.
func Setup(ctx context.Context, c redis.UniversalClient, stream, group, start string) (created bool, info GroupInfo, err error) {
	if stream == "" {
		stream = DefaultStream
	}
	if group == "" {
		group = DefaultGroup
	}
	if start == "" {
		start = "0"
	}
	if !startID.MatchString(start) {
		return false, GroupInfo{}, fmt.Errorf("redisstream: setup: start %q is not 0, $ or a stream entry id (<ms> or <ms>-<seq>)", start)
	}
	pos, err := resolveStart(ctx, c, stream, start)
	if err != nil {
		return false, GroupInfo{}, fmt.Errorf("redisstream: setup: group %q of stream %q at %s: %w", group, stream, start, err)
	}
	args := []any{"XGROUP", "CREATE", stream, group, pos.id, "MKSTREAM"}
	if pos.counted {
		args = append(args, "ENTRIESREAD", pos.entriesRead)
	}
	err = c.Do(ctx, args...).Err()
	switch {
	case err == nil:
		created = true
	case redis.HasErrorPrefix(err, "BUSYGROUP"):
	default:
		return false, GroupInfo{}, fmt.Errorf("redisstream: setup: create group %q of stream %q at %s: %w", group, stream, start, err)
	}
	info, err = groupInfo(ctx, c, stream, group)
	if err != nil {
		return created, info, wrapErr("setup", stream, group, err)
	}
	return created, info, nil
}

// groupInfo returns XINFO GROUPS for one group, or a *GroupMissingError.
func groupInfo(ctx context.Context, c redis.UniversalClient, stream, group string) (GroupInfo, error) {
	groups, err := c.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return GroupInfo{}, err
	}
	return findGroup(groups, stream, group)
}

// findGroup returns one group of an XINFO GROUPS reply, or a
// *GroupMissingError.
func findGroup(groups []redis.XInfoGroup, stream, group string) (GroupInfo, error) {
	for _, g := range groups {
		if g.Name == group {
			return GroupInfo{LastDeliveredID: g.LastDeliveredID, EntriesRead: g.EntriesRead, Lag: g.Lag,
				Pending: g.Pending, Consumers: g.Consumers}, nil
		}
	}
	return GroupInfo{}, &GroupMissingError{Stream: stream, Group: group}
}

// start is a group position resolved for XGROUP CREATE or SETID.
type start struct {
	id string // "0", or an entry id
	// entriesRead is the number of entries the stream ever held up to id
	// (XGROUP ... ENTRIESREAD), valid if counted.
	entriesRead int64
	counted     bool
}

// resolveStart turns a group position ("0", "$" or an entry id) into an
// entry id and, when it can be counted (up to countLimit entries after
// it), the read counter a group there has: "0" has read the entries
// trimmed before the stream's first one, "$" (resolved to the last entry
// id, so an entry added meanwhile is not taken as read) all of them, an
// id all but those after it. A missing stream has read nothing.
func resolveStart(ctx context.Context, c redis.UniversalClient, stream, pos string) (start, error) {
	info, err := c.XInfoStream(ctx, stream).Result()
	if redis.HasErrorPrefix(err, "no such key") {
		if pos == "$" {
			pos = "0"
		}
		return start{id: pos, counted: true}, nil
	}
	if err != nil {
		return start{}, err
	}
	switch pos {
	case "0", "0-0":
		return start{id: "0", entriesRead: max(info.EntriesAdded-info.Length, 0), counted: true}, nil
	case "$":
		return start{id: info.LastGeneratedID, entriesRead: info.EntriesAdded, counted: true}, nil
	}
	n, exact, err := countRange(ctx, c, stream, pos, info.LastGeneratedID, countLimit)
	if err != nil {
		return start{}, err
	}
	return start{id: pos, entriesRead: max(info.EntriesAdded-n, 0), counted: exact}, nil
}
