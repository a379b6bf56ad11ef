package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/redact"
	"github.com/streamindex/indexer/internal/redisconn"
)

// redisOptions are the flags of every command that talks to Redis. The
// connection itself (URL schemes, TLS, explained errors) is
// internal/redisconn's.
type redisOptions struct {
	url                  string
	passwordFile         string
	sentinelPasswordFile string
	caFile               string
	certFile             string
	keyFile              string
	insecure             bool
	prefix               string
	layout               string
	queues               *queueOptions  // set by addQueueFlags
	wait                 redisconn.Wait // set by addWaitFlags
	// log receives the connection's topology changes (a Sentinel master
	// moving); default warnings to stderr.
	log *slog.Logger
}

func addRedisFlags(fs *flag.FlagSet) *redisOptions {
	o := &redisOptions{}
	fs.StringVar(&o.url, "redis-url", "redis://127.0.0.1:6379/0",
		"Redis `URL`: redis://[user:password@]host:port/db; rediss:// for TLS (the server certificate is verified); "+
			"redis+sentinel://[user:password@]host:port[,host:port…]/<master-name>[/<db>] to find the master through Sentinel and follow failovers "+
			"(user:password are the master's; the sentinels' own: ?sentinel_password=…); rediss+sentinel:// for TLS to both; "+
			"redis+cluster://[user:password@]host:port[,host:port…] (rediss+cluster://) for a Redis Cluster, with --layout cluster")
	fs.StringVar(&o.passwordFile, "redis-password-file", "",
		"read the Redis password from this `file` (overrides one in the URL; keeps it out of ps and env)")
	fs.StringVar(&o.sentinelPasswordFile, "redis-sentinel-password-file", "",
		"read the sentinels' own password from this `file` (redis+sentinel://; overrides sentinel_password in the URL)")
	fs.StringVar(&o.caFile, "redis-ca", "", "PEM `file` of CA certificates to verify the Redis server with (rediss://); default the system pool")
	fs.StringVar(&o.certFile, "redis-cert", "", "PEM client certificate `file` for Redis TLS client authentication")
	fs.StringVar(&o.keyFile, "redis-key", "", "PEM client key `file` for --redis-cert")
	fs.BoolVar(&o.insecure, "redis-insecure-skip-verify", false,
		"do not verify the Redis server's TLS certificate (unsafe: only for testing)")
	return o
}

// addIndexFlags adds the Redis flags of commands that read or write the
// index.
func addIndexFlags(fs *flag.FlagSet) *redisOptions {
	o := addRedisFlags(fs)
	fs.StringVar(&o.prefix, "key-prefix", index.DefaultPrefix,
		"`prefix` of indexer's own Redis keys (tombstones, statistics, registry); GigAPI's files:/folders: keys keep their names")
	fs.StringVar(&o.layout, "layout", index.LayoutGigAPI,
		"key `layout`: gigapi (GigAPI's own key names, which its readers need; one Redis shard) or cluster "+
			"(every key of a table's day under one hash tag, for Redis Cluster; GigAPI's readers cannot read it)")
	return o
}

// addWaitFlags adds --redis-wait-replicas and --redis-wait-timeout to a
// command that writes the index or the stream.
func addWaitFlags(fs *flag.FlagSet, o *redisOptions, what string) {
	fs.IntVar(&o.wait.Replicas, "redis-wait-replicas", 0,
		"confirm "+what+" with WAIT on this many Redis `replicas` before treating it as done (acknowledging it), "+
			"so that a failover cannot lose it; fewer within --redis-wait-timeout is retried (0: do not wait; see README 'Redis: standalone, Sentinel, TLS')")
	fs.DurationVar(&o.wait.Timeout, "redis-wait-timeout", time.Second, "how long one WAIT for --redis-wait-replicas may take")
}

// goRedisLogger sends go-redis's own messages (dial retries) to slog at
// debug level: the command's errors already say what matters, in one line.
type goRedisLogger struct{}

func (goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// redactURL returns u with its credentials masked, for messages and logs
// (also when u does not parse).
func redactURL(u string) string { return redact.URL(u) }

// client returns a Redis client for the options. It does not connect.
func (o *redisOptions) client() (*redisconn.Conn, error) {
	if o.wait.Replicas < 0 || o.wait.Enabled() && o.wait.Timeout <= 0 {
		return nil, usagef("--redis-wait-replicas must not be negative, and --redis-wait-timeout must be positive")
	}
	log := o.log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ro := redisconn.Options{URL: o.url, PasswordFile: o.passwordFile, SentinelPasswordFile: o.sentinelPasswordFile,
		CAFile: o.caFile, CertFile: o.certFile, KeyFile: o.keyFile, InsecureSkipVerify: o.insecure, Logger: log}
	if o.wait.Enabled() {
		ro.ReadTimeout = o.wait.ReadTimeout()
	}
	c, err := redisconn.New(ro)
	if errors.Is(err, redisconn.ErrInvalid) {
		return nil, usagef("--redis-url %v", strings.TrimPrefix(err.Error(), redisconn.ErrInvalid.Error()+": "))
	}
	if err != nil {
		return nil, err
	}
	if o.wait.Enabled() && c.Target().Kind == redisconn.Cluster {
		c.Close()
		return nil, usagef("--redis-wait-replicas is not supported with redis+cluster:// (WAIT must follow the writes on their shard's connection)")
	}
	return c, nil
}

// validate checks the Redis flags (the URL, TLS and password files, the
// WAIT flags) without connecting, so that a command can refuse them
// before it starts anything.
func (o *redisOptions) validate() error {
	c, err := o.client()
	if err != nil {
		return err
	}
	return c.Close()
}

// connect returns a client that answered PING. Errors say how to fix the
// problem.
func (o *redisOptions) connect(ctx context.Context) (*redisconn.Conn, error) {
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// openIndex connects to Redis and returns the index with its scripts
// loaded, for commands that write the index. With the gigapi layout it
// refuses a Redis Cluster, which the layout cannot use (redis+cluster://
// at once, a server that says it is a cluster node once connected).
// Errors say how to fix the problem.
func (o *redisOptions) openIndex(ctx context.Context, cfg index.Config) (*index.Index, *redisconn.Conn, error) {
	return o.indexWith(ctx, cfg, true)
}

// readIndex is openIndex for commands that only read the index: they run
// no script, so it loads none (a read-only Redis user needs no SCRIPT
// LOAD).
func (o *redisOptions) readIndex(ctx context.Context) (*index.Index, *redisconn.Conn, error) {
	return o.indexWith(ctx, index.Config{}, false)
}

func (o *redisOptions) indexWith(ctx context.Context, cfg index.Config, load bool) (*index.Index, *redisconn.Conn, error) {
	if o.queues != nil {
		var err error
		if cfg.Queues, err = o.queues.config(); err != nil {
			return nil, nil, err
		}
	}
	layout, err := index.ParseLayout(o.layout, o.prefix)
	if err != nil {
		return nil, nil, usagef("--layout/--key-prefix: %v", err)
	}
	if err := o.checkClusterLayout(layout); err != nil {
		return nil, nil, err
	}
	c, err := o.client()
	if err != nil {
		return nil, nil, err
	}
	if !layout.Cluster() {
		// A redis:// URL can still reach a cluster node.
		if err := c.RequireSingleShard(ctx); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	cfg.Layout = &layout
	cfg.Wait = o.wait
	x, err := index.New(c.Client, cfg)
	if err == nil && load {
		err = x.Load(ctx)
	}
	if err != nil {
		c.Close()
		return nil, nil, c.Explain(err)
	}
	return x, c, nil
}

// decoderOptions are the flags that shape event validation.
type decoderOptions struct {
	layers   string
	maxBytes int
}

func addDecoderFlags(fs *flag.FlagSet) *decoderOptions {
	o := &decoderOptions{}
	fs.StringVar(&o.layers, "layers", "default", layersUsage)
	intVar(fs, &o.maxBytes, "max-message-bytes", event.DefaultMaxMessageBytes, 1, "largest event message accepted, in `bytes`")
	return o
}

// decoder returns the decoder of events applied to an index of the named
// layout (the cluster layout refuses files.replaced events over several
// dates at once).
func (o *decoderOptions) decoder(layout string) (*event.Decoder, error) {
	cfg, err := o.rules(layout)
	if err != nil {
		return nil, err
	}
	d, err := event.NewDecoder(cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return d, nil
}

// rules is the event.Config of the flags, for an index of the named
// layout.
func (o *decoderOptions) rules(layout string) (event.Config, error) {
	cfg := event.Config{MaxMessageBytes: o.maxBytes, SingleDate: layout == index.LayoutCluster}
	if o.layers != "*" {
		for _, l := range strings.Split(o.layers, ",") {
			if l = layerName(l); l != "" {
				cfg.Layers = append(cfg.Layers, l)
			}
		}
		if len(cfg.Layers) == 0 {
			return cfg, usagef("--layers is empty: name the layers, or \"*\" for any")
		}
	}
	return cfg, nil
}
