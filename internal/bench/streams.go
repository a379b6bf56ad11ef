package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/publish/natspub"
	"github.com/streamindex/indexer/publish/redispub"
)

// stream is a transport the bench publishes through and workers read:
// Redis Streams or NATS JetStream, each with the workers' default names.
type stream interface {
	// name is "redis" or "nats", the workers' --source.
	name() string
	// reset leaves an empty stream with its consumer group (durable
	// consumer) at its start. It does not touch the index.
	reset(ctx context.Context) error
	// publish appends events in order and returns once the server stored
	// all of them.
	publish(ctx context.Context, events []payload) error
	// source returns a consumer.Source reading the stream as consumer
	// name, for the transport ceilings; close it.
	source(ctx context.Context, name string) (consumer.Source, error)
	// workerArgs are the 'indexer run' flags that select the stream.
	workerArgs() []string
	// acked returns how many messages the workers' group acknowledged
	// since reset, as the stream's server counts them (progress.go).
	acked(ctx context.Context) (int64, error)
}

// redisStream is the Redis Stream idx:events with group indexer.
type redisStream struct {
	c   *redis.Client
	url string
	pub *redispub.Publisher
}

func newRedisStream(c *redis.Client, url string) *redisStream {
	pub, _ := redispub.New(c, redispub.Config{Pipeline: 1000}) // valid: the defaults
	return &redisStream{c: c, url: url, pub: pub}
}

func (s *redisStream) name() string { return "redis" }

func (s *redisStream) reset(ctx context.Context) error {
	if err := s.c.Del(ctx, redisstream.DefaultStream, redisstream.DefaultStream+redisstream.DeadLetterSuffix).Err(); err != nil {
		return fmt.Errorf("bench: reset stream: %w", err)
	}
	_, _, err := redisstream.Setup(ctx, s.c, "", "", "0")
	return err
}

func (s *redisStream) publish(ctx context.Context, events []payload) error {
	out := make([]redispub.Message, len(events))
	for i := range events {
		out[i] = redispub.Message{Data: events[i].data, CT: redispub.CT(event.JSON)}
	}
	_, err := s.pub.PublishRaw(ctx, out)
	return err
}

func (s *redisStream) source(_ context.Context, name string) (consumer.Source, error) {
	return redisstream.New(s.c, redisstream.Config{Consumer: name, Logger: discardLogger()})
}

func (s *redisStream) workerArgs() []string {
	return []string{"--source", "redis", "--redis-url", s.url}
}

// natsStream is the JetStream stream IDX_EVENTS with durable consumer
// indexer, on the bench's in-process NATS server.
type natsStream struct {
	js       natsjs.JetStream
	url      string // NATS
	redisURL string // the index
	pub      *natspub.Publisher
	// cheap publishes without Nats-Msg-Id (no de-duplication) to a stream
	// set up with asynchronous persistence: the opt-in settings of issue
	// 16, each measured apart in the ceilings (see cheaper).
	noMsgID, persistAsync bool
}

// cheaper returns s publishing without Nats-Msg-Id, and also with
// asynchronous persistence if async.
func (s *natsStream) cheaper(async bool) *natsStream {
	c := *s
	c.noMsgID, c.persistAsync = true, async
	return &c
}

func newNATSStream(js natsjs.JetStream, url, redisURL string) *natsStream {
	pub, _ := natspub.New(js, natspub.Config{}) // valid: the defaults
	return &natsStream{js: js, url: url, redisURL: redisURL, pub: pub}
}

func (s *natsStream) name() string { return "nats" }

// reset deletes both streams (and with them the consumer and the
// de-duplication window) and sets them up again.
func (s *natsStream) reset(ctx context.Context) error {
	for _, name := range []string{jetstream.DefaultStream, jetstream.DefaultDeadLetters} {
		if err := s.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
			return fmt.Errorf("bench: delete stream %s: %w", name, err)
		}
	}
	_, _, err := jetstream.Setup(ctx, s.js, jetstream.SetupConfig{PersistAsync: s.persistAsync})
	return err
}

func (s *natsStream) publish(ctx context.Context, events []payload) error {
	out := make([]*nats.Msg, len(events))
	ct := []string{event.JSON.ContentType()}
	for i := range events {
		out[i] = &nats.Msg{Subject: events[i].subject, Data: events[i].data, Header: nats.Header{natspub.HeaderContentType: ct}}
		if !s.noMsgID {
			out[i].Header[natsjs.MsgIDHeader] = []string{events[i].id}
		}
	}
	return s.pub.PublishMsgs(ctx, out)
}

func (s *natsStream) source(ctx context.Context, _ string) (consumer.Source, error) {
	return jetstream.New(ctx, s.js, jetstream.Config{Logger: discardLogger()})
}

func (s *natsStream) workerArgs() []string {
	return []string{"--source", "nats", "--nats-url", s.url, "--redis-url", s.redisURL}
}
