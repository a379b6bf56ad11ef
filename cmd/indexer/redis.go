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
	"github.com/streamindex/indexer/internal/redact"
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
	layout       string
	queues       *queueOptions // set by addQueueFlags
}

func addRedisFlags(fs *flag.FlagSet) *redisOptions {
	o := &redisOptions{}
	fs.StringVar(&o.url, "redis-url", "redis://127.0.0.1:6379/0",
		"Redis `URL`: redis://[user:password@]host:port/db, or rediss:// for TLS (the server certificate is verified); "+
			"redis+cluster://[user:password@]host:port[,host:port…] (rediss+cluster://) for a Redis Cluster, with --layout cluster")
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
	fs.StringVar(&o.layout, "layout", index.LayoutGigAPI,
		"key `layout`: gigapi (GigAPI's own key names, which its readers need; one Redis shard) or cluster "+
			"(every key of a table's day under one hash tag, for Redis Cluster; GigAPI's readers cannot read it)")
	return o
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

// client returns a Redis client for the options: a cluster client for a
// redis+cluster:// URL. It does not connect.
func (o *redisOptions) client() (redis.UniversalClient, error) {
	if isClusterURL(o.url) {
		return o.clusterClient()
	}
	opt, err := redis.ParseURL(o.url)
	if err != nil {
		var ue *url.Error // its text holds the URL as given, password and all
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, usagef("--redis-url %s: %v", redact.URL(o.url), err)
	}
	if err := o.secure(&opt.Password, opt.TLSConfig, "rediss://"); err != nil {
		return nil, err
	}
	opt.ClientName = "indexer"
	return redis.NewClient(opt), nil
}

// secure applies --redis-password-file to password and the TLS flags to
// tlsCfg (nil for a URL without TLS, whose scheme for TLS is tlsScheme).
func (o *redisOptions) secure(password *string, tlsCfg *tls.Config, tlsScheme string) error {
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return fmt.Errorf("--redis-password-file: %w", err)
		}
		*password = strings.TrimRight(string(b), "\r\n")
	}
	if tlsCfg == nil && (o.caFile != "" || o.certFile != "" || o.insecure) {
		return usagef("TLS flags given but --redis-url is not %s", tlsScheme)
	}
	if tlsCfg != nil {
		return o.tls(tlsCfg)
	}
	return nil
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
func (o *redisOptions) connect(ctx context.Context) (redis.UniversalClient, error) {
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
// loaded, for commands that write the index. Errors say how to fix the
// problem.
func (o *redisOptions) openIndex(ctx context.Context, cfg index.Config) (*index.Index, redis.UniversalClient, error) {
	return o.indexWith(ctx, cfg, true)
}

// readIndex is openIndex for commands that only read the index: they run
// no script, so it loads none (a read-only Redis user needs no SCRIPT
// LOAD).
func (o *redisOptions) readIndex(ctx context.Context) (*index.Index, redis.UniversalClient, error) {
	return o.indexWith(ctx, index.Config{}, false)
}

func (o *redisOptions) indexWith(ctx context.Context, cfg index.Config, load bool) (*index.Index, redis.UniversalClient, error) {
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
	c, err := o.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg.Layout = &layout
	x, err := index.New(c, cfg)
	if err == nil && load {
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
	if isClusterURL(u) {
		_, rest, _ := strings.Cut(u, "://")
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			rest = rest[at+1:]
		}
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			rest = rest[:i]
		}
		return rest
	}
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
