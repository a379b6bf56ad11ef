package index

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/streamindex/indexer/internal/lua"
)

// DefaultPrefix is the default prefix of indexer's own keys.
const DefaultPrefix = "idx:"

// gigapiPrefixes are the key prefixes GigAPI's readers and workers own.
var gigapiPrefixes = []string{"files:", "folders:", "merge:", "move:", "drop:"}

// Layout is the single place where Redis key names are built. Two layouts
// exist:
//
// The gigapi layout (NewLayout) keeps GigAPI's own names for the keys its
// readers and workers read (files:, folders:, merge:, move:, drop:) and
// puts indexer's own keys (tombstones, statistics, the table registry,
// queue records) under a prefix that collides with none of them. Those
// names span hash slots, so it needs a single shard.
//
// The cluster layout (NewClusterLayout) names the same structures so that
// Redis Cluster can run them: every key one patch_index call touches
// carries the hash tag of one Part, "{<db>:<table>:date=YYYY-MM-DD}" (one
// table's one day; names cannot hold ':', '{' or '}', so a tag is never
// ambiguous), e.g. "files:{db:t:date=2024-01-15}", "folders:{…}",
// "idx:stats:{…}", "merge:{…}:1:date=2024-01-15/hour=14:hot::idle". A
// table's days spread over the cluster's shards. What the gigapi layout
// keeps once per table (folder counts, statistics, tombstones, queue
// records, merge/move/drop lists) the cluster layout keeps once per Part,
// and readers merge the Parts of a table (Stats sums them). GigAPI's own
// readers cannot read it: they need the gigapi layout.
//
// The registry (the SET Tables of "<db>:<table>" members, and in the
// cluster layout the SET Dates of each table's "date=…" members) cannot
// share a slot with a Part: Apply adds a call's tables and dates to it
// before the call, in a separate idempotent command, so that the registry
// always lists at least every Part that holds data (a crash between the
// two leaves a registered, empty Part, which reads as zero).
type Layout struct {
	prefix  string
	cluster bool
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

// NewClusterLayout returns the cluster layout (see Layout) with indexer's
// own keys under prefix ("" means DefaultPrefix).
func NewClusterLayout(prefix string) (Layout, error) {
	l, err := NewLayout(prefix)
	l.cluster = err == nil
	return l, err
}

// Layout names, as the --layout flag spells them.
const (
	LayoutGigAPI  = "gigapi"
	LayoutCluster = "cluster"
)

// ParseLayout returns the layout named name (LayoutGigAPI or
// LayoutCluster) with indexer's own keys under prefix.
func ParseLayout(name, prefix string) (Layout, error) {
	switch name {
	case LayoutGigAPI, "":
		return NewLayout(prefix)
	case LayoutCluster:
		return NewClusterLayout(prefix)
	}
	return Layout{}, fmt.Errorf("index: layout %q: use %s (GigAPI's keys, one Redis shard) or %s (Redis Cluster)", name, LayoutGigAPI, LayoutCluster)
}

// Cluster reports whether l is the cluster layout.
func (l Layout) Cluster() bool { return l.cluster }

// Name is the layout's name, LayoutGigAPI or LayoutCluster.
func (l Layout) Name() string {
	if l.cluster {
		return LayoutCluster
	}
	return LayoutGigAPI
}

// Prefix returns the prefix of indexer's own keys.
func (l Layout) Prefix() string { return l.prefix }

// A Part is the set of a table's keys that one patch_index call may touch
// together: the whole table in the gigapi layout (Date ""), one date of it
// ("date=YYYY-MM-DD") in the cluster layout, where its keys share one hash
// tag.
type Part struct {
	Database, Table string
	Date            string // "" in the gigapi layout
}

// Part returns the Part holding the keys of a table's date
// ("date=YYYY-MM-DD").
func (l Layout) Part(db, table, date string) Part {
	if !l.cluster {
		date = ""
	}
	return Part{db, table, date}
}

// tag is the part of a key that names a Part: "<db>:<table>" in the gigapi
// layout, "{<db>:<table>:<date>}" in the cluster layout.
func (l Layout) tag(p Part) string {
	if l.cluster {
		return "{" + p.Database + ":" + p.Table + ":" + p.Date + "}"
	}
	return p.Database + ":" + p.Table
}

// dated names a table's date: "<db>:<table>:<date>" in the gigapi layout,
// its Part's tag in the cluster layout.
func (l Layout) dated(db, table, date string) string {
	if l.cluster {
		return l.tag(Part{db, table, date})
	}
	return db + ":" + table + ":" + date
}

// tablePattern is the start of the keys of every Part of a table after a
// key type's prefix, for SCAN patterns. Names cannot hold glob
// characters, so no escaping is needed.
func (l Layout) tablePattern(db, table string) string {
	if l.cluster {
		return "{" + db + ":" + table + ":"
	}
	return db + ":" + table + ":"
}

// Files is the HASH of a table's files for one date: field = path, value =
// entry JSON. date is "date=YYYY-MM-DD".
func (l Layout) Files(db, table, date string) string {
	return "files:" + l.dated(db, table, date)
}

// FilesPattern matches every Files key of a table, for SCAN (on every
// master of a cluster).
func (l Layout) FilesPattern(db, table string) string {
	return "files:" + l.tablePattern(db, table) + "*"
}

// FilesDate returns the date ("date=YYYY-MM-DD") of a table's Files key
// found by FilesPattern, and false if key is no Files key of a date.
func (l Layout) FilesDate(db, table, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "files:"+l.tablePattern(db, table))
	if l.cluster && ok {
		rest, ok = strings.CutSuffix(rest, "}")
	}
	return rest, ok && validDate(rest)
}

// AllFilesPattern matches every Files key of every table, for SCAN (on
// every master of a cluster).
func (l Layout) AllFilesPattern() string { return "files:*" }

// ParseFiles splits a Files key into its table and date; ok is false for
// a key that is not one (names cannot hold ':', '{' or '}'). The date is
// not checked.
func (l Layout) ParseFiles(key string) (db, table, date string, ok bool) {
	rest, ok := strings.CutPrefix(key, "files:")
	if !ok {
		return "", "", "", false
	}
	if l.cluster {
		if rest, ok = strings.CutPrefix(rest, "{"); ok {
			rest, ok = strings.CutSuffix(rest, "}")
		}
		if !ok || strings.ContainsAny(rest, "{}") {
			return "", "", "", false
		}
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Adoption is the HASH recording the progress of 'indexer adopt': field
// = a Files key whose adoption is complete, value = "<unix s> <entries
// GigAPI's reader cannot read that are left>". It is deleted once a run
// completes, so a killed run resumes where it stopped.
func (l Layout) Adoption() string { return l.prefix + "adopt" }

// Folders is the HASH of a Part's live-file count per folder
// ("date=YYYY-MM-DD/hour=HH").
func (l Layout) Folders(p Part) string { return "folders:" + l.tag(p) }

// Tombstones is the ZSET of a Part's deleted paths, scored by the time
// (Unix ms) they were last touched.
func (l Layout) Tombstones(p Part) string { return l.prefix + "tomb:" + l.tag(p) }

// Stats is the HASH of a Part's statistics: files, bytes, rows, the same
// per date ("files:date=YYYY-MM-DD", …) and last_event_ns.
func (l Layout) Stats(p Part) string { return l.prefix + "stats:" + l.tag(p) }

// StatsPattern matches the Stats key of every Part of every table, for
// SCAN (Check uses it to find Parts missing from the registry).
func (l Layout) StatsPattern() string { return l.prefix + "stats:*" }

// PartOfStats returns the Part whose Stats key is key.
func (l Layout) PartOfStats(key string) (Part, bool) {
	rest, ok := strings.CutPrefix(key, l.prefix+"stats:")
	if !ok {
		return Part{}, false
	}
	if l.cluster {
		if len(rest) < 2 || rest[0] != '{' || rest[len(rest)-1] != '}' {
			return Part{}, false
		}
		rest = rest[1 : len(rest)-1]
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return Part{}, false
		}
		db, table, ok := strings.Cut(rest[:i], ":")
		return Part{db, table, rest[i+1:]}, ok && validDate(rest[i+1:])
	}
	db, table, ok := strings.Cut(rest, ":")
	return Part{Database: db, Table: table}, ok && !strings.Contains(table, ":")
}

func validDate(d string) bool {
	_, err := time.Parse("date=2006-01-02", d)
	return err == nil
}

// Tables is the SET of every table indexed, as "<db>:<table>" members.
func (l Layout) Tables() string { return l.prefix + "tables" }

// Dates is, in the cluster layout, the SET of a table's dates
// ("date=YYYY-MM-DD") that have a Part.
func (l Layout) Dates(db, table string) string { return l.prefix + "dates:" + db + ":" + table }

// Lock is the STRING key of the lock named name (e.g. "gc"), which holds
// the random token of its holder while it is held.
func (l Layout) Lock(name string) string { return l.prefix + "lock:" + name }

// WaitBarrier is the STRING key each patch_index call confirmed with WAIT
// writes after the script (Config.Wait; see redisconn.Wait.Scripter): it
// holds the time of the last confirmed call, in Unix ms.
func (l Layout) WaitBarrier() string { return l.prefix + "wait" }

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
// suffix: "merge:<db>:<table>:<N>:<dir>:<layer>:<writer>" (cluster:
// "merge:{<db>:<table>:<date>}:<N>:…", the date being dir's).
func (l Layout) MergeQueue(db, table string, n int, dir, layer, writer string) string {
	t := l.tag(l.Part(db, table, dir[:min(len(dir), len("date=2006-01-02"))]))
	return "merge:" + t + ":" + strconv.Itoa(n) + ":" + dir + ":" + layer + ":" + writer
}

// MoveQueue is "move:<db>:<table>:<layer>:<writer>", without suffix
// (cluster: one per Part, "move:{<db>:<table>:<date>}:<layer>:<writer>").
func (l Layout) MoveQueue(p Part, layer, writer string) string {
	return "move:" + l.tag(p) + ":" + layer + ":" + writer
}

// DropQueue is "drop:<db>:<table>:<layer>:<writer>", without suffix
// (cluster: one per Part, like MoveQueue).
func (l Layout) DropQueue(p Part, layer, writer string) string {
	return "drop:" + l.tag(p) + ":" + layer + ":" + writer
}

// Idle is the list of items waiting in queue q (a MergeQueue, MoveQueue
// or DropQueue).
func (l Layout) Idle(q string) string { return q + ":idle" }

// Processing is the list of leased items of queue q.
func (l Layout) Processing(q string) string { return q + ":processing" }

// QueuePatterns match every queue list of every Part of a table, for SCAN.
func (l Layout) QueuePatterns(db, table string) []string {
	t := l.tablePattern(db, table)
	if !l.cluster {
		t = t[:len(t)-1] // "<db>:<table>"
		return []string{"merge:" + t + ":*", "move:" + t + ":*", "drop:" + t + ":*"}
	}
	return []string{"merge:" + t + "*", "move:" + t + "*", "drop:" + t + "*"}
}

// ParseQueue splits a MergeQueue or MoveQueue key (with its
// :idle/:processing suffix cut off by the caller) into its kind ('m' or
// 'v'), merge iteration, folder (merge only), layer and writer.
func (l Layout) ParseQueue(q string) (kind byte, n int, dir, layer, writer string, ok bool) {
	name, rest, _ := strings.Cut(q, ":")
	if l.cluster { // "{<db>:<table>:<date>}:…"
		_, rest, ok = strings.Cut(rest, "}:")
		ok = ok && strings.HasPrefix(q, name+":{")
	} else { // "<db>:<table>:…"
		parts := strings.SplitN(rest, ":", 3)
		ok = len(parts) == 3
		rest = parts[len(parts)-1]
	}
	parts := strings.Split(rest, ":")
	switch {
	case !ok:
	case len(parts) == 4 && name == "merge":
		n, err := strconv.Atoi(parts[0])
		return 'm', n, parts[1], parts[2], parts[3], err == nil && n >= 1
	case len(parts) == 2 && name == "move":
		return 'v', 0, "", parts[0], parts[1], true
	}
	return 0, 0, "", "", "", false
}

// QueueKeys are a Part's own queue records (see internal/lua/queue.go):
// the state hash (item records, counters, leases), the items pending
// publication and published, and the lease expiries.
func (l Layout) QueueKeys(p Part) lua.QueueKeys {
	t := l.tag(p)
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
	return l.prefix + "qc:" + l.dated(db, table, date)
}

// QueuePublished is the HASH of the paths listed by a table's published
// queue items for one date, valued by the item's id.
func (l Layout) QueuePublished(db, table, date string) string {
	return l.prefix + "qx:" + l.dated(db, table, date)
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

// HashTag returns the part of key Redis Cluster hashes: the text between
// the first '{' and the first '}' after it when that is not empty, else
// the whole key. Keys with equal tags share a slot.
func HashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}
