package event_test

import (
	"errors"
	"fmt"

	"github.com/streamindex/indexer/event"
)

func ExampleDecode() {
	msg := []byte(`{"v":1,"id":"01HMB4X1J7Q2ZK3V9W8T6R5S4P","type":"file.created",
		"time":"1705327260000000000","database":"metrics","table":"cpu_usage",
		"layer":"hot","path":"date=2024-01-15/hour=14/a1b2.1.parquet",
		"size_bytes":1048576,"row_count":25000,"chunk_time":1705327200000000000,
		"min_time":1705327200000000000,"max_time":1705330799999999999,
		"min":{"ts":1705327200123456789,"host":"web-01"}}`)

	e, err := event.Decode(event.JSON, msg)
	if err != nil {
		fmt.Println(err)
		return
	}
	e.Files(func(f *event.File, deleted bool) {
		fmt.Println(e.Type, e.Database, e.Table, f.Dir(), f.Iteration(), deleted)
		fmt.Println("min:", f.Min)
	})

	// Every failure is a *event.ValidationError naming the field.
	_, err = event.Decode(event.JSON, []byte(`{"v":1,"id":"x","type":"file.deleted","time":0,
		"database":"metrics","table":"cpu:usage","layer":"hot","path":"date=2024-01-15/hour=14/a1b2.1.parquet"}`))
	var ve *event.ValidationError
	if errors.As(err, &ve) {
		fmt.Println("dead-letter:", ve.Field)
	}
	// Output:
	// file.created metrics cpu_usage date=2024-01-15/hour=14 1 false
	// min: {"ts":1705327200123456789,"host":"web-01"}
	// dead-letter: table
}

func ExampleNewDecoder() {
	dec, err := event.NewDecoder(event.Config{Layers: []string{"hot"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = dec.Decode(event.JSON, []byte(`{"v":1,"id":"x","type":"file.deleted","time":0,
		"database":"metrics","table":"cpu_usage","layer":"cold","path":"date=2024-01-15/hour=14/a1b2.1.parquet"}`))
	fmt.Println(err)
	// Output:
	// invalid event: layer: layer "cold" is not configured (configured layers are set with --layers)
}

func ExampleCreated() {
	e := event.Created("metrics", "cpu_usage", event.File{
		Layer: "hot", Path: "date=2024-01-15/hour=14/a1b2.1.parquet",
		SizeBytes: 1048576, RowCount: 25000, ChunkTime: 1705327200000000000,
		MinTime: 1705327200000000000, MaxTime: 1705330799999999999,
	})
	e.Time = 1705327260000000000 // the constructor sets now; fixed here for the output
	data, err := event.Encode(event.JSON, &e)
	if err != nil {
		fmt.Println(err) // a *event.ValidationError naming the field
		return
	}
	fmt.Println(e.ID == event.ContentID(&e)) // stable across versions: retries of old writers still de-duplicate
	fmt.Println(string(data))
	// Output:
	// true
	// {"v":1,"id":"884663e5a0c931ceb12fa6c41f5cb132","type":"file.created","time":1705327260000000000,"database":"metrics","table":"cpu_usage","layer":"hot","path":"date=2024-01-15/hour=14/a1b2.1.parquet","size_bytes":1048576,"row_count":25000,"chunk_time":1705327200000000000,"min_time":1705327200000000000,"max_time":1705330799999999999}
}

func ExampleDeleted() {
	e := event.Deleted("metrics", "cpu_usage", event.File{Layer: "hot", Path: "date=2024-01-15/hour=14/a1b2.1.parquet"})
	e.ID = "01HMB4X1J7Q2ZK3V9W8T6R5S4P" // a caller-given id (a ULID, say) instead of the content id
	fmt.Println(event.Validate(&e))
	// Output:
	// <nil>
}

func ExampleReplaced() {
	// The commit of a merge leased with 'indexer plan next': the inputs go,
	// the output comes, and the lease is released, in one atomic call.
	merged := event.File{Layer: "hot", Path: "date=2024-01-15/hour=14/merged-9a1c.2.parquet",
		SizeBytes: 2097152, RowCount: 50000, ChunkTime: 1705327200000000000,
		MinTime: 1705327200000000000, MaxTime: 1705330799999999999}
	e := event.Replaced("metrics", "cpu_usage",
		[]event.File{merged},
		[]event.File{
			{Layer: "hot", Path: "date=2024-01-15/hour=14/a1b2.1.parquet"},
			{Layer: "hot", Path: "date=2024-01-15/hour=14/c3d4.1.parquet"},
		},
		&event.Plan{Kind: event.PlanMerge, ID: "m3f9c2a7d41e08b65-a1b2.1", Token: "42"})
	fmt.Println(e.Type, e.NumFiles(), event.Validate(&e))

	// A broken event names its field.
	e.Remove[1].Path = "date=2024-01-15/hour=24/c3d4.1.parquet"
	fmt.Println(event.Validate(&e))
	// Output:
	// files.replaced 3 <nil>
	// invalid event: remove[1].path: hour 24 is not 00-23; must be date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet with a real UTC date from 1970 on, hour 00-23, <name> of 1-128 characters A-Z a-z 0-9 _ - and N from 1 to 999999
}

func ExampleDecoder_Validate() {
	// The rules the workers run with (indexer run --layers hot,cold).
	rules, err := event.NewDecoder(event.Config{Layers: []string{"hot", "cold"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	e := event.Deleted("metrics", "cpu_usage", event.File{Layer: "warm", Path: "date=2024-01-15/hour=14/a1b2.1.parquet"})
	fmt.Println(rules.Validate(&e))
	// Output:
	// invalid event: layer: layer "warm" is not configured (configured layers are set with --layers)
}
