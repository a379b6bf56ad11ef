package redisstream

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/lua"
)

// Dead-letter fields, as the stream_dead_letter script writes them.
const (
	fieldReason         = "reason"
	fieldOriginalID     = "original_id"
	fieldDeliveries     = "deliveries"
	fieldDeadLetteredAt = "dead_lettered_at"
	fieldDataSize       = "data_size"
	fieldDataSHA256     = "data_sha256"
	fieldRequeuedFrom   = "requeued_from" // added by Requeue, with original_id
)

// DeadLetters returns up to limit dead letters of the dead-letter stream,
// oldest first, starting after the entry id after ("" for the first). A
// missing dead-letter stream holds none.
func DeadLetters(ctx context.Context, c redis.UniversalClient, deadLetters string, after string, limit int) ([]consumer.StoredDeadLetter, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	xs, err := c.XRangeN(ctx, deadLetters, start, "+", int64(limit)).Result()
	if err != nil {
		return nil, wrapErr("xrange", deadLetters, "", err)
	}
	out := make([]consumer.StoredDeadLetter, len(xs))
	for i, x := range xs {
		str := func(f string) string { s, _ := x.Values[f].(string); return s }
		d := &out[i]
		d.ID, d.Time = x.ID, idTime(x.ID)
		if ms, err := strconv.ParseInt(str(fieldDeadLetteredAt), 10, 64); err == nil {
			d.Time = time.UnixMilli(ms)
		}
		d.Reason, d.OriginalID, d.ContentType = str(fieldReason), str(fieldOriginalID), str(fieldCT)
		d.Deliveries, _ = strconv.Atoi(str(fieldDeliveries))
		d.Data = []byte(str(fieldData))
		d.Size, _ = strconv.Atoi(str(fieldDataSize))
		d.SHA256 = str(fieldDataSHA256)
	}
	return out, nil
}

// Requeue moves the dead letters ids back to the stream, each atomically
// added to the stream and deleted from the dead-letter stream in one script
// call (see lua.StreamRequeue), so a dead letter is removed only once it is
// back in the stream. Ids not in the dead-letter stream are skipped;
// truncated dead letters (only the first bytes of their payload were
// kept) are refused and stay. It returns the dead letters moved and the
// ids refused.
func Requeue(ctx context.Context, c redis.UniversalClient, stream, deadLetters string, ids []string) (moved []lua.Requeued, truncated []string, err error) {
	for len(ids) > 0 {
		n := min(len(ids), requeueChunk)
		r, tr, err := lua.StreamRequeue(ctx, c, stream, deadLetters, ids[:n])
		moved, truncated = append(moved, r...), append(truncated, tr...)
		if err != nil {
			return moved, truncated, wrapErr("", stream, "", err)
		}
		ids = ids[n:]
	}
	return moved, truncated, nil
}

// requeueChunk bounds the dead letters one script call moves.
const requeueChunk = 500

// RequeueAll moves every dead letter that is in the dead-letter stream when
// it starts back to the stream (those dead-lettered meanwhile stay), in
// script calls of a few hundred, calling progress after each with the
// number moved so far. Truncated dead letters are refused (see Requeue):
// their ids are returned.
func RequeueAll(ctx context.Context, c redis.UniversalClient, stream, deadLetters string, progress func(n int)) (total int, truncated []string, err error) {
	last, err := c.XRevRangeN(ctx, deadLetters, "+", "-", 1).Result()
	if err != nil {
		return 0, nil, wrapErr("xrevrange", deadLetters, "", err)
	}
	if len(last) == 0 {
		return 0, nil, nil
	}
	end, from := last[0].ID, "-"
	for {
		xs, err := c.XRangeN(ctx, deadLetters, from, end, requeueChunk).Result()
		if err != nil {
			return total, truncated, wrapErr("xrange", deadLetters, "", err)
		}
		if len(xs) == 0 {
			return total, truncated, nil
		}
		ids := make([]string, len(xs))
		for i := range xs {
			ids[i] = xs[i].ID
		}
		moved, tr, err := Requeue(ctx, c, stream, deadLetters, ids)
		total, truncated = total+len(moved), append(truncated, tr...)
		if progress != nil {
			progress(total)
		}
		if err != nil {
			return total, truncated, err
		}
		from = "(" + ids[len(ids)-1]
	}
}

// PurgeDeadLetters deletes every dead letter (XTRIM MAXLEN 0) and returns
// how many it deleted.
func PurgeDeadLetters(ctx context.Context, c redis.UniversalClient, deadLetters string) (int64, error) {
	n, err := c.XTrimMaxLen(ctx, deadLetters, 0).Result()
	if err != nil {
		return 0, wrapErr("xtrim", deadLetters, "", err)
	}
	return n, nil
}
