package redisstream_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/publish/redispub"
)

// A worker: 'indexer setup' created the group once; each worker reads as
// its own consumer of it, through the consume loop.
func Example() {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer c.Close()

	// Once, by 'indexer setup --source redis': the group reads the stream
	// from its beginning.
	if _, _, err := redisstream.Setup(ctx, c, "idx:events", "indexer", "0"); err != nil {
		log.Fatal(err)
	}

	// A writer publishes events (package publish/redispub).
	var e event.Event // a valid event
	p, err := redispub.New(c, redispub.Config{Stream: "idx:events"})
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Publish(ctx, e); err != nil {
		log.Fatal(err)
	}

	// A worker.
	host, _ := os.Hostname()
	src, err := redisstream.New(c, redisstream.Config{Consumer: fmt.Sprintf("%s-%d", host, os.Getpid())})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	x, err := index.New(c, index.Config{})
	if err != nil {
		log.Fatal(err)
	}
	r, err := consumer.New(consumer.Config{Source: src, Index: x})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err) // e.g. the group is missing: run 'indexer setup --source redis'
	}
}
