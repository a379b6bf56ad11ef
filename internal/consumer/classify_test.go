package consumer_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/redisconn"
	"github.com/streamindex/indexer/internal/testserver"
)

// TestClassifyRealErrors classifies errors a real redis-server returns.
func TestClassifyRealErrors(t *testing.T) {
	ctx := context.Background()
	srv := testserver.Redis(t)
	c := srv.Client(t)

	x, err := index.New(c, index.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Load(ctx); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, "folders:db:t", "not a hash", 0)
	_, wrongType := x.Apply(ctx, []event.Event{{ID: "a", Type: event.FileCreated, Time: 1, Database: "db", Table: "t",
		File: event.File{Layer: "default", Path: "date=2024-01-15/hour=01/a.1.parquet"}}})

	noGroup := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"s", ">"}, Block: time.Millisecond}).Err()

	c.Do(ctx, "ACL", "SETUSER", "weak", "on", ">pw", "~*", "+ping")
	weak := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "weak", Password: "pw"})
	defer weak.Close()
	noPerm := weak.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []string{"a", "b"}}).Err()
	// A user allowed to run scripts but not the commands they call: Redis
	// 7.0 says "ERR The user executing the script can't run this
	// command", later versions NOPERM.
	c.Do(ctx, "ACL", "SETUSER", "scripts", "on", ">pw", "~*", "+ping", "+evalsha", "+eval", "+script|load")
	scripts := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "scripts", Password: "pw"})
	defer scripts.Close()
	sx, err := index.New(scripts, index.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sx.Load(ctx); err != nil {
		t.Fatal(err)
	}
	_, scriptNoPerm := sx.Apply(ctx, []event.Event{{ID: "b", Type: event.FileCreated, Time: 1, Database: "db", Table: "u",
		File: event.File{Layer: "default", Path: "date=2024-01-15/hour=01/b.1.parquet"}}})
	wrongPass := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "weak", Password: "nope", MaxRetries: -1})
	defer wrongPass.Close()
	badAuth := wrongPass.Ping(ctx).Err()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	refused := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1}).Ping(ctx).Err()

	// A connection reset mid-call: a server that closes at once.
	ln, _ = net.Listen("tcp", "127.0.0.1:0")
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}()
	defer ln.Close()
	reset := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1}).Ping(ctx).Err()

	// A server that accepts and never answers: the read times out.
	mute, _ := net.Listen("tcp", "127.0.0.1:0")
	defer mute.Close()
	go func() {
		for {
			conn, err := mute.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	timeout := redis.NewClient(&redis.Options{Addr: mute.Addr().String(), MaxRetries: -1, ReadTimeout: 100 * time.Millisecond}).Ping(ctx).Err()

	for _, tc := range []struct {
		name string
		err  error
		want consumer.Class
	}{
		{"WRONGTYPE from patch_index", wrongType, consumer.Poison},
		{"NOGROUP", noGroup, consumer.Fatal},
		{"NOPERM", noPerm, consumer.Fatal},
		{"a command refused inside patch_index", scriptNoPerm, consumer.Fatal},
		{"WRONGPASS", badAuth, consumer.Fatal},
		{"connection refused", refused, consumer.Retry},
		{"connection reset", reset, consumer.Retry},
		{"timeout", timeout, consumer.Retry},
	} {
		if tc.err == nil {
			t.Errorf("%s: the server returned no error", tc.name)
			continue
		}
		if got := consumer.Classify(tc.err); got != tc.want {
			t.Errorf("%s (%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestClassifyReplies classifies error replies that are hard to provoke
// on demand (a loading or busy server, failovers) by their exact text.
func TestClassifyReplies(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want consumer.Class
	}{
		{redisError("LOADING Redis is loading the dataset in memory"), consumer.Retry},
		{redisError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), consumer.Retry},
		{redisError("TRYAGAIN Multiple keys request during rehashing of slot"), consumer.Retry},
		{redisError("MOVED 3999 127.0.0.1:6381"), consumer.Retry},
		{redisError("ASK 3999 127.0.0.1:6381"), consumer.Retry},
		{redisError("MASTERDOWN Link with MASTER is down"), consumer.Retry},
		{redisError("READONLY You can't write against a read only replica."), consumer.Retry},
		{redisError("READONLY You can't write against a read only replica. script: 3d0a, on @user_script:12."), consumer.Retry},
		{fmt.Errorf("patch_index: %w", &redisconn.NotReplicatedError{Want: 1, Got: 0, Timeout: time.Second}), consumer.Retry},
		{redisError("OOM command not allowed when used memory > 'maxmemory'."), consumer.Retry},
		{redisError("CORRUPT patch_index: field x of folders:db:t is not a file count"), consumer.Poison},
		{redisError("ERR user_script:1: Script attempted to access nonexistent global variable"), consumer.Poison},
		{redisError("CROSSSLOT Keys in request don't hash to the same slot"), consumer.Fatal},
		{fmt.Errorf("wrapped: %w", redisError("BUSY x")), consumer.Retry},
		{&event.ValidationError{Field: "path", Reason: "bad"}, consumer.Poison},
		{fmt.Errorf("x: %w", consumer.ErrGroupMissing), consumer.Fatal},
		{fmt.Errorf("x: %w", consumer.ErrStreamMissing), consumer.Fatal},
		{fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), consumer.Fatal},
		{fmt.Errorf("dial: %w", x509.HostnameError{Host: "h"}), consumer.Fatal},
		{jetstream.ErrConsumerNotFound, consumer.Fatal},
		{jetstream.ErrStreamNotFound, consumer.Fatal},
		{nats.ErrAuthorization, consumer.Fatal},
		{nats.ErrTimeout, consumer.Retry},
		{nats.ErrConnectionClosed, consumer.Fatal},
		{jetstream.ErrConsumerDeleted, consumer.Fatal},
		{nats.ErrNoResponders, consumer.Retry},
		{context.DeadlineExceeded, consumer.Retry},
		{redis.Nil, consumer.Retry},
		{errors.New("something nobody expected"), consumer.Retry},
	} {
		if got := consumer.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
