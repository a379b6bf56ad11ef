package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
)

// redisOptions are the flags of every command that talks to Redis.
type redisOptions struct {
	url          string
	passwordFile string
	caFile       string
	certFile     string
	keyFile      string
	insecure     bool
	prefix       string
	queues       *queueOptions // set by addQueueFlags
}

func addRedisFlags(fs *flag.FlagSet) *redisOptions {
	o := &redisOptions{}
	fs.StringVar(&o.url, "redis-url", "redis://127.0.0.1:6379/0",
		"Redis `URL`: redis://[user:password@]host:port/db, or rediss:// for TLS (the server certificate is verified)")
	fs.StringVar(&o.passwordFile, "redis-password-file", "",
		"read the Redis password from this `file` (overrides one in the URL; keeps it out of ps and env)")
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
	return o
}

// goRedisLogger sends go-redis's own messages (dial retries) to slog at
// debug level: the command's errors already say what matters, in one line.
type goRedisLogger struct{}

func (goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// redactURL returns u with its password replaced, for messages and logs.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	return p.Redacted()
}

// client returns a Redis client for the options. It does not connect.
func (o *redisOptions) client() (*redis.Client, error) {
	opt, err := redis.ParseURL(o.url)
	if err != nil {
		return nil, usagef("--redis-url %s: %v", redactURL(o.url), err)
	}
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-password-file: %w", err)
		}
		opt.Password = strings.TrimRight(string(b), "\r\n")
	}
	if opt.TLSConfig == nil && (o.caFile != "" || o.certFile != "" || o.insecure) {
		return nil, usagef("TLS flags given but --redis-url is not rediss://")
	}
	if opt.TLSConfig != nil {
		if err := o.tls(opt.TLSConfig); err != nil {
			return nil, err
		}
	}
	opt.ClientName = "indexer"
	return redis.NewClient(opt), nil
}

func (o *redisOptions) tls(cfg *tls.Config) error {
	cfg.MinVersion = tls.VersionTLS12
	cfg.InsecureSkipVerify = o.insecure
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return fmt.Errorf("--redis-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--redis-ca %s: no PEM certificate found", o.caFile)
		}
		cfg.RootCAs = pool
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return usagef("--redis-cert and --redis-key go together")
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return fmt.Errorf("--redis-cert/--redis-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// connect returns a client that answered PING. Errors say how to fix the
// problem.
func (o *redisOptions) connect(ctx context.Context) (*redis.Client, error) {
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, o.explain(err)
	}
	return c, nil
}

// openIndex connects to Redis and returns the index with its scripts
// loaded. Errors say how to fix the problem.
func (o *redisOptions) openIndex(ctx context.Context, cfg index.Config) (*index.Index, *redis.Client, error) {
	if o.queues != nil {
		var err error
		if cfg.Queues, err = o.queues.config(); err != nil {
			return nil, nil, err
		}
	}
	c, err := o.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	layout, err := index.NewLayout(o.prefix)
	if err != nil {
		c.Close()
		return nil, nil, usagef("--key-prefix: %v", err)
	}
	cfg.Layout = &layout
	x, err := index.New(c, cfg)
	if err == nil {
		err = x.Load(ctx)
	}
	if err != nil {
		c.Close()
		return nil, nil, o.explain(err)
	}
	return x, c, nil
}

// explain turns a Redis connection error into one line that says what to
// do, without the password. The result still wraps err, so
// consumer.Classify tells an outage from a refusal.
func (o *redisOptions) explain(err error) error {
	where := "Redis at " + redisHost(o.url)
	var certErr *tls.CertificateVerificationError
	var opErr *net.OpError
	switch {
	case errors.As(err, &certErr):
		return explained(err, "%s: TLS certificate not trusted (%v): pass its CA with --redis-ca", where, certErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return explained(err, "cannot reach %s: connection refused; start redis-server or point --redis-url (INDEXER_REDIS_URL) at it", where)
	case redis.HasErrorPrefix(err, "NOAUTH"), redis.HasErrorPrefix(err, "WRONGPASS"):
		return explained(err, "%s refused the credentials (%v): set the user and password in --redis-url or --redis-password-file", where, err)
	case redis.HasErrorPrefix(err, "NOPERM"):
		return explained(err, "%s: the user lacks a permission (%v): grant the ACL in README 'Redis permissions'", where, err)
	case errors.As(err, &opErr):
		return explained(err, "cannot reach %s: %v; check --redis-url (INDEXER_REDIS_URL) and the network", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// explainedError is a message that says what to do, wrapping its cause.
type explainedError struct {
	msg   string
	cause error
}

func (e *explainedError) Error() string { return e.msg }
func (e *explainedError) Unwrap() error { return e.cause }

func explained(cause error, format string, args ...any) error {
	return &explainedError{msg: fmt.Sprintf(format, args...), cause: cause}
}

func redisHost(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return "(see --redis-url)"
}

// decoderOptions are the flags that shape event validation.
type decoderOptions struct {
	layers   string
	maxBytes int
}

func addDecoderFlags(fs *flag.FlagSet) *decoderOptions {
	o := &decoderOptions{}
	fs.StringVar(&o.layers, "layers", "default", layersUsage)
	fs.IntVar(&o.maxBytes, "max-message-bytes", event.DefaultMaxMessageBytes, "largest event message accepted, in `bytes`")
	return o
}

func (o *decoderOptions) decoder() (*event.Decoder, error) {
	cfg := event.Config{MaxMessageBytes: o.maxBytes}
	if o.layers != "*" {
		for _, l := range strings.Split(o.layers, ",") {
			if l = layerName(l); l != "" {
				cfg.Layers = append(cfg.Layers, l)
			}
		}
		if len(cfg.Layers) == 0 {
			return nil, usagef("--layers is empty: name the layers, or \"*\" for any")
		}
	}
	d, err := event.NewDecoder(cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return d, nil
}
