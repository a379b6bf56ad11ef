package jetstream_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/natsserver"
	"github.com/streamindex/indexer/publish/natspub"
)

// Example sets up the streams and the consumer on an embedded server,
// publishes one event and reads it back as a worker does.
func Example() {
	dir, _ := os.MkdirTemp("", "example-nats-")
	defer os.RemoveAll(dir)
	srv, err := natsserver.Start(natsserver.Config{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()

	quiet := slog.New(slog.DiscardHandler)
	nc, err := jetstream.Dial(jetstream.ConnConfig{URL: srv.ClientURL(), Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx := context.Background()

	// 'indexer setup'
	created, _, err := jetstream.Setup(ctx, js, jetstream.SetupConfig{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", created.Any())

	// 'indexer publish'
	ev := event.Event{ID: "01J0EXAMPLE", Type: event.FileCreated, Time: 1, Database: "demo", Table: "events",
		File: event.File{Layer: "default", Path: "date=2024-01-15/hour=01/a.1.parquet", SizeBytes: 1, RowCount: 1, MinTime: 1, MaxTime: 2}}
	pub, err := natspub.New(js, natspub.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := pub.Publish(ctx, ev); err != nil {
		log.Fatal(err)
	}

	// 'indexer run': consumer.Runner drives these calls.
	src, err := jetstream.New(ctx, js, jetstream.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	msgs, err := src.Fetch(ctx, 100, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Println(m.ID, m.Subject, m.ContentType, m.Deliveries)
	}
	if err := src.Ack(ctx, msgs); err != nil {
		log.Fatal(err)
	}
	// Output:
	// created: true
	// 1 idx.events.demo.events application/json 1
}
