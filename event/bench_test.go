package event_test

import (
	"testing"

	"github.com/streamindex/indexer/event"
)

// benchEvent is a typical file.created event as a GigAPI writer sends it;
// withStats adds a 5-column min and max.
func benchEvent(b *testing.B, withStats bool) *event.Event {
	b.Helper()
	e := &event.Event{
		ID:       "01HMB4X1J7Q2ZK3V9W8T6R5S4P",
		Type:     event.FileCreated,
		Time:     1705327200123456789,
		Database: "metrics",
		Table:    "cpu_usage",
		File: event.File{
			Layer:     "hot",
			Path:      "date=2024-01-15/hour=14/0a1b2c3d-4e5f-6789-abcd-ef0123456789.1.parquet",
			SizeBytes: 1_048_576,
			RowCount:  25_000,
			ChunkTime: 1705327200000000000,
			MinTime:   1705327200000000000,
			MaxTime:   1705330799999999999,
		},
	}
	if withStats {
		var err error
		e.File.Min, err = event.StatsFromMap(map[string]any{
			"__timestamp": int64(1705327200000000000), "host": "web-01",
			"region": "eu-west-1", "usage": 0.25, "cores": 4,
		})
		if err != nil {
			b.Fatal(err)
		}
		e.File.Max, err = event.StatsFromMap(map[string]any{
			"__timestamp": int64(1705330799999999999), "host": "web-99",
			"region": "us-east-2", "usage": 99.75, "cores": 64,
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return e
}

var benchCases = []struct {
	name      string
	withStats bool
}{{"plain", false}, {"stats5", true}}

func benchmarkDecode(b *testing.B, f event.Format) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			data, err := event.Encode(f, benchEvent(b, bc.withStats))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := event.Decode(f, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchmarkEncode(b *testing.B, f event.Format) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			e := benchEvent(b, bc.withStats)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := event.Encode(f, e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeJSON(b *testing.B)    { benchmarkDecode(b, event.JSON) }
func BenchmarkDecodeMsgpack(b *testing.B) { benchmarkDecode(b, event.MsgPack) }
func BenchmarkEncodeJSON(b *testing.B)    { benchmarkEncode(b, event.JSON) }
func BenchmarkEncodeMsgpack(b *testing.B) { benchmarkEncode(b, event.MsgPack) }
