package event_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/streamindex/indexer/event"
)

func liveFile(path string) event.File {
	return event.File{Layer: "hot", Path: path, SizeBytes: 100, RowCount: 10,
		ChunkTime: 1705327200000000000, MinTime: 1705327200000000000, MaxTime: 1705327200000000001}
}

// TestConstructors: each constructor builds a valid event of its type,
// with a time and its content id, that survives both codecs.
func TestConstructors(t *testing.T) {
	a := liveFile("date=2024-01-15/hour=14/a.1.parquet")
	b := liveFile("date=2024-01-15/hour=14/b.1.parquet")
	m := liveFile("date=2024-01-15/hour=14/m.2.parquet")
	for _, e := range []event.Event{
		event.Created("metrics", "cpu", a),
		event.Deleted("metrics", "cpu", event.File{Layer: "hot", Path: a.Path}),
		event.Replaced("metrics", "cpu", []event.File{m}, []event.File{{Layer: "hot", Path: a.Path}, {Layer: "hot", Path: b.Path}},
			&event.Plan{Kind: event.PlanMerge, ID: "m1", Token: "7"}),
		event.Replaced("metrics", "cpu", nil, []event.File{{Layer: "hot", Path: a.Path}}, nil),
	} {
		if err := event.Validate(&e); err != nil {
			t.Errorf("%s: %v", e.Type, err)
		}
		if e.Time <= 0 || e.ID != event.ContentID(&e) {
			t.Errorf("%s: time %d, id %q, want a time and the content id", e.Type, e.Time, e.ID)
		}
		checkRoundTrip(t, e)
	}
}

// TestContentID: the id ignores id and time, tells every other difference
// apart, and is a valid event id.
func TestContentID(t *testing.T) {
	base := event.Created("metrics", "cpu", liveFile("date=2024-01-15/hour=14/a.1.parquet"))
	again := base
	again.ID, again.Time = "other", base.Time+1
	if event.ContentID(&base) != event.ContentID(&again) {
		t.Error("ContentID depends on the id or the time")
	}
	seen := map[string]string{event.ContentID(&base): "base"}
	for name, mod := range map[string]func(e *event.Event){
		"type":     func(e *event.Event) { e.Type = event.FileDeleted },
		"database": func(e *event.Event) { e.Database = "metrics2" },
		"table":    func(e *event.Event) { e.Table = "cpu2" },
		"path":     func(e *event.Event) { e.File.Path = "date=2024-01-15/hour=14/b.1.parquet" },
		"size":     func(e *event.Event) { e.File.SizeBytes++ },
		"writer":   func(e *event.Event) { e.File.WriterID = "w1" },
		"plan": func(e *event.Event) {
			e.Type, e.Add, e.Plan = event.FilesReplaced, []event.File{e.File}, &event.Plan{Kind: event.PlanMove, ID: "x", Token: "1"}
		},
	} {
		e := base
		mod(&e)
		id := event.ContentID(&e)
		if prev, ok := seen[id]; ok {
			t.Errorf("%s: same id as %s", name, prev)
		}
		seen[id] = name
		e.ID = id
		if err := event.Validate(&e); err != nil && strings.HasPrefix(err.Error(), "invalid event: id") {
			t.Errorf("ContentID %q is not a valid id: %v", id, err)
		}
	}
}

// TestValidateIsDecode: Validate and Decode report the same error for
// the same event (they run the same code), with the default rules and
// with a Decoder's layers, in both formats; and what Validate accepts,
// Decode accepts.
func TestValidateIsDecode(t *testing.T) {
	layered, err := event.NewDecoder(event.Config{Layers: []string{"hot"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(e *event.Event){
		"valid":           func(e *event.Event) {},
		"bad path":        func(e *event.Event) { e.File.Path = "date=2024-02-30/hour=14/a.1.parquet" },
		"bad id":          func(e *event.Event) { e.ID = "-x" },
		"long id":         func(e *event.Event) { e.ID = strings.Repeat("a", 129) },
		"time":            func(e *event.Event) { e.Time = event.MaxTimeNanos + 1 },
		"database":        func(e *event.Event) { e.Database = "a:b" },
		"table":           func(e *event.Event) { e.Table = "{t}" },
		"layer":           func(e *event.Event) { e.File.Layer = "cold" },
		"writer":          func(e *event.Event) { e.File.WriterID = "a/b" },
		"rows":            func(e *event.Event) { e.File.RowCount = event.MaxSafeInt + 1 },
		"min after max":   func(e *event.Event) { e.File.MinTime = e.File.MaxTime + 1 },
		"replaced empty":  func(e *event.Event) { e.Type = event.FilesReplaced },
		"replaced remove": func(e *event.Event) { e.Type, e.Remove = event.FilesReplaced, []event.File{{Layer: "hot", Path: "x"}} },
		"plan token": func(e *event.Event) {
			e.Type, e.Add, e.Plan = event.FilesReplaced, []event.File{e.File}, &event.Plan{Kind: event.PlanMerge, ID: "x", Token: "01"}
		},
		"deleted min only": func(e *event.Event) { e.Type, e.File.MaxTime = event.FileDeleted, 0 },
	} {
		e := event.Created("metrics", "cpu", liveFile("date=2024-01-15/hour=14/a.1.parquet"))
		mod(&e)
		for _, d := range []*event.Decoder{nil, layered} {
			validate, decoder := event.Validate, func(f event.Format, b []byte) (event.Event, error) { return event.Decode(f, b) }
			if d != nil {
				validate, decoder = d.Validate, d.Decode
			}
			verr := validate(&e)
			for _, f := range []event.Format{event.JSON, event.MsgPack} {
				var data []byte
				var err error
				if f == event.JSON {
					data, err = event.AppendJSON(nil, &e)
				} else {
					data, err = event.AppendMsgpack(nil, &e)
				}
				if err != nil {
					t.Fatal(err)
				}
				_, derr := decoder(f, data)
				if !reflect.DeepEqual(verr, derr) {
					t.Errorf("%s (layers %v) %v: Validate says %v, Decode says %v", name, d != nil, f, verr, derr)
				}
			}
		}
	}
}

// TestEncodeMessageLimit: Encode refuses an event whose encoding the
// workers would refuse as too long, and a Decoder with a higher limit
// encodes it.
func TestEncodeMessageLimit(t *testing.T) {
	add := make([]event.File, 600)
	for i := range add {
		add[i] = liveFile("date=2024-01-15/hour=14/" + strings.Repeat("x", 100) + "-" + string(rune('a'+i%26)) + ".1.parquet")
	}
	e := event.Replaced("metrics", "cpu", add, nil, nil)
	_, err := event.Encode(event.JSON, &e)
	var ve *event.ValidationError
	if !errors.As(err, &ve) || ve.Field != "" || !strings.Contains(ve.Reason, "more than the limit of 65536") {
		t.Fatalf("Encode of a %d-file event: %v, want the message limit", len(add), err)
	}
	big, _ := event.NewDecoder(event.Config{MaxMessageBytes: 1 << 20})
	data, err := big.Encode(event.JSON, &e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Decode(event.JSON, data); err != nil {
		t.Fatal(err)
	}
}
