// Package event defines indexer's event contract (schema v1, see
// schemas/event.v1.schema.json): the event types, their JSON and msgpack
// encodings, and the strict validation every message passes before it may
// reach the index. It does no I/O.
//
// Decoding is strict: unknown or duplicate fields, invalid UTF-8, numbers that
// are not exact integers where integers are required, and every rule of
// docs/DESIGN.md §2 produce a *ValidationError naming the field and the reason.
// A decoded Event is always valid; Encode refuses to write an invalid one.
//
// Writers build events with Created, Deleted and Replaced (ids from
// ContentID, or their own), check them with Validate — the very code the
// workers' Decoder runs on every message, so nothing a writer was told is
// valid gets dead-lettered — and encode them with Encode. The publishers
// of package publish do all of that; this package is enough for a writer
// with its own transport.
package event

import (
	"strconv"
)

// Version is the only event schema version this package reads and writes.
const Version = 1

// Type is the kind of change an event describes.
type Type string

// The event types of schema v1.
const (
	FileCreated   Type = "file.created"
	FileDeleted   Type = "file.deleted"
	FilesReplaced Type = "files.replaced"
)

// Limits of schema v1 that do not depend on configuration.
const (
	// MaxSafeInt is the largest size_bytes or row_count accepted (2^53-1), so
	// every count stays exact in Redis's Lua numbers (doubles).
	MaxSafeInt = 1<<53 - 1
	// MaxTimeNanos bounds every time field: [0, MaxTimeNanos], year 2255.
	MaxTimeNanos = 8_999_999_999_999_999_999
	// MaxFilesPerEvent bounds len(Add)+len(Remove) of a files.replaced event,
	// so one event always fits one patch_index call.
	MaxFilesPerEvent = 1000
	// MaxStatsColumns bounds the columns of a min or max object.
	MaxStatsColumns = 256
	// MaxColumnName bounds a column name of min/max, in characters.
	MaxColumnName = 128
	// MaxStatsString bounds a string value of min/max, in characters.
	MaxStatsString = 1024
	// DefaultMaxMessageBytes is the default limit of one encoded message.
	DefaultMaxMessageBytes = 64 << 10
)

// Event is one decoded, valid change to the file index.
//
// File is set for file.created and file.deleted; Add and Remove for
// files.replaced. For file.deleted only Layer, WriterID and Path of File are
// meaningful to the index; the other fields are kept when present.
type Event struct {
	ID       string // writer-assigned unique id, 1..128 characters
	Type     Type
	Time     int64 // when the writer made the change, Unix nanoseconds
	Database string
	Table    string

	File   File
	Add    []File
	Remove []File

	// Plan, for files.replaced only, names the merge or move item the
	// event completes, as leased by 'indexer plan next'. Applying the
	// event then releases that lease in the same atomic call; nil means
	// the event completes no plan.
	Plan *Plan
}

// PlanKind is the kind of queue item a files.replaced event completes.
type PlanKind string

// The plan kinds a files.replaced event may complete.
const (
	PlanMerge PlanKind = "merge"
	PlanMove  PlanKind = "move"
)

// Plan identifies a leased queue item: its kind, its id and the fencing
// token its lease was given. A lease re-delivered to another worker gets a
// new token, so a stale worker's commit can be told apart.
type Plan struct {
	Kind  PlanKind
	ID    string // the item's id, as 'plan next' printed it
	Token string // the lease's fencing token: 1 to 19 decimal digits
}

// File describes one Parquet file of a table.
type File struct {
	Layer     string
	WriterID  string // usually "" (GigAPI writes an empty writer id)
	Path      string // date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet
	SizeBytes int64
	RowCount  int64
	ChunkTime int64 // Unix nanoseconds
	MinTime   int64 // Unix nanoseconds
	MaxTime   int64 // Unix nanoseconds
	Min       Stats
	Max       Stats
}

// Files returns the file operations the event stands for, in the order they
// take effect: removals first, then additions, each flagged by deleted.
// The callback receives each file once.
func (e *Event) Files(fn func(f *File, deleted bool)) {
	switch e.Type {
	case FileCreated:
		fn(&e.File, false)
	case FileDeleted:
		fn(&e.File, true)
	case FilesReplaced:
		for i := range e.Remove {
			fn(&e.Remove[i], true)
		}
		for i := range e.Add {
			fn(&e.Add[i], false)
		}
	}
}

// NumFiles is the number of file operations in the event.
func (e *Event) NumFiles() int {
	if e.Type == FilesReplaced {
		return len(e.Add) + len(e.Remove)
	}
	return 1
}

// Path layout: "date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet". A validated path
// has these fixed offsets.
const (
	datePartLen = len("date=2006-01-02")
	dirLen      = len("date=2006-01-02/hour=15")
)

// Date returns the first path segment, "date=YYYY-MM-DD", which names the
// files: hash that holds the file. The path must be valid.
func (f *File) Date() string { return f.Path[:datePartLen] }

// Dir returns the folder of the file, "date=YYYY-MM-DD/hour=HH". The path
// must be valid.
func (f *File) Dir() string { return f.Path[:dirLen] }

// Iteration returns N of "<name>.<N>.parquet", the merge iteration that
// produced the file. The path must be valid.
func (f *File) Iteration() int {
	return PathIteration(f.Path)
}

// PathIteration returns N of a valid path "…/<name>.<N>.parquet", or 0 when
// the path does not have that shape.
func PathIteration(path string) int {
	const suffix = ".parquet"
	if len(path) <= len(suffix) {
		return 0
	}
	s := path[:len(path)-len(suffix)]
	i := len(s) - 1
	for i >= 0 && s[i] >= '0' && s[i] <= '9' {
		i--
	}
	if i < 0 || s[i] != '.' {
		return 0
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return 0
	}
	return n
}
