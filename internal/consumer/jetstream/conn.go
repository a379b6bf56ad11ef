package jetstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	neturl "net/url"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/streamindex/indexer/internal/redact"
)

// ConnConfig says how to reach NATS. The zero value connects to
// nats://127.0.0.1:4222 without authentication.
//
// The option names in error messages (--nats-url, --nats-creds, …) are
// those of the indexer command line.
type ConnConfig struct {
	// URL is the server URL, or a comma-separated list of a cluster's
	// URLs: nats://host:4222, or tls://host:4222 for TLS with certificate
	// verification. user:password@ or token@ may be given in the URL.
	// Default nats://127.0.0.1:4222.
	URL string
	// CredsFile is a JWT user credentials file (--nats-creds). Default none.
	CredsFile string
	// NKeyFile is an nkey user seed file (--nats-nkey). Default none.
	NKeyFile string
	// CAFile is a PEM file of the certificate authorities that sign the
	// server's certificate (--nats-ca). Default: the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, for
	// servers that require mutual TLS (--nats-cert, --nats-key). Both or
	// neither. Default none.
	CertFile, KeyFile string
	// Token is an authentication token (--nats-token). Default none.
	Token string
	// Name is the client name the server shows for this connection.
	// Default "indexer".
	Name string
	// InsecureSkipVerify accepts any server certificate. Unsafe: anyone
	// on the path can read and change the stream. Default false.
	InsecureSkipVerify bool
	// Logger receives connection events (disconnected, reconnected,
	// closed, asynchronous errors). URLs are logged without credentials.
	// Default slog.Default().
	Logger *slog.Logger
}

// Dial connects to NATS. Once connected, the connection reconnects on its
// own, forever, with capped exponential backoff and jitter, and logs each
// disconnect and reconnect; while it is disconnected, publishes are
// buffered (up to 8 MiB) and Source.Fetch fails with an error that the
// loop retries. A failure to connect at all is returned, with what to fix.
// The caller closes the connection (Drain or Close).
func Dial(cfg ConnConfig) (*nats.Conn, error) {
	if cfg.URL == "" {
		cfg.URL = nats.DefaultURL
	}
	if cfg.Name == "" {
		cfg.Name = "indexer"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	safeURL := RedactURL(cfg.URL)
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("nats: --nats-cert and --nats-key go together: give both or neither")
	}

	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.Timeout(5 * time.Second),
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() || nc.IsDraining() || err == nil {
				return // our own Close or Drain, not an outage
			}
			log.Warn("nats: disconnected; reconnecting", "url", safeURL, "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats: reconnected", "url", RedactURL(nc.ConnectedUrl()))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Warn("nats: connection closed", "err", err)
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("nats: asynchronous error", "subject", sub.Subject, "err", err)
				return
			}
			log.Error("nats: asynchronous error", "err", err)
		}),
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed file %s (--nats-nkey): %w", cfg.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if cfg.CAFile != "" || cfg.CertFile != "" || cfg.InsecureSkipVerify {
		// Secure first: RootCAs and ClientCert add to its tls.Config.
		opts = append(opts, nats.Secure(&tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // explicit, documented as unsafe
		}))
		if cfg.InsecureSkipVerify {
			log.Warn("nats: TLS certificate verification is off (InsecureSkipVerify): the connection is not protected against interception")
		}
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}

	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, explainDialError(safeURL, err)
	}
	log.Info("nats: connected", "url", RedactURL(nc.ConnectedUrl()), "server", nc.ConnectedServerName())
	return nc, nil
}

// reconnectDelay backs off from 100 ms to 5 s, with ±20% jitter so a
// fleet of workers does not reconnect in lockstep.
func reconnectDelay(attempts int) time.Duration {
	d := 100 * time.Millisecond << min(max(attempts-1, 0), 6)
	d = min(d, 5*time.Second)
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}

// explainDialError turns a connect failure into one line that says what
// to fix, keeping the original error wrapped.
func explainDialError(url string, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	var urlErr *neturl.Error
	switch {
	case errors.As(err, &urlErr):
		// Its text holds the URL as given, password and all.
		return fmt.Errorf("nats: --nats-url %s: %s: %v: correct the URL (escape special characters of a password as %%XX)", url, urlErr.Op, urlErr.Err)
	case errors.Is(err, nats.ErrAuthorization):
		return fmt.Errorf("nats: %s refused our credentials (%w): check the user:password or token in --nats-url, --nats-token, --nats-creds or --nats-nkey", url, err)
	case errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("nats: %s: %w: renew the credentials file (--nats-creds)", url, err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("nats: %s: the server's TLS certificate is signed by an authority we do not trust (%w): pass its CA certificate with --nats-ca", url, err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("nats: %s: the server's TLS certificate is not valid for this host name (%w): connect with a name the certificate lists", url, err)
	case errors.As(err, &certErr), errors.As(err, &verifyErr):
		return fmt.Errorf("nats: %s: the server's TLS certificate is not valid (%w): check it, or pass the right CA with --nats-ca", url, err)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("nats: %s does not offer TLS (%w): use a nats:// URL, or enable TLS on the server", url, err)
	case errors.Is(err, nats.ErrSecureConnRequired):
		return fmt.Errorf("nats: %s requires TLS (%w): use a tls:// URL (with --nats-ca if its certificate is self-signed)", url, err)
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("nats: no server reachable at %s (%w): is nats-server running there? check --nats-url", url, err)
	}
	return fmt.Errorf("nats: connect to %s: %w", url, err)
}

// RedactURL returns url (or a comma-separated list of URLs) with any
// password or token replaced by "REDACTED", for logs and errors; see
// redact.URL.
func RedactURL(raw string) string { return redact.URL(raw) }
