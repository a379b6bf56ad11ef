package lua

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scripts of the Redis Streams source (internal/consumer/redisstream).
// Each takes the stream (and the dead-letter stream) in KEYS, so they work
// on Redis Cluster when both share a hash tag.
var (
	//go:embed stream_dead_letter.lua
	streamDeadLetterSrc string
	//go:embed stream_claim.lua
	streamClaimSrc string
	//go:embed stream_extend.lua
	streamExtendSrc string
	//go:embed stream_delete_consumer.lua
	streamDeleteConsumerSrc string
	//go:embed stream_trimmed.lua
	streamTrimmedSrc string

	streamDeadLetter     = redis.NewScript(streamDeadLetterSrc)
	streamClaim          = redis.NewScript(streamClaimSrc)
	streamExtend         = redis.NewScript(streamExtendSrc)
	streamDeleteConsumer = redis.NewScript(streamDeleteConsumerSrc)
	streamTrimmed        = redis.NewScript(streamTrimmedSrc)
)

// StreamGroup names a consumer of a group of a stream: the scope of every
// stream script.
type StreamGroup struct {
	Stream   string // key of the stream
	Group    string // consumer group
	Consumer string // this consumer's name in the group
}

// DeadLetterEntry is one stream entry to move to the dead-letter stream.
type DeadLetterEntry struct {
	ID          string // the entry's id in the stream (original_id)
	Data        []byte // the payload, stored verbatim as field data
	ContentType string // field ct
	Reason      string // why it is dead-lettered, in words an operator can act on
	Deliveries  int    // how many times it was delivered
	Size        int    // the whole payload's size (Data may be its first bytes): field data_size
	SHA256      string // the whole payload's hex SHA-256 digest: field data_sha256
}

// StreamDeadLetter moves entries of g's group to the dead-letter stream
// deadLetters and acknowledges them, atomically. Each dead letter is a
// stream entry with the fields data, ct, reason, original_id, deliveries,
// data_size, data_sha256, stream, group, consumer and dead_lettered_at
// (nowMillis, Unix ms). With maxLen > 0 each XADD trims the dead-letter
// stream to about maxLen entries (MAXLEN ~), dropping the oldest.
// Entries no longer pending in the group (acknowledged meanwhile, e.g. by
// a consumer that took them over) are skipped, so an entry is never
// dead-lettered twice; it returns how many entries were moved.
//
// The call checks before its first write that deadLetters is a stream or
// absent (else a WRONGTYPE error) and that the group exists (else
// NOGROUP); a failing call writes nothing.
//
// KEYS: g.Stream, deadLetters. ARGV: group, consumer, nowMillis, maxLen
// (0: no trimming), then per entry its id, data, ct, reason, deliveries,
// size and digest.
func StreamDeadLetter(ctx context.Context, c redis.Scripter, g StreamGroup, deadLetters string, nowMillis, maxLen int64, entries []DeadLetterEntry) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 4+7*len(entries))
	args = append(args, g.Group, g.Consumer, strconv.FormatInt(nowMillis, 10), strconv.FormatInt(max(maxLen, 0), 10))
	for i := range entries {
		e := &entries[i]
		data := e.Data
		if data == nil {
			data = []byte{} // go-redis writes nil as ""; be explicit
		}
		args = append(args, e.ID, data, e.ContentType, e.Reason, strconv.Itoa(e.Deliveries), strconv.Itoa(e.Size), e.SHA256)
	}
	n, err := streamDeadLetter.Run(ctx, c, []string{g.Stream, deadLetters}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("stream_dead_letter %s: %w", g.Stream, err)
	}
	return n, nil
}

// ClaimedEntry is an entry taken over by StreamClaim.
type ClaimedEntry struct {
	// ID is the entry's id.
	ID string
	// Fields are the entry's field names and values, alternating, in
	// order (duplicates included); nil if its payload was deleted from the
	// stream (Redis 6.2 reports such entries here; Redis >= 7 in
	// ClaimResult.Deleted).
	Fields []any
	// Deliveries is the entry's delivery count, this claim included.
	Deliveries int64
}

// ClaimResult is the outcome of one StreamClaim call.
type ClaimResult struct {
	// Next is the cursor for the next call; "0-0" once the whole pending
	// list was scanned.
	Next string
	// Claimed are the entries now owned by the claiming consumer.
	Claimed []ClaimedEntry
	// Deleted are ids that were pending but whose entries were deleted
	// from the stream (trimmed); Redis removed them from the pending list.
	Deleted []string
}

// StreamClaim takes over up to count entries of g's group, scanning the
// pending list from start, that have been idle at least minIdle
// (XAUTOCLAIM), and reads each one's delivery count (XPENDING), in one
// atomic call. Claimed entries become g.Consumer's, their idle time reset
// and their delivery count incremented.
//
// KEYS: g.Stream. ARGV: group, consumer, minIdle (ms), start, count.
func StreamClaim(ctx context.Context, c redis.Scripter, g StreamGroup, minIdle time.Duration, start string, count int) (ClaimResult, error) {
	var res ClaimResult
	r, err := streamClaim.Run(ctx, c, []string{g.Stream}, g.Group, g.Consumer,
		strconv.FormatInt(minIdle.Milliseconds(), 10), start, strconv.Itoa(count)).Slice()
	if err != nil {
		return res, fmt.Errorf("stream_claim %s: %w", g.Stream, err)
	}
	bad := func(what string) (ClaimResult, error) {
		return ClaimResult{}, fmt.Errorf("stream_claim %s: unexpected reply: %s", g.Stream, what)
	}
	if len(r) < 2 {
		return bad(fmt.Sprintf("%d elements", len(r)))
	}
	var ok bool
	if res.Next, ok = r[0].(string); !ok {
		return bad("cursor")
	}
	deleted, _ := r[1].([]any)
	for _, d := range deleted {
		id, ok := d.(string)
		if !ok {
			return bad("deleted id")
		}
		res.Deleted = append(res.Deleted, id)
	}
	res.Claimed = make([]ClaimedEntry, 0, len(r)-2)
	for _, x := range r[2:] {
		e, ok := x.([]any)
		if !ok || len(e) != 3 {
			return bad("entry")
		}
		var ce ClaimedEntry
		if ce.ID, ok = e[0].(string); !ok {
			return bad("entry id")
		}
		if ce.Deliveries, ok = e[1].(int64); !ok {
			return bad("delivery count")
		}
		if fields, ok := e[2].([]any); ok {
			ce.Fields = fields
		}
		res.Claimed = append(res.Claimed, ce)
	}
	return res, nil
}

// StreamExtend renews the lease of the entries ids that g.Consumer still
// owns in g's group: it resets their idle time without counting a delivery
// (XCLAIM ... JUSTID), so no other consumer claims them. Entries no longer
// pending, or owned by another consumer since, are left alone. It returns
// the ids renewed.
//
// KEYS: g.Stream. ARGV: group, consumer, ids.
func StreamExtend(ctx context.Context, c redis.Scripter, g StreamGroup, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 2+len(ids))
	args = append(args, g.Group, g.Consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	renewed, err := streamExtend.Run(ctx, c, []string{g.Stream}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("stream_extend %s: %w", g.Stream, err)
	}
	return renewed, nil
}

// StreamDeleteConsumer deletes the consumer g.Consumer from g's group if,
// and only if, it owns no pending entry and has been idle at least minIdle,
// checked and done atomically. It reports whether it deleted it.
//
// KEYS: g.Stream. ARGV: group, consumer, minIdle (ms).
func StreamDeleteConsumer(ctx context.Context, c redis.Scripter, g StreamGroup, minIdle time.Duration) (bool, error) {
	n, err := streamDeleteConsumer.Run(ctx, c, []string{g.Stream}, g.Group, g.Consumer,
		strconv.FormatInt(minIdle.Milliseconds(), 10)).Int()
	if err != nil {
		return false, fmt.Errorf("stream_delete_consumer %s: %w", g.Stream, err)
	}
	return n == 1, nil
}

// StreamTrimmed returns how many entries of stream were removed (trimmed
// by MAXLEN or MINID) before group read them, counting each once for the
// whole group: once the group has read up to the stream's last entry, its
// lag is that number, and the call sets the group's read counter to the
// entries added (XGROUP SETID to its own last-delivered id, ENTRIESREAD),
// so the next call counts only later losses. It returns 0 while the group
// has entries left to read, or when Redis does not know the group's read
// counter. A missing group is a NOGROUP error.
//
// KEYS: stream. ARGV: group, "count".
func StreamTrimmed(ctx context.Context, c redis.Scripter, stream, group string) (int64, error) {
	n, err := streamTrimmed.Run(ctx, c, []string{stream}, group, "count").Int64()
	if err != nil {
		return 0, fmt.Errorf("stream_trimmed %s: %w", stream, err)
	}
	return n, nil
}

// StreamInitReadCounter sets the read counter (entries-read) of group to 0
// if the group has read nothing yet (its last-delivered id is 0-0) and
// Redis does not know its counter, atomically, and reports whether it did.
// Without a counter, Redis estimates one at the group's first read from the
// stream's first entry, so the entries trimmed before that read would never
// show in the group's lag and StreamTrimmed could not count them. Workers
// call it before their first read. A missing group is a NOGROUP error.
//
// KEYS: stream. ARGV: group, "init" (the same script as StreamTrimmed).
func StreamInitReadCounter(ctx context.Context, c redis.Scripter, stream, group string) (bool, error) {
	n, err := streamTrimmed.Run(ctx, c, []string{stream}, group, "init").Int()
	if err != nil {
		return false, fmt.Errorf("stream_trimmed init %s: %w", stream, err)
	}
	return n == 1, nil
}
