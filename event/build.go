package event

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Created returns a file.created event: file f of database.table became
// live. Its Time is now and its ID is ContentID of the event. The event is
// not validated: Validate it, or let the publisher do it.
func Created(database, table string, f File) Event {
	return newEvent(Event{Type: FileCreated, Database: database, Table: table, File: f})
}

// Deleted returns a file.deleted event: the file of database.table that
// f names (Layer, WriterID and Path; other fields may be left zero) is
// gone. Its Time is now and its ID is ContentID of the event.
func Deleted(database, table string, f File) Event {
	return newEvent(Event{Type: FileDeleted, Database: database, Table: table, File: f})
}

// Replaced returns a files.replaced event: in database.table, the files
// of add became live and those of remove were deleted, atomically (the
// commit of a merge or a move). plan, if not nil, names the merge or move
// item the event completes, as leased by 'indexer plan next': applying the
// event releases that lease in the same atomic call. Its Time is now and
// its ID is ContentID of the event. The slices are not copied.
func Replaced(database, table string, add, remove []File, plan *Plan) Event {
	return newEvent(Event{Type: FilesReplaced, Database: database, Table: table, Add: add, Remove: remove, Plan: plan})
}

func newEvent(e Event) Event {
	e.Time = time.Now().UnixNano()
	e.ID = ContentID(&e)
	return e
}

// ContentID returns an id derived from the content of e: the first 128
// bits of the SHA-256 of its JSON encoding with the id and the time left
// out, in 32 hexadecimal digits. The same change, built again (a writer
// retrying after a crash, say), gets the same id whenever it is built, so
// NATS JetStream stores it once within its de-duplication window
// (Nats-Msg-Id). Two events with the same id have the same effect on the
// index, since only the id and the time are left out. e need not be
// valid.
func ContentID(e *Event) string {
	c := *e
	c.ID, c.Time = "", 0
	b, _ := AppendJSON(make([]byte, 0, 512), &c) // the JSON encoding cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
