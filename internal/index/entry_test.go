package index

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/synth"
)

// TestParseEntryFastPath: entries indexer writes parse without the JSON
// decoder and to the same result as through it; anything else falls back.
func TestParseEntryFastPath(t *testing.T) {
	g := synth.New(synth.Config{Seed: 3})
	stats, _ := event.StatsFromMap(map[string]any{"q\"uote}": "a\\b{", "n": 1705327200123456789})
	files := []event.File{{Layer: "default", Path: "date=2024-01-15/hour=01/x.1.parquet", WriterID: "w-1", Min: stats, SizeBytes: 9007199254740991}}
	for _, e := range g.Events(200) {
		e.Files(func(f *event.File, del bool) {
			if !del {
				files = append(files, *f)
			}
		})
	}
	for _, f := range files {
		data := appendEntry(nil, "db", "t", &f)
		fast, ok := parseOwnEntry(string(data))
		if !ok {
			t.Fatalf("fast path refused %s", data)
		}
		slow, err := parseSlow(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast %+v\nslow %+v", fast, slow)
		}
	}
	// GigAPI's library writes through cjson, in another key order.
	foreign := `{"path":"date=2024-01-15/hour=01/x.1.parquet","layer":"default","database":"db","table":"t","size_bytes":5,"row_count":2,"chunk_time":0,"min":null,"max":null,"min_time":0,"max_time":0,"str_min_time":"7","str_max_time":"9","str_chunk_time":"3","cmd":"ADD"}`
	if _, ok := parseOwnEntry(foreign); ok {
		t.Fatal("fast path accepted a foreign layout")
	}
	e, err := ParseEntry([]byte(foreign))
	if err != nil || e.SizeBytes != 5 || e.MinTime != 7 || e.MaxTime != 9 || e.ChunkTime != 3 {
		t.Fatalf("foreign entry = %+v, %v", e, err)
	}
	for _, bad := range []string{`{"layer":"x"`, `{"layer":"a\"b","database":"d"}`, ``} {
		if _, ok := parseOwnEntry(bad); ok {
			t.Errorf("fast path accepted %q", bad)
		}
	}
}

// parseSlow is ParseEntry through its JSON decoder: a leading space
// defeats the fast path.
func parseSlow(data []byte) (Entry, error) {
	return ParseEntry(append([]byte(" "), data...))
}

func TestEntryAppendJSONMatchesEncodingJSON(t *testing.T) {
	stats, _ := event.StatsFromMap(map[string]any{"n": 1705327200123456789, "s": "é\"<>&"})
	for _, e := range []Entry{
		{Layer: "default", Database: "db", Table: "t", Path: "date=2024-01-15/hour=01/x.1.parquet", SizeBytes: 1, RowCount: 2,
			ChunkTime: 3, MinTime: 1705327200123456789, MaxTime: 5, Min: json.RawMessage(stats.String()), WriterID: "w"},
		{Layer: "a\"b\u2028<", Path: "\x01"},
		{Layer: "x<&>y", Database: "é", Table: "\\", WriterID: "\t"},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got := e.AppendJSON(nil)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("AppendJSON wrote invalid JSON %s: %v", got, err)
		}
		json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
		}
	}
}

func TestOutsideHour(t *testing.T) {
	const h14 = int64(1705327200000000000) // 2024-01-15T14:00:00Z
	const hour = int64(time.Hour)
	f := func(minT, maxT int64) event.File {
		return event.File{Layer: "l", Path: "date=2024-01-15/hour=14/a.1.parquet", MinTime: minT, MaxTime: maxT}
	}
	for _, c := range []struct {
		e    event.Event
		want bool
	}{
		{event.Event{Type: event.FileCreated, File: f(h14, h14+hour-1)}, false},
		{event.Event{Type: event.FileCreated, File: f(h14-1, h14)}, true},
		{event.Event{Type: event.FileCreated, File: f(h14, h14+hour)}, true},
		{event.Event{Type: event.FileCreated, File: f(0, 0)}, true},
		{event.Event{Type: event.FileDeleted, File: f(0, 0)}, false}, // a delete makes nothing live
		{event.Event{Type: event.FilesReplaced, Add: []event.File{f(h14, h14)}, Remove: []event.File{f(0, 0)}}, false},
		{event.Event{Type: event.FilesReplaced, Add: []event.File{f(h14, h14), f(h14, h14+2*hour)}}, true},
	} {
		if got := OutsideHour(&c.e); got != c.want {
			t.Errorf("%s %+v: OutsideHour = %v, want %v", c.e.Type, c.e, got, c.want)
		}
	}
}
