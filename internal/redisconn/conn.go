// Package redisconn opens Redis clients from URLs, the one place indexer
// turns a Redis URL, a password file and TLS flags into a client.
//
// A URL names a standalone server (redis://, rediss://), a master found
// through Redis Sentinel (redis+sentinel://, rediss+sentinel://) or a
// Redis Cluster (redis+cluster://, rediss+cluster://); see Parse. New
// returns a Client wrapping go-redis's client for that deployment — its
// failover client for Sentinel, which asks the sentinels for the master on
// every new connection and drops the connections to a demoted one, so no
// failover logic is written here. TLS verifies the server by default.
//
// Explain turns a connection failure into one line that names the likely
// cause and the fix; Wait confirms writes with WAIT. No error or log line
// of this package contains a password: URLs are shown only as Redact
// renders them, even when they do not parse. Hints in messages name
// indexer's flags (--redis-url, --redis-ca, …).
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure New. Only URL is required.
type Options struct {
	// URL is the Redis URL (see Parse).
	URL string
	// PasswordFile, when set, holds the servers' password; it overrides
	// the URL's. A trailing newline is ignored. Default: none.
	PasswordFile string
	// SentinelPasswordFile, when set, holds the sentinels' password; it
	// overrides the URL's sentinel_password. Default: none.
	SentinelPasswordFile string
	// CAFile is a PEM file of CA certificates to verify the servers with.
	// Default: the system pool.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that require client certificates (tls-auth-clients yes).
	// Default: none.
	CertFile, KeyFile string
	// InsecureSkipVerify turns certificate verification off (tests only).
	// Default false.
	InsecureSkipVerify bool
	// ClientName is set on every connection (CLIENT SETNAME), so CLIENT
	// LIST shows who is connected. Default "indexer".
	ClientName string
	// ReadTimeout bounds a reply's wait; a caller that runs WAIT for up to
	// T raises it above T. Default 5 s.
	ReadTimeout time.Duration
	// Logger receives topology changes (the Sentinel master moving) and
	// the hint when a server turns read-only. Default slog.Default().
	Logger *slog.Logger
}

// dialAttempts bounds the dials of one connection (go-redis's default is
// 5). The callers retry whole operations with their own backoff, and with
// Sentinel the dial of a master connection asks every sentinel, each with
// its own dials and command retries: 5 made an unreachable set of
// sentinels take over half a minute to report.
const dialAttempts = 2

// Conn is a go-redis client for the deployment a URL names, with what
// the package knows about it (to explain failures). It is safe for
// concurrent use; Close closes the client.
//
// Pass Client, not the Conn, to code that works on a Redis client: it is
// go-redis's own type (*redis.Client, also for Sentinel, or
// *redis.ClusterClient), so code that looks for a cluster client's
// methods (ForEachMaster, say) finds them.
type Conn struct {
	Client  redis.UniversalClient
	target  *Target
	hasCert bool
	log     *slog.Logger
}

// New returns a Conn for o. It does not connect: see Open. Errors in
// the URL or the options wrap ErrInvalid; a password file that cannot be
// read is reported as such.
func New(o Options) (*Conn, error) {
	t, err := Parse(o.URL)
	if err != nil {
		return nil, err
	}
	if o.PasswordFile != "" {
		if t.Password, err = readSecret(o.PasswordFile); err != nil {
			return nil, fmt.Errorf("--redis-password-file: %w", err)
		}
	}
	if o.SentinelPasswordFile != "" {
		if t.Kind != Sentinel {
			return nil, fmt.Errorf("%w: --redis-sentinel-password-file needs a redis+sentinel:// URL", ErrInvalid)
		}
		if t.SentinelPassword, err = readSecret(o.SentinelPasswordFile); err != nil {
			return nil, fmt.Errorf("--redis-sentinel-password-file: %w", err)
		}
	}
	var tc *tls.Config
	if t.TLS {
		if tc, err = tlsConfig(o); err != nil {
			return nil, err
		}
	} else if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.InsecureSkipVerify {
		return nil, fmt.Errorf("%w: TLS flags given but the Redis URL is not rediss:// (or rediss+sentinel://, rediss+cluster://)", ErrInvalid)
	}
	if o.ClientName == "" {
		o.ClientName = "indexer"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Conn{target: t, hasCert: o.CertFile != "", log: o.Logger}
	switch t.Kind {
	case Sentinel:
		fc := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: t.MasterName, SentinelAddrs: t.Addrs,
			SentinelUsername: t.SentinelUsername, SentinelPassword: t.SentinelPassword,
			Username: t.Username, Password: t.Password, DB: t.DB,
			TLSConfig: tc, ClientName: o.ClientName, ReadTimeout: o.ReadTimeout, DialerRetries: dialAttempts,
		})
		fc.AddHook(&masterWatch{log: o.Logger, name: t.MasterName})
		c.Client = fc
	case Cluster:
		c.Client = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: t.Addrs, Username: t.Username, Password: t.Password,
			TLSConfig: tc, ClientName: o.ClientName, ReadTimeout: o.ReadTimeout, DialerRetries: dialAttempts,
			// Slot migrations answer MOVED, ASK and TRYAGAIN for a while:
			// follow more redirects than the default 3 before an error
			// reaches the caller (which retries it anyway).
			MaxRedirects: 16,
		})
	default:
		rc := redis.NewClient(&redis.Options{
			Addr: t.Addrs[0], Username: t.Username, Password: t.Password, DB: t.DB,
			TLSConfig: tc, ClientName: o.ClientName, ReadTimeout: o.ReadTimeout, DialerRetries: dialAttempts,
		})
		rc.AddHook(&readOnlyHint{log: o.Logger, where: c.where()})
		c.Client = rc
	}
	return c, nil
}

// Open returns a Conn whose server answered PING. A failure is explained (see
// Explain).
func Open(ctx context.Context, o Options) (*Conn, error) {
	c, err := New(o)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Connect sends PING, connecting if need be; a failure is explained (see
// Explain).
func (c *Conn) Connect(ctx context.Context) error {
	return c.Explain(c.Client.Ping(ctx).Err())
}

// Close closes the client.
func (c *Conn) Close() error { return c.Client.Close() }

// Target returns the parsed URL (with the credentials in use).
func (c *Conn) Target() *Target { return c.target }

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func tlsConfig(o Options) (*tls.Config, error) {
	// ServerName stays empty: each dial takes it from the address, so one
	// config serves every sentinel and node.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--redis-ca %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("%w: --redis-cert and --redis-key go together", ErrInvalid)
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-cert/--redis-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Mode asks the server what it is ("standalone", "sentinel" or
// "cluster", from HELLO, which every user may run); "" if it cannot tell.
func (c *Conn) Mode(ctx context.Context) (string, error) {
	if c.target.Kind == Cluster {
		return "cluster", nil
	}
	v, err := c.Client.Do(ctx, "HELLO").Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "ERR unknown command") || redis.HasErrorPrefix(err, "NOPERM") {
			return "", nil // Redis < 6, or an ACL without HELLO: unknown
		}
		return "", err
	}
	switch v := v.(type) {
	case map[any]any: // RESP3
		s, _ := v["mode"].(string)
		return s, nil
	case []any: // RESP2: key, value, …
		for i := 0; i+1 < len(v); i += 2 {
			if k, _ := v[i].(string); k == "mode" {
				s, _ := v[i+1].(string)
				return s, nil
			}
		}
	}
	return "", nil
}

// RequireSingleShard returns an error, one line naming the alternative,
// if the URL or the server says Redis Cluster: the gigapi layout's key
// names (files:, folders:, merge:…) span hash slots, so one patch cannot
// be atomic on a cluster. It also refuses a sentinel reached as if it
// were a data server (a redis:// URL with a sentinel's port).
func (c *Conn) RequireSingleShard(ctx context.Context) error {
	mode, err := c.Mode(ctx)
	if err != nil {
		return c.Explain(err)
	}
	if mode == "sentinel" {
		return unsupportedf("%s is a Redis Sentinel, not a data server: use redis+sentinel://%s/<master-name> to reach the master it monitors",
			c.where(), strings.Join(c.target.Addrs, ","))
	}
	if mode != "cluster" {
		return nil
	}
	return unsupportedf("%s is a Redis Cluster: the gigapi layout's key names (files:, folders:, merge:, …) span hash slots, "+
		"so one atomic patch cannot cover them; use --layout cluster with redis+cluster://host:port[,host:port…] "+
		"(GigAPI's own readers need the gigapi layout), or a standalone or Sentinel-managed Redis", c.where())
}

// ErrUnsupported means the server is not a deployment the caller can
// use (a Redis Cluster node for the gigapi layout, a sentinel reached as
// a data server): configuration to fix, not an outage to wait out.
// errors.Is(err, ErrUnsupported) reports it.
var ErrUnsupported = errors.New("unsupported Redis deployment")

type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string        { return e.msg }
func (e *unsupportedError) Is(target error) bool { return target == ErrUnsupported }

func unsupportedf(format string, args ...any) error {
	return &unsupportedError{msg: fmt.Sprintf(format, args...)}
}
