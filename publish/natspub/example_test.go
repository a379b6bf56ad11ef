package natspub_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/natspub"
)

// A writer publishes the commit of a merge: the new file and the files
// it replaces, in one atomic event.
func Example() {
	ctx := context.Background()
	// A cluster's URLs, comma-separated; reconnect forever, buffering
	// publishes while disconnected.
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	// Once, by 'indexer setup --source nats' (here for the example).
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "EXAMPLE", Subjects: []string{"example.events.>"}, Duplicates: 2 * time.Minute}); err != nil {
		log.Fatal(err)
	}

	p, err := natspub.New(js, natspub.Config{
		SubjectPrefix: "example.events",                       // default idx.events
		Options:       publish.Options{Format: event.MsgPack}, // default JSON
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	merged := event.File{Layer: "hot", Path: "date=2024-01-15/hour=14/merged-9a1c.2.parquet",
		SizeBytes: 2097152, RowCount: 50000, ChunkTime: 1705327200000000000,
		MinTime: 1705327200000000000, MaxTime: 1705330799999999999}
	e := event.Replaced("metrics", "cpu_usage", []event.File{merged}, []event.File{
		{Layer: "hot", Path: "date=2024-01-15/hour=14/a1b2.1.parquet"},
		{Layer: "hot", Path: "date=2024-01-15/hour=14/c3d4.1.parquet"},
	}, nil)
	// Publishing the same event again (a retry after a crash) stores it
	// once: its id, derived from its content, is its Nats-Msg-Id.
	for range 2 {
		if err := p.Publish(ctx, e); err != nil {
			log.Fatal(err)
		}
	}
	s, _ := js.Stream(ctx, "EXAMPLE")
	info, _ := s.Info(ctx)
	fmt.Println(p.Subject("metrics", "cpu_usage"), info.State.Msgs, "message")
	// Output:
	// example.events.metrics.cpu_usage 1 message
}
