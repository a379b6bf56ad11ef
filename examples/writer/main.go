// Command writer is an example indexer writer: it publishes synthetic
// file.created and file.deleted events to Redis Streams or NATS JetStream
// with the public packages event, publish/redispub and publish/natspub,
// and prints how many it published. Copy it into your writer.
//
//	go run ./examples/writer --source redis --redis-url redis://127.0.0.1:6379/0 --events 1000
//	go run ./examples/writer --source nats --nats-url nats://127.0.0.1:4222 --events 1000
//
// Every flag also reads the environment variable INDEXER_<FLAG> (upper
// case, - becomes _), as indexer itself does, so a writer can share the
// workers' INDEXER_REDIS_URL, INDEXER_NATS_URL and INDEXER_LAYERS; the
// command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/publish"
	"github.com/streamindex/indexer/publish/natspub"
	"github.com/streamindex/indexer/publish/redispub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("writer", flag.ContinueOnError)
	source := fs.String("source", "redis", "where the workers read: redis or nats")
	redisURL := fs.String("redis-url", "redis://127.0.0.1:6379/0", "redis: server `URL`")
	stream := fs.String("stream", redispub.DefaultStream, "redis: events stream `key`")
	natsURL := fs.String("nats-url", nats.DefaultURL, "nats: server `URL`s, comma-separated")
	n := fs.Int("events", 1000, "how many `events` to publish (about one in five deletes a file published before)")
	database := fs.String("database", "demo", "`database` of the events")
	table := fs.String("table", "writer", "`table` of the events")
	layers := fs.String("layers", "default", "the workers' `layers`: the files go to the first; events with others would be dead-lettered")
	batch := fs.Int("batch", 500, "events per Publish call")
	for _, a := range args { // -h: the flags' defaults, before the environment changes them
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(os.Stdout)
			fs.Usage()
			return nil
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "INDEXER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = usageError{fmt.Errorf("%s=%q: %w", name, v, err)}
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *n < 0 || *batch < 1 {
		return usageError{errors.New("--events must not be negative and --batch must be positive")}
	}
	layer, _, _ := strings.Cut(strings.Split(*layers, ",")[0], ":")
	if layer == "*" {
		layer = "default"
	}
	opts := publish.Options{
		// The workers' rules: an event they would dead-letter is refused
		// here, before anything is sent.
		Rules: event.Config{Layers: []string{layer}},
		// Retries (a failover, a leader election) are logged.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}

	var p publish.Publisher
	switch *source {
	case "redis":
		o, err := redis.ParseURL(*redisURL)
		if err != nil {
			return usageError{fmt.Errorf("--redis-url: %w", err)}
		}
		c := redis.NewClient(o)
		defer c.Close()
		if p, err = redispub.New(c, redispub.Config{Options: opts, Stream: *stream}); err != nil {
			return err
		}
	case "nats":
		nc, err := nats.Connect(*natsURL, nats.Name("indexer example writer"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect to NATS: %w", err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		if p, err = natspub.New(js, natspub.Config{Options: opts}); err != nil {
			return err
		}
	default:
		return usageError{fmt.Errorf("--source %q: use redis or nats", *source)}
	}
	defer p.Close()

	published := 0
	events := make([]event.Event, 0, *batch)
	for _, e := range history(*n, *database, *table, layer, time.Now()) {
		events = append(events, e)
		if len(events) == *batch {
			if err := p.Publish(ctx, events...); err != nil {
				return fmt.Errorf("after %d events: %w", published, err)
			}
			published += len(events)
			events = events[:0]
		}
	}
	if err := p.Publish(ctx, events...); err != nil {
		return fmt.Errorf("after %d events: %w", published, err)
	}
	published += len(events)
	fmt.Printf("published %d events to %s\n", published, *source)
	return nil
}

// history returns n events of database.table: files written one after
// another, hour by hour from a day before now, and every fifth event the
// deletion of the file created two events earlier (as a compactor or a
// retention job would). Event ids are derived from the content
// (event.ContentID): run it again and NATS stores nothing twice.
func history(n int, database, table, layer string, now time.Time) []event.Event {
	start := now.Add(-24 * time.Hour).Truncate(time.Hour).UTC()
	out := make([]event.Event, 0, n)
	var created []event.File
	for i := 0; i < n; i++ {
		if i%5 == 4 && len(created) >= 2 {
			f := created[len(created)-2]
			out = append(out, event.Deleted(database, table, event.File{Layer: layer, Path: f.Path}))
			continue
		}
		hour := start.Add(time.Duration(i%24) * time.Hour)
		min := hour.UnixNano()
		f := event.File{
			Layer:     layer,
			Path:      fmt.Sprintf("%s/writer-%d.1.parquet", hour.Format("date=2006-01-02/hour=15"), i),
			SizeBytes: int64(1000 + i), RowCount: int64(10 + i%100),
			ChunkTime: min, MinTime: min, MaxTime: min + int64(time.Hour) - 1,
		}
		created = append(created, f)
		out = append(out, event.Created(database, table, f))
	}
	return out
}
