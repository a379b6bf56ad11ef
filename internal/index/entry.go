package index

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/streamindex/indexer/event"
)

// Entry is one indexed file as GigAPI's readers see it, with exact times.
type Entry struct {
	Layer     string          `json:"layer"`
	Database  string          `json:"database"`
	Table     string          `json:"table"`
	Path      string          `json:"path"`
	SizeBytes int64           `json:"size_bytes"`
	RowCount  int64           `json:"row_count"`
	ChunkTime int64           `json:"chunk_time"`
	MinTime   int64           `json:"min_time"`
	MaxTime   int64           `json:"max_time"`
	Min       json.RawMessage `json:"min"`
	Max       json.RawMessage `json:"max"`
	WriterID  string          `json:"writer_id"`
}

// appendEntry appends the stored form of a file: GigAPI's entry JSON,
// byte for byte what its Go library produces (its IndexEntry field order,
// numeric times 0, exact times in str_* strings, "cmd":"ADD"). f must be
// valid: its strings then need no escaping. patch_index reads size_bytes
// and row_count at their fixed place right after path.
func appendEntry(dst []byte, db, table string, f *event.File) []byte {
	return appendEntryStats(dst, db, table, f, f.Min.String(), f.Max.String())
}

// appendEntryStats is appendEntry with the min and max statistics given as
// JSON text (an object or null), as they are.
func appendEntryStats(dst []byte, db, table string, f *event.File, min, max string) []byte {
	dst = append(dst, `{"layer":"`...)
	dst = append(dst, f.Layer...)
	dst = append(dst, `","database":"`...)
	dst = append(dst, db...)
	dst = append(dst, `","table":"`...)
	dst = append(dst, table...)
	dst = append(dst, `","path":"`...)
	dst = append(dst, f.Path...)
	dst = append(dst, `","size_bytes":`...)
	dst = strconv.AppendInt(dst, f.SizeBytes, 10)
	dst = append(dst, `,"row_count":`...)
	dst = strconv.AppendInt(dst, f.RowCount, 10)
	dst = append(dst, `,"chunk_time":0,"min":`...)
	dst = append(dst, min...)
	dst = append(dst, `,"max":`...)
	dst = append(dst, max...)
	dst = append(dst, `,"min_time":0,"max_time":0,"writer_id":"`...)
	dst = append(dst, f.WriterID...)
	dst = append(dst, `","str_min_time":"`...)
	dst = strconv.AppendInt(dst, f.MinTime, 10)
	dst = append(dst, `","str_max_time":"`...)
	dst = strconv.AppendInt(dst, f.MaxTime, 10)
	dst = append(dst, `","str_chunk_time":"`...)
	dst = strconv.AppendInt(dst, f.ChunkTime, 10)
	dst = append(dst, `","cmd":"ADD"}`...)
	return dst
}

// storedEntry is the stored JSON: GigAPI's fields plus the exact strings,
// which override the numeric fields as in GigAPI's reader.
type storedEntry struct {
	Entry
	StrMinTime   string `json:"str_min_time"`
	StrMaxTime   string `json:"str_max_time"`
	StrChunkTime string `json:"str_chunk_time"`
}

// ParseEntry decodes a stored entry, written by indexer or by GigAPI's
// library, the way GigAPI's reader does, but failing on anything it would
// silently skip. Entries in the exact form appendEntry writes are read
// without a JSON decoder, and without copying: their strings share data's
// memory (queries read many thousands of HSCAN replies, which are strings).
func ParseEntry[T string | []byte](data T) (Entry, error) {
	if e, ok := parseOwnEntry(string(data)); ok {
		return e, nil
	}
	var s storedEntry
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		return Entry{}, fmt.Errorf("index: entry: %w", err)
	}
	for _, f := range [...]struct {
		s   string
		dst *int64
	}{{s.StrMinTime, &s.MinTime}, {s.StrMaxTime, &s.MaxTime}, {s.StrChunkTime, &s.ChunkTime}} {
		if f.s == "" {
			continue
		}
		v, err := strconv.ParseInt(f.s, 10, 64)
		if err != nil {
			return Entry{}, fmt.Errorf("index: entry: time %q is not an integer", f.s)
		}
		*f.dst = v
	}
	if string(s.Min) == "null" {
		s.Min = nil
	}
	if string(s.Max) == "null" {
		s.Max = nil
	}
	return s.Entry, nil
}

// ownEntry reads the fixed layout appendEntry writes; any surprise makes
// ok false and the caller falls back to a JSON decoder.
type ownEntry struct {
	b  string
	ok bool
}

// lit consumes the literal text s.
func (r *ownEntry) lit(s string) {
	if r.ok && strings.HasPrefix(r.b, s) {
		r.b = r.b[len(s):]
		return
	}
	r.ok = false
}

// plain consumes a string's content up to its closing quote, and returns
// it without a copy; the strings appendEntry writes without escaping
// (validated names and paths) hold neither quotes nor backslashes.
func (r *ownEntry) plain() string {
	if !r.ok {
		return ""
	}
	i := strings.IndexAny(r.b, "\"\\")
	if i < 0 || r.b[i] != '"' {
		r.ok = false
		return ""
	}
	s := r.b[:i]
	r.b = r.b[i+1:]
	return s
}

// int consumes a non-negative decimal integer.
func (r *ownEntry) int() int64 {
	if !r.ok {
		return 0
	}
	var v int64
	i := 0
	for ; i < len(r.b) && i < 19 && r.b[i] >= '0' && r.b[i] <= '9'; i++ {
		v = v*10 + int64(r.b[i]-'0')
	}
	if i == 0 || v < 0 || i < len(r.b) && r.b[i] >= '0' && r.b[i] <= '9' {
		r.ok = false
		return 0
	}
	r.b = r.b[i:]
	return v
}

// stats consumes null or a JSON object, returned verbatim (nil for null).
func (r *ownEntry) stats() json.RawMessage {
	if !r.ok {
		return nil
	}
	if strings.HasPrefix(r.b, "null") {
		r.b = r.b[4:]
		return nil
	}
	if len(r.b) == 0 || r.b[0] != '{' {
		r.ok = false
		return nil
	}
	depth, inString := 0, false
	for i := 0; i < len(r.b); i++ {
		c := r.b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{':
			depth++
		case c == '}':
			if depth--; depth == 0 {
				v := json.RawMessage(r.b[:i+1])
				r.b = r.b[i+1:]
				return v
			}
		}
	}
	r.ok = false
	return nil
}

func parseOwnEntry(data string) (Entry, bool) {
	r := ownEntry{b: data, ok: true}
	var e Entry
	r.lit(`{"layer":"`)
	e.Layer = r.plain()
	r.lit(`,"database":"`)
	e.Database = r.plain()
	r.lit(`,"table":"`)
	e.Table = r.plain()
	r.lit(`,"path":"`)
	e.Path = r.plain()
	r.lit(`,"size_bytes":`)
	e.SizeBytes = r.int()
	r.lit(`,"row_count":`)
	e.RowCount = r.int()
	r.lit(`,"chunk_time":0,"min":`)
	e.Min = r.stats()
	r.lit(`,"max":`)
	e.Max = r.stats()
	r.lit(`,"min_time":0,"max_time":0,"writer_id":"`)
	e.WriterID = r.plain()
	r.lit(`,"str_min_time":"`)
	e.MinTime = r.int()
	r.lit(`","str_max_time":"`)
	e.MaxTime = r.int()
	r.lit(`","str_chunk_time":"`)
	e.ChunkTime = r.int()
	r.lit(`","cmd":"ADD"}`)
	if !r.ok || len(r.b) != 0 {
		return Entry{}, false
	}
	return e, true
}

// AppendJSON appends e as JSON: the same JSON value encoding/json.Marshal
// gives (without its HTML escaping), without reflection (queries print many
// thousands).
func (e *Entry) AppendJSON(dst []byte) []byte {
	str := func(dst []byte, name, v string) []byte {
		return appendString(append(dst, name...), v)
	}
	num := func(dst []byte, name string, v int64) []byte {
		return strconv.AppendInt(append(dst, name...), v, 10)
	}
	raw := func(dst []byte, name string, v json.RawMessage) []byte {
		dst = append(dst, name...)
		if v == nil {
			return append(dst, "null"...)
		}
		return append(dst, v...)
	}
	dst = str(dst, `{"layer":`, e.Layer)
	dst = str(dst, `,"database":`, e.Database)
	dst = str(dst, `,"table":`, e.Table)
	dst = str(dst, `,"path":`, e.Path)
	dst = num(dst, `,"size_bytes":`, e.SizeBytes)
	dst = num(dst, `,"row_count":`, e.RowCount)
	dst = num(dst, `,"chunk_time":`, e.ChunkTime)
	dst = num(dst, `,"min_time":`, e.MinTime)
	dst = num(dst, `,"max_time":`, e.MaxTime)
	dst = raw(dst, `,"min":`, e.Min)
	dst = raw(dst, `,"max":`, e.Max)
	dst = str(dst, `,"writer_id":`, e.WriterID)
	return append(dst, '}')
}

// appendString appends s as a JSON string, as jsontext.AppendQuote does,
// but copies it as it is when nothing in it needs escaping (always so for
// the names and paths the event contract allows).
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			dst, _ = jsontext.AppendQuote(dst, s)
			return dst
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// OutsideHour reports whether e makes live a file whose [min_time,
// max_time] leaves its hour folder [hour, hour+1h). GigAPI's readers pick
// files by their hour folder first, so a query of the hours outside misses
// that data: the writer put the file in the wrong folder. Such events are
// applied all the same, and counted.
func OutsideHour(e *event.Event) bool {
	out := false
	e.Files(func(f *event.File, deleted bool) {
		if deleted || out {
			return
		}
		lo := hourStart(f.Path)
		out = f.MinTime < lo || f.MaxTime >= lo+int64(time.Hour)
	})
	return out
}

// hourStart is the start (Unix ns) of the hour folder of a valid path,
// read from its fixed digits without a time layout parser (it runs on
// every applied event).
func hourStart(path string) int64 {
	num := func(i, j int) int {
		n := 0
		for _, c := range path[i:j] {
			n = n*10 + int(c-'0')
		}
		return n
	}
	// date=YYYY-MM-DD/hour=HH
	return time.Date(num(5, 9), time.Month(num(10, 12)), num(13, 15), num(21, 23), 0, 0, 0, time.UTC).UnixNano()
}
