package index

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the default prefix of indexer's own keys.
const DefaultPrefix = "idx:"

// gigapiPrefixes are the key prefixes GigAPI's readers and workers own.
var gigapiPrefixes = []string{"files:", "folders:", "merge:", "move:", "drop:"}

// Layout is the single place where Redis key names are built.
//
// The gigapi layout (the only one so far) keeps GigAPI's own names for the
// keys its readers read (files:, folders:) and puts indexer's own keys
// (tombstones, statistics, the table registry) under a prefix that collides
// with none of them. Those names span hash slots, so it needs a single
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

// Member is a table's member in the Tables set.
func (l Layout) Member(db, table string) string { return db + ":" + table }

// ParseMember splits a member of the Tables set into database and table.
func (l Layout) ParseMember(m string) (db, table string, ok bool) {
	return strings.Cut(m, ":")
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
