package index

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/streamindex/indexer/event"
)

// Unreadable is an entry of a files: hash that GigAPI's Go reader cannot
// read as it is stored: it decodes entries with encoding/json into int64
// fields and the str_* strings, and silently skips an entry it cannot
// decode (numbers in exponent form, as Redis's cjson writes large ones,
// are the common case).
type Unreadable struct {
	Key, Field string
	Reason     string
	// Repair is the entry rewritten in the exact form indexer writes, when
	// it can be rebuilt without guessing; "" when it cannot.
	Repair string
}

func (u Unreadable) String() string {
	s := u.Key + " " + u.Field + ": " + u.Reason
	if u.Repair != "" {
		s += " (repairable)"
	}
	return s
}

// readEntry checks the entry value stored at field of the files: hash of
// (db, table, date) as GigAPI's Go reader reads it, and returns why it
// cannot, with the repaired entry when there is one; "" when it reads
// fine. layers, when not nil, are the layer names GigAPI's readers have
// configured (an entry naming another fails their whole query).
func readEntry(db, table, date, field, value string, layers map[string]bool) (reason, repair string) {
	if err := checkPath(field); err != nil {
		return "the field is not a file path (date=…/hour=…/<name>.<N>.parquet); GigAPI's readers never find it", ""
	}
	if field[:len(date)] != date {
		return "the path belongs to another date's key; GigAPI's readers never find it there", ""
	}
	if e, err := ParseEntry(value); err == nil {
		if e.Path != field || e.Database != db || e.Table != table {
			return fmt.Sprintf("the entry names %s.%s %s", e.Database, e.Table, e.Path), ""
		}
		if layers != nil && !layers[e.Layer] {
			return fmt.Sprintf("layer %q is not configured; GigAPI's readers fail the whole query", e.Layer), ""
		}
		return "", ""
	}
	return looseEntry(db, table, field, value, layers)
}

// loose is a stored entry decoded leniently: numbers as they are written.
type loose struct {
	Layer        string          `json:"layer"`
	Database     string          `json:"database"`
	Table        string          `json:"table"`
	Path         string          `json:"path"`
	WriterID     string          `json:"writer_id"`
	SizeBytes    json.Number     `json:"size_bytes"`
	RowCount     json.Number     `json:"row_count"`
	ChunkTime    json.Number     `json:"chunk_time"`
	MinTime      json.Number     `json:"min_time"`
	MaxTime      json.Number     `json:"max_time"`
	StrChunkTime *string         `json:"str_chunk_time"`
	StrMinTime   *string         `json:"str_min_time"`
	StrMaxTime   *string         `json:"str_max_time"`
	Min          json.RawMessage `json:"min"`
	Max          json.RawMessage `json:"max"`
}

// looseEntry explains why an entry ParseEntry refused is unreadable and
// rebuilds it when every number it holds is an exact integer written in
// another form (1.2345e+14, 100.0), taking times from the exact str_*
// strings where present.
func looseEntry(db, table, field, value string, layers map[string]bool) (reason, repair string) {
	var e loose
	if err := json.Unmarshal([]byte(value), &e); err != nil {
		return "not an entry GigAPI's reader can decode: " + err.Error(), ""
	}
	f := event.File{Layer: e.Layer, Path: e.Path, WriterID: e.WriterID}
	var odd []string
	num := func(name string, n json.Number, dst *int64) bool {
		if n == "" {
			return true
		}
		if v, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			*dst = v
			return true
		}
		odd = append(odd, name+" "+string(n))
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil || v != math.Trunc(v) || v < -(1<<63) || v >= 1<<63 {
			return false
		}
		*dst = int64(v)
		return true
	}
	str := func(name string, s *string, dst *int64) bool {
		if s == nil {
			return true
		}
		v, err := strconv.ParseInt(*s, 10, 64)
		if err != nil {
			odd = append(odd, name+" "+strconv.Quote(*s))
			return false
		}
		*dst = v
		return true
	}
	exact := num("size_bytes", e.SizeBytes, &f.SizeBytes) && num("row_count", e.RowCount, &f.RowCount)
	for _, t := range [...]struct {
		name string
		n    json.Number
		s    *string
		dst  *int64
	}{{"chunk_time", e.ChunkTime, e.StrChunkTime, &f.ChunkTime}, {"min_time", e.MinTime, e.StrMinTime, &f.MinTime}, {"max_time", e.MaxTime, e.StrMaxTime, &f.MaxTime}} {
		ok := num(t.name, t.n, t.dst)
		if t.s != nil {
			ok = str("str_"+t.name, t.s, t.dst) // the exact string overrides, as in GigAPI's reader
		}
		exact = exact && ok
	}
	reason = "GigAPI's reader cannot decode it (it skips the entry)"
	if len(odd) > 0 {
		reason = "not integers: " + strings.Join(odd, ", ") + "; GigAPI's reader skips the entry"
	}
	if !exact {
		return reason + "; not repairable: a number is not an exact integer", ""
	}
	if e.Path != field || e.Database != db || e.Table != table {
		return reason + fmt.Sprintf("; not repairable: the entry names %s.%s %s", e.Database, e.Table, e.Path), ""
	}
	ev := event.Event{ID: "x", Type: event.FileCreated, Database: db, Table: table, File: f}
	if err := event.Validate(&ev); err != nil {
		return reason + "; not repairable: " + err.Error(), ""
	}
	if layers != nil && !layers[f.Layer] {
		return reason + fmt.Sprintf("; not repairable: layer %q is not configured", f.Layer), ""
	}
	min, ok1 := statsText(e.Min)
	max, ok2 := statsText(e.Max)
	if !ok1 || !ok2 {
		return reason + "; not repairable: min or max is not an object", ""
	}
	return reason, string(appendEntryStats(nil, db, table, &f, min, max))
}

// statsText returns min or max as stored: null, or a JSON object (compact).
func statsText(raw json.RawMessage) (string, bool) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return "null", true
	}
	if s[0] != '{' {
		return "", false
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", false
	}
	return buf.String(), true
}

// looseSizes reads size_bytes and row_count of an entry ParseEntry
// refused as patch_index's Lua does (any JSON number, truncated; 0 when
// absent or not a number), which is what its deletes subtract.
func looseSizes(value string) (size, rows int64) {
	var e loose
	if json.Unmarshal([]byte(value), &e) != nil {
		return 0, 0
	}
	n := func(v json.Number) int64 {
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsNaN(f) || f <= -(1<<63) || f >= 1<<63 {
			return 0
		}
		return int64(f)
	}
	return n(e.SizeBytes), n(e.RowCount)
}
