package redisstream

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/publish/redispub"
)

// message converts an entry delivered for the deliveries-th time. Its
// Data points into e's fields.
//
// An entry must have exactly one data field, at most one ct field, and
// nothing else but the fields 'indexer dlq requeue' adds (requeued_from,
// original_id), each at most once: any other entry is Malformed (a second
// data would otherwise make the event depend on which one a reader takes),
// and the loop dead-letters it with the reason, keeping its first data and
// ct.
func (s *Source) message(e *entry, deliveries int) consumer.Message {
	m := consumer.Message{ID: e.id, Deliveries: deliveries, Time: idTime(e.id)}
	if e.deleted {
		m.Lost = true
		return m
	}
	var seen [len(entryFields)]int
	var data []byte
	other := false
	for i := 0; i+1 < len(e.fields); i += 2 {
		name, value := e.fields[i], e.fields[i+1]
		k := fieldIndex(name)
		if k < 0 {
			other = true
			continue
		}
		if seen[k]++; seen[k] > 1 {
			continue
		}
		switch k {
		case fieldDataIndex:
			data = value
		case fieldCTIndex:
			m.ContentType = contentType(value)
		}
	}
	m.Data = data
	if seen[fieldDataIndex] == 1 && !other && max(seen[fieldCTIndex], seen[2], seen[3]) <= 1 {
		return m
	}
	names := make([]string, 0, len(e.fields)/2)
	for i := 0; i+1 < len(e.fields); i += 2 {
		names = append(names, strconv.Quote(string(e.fields[i])))
	}
	list := strings.Join(names, ", ")
	if list == "" {
		list = "none"
	}
	if seen[fieldDataIndex] == 0 {
		m.Malformed = fmt.Sprintf("stream entry has no %q field (its fields: %s); writers must publish the fields data and ct", fieldData, list)
	} else {
		m.Malformed = fmt.Sprintf("stream entry has fields other than one data and one ct (its fields: %s); writers must publish data and ct once each and nothing else (the dead letter keeps the first data and ct)", list)
	}
	s.log.Warn("malformed stream entry; it will be dead-lettered", "msg_id", e.id, "fields", list)
	return m
}

// Entry fields: data and ct are the writers'; 'indexer dlq requeue' adds
// requeued_from and original_id.
const (
	fieldData = redispub.FieldData
	fieldCT   = redispub.FieldCT

	fieldDataIndex = 0
	fieldCTIndex   = 1
)

var entryFields = [...]string{fieldData, fieldCT, fieldRequeuedFrom, fieldOriginalID}

// fieldIndex is the position of name in entryFields, or -1.
func fieldIndex(name []byte) int {
	for i, f := range entryFields {
		if string(name) == f {
			return i
		}
	}
	return -1
}

// contentType returns the ct value as a string, without allocating for
// the two a writer uses.
func contentType(v []byte) string {
	switch string(v) {
	case "json":
		return "json"
	case "msgpack":
		return "msgpack"
	case "":
		return ""
	}
	return string(v)
}

// fieldsOf turns an entry's field list as go-redis returns it from Do or
// a script ([]any of strings) into an entry's fields, copying.
func fieldsOf(list []any) [][]byte {
	out := make([][]byte, len(list))
	for i, v := range list {
		s, _ := v.(string)
		out[i] = []byte(s)
	}
	return out
}

// idTime returns when the entry id was generated (its milliseconds part).
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// compareIDs compares two stream entry ids ("ms-seq" or "ms").
func compareIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	return cmp.Compare(as, bs)
}

func splitID(id string) (ms, seq uint64) {
	m, q, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(q, 10, 64)
	return ms, seq
}

// hashTag returns the Redis Cluster hash tag of key, or "".
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return ""
}
