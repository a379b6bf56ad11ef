package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/natsserver"
)

// Source names.
const (
	sourceRedis = "redis"
	sourceNATS  = "nats"
)

// streamOptions name the stream and group of either source.
type streamOptions struct {
	source     string
	stream     string
	group      string
	deadLetter string
}

// addStreamFlags adds --source and --stream, and with consumers also
// --group and --dead-letter-stream.
func addStreamFlags(fs *flag.FlagSet, consumers bool) *streamOptions {
	o := &streamOptions{group: "indexer"}
	fs.StringVar(&o.source, "source", sourceRedis, "event `transport`: redis (Redis Streams) or nats (NATS JetStream)")
	fs.StringVar(&o.stream, "stream", "", "stream `name`; default idx:events (redis) or IDX_EVENTS (nats)")
	if consumers {
		fs.StringVar(&o.group, "group", "indexer", "consumer group (redis) or durable consumer (nats) `name` shared by all workers")
		fs.StringVar(&o.deadLetter, "dead-letter-stream", "", "dead-letter stream `name`; default <stream>:dlq (redis) or IDX_DLQ on subjects idx.dlq.> (nats)")
	}
	return o
}

func (o *streamOptions) validate() error {
	switch o.source {
	case sourceRedis:
		if o.stream == "" {
			o.stream = "idx:events"
		}
		if o.deadLetter == "" {
			o.deadLetter = o.stream + ":dlq"
		}
	case sourceNATS:
		if o.stream == "" {
			o.stream = "IDX_EVENTS"
		}
		if o.deadLetter == "" {
			o.deadLetter = "IDX_DLQ"
		}
	default:
		return usagef("--source %q: use redis or nats", o.source)
	}
	if o.group == "" {
		return usagef("--group is empty")
	}
	return nil
}

// natsOptions are the flags of commands that talk to NATS.
type natsOptions struct {
	url, creds, nkey, token, ca, cert, key string
	insecure                               bool
	embeddedDir, embeddedListen            string
}

func addNATSFlags(fs *flag.FlagSet, embedded bool) *natsOptions {
	o := &natsOptions{}
	fs.StringVar(&o.url, "nats-url", "nats://127.0.0.1:4222",
		"NATS `URL`: nats://[user:password@]host:port, or tls:// (the server certificate is verified); comma-separate several servers")
	fs.StringVar(&o.creds, "nats-creds", "", "NATS credentials `file` (JWT and NKey seed)")
	fs.StringVar(&o.nkey, "nats-nkey", "", "NATS NKey seed `file`")
	fs.StringVar(&o.token, "nats-token", "", "NATS authentication `token` (prefer INDEXER_NATS_TOKEN to keep it out of ps)")
	fs.StringVar(&o.ca, "nats-ca", "", "PEM `file` of CA certificates to verify the NATS server with; default the system pool")
	fs.StringVar(&o.cert, "nats-cert", "", "PEM client certificate `file` for NATS TLS client authentication")
	fs.StringVar(&o.key, "nats-key", "", "PEM client key `file` for --nats-cert")
	fs.BoolVar(&o.insecure, "nats-insecure-skip-verify", false, "do not verify the NATS server's TLS certificate (unsafe: only for testing)")
	if embedded {
		fs.StringVar(&o.embeddedDir, "embedded-nats", "",
			"run a NATS server with JetStream in this process, storing streams in `dir`; the worker connects to it and creates its stream and consumer if missing")
		fs.StringVar(&o.embeddedListen, "embedded-nats-listen", "127.0.0.1:4222", "`address` the embedded NATS server listens on, so writers can publish to it")
	}
	return o
}

// connectNATS starts the embedded server if asked, then connects. The
// returned close function closes the connection and then the server.
func (o *natsOptions) connect(log *slog.Logger, name string) (*nats.Conn, natsjs.JetStream, func(), error) {
	url := o.url
	var srv *natsserver.Server
	if o.embeddedDir != "" {
		var err error
		srv, err = natsserver.Start(natsserver.Config{Dir: o.embeddedDir, Listen: o.embeddedListen, Logger: log})
		if err != nil {
			return nil, nil, nil, err
		}
		url = srv.ClientURL()
		log.Info("embedded NATS server started", "listen", url, "dir", o.embeddedDir)
	}
	nc, err := jetstream.Dial(jetstream.ConnConfig{URL: url, CredsFile: o.creds, NKeyFile: o.nkey, Token: o.token,
		CAFile: o.ca, CertFile: o.cert, KeyFile: o.key, InsecureSkipVerify: o.insecure, Name: name, Logger: log})
	if err != nil {
		if srv != nil {
			srv.Shutdown()
		}
		return nil, nil, nil, err
	}
	js, err := natsjs.New(nc)
	if err != nil {
		nc.Close()
		if srv != nil {
			srv.Shutdown()
		}
		return nil, nil, nil, err
	}
	closeAll := func() {
		nc.Drain()
		waitClosed(nc, 5*time.Second)
		if srv != nil {
			srv.Shutdown()
			log.Info("embedded NATS server stopped")
		}
	}
	return nc, js, closeAll, nil
}

func waitClosed(nc *nats.Conn, d time.Duration) {
	deadline := time.Now().Add(d)
	for !nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	nc.Close()
}

// logOptions shape the logs.
type logOptions struct{ format, level string }

func addLogFlags(fs *flag.FlagSet) *logOptions {
	o := &logOptions{}
	fs.StringVar(&o.format, "log-format", "auto", "log `format`: text, json, or auto (text on a terminal, JSON otherwise)")
	fs.StringVar(&o.level, "log-level", "info", "log `level`: debug, info, warn or error")
	return o
}

func (o *logOptions) logger(a *app) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.level)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", o.level)
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationStrings}
	var w io.Writer = a.stderr
	switch o.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "auto":
		if a.stderrTTY {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: use text, json or auto", o.format)
}

// durationStrings logs durations as Go duration strings ("1m30s"), not as
// JSON's integer nanoseconds.
func durationStrings(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// defaultConsumerName is hostname-pid, unique per process.
func defaultConsumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "indexer"
	}
	host = strings.NewReplacer(" ", "_", ":", "_").Replace(host)
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
