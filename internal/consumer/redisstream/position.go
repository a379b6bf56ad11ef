package redisstream

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Positions. A group's position is the id of the last entry it delivered
// (XGROUP CREATE/SETID): it delivers next the first entry after it. The
// operator tools speak of the entry to deliver next, as Kafka's offsets do;
// these functions translate.

// maxSeq is the largest sequence part of an entry id.
const maxSeq = uint64(math.MaxUint64)

// ParseID checks a stream entry id given by an operator, "<ms>-<seq>" or
// "<ms>", and returns it as "<ms>-<seq>"; a bare "<ms>" means the first
// possible entry of that millisecond ("<ms>-0") when first is true, else
// its last ("<ms>-18446744073709551615"), as XRANGE reads them.
func ParseID(s string, first bool) (string, error) {
	msPart, seqPart, hasSeq := strings.Cut(s, "-")
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil || msPart != strconv.FormatUint(ms, 10) {
		return "", fmt.Errorf("%q is not a stream entry id (<ms>-<seq> or <ms>)", s)
	}
	seq := uint64(0)
	switch {
	case hasSeq:
		if seq, err = strconv.ParseUint(seqPart, 10, 64); err != nil || seqPart != strconv.FormatUint(seq, 10) {
			return "", fmt.Errorf("%q is not a stream entry id (<ms>-<seq> or <ms>)", s)
		}
	case !first:
		seq = maxSeq
	}
	return formatID(ms, seq), nil
}

func formatID(ms, seq uint64) string {
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
}

// StartBefore returns the group position from which a group delivers
// first the entry id (or, if the stream has no such entry, the first one
// after it): the largest id below id, and "0-0" for the first possible id.
func StartBefore(id string) string {
	ms, seq := splitID(id)
	switch {
	case seq > 0:
		return formatID(ms, seq-1)
	case ms > 0:
		return formatID(ms-1, maxSeq)
	}
	return "0-0"
}

// StartAtTime returns the group position from which a group delivers first
// the first entry added at or after t (by the entry ids' milliseconds,
// Redis's clock; an entry of t's own millisecond is included).
func StartAtTime(t time.Time) string {
	ms := max(t.UnixMilli(), 0)
	return StartBefore(formatID(uint64(ms), 0))
}

// LastAtTime returns the id of the last possible entry added at or before
// t (by the ids' milliseconds), to end a range there.
func LastAtTime(t time.Time) string {
	return formatID(uint64(max(t.UnixMilli(), 0)), maxSeq)
}

// IDTime returns when an entry id was generated (its milliseconds part),
// by Redis's clock.
func IDTime(id string) time.Time { return idTime(id) }

// CompareIDs compares two entry ids ("<ms>-<seq>" or "<ms>") and returns
// -1, 0 or +1.
func CompareIDs(a, b string) int { return compareIDs(a, b) }
