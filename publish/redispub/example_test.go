package redispub_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/redispub"
)

// A writer publishes the files it wrote and the files it deleted.
func Example() {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redisAddr}) // e.g. "127.0.0.1:6379"
	defer c.Close()

	p, err := redispub.New(c, redispub.Config{Stream: "example:events"})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	created := event.Created("metrics", "cpu_usage", event.File{
		Layer: "hot", Path: "date=2024-01-15/hour=14/a1b2.1.parquet",
		SizeBytes: 1048576, RowCount: 25000, ChunkTime: 1705327200000000000,
		MinTime: 1705327200000000000, MaxTime: 1705330799999999999,
	})
	deleted := event.Deleted("metrics", "cpu_usage", event.File{Layer: "hot", Path: "date=2024-01-14/hour=09/c3d4.1.parquet"})
	if err := p.Publish(ctx, created, deleted); err != nil {
		log.Fatal(err) // invalid events are refused before anything is sent; see publish.EventError
	}
	fmt.Println(c.XLen(ctx, "example:events").Val(), "entries")

	// An invalid event names itself and its field; nothing of the call is sent.
	bad := event.Deleted("metrics", "cpu:usage", event.File{Layer: "hot", Path: "date=2024-01-14/hour=09/c3d4.1.parquet"})
	fmt.Println(p.Publish(ctx, created, bad) != nil, c.XLen(ctx, "example:events").Val(), "entries")
	// Output:
	// 2 entries
	// true 2 entries
}

// A writer that produces one event at a time batches them in the
// background and flushes before it acknowledges its own input.
func Example_batcher() {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer c.Close()
	p, err := redispub.New(c, redispub.Config{Stream: "example:batched"})
	if err != nil {
		log.Fatal(err)
	}
	b := publish.NewBatcher(p, publish.BatcherConfig{})
	for i := range 3 {
		e := event.Deleted("metrics", "cpu_usage", event.File{Layer: "hot",
			Path: fmt.Sprintf("date=2024-01-14/hour=09/f%d.1.parquet", i)})
		if err := b.Add(ctx, e); err != nil {
			log.Fatal(err)
		}
	}
	if err := b.Flush(ctx); err != nil { // every event added so far is stored, or this says which failed
		log.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.XLen(ctx, "example:batched").Val(), "entries")
	// Output:
	// 3 entries
}
