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
