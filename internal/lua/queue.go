package lua

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Queue scripts: GigAPI's merge, move and drop queues.
//
// GigAPI's compactor, mover and dropper lease items from the :idle lists
// (merge:…:idle, move:…:idle, drop:…:idle) and keep leased ones in the
// :processing lists. Drop items are pushed to their :idle list as paths are
// deleted. Merge and move items are kept under the table's own keys until
// they are due, and only then published into their :idle list in GigAPI's
// exact JSON: GigAPI's lease script takes an item only once its time_s has
// passed, so it sees no difference, while patch_index never reads or
// rewrites an item (in Redis's Lua every string costs time per byte, so
// rewriting an item's JSON would cost its length on every append and
// delete).
//
// The records, per table:
//   - State (HASH):
//     "seq" the last item seq; "tok" the last fencing token;
//     "i<seq>" a pending item: "<kind> <time_s> <id> <group>", kind m
//     (merge; id its id) or v (the moves of a folder due at one time; id
//     the hash their ids carry), group "m|N|dir|layer|writer" (a merge
//     key) or "v|dir|layer|writer";
//     "L<group>" the last item of a merge key: "<seq> <size> <time_s>";
//     new files join it while it is not due and size + size_bytes <= max
//     (deleted files are not subtracted: it only errs towards a new item);
//     "J<id>" and "G<id>" a published item: its JSON as in its :idle list,
//     its group;
//     "l<id>" a lease: "<token> <expiry> <group>" (drop leases: group
//     "d|layer|writer"); "j<id>" the leased item's JSON as in its
//     :processing list.
//   - Pending (ZSET): pending items, member seq, score time_s.
//   - Ready (ZSET): published items, member id, score time_s.
//   - Leases (ZSET): leased item ids, scored by lease expiry.
//
// and per table and date:
//   - Chunks (LIST): pairs of a pending item's seq and paths that joined
//     it (one pair per item per patch_index call, paths joined by "\n").
//   - Published (HASH): each path a published item lists, valued by the
//     item's id.
//
// A pending item's paths are its chunks; when it is published, the paths
// still live make its JSON. A delete of a path a published item lists
// withdraws the item from its :idle list; its other paths go back to a
// pending item, due at once. Leasing an item removes its records; GigAPI's
// own lease script may lease published items too, and their records go
// when the index next finds them gone.
var (
	//go:embed queue_publish.lua
	queuePublishSrc string
	//go:embed queue_lease.lua
	queueLeaseSrc string
	//go:embed queue_lease_drop.lua
	queueLeaseDropSrc string
	//go:embed queue_redeliver.lua
	queueRedeliverSrc string
	//go:embed queue_done.lua
	queueDoneSrc string

	queuePublish   = redis.NewScript(withShared(queuePublishSrc))
	queueLease     = redis.NewScript(queueLeaseSrc)
	queueLeaseDrop = redis.NewScript(queueLeaseDropSrc)
	queueRedeliver = redis.NewScript(queueRedeliverSrc)
	queueDone      = redis.NewScript(queueDoneSrc)
)

// PublishItem is one pending item to publish into its :idle list.
type PublishItem struct {
	Seq string // the item's seq
	// Files, Chunks and Published are the keys of its date; Idle its
	// :idle list.
	Files, Chunks, Published, Idle string
	// Move, for a move batch, holds the pieces of its items' JSON.
	Move *MoveJSON
}

// MoveJSON holds the pieces of the move items of a batch, each
// {"id","writer_id","database","table","path_from","layer_from","path_to",
// "layer_to","time_s"}: IDPrefix + "<name>.<N>" is the id; Mid runs from
// the id's closing quote to path_from's value; To from after layer_from's
// value to path_to's value; Tail from there to the end. path_to is the
// folder of path_from, a UUID-shaped name from the SHA-1 of Seed + path,
// and the same ".<N>.parquet".
type MoveJSON struct {
	IDPrefix, Mid, To, Tail, Seed, LayerFrom string
}

// QueuePublish publishes items, each while it is still pending and due at
// nowS (Unix s). It returns how many items it pushed (a move batch pushes
// one per move) and how many pending items it is done with (published,
// left empty by deletes, or without a record). It writes nothing if a key
// has the wrong type.
func QueuePublish(ctx context.Context, c redis.Scripter, k QueueKeys, nowS int64, items []PublishItem) (pushed, done int, err error) {
	keys := []string{k.State, k.Pending, k.Ready}
	at := map[string]int{}
	index := func(key string) string {
		i, ok := at[key]
		if !ok {
			keys = append(keys, key)
			i = len(keys) - 3
			at[key] = i
		}
		return strconv.Itoa(i)
	}
	args := make([]any, 0, 2+11*len(items))
	args = append(args, strconv.FormatInt(nowS, 10), strconv.Itoa(len(items)))
	for _, it := range items {
		args = append(args, it.Seq, index(it.Files), index(it.Chunks), index(it.Published), index(it.Idle))
		m := it.Move
		if m == nil {
			m = &MoveJSON{}
		}
		args = append(args, m.IDPrefix, m.Mid, m.To, m.Tail, m.Seed, m.LayerFrom)
	}
	res, err := queuePublish.Run(ctx, c, keys, args...).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("queue_publish: %w", err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("queue_publish: unexpected reply %v", res)
	}
	return int(res[0]), int(res[1]), nil
}

// LeaseStatus is what a lease script did.
type LeaseStatus string

// Statuses of a lease script.
const (
	LeaseOK         LeaseStatus = "ok"         // leased; Leased holds the item
	LeaseGone       LeaseStatus = "gone"       // the item is no longer there (taken meanwhile)
	LeaseNotDue     LeaseStatus = "notdue"     // the item is not due yet
	LeaseEmpty      LeaseStatus = "empty"      // the queue is empty
	LeaseNotExpired LeaseStatus = "notexpired" // the lease has not expired
)

// Leased is an item a lease script leased.
type Leased struct {
	Status LeaseStatus
	JSON   string // the item as it is in its :processing list
	Token  string // the lease's fencing token
	ID     string // the item's id
}

func leaseResult(name string, v any, err error) (Leased, error) {
	if err != nil {
		return Leased{}, fmt.Errorf("%s: %w", name, err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return Leased{}, fmt.Errorf("%s: unexpected reply %v", name, v)
	}
	var l Leased
	s, _ := arr[0].(string)
	l.Status = LeaseStatus(s)
	if l.Status == LeaseOK {
		if len(arr) != 4 {
			return Leased{}, fmt.Errorf("%s: unexpected reply %v", name, v)
		}
		l.JSON, _ = arr[1].(string)
		l.Token, _ = arr[2].(string)
		l.ID, _ = arr[3].(string)
	}
	return l, nil
}

// QueueLease leases the published merge or move item id: it leaves its
// :idle list for its :processing list with time_s = expiryS, under a new
// fencing token. published is the published-path hash of the item's date.
func QueueLease(ctx context.Context, c redis.Scripter, k QueueKeys, processing, idle, published, id string, nowS, expiryS int64) (Leased, error) {
	v, err := queueLease.Run(ctx, c, []string{k.State, k.Ready, k.Leases, processing, idle, published},
		id, nowS, expiryS).Result()
	return leaseResult("queue_lease", v, err)
}

// QueueLeaseDrop leases the head of a drop :idle list if it is due at
// nowS. group is the queue's lease group, "d|layer|writer".
func QueueLeaseDrop(ctx context.Context, c redis.Scripter, k QueueKeys, idle, processing, group string, nowS, expiryS int64) (Leased, error) {
	v, err := queueLeaseDrop.Run(ctx, c, []string{idle, processing, k.State, k.Leases}, nowS, expiryS, group).Result()
	return leaseResult("queue_lease_drop", v, err)
}

// QueueRedeliver delivers the expired lease of item id again, under a new
// token and expiry.
func QueueRedeliver(ctx context.Context, c redis.Scripter, k QueueKeys, processing, id string, nowS, expiryS int64) (Leased, error) {
	v, err := queueRedeliver.Run(ctx, c, []string{processing, k.State, k.Leases}, id, nowS, expiryS).Result()
	return leaseResult("queue_redeliver", v, err)
}

// ErrStaleLease is returned (wrapped) by QueueDone when the lease is not
// held with the token any more.
var ErrStaleLease = errors.New("stale lease")

// QueueDone releases the lease of item id held with token, removing the
// item from its :processing list. A stale token returns an error wrapping
// ErrStaleLease, and nothing is changed.
func QueueDone(ctx context.Context, c redis.Scripter, k QueueKeys, processing, id, token string) error {
	err := queueDone.Run(ctx, c, []string{processing, k.State, k.Leases}, id, token).Err()
	if redis.HasErrorPrefix(err, "STALE") {
		return fmt.Errorf("%w: %s", ErrStaleLease, err.Error()[len("STALE "):])
	}
	if err != nil {
		return fmt.Errorf("queue_done: %w", err)
	}
	return nil
}
