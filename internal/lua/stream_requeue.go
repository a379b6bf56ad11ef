package lua

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed stream_requeue.lua
	streamRequeueSrc string

	streamRequeue = redis.NewScript(streamRequeueSrc)
)

// Requeued is one dead letter StreamRequeue moved back to its stream.
type Requeued struct {
	DeadLetterID string // its id in the dead-letter stream (now deleted)
	NewID        string // its id in the stream
}

// StreamRequeue moves the dead letters ids of the dead-letter stream
// deadLetters back to stream, atomically: each becomes a new entry of
// stream with its fields data and ct (plus requeued_from, its id in
// deadLetters, and original_id, for tracing) and is deleted from
// deadLetters in the same call, so a dead letter is never both requeued and
// kept, nor lost. Ids no longer in deadLetters are skipped, and so are
// truncated dead letters (whose data_size exceeds their data: only the
// first bytes of the payload were kept), which stay. It returns the dead
// letters moved, in the order of ids, and the ids of the truncated ones.
//
// The call checks before its first write that stream is a stream (it is
// never created: a stream without its consumer group would hold the events
// unread) and deadLetters a stream or absent; a failing call writes
// nothing. With Redis Cluster both keys must share a hash tag.
//
// KEYS: stream, deadLetters. ARGV: ids.
func StreamRequeue(ctx context.Context, c redis.Scripter, stream, deadLetters string, ids []string) (moved []Requeued, truncated []string, err error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	r, err := streamRequeue.Run(ctx, c, []string{stream, deadLetters}, args...).Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("stream_requeue %s: %w", stream, err)
	}
	strs := func(v any) []string {
		l, _ := v.([]any)
		out := make([]string, 0, len(l))
		for _, x := range l {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	if len(r) != 2 {
		return nil, nil, fmt.Errorf("stream_requeue %s: unexpected reply of %d elements", stream, len(r))
	}
	pairs := strs(r[0])
	moved = make([]Requeued, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		moved = append(moved, Requeued{DeadLetterID: pairs[i], NewID: pairs[i+1]})
	}
	return moved, strs(r[1]), nil
}
