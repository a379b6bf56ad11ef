package index

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/streamindex/indexer/internal/lua"
)

// DefaultPrefix is the default prefix of indexer's own keys.
const DefaultPrefix = "idx:"

// gigapiPrefixes are the key prefixes GigAPI's readers and workers own.
var gigapiPrefixes = []string{"files:", "folders:", "merge:", "move:", "drop:"}

// Layout is the single place where Redis key names are built.
//
// The gigapi layout (the only one so far) keeps GigAPI's own names for the
// keys its readers and workers read (files:, folders:, merge:, move:,
// drop:) and puts indexer's own keys (tombstones, statistics, the table
// registry, queue records) under a prefix that collides with none of them. Those names span hash slots, so it needs a single
// shard. A cluster layout would put every key of one table under one hash
// tag by changing table() and the registry; nothing else builds names.
type Layout struct {
	prefix string
}

// NewLayout returns the gigapi layout with indexer's own keys under prefix
// ("" means DefaultPrefix). The prefix may not start with a GigAPI prefix,
// since GigAPI's own key/value store uses unprefixed names.
func NewLayout(prefix string) (Layout, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for _, p := range gigapiPrefixes {
		if strings.HasPrefix(prefix, p) {
			return Layout{}, fmt.Errorf("index: key prefix %q starts with GigAPI's %q: choose another, e.g. %q", prefix, p, DefaultPrefix)
		}
	}
	if len(prefix) > 64 || strings.ContainsAny(prefix, "{}*?[]\\ \t\r\n") {
		return Layout{}, fmt.Errorf("index: key prefix %q: use at most 64 characters without braces, glob characters or spaces", prefix)
	}
	return Layout{prefix: prefix}, nil
}

// Prefix returns the prefix of indexer's own keys.
func (l Layout) Prefix() string { return l.prefix }

// table is the part of a key that names a table.
func (l Layout) table(db, table string) string { return db + ":" + table }

// Files is the HASH of a table's files for one date: field = path, value =
// entry JSON. date is "date=YYYY-MM-DD".
func (l Layout) Files(db, table, date string) string {
	return "files:" + l.table(db, table) + ":" + date
}

// FilesPattern matches every Files key of a table, for SCAN. Names cannot
// hold glob characters, so no escaping is needed.
func (l Layout) FilesPattern(db, table string) string {
	return "files:" + l.table(db, table) + ":*"
}

// Folders is the HASH of a table's live-file count per folder
// ("date=YYYY-MM-DD/hour=HH").
func (l Layout) Folders(db, table string) string { return "folders:" + l.table(db, table) }

// Tombstones is the ZSET of a table's deleted paths, scored by the time
// (Unix ms) they were last touched.
func (l Layout) Tombstones(db, table string) string {
	return l.prefix + "tomb:" + l.table(db, table)
}

// Stats is the HASH of a table's statistics: files, bytes, rows, the same
// per date ("files:date=YYYY-MM-DD", …) and last_event_ns.
func (l Layout) Stats(db, table string) string { return l.prefix + "stats:" + l.table(db, table) }

// Tables is the SET of every table indexed, as "<db>:<table>" members.
func (l Layout) Tables() string { return l.prefix + "tables" }

// Lock is the STRING key of the lock named name (e.g. "gc"), which holds
// the random token of its holder while it is held.
func (l Layout) Lock(name string) string { return l.prefix + "lock:" + name }

// Member is a table's member in the Tables set.
func (l Layout) Member(db, table string) string { return db + ":" + table }

// ParseMember splits a member of the Tables set into database and table.
func (l Layout) ParseMember(m string) (db, table string, ok bool) {
	return strings.Cut(m, ":")
}

// Queue keys. GigAPI's compactor, mover and dropper lease items from the
// :idle lists and keep leased ones in the :processing lists; writer is
// usually "" (so GigAPI's own keys contain "::").

// MergeQueue is the key of a merge queue without its :idle/:processing
// suffix: "merge:<db>:<table>:<N>:<dir>:<layer>:<writer>".
func (l Layout) MergeQueue(db, table string, n int, dir, layer, writer string) string {
	return "merge:" + l.table(db, table) + ":" + strconv.Itoa(n) + ":" + dir + ":" + layer + ":" + writer
}

// MoveQueue is "move:<db>:<table>:<layer>:<writer>", without suffix.
func (l Layout) MoveQueue(db, table, layer, writer string) string {
	return "move:" + l.table(db, table) + ":" + layer + ":" + writer
}

// DropQueue is "drop:<db>:<table>:<layer>:<writer>", without suffix.
func (l Layout) DropQueue(db, table, layer, writer string) string {
	return "drop:" + l.table(db, table) + ":" + layer + ":" + writer
}

// Idle is the list of items waiting in queue q (a MergeQueue, MoveQueue
// or DropQueue).
func (l Layout) Idle(q string) string { return q + ":idle" }

// Processing is the list of leased items of queue q.
func (l Layout) Processing(q string) string { return q + ":processing" }

// QueuePatterns match every queue list of a table, for SCAN.
func (l Layout) QueuePatterns(db, table string) []string {
	t := l.table(db, table)
	return []string{"merge:" + t + ":*", "move:" + t + ":*", "drop:" + t + ":*"}
}

// QueueKeys are a table's own queue records (see internal/lua/queue.go):
// the state hash (item records, counters, leases), the items pending
// publication and published, and the lease expiries.
func (l Layout) QueueKeys(db, table string) lua.QueueKeys {
	t := l.table(db, table)
	return lua.QueueKeys{
		State:   l.prefix + "q:" + t,
		Pending: l.prefix + "qd:" + t,
		Ready:   l.prefix + "qr:" + t,
		Leases:  l.prefix + "ql:" + t,
	}
}

// QueueChunks is the LIST of a table's pending queue items' paths for
// one date ("date=YYYY-MM-DD"): pairs of item seq and paths joined by
// newlines.
func (l Layout) QueueChunks(db, table, date string) string {
	return l.prefix + "qc:" + l.table(db, table) + ":" + date
}

// QueuePublished is the HASH of the paths listed by a table's published
// queue items for one date, valued by the item's id.
func (l Layout) QueuePublished(db, table, date string) string {
	return l.prefix + "qx:" + l.table(db, table) + ":" + date
}

// Own reports whether key is one of indexer's or GigAPI's index keys; a
// key outside these is not the index's.
func (l Layout) Own(key string) bool {
	if strings.HasPrefix(key, l.prefix) {
		return true
	}
	for _, p := range gigapiPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
