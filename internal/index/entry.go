package index

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/streamindex/indexer/internal/codec"
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
func appendEntry(dst []byte, db, table string, f *codec.File) []byte {
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
	dst = f.Min.AppendJSON(dst)
	dst = append(dst, `,"max":`...)
	dst = f.Max.AppendJSON(dst)
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
// silently skip.
func ParseEntry(data []byte) (Entry, error) {
	var s storedEntry
	if err := json.Unmarshal(data, &s); err != nil {
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
