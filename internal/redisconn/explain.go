package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// where names the target in messages, without credentials.
func (c *Conn) where() string {
	t := c.target
	switch t.Kind {
	case Sentinel:
		return fmt.Sprintf("Redis master %q (sentinels %s)", t.MasterName, strings.Join(t.Addrs, ","))
	case Cluster:
		return "Redis Cluster at " + strings.Join(t.Addrs, ",")
	}
	return "Redis at " + t.Addrs[0]
}

// Explain turns a failure to reach or use Redis into one line that says
// what is wrong and how to fix it: refused connections, TLS mismatches
// (a TLS port spoken to in plain text, a client certificate missing, an
// untrusted server certificate), refused credentials and permissions,
// unknown Sentinel master names, a cluster node reached as a standalone
// server. Other errors are returned with the target named. The result
// wraps err and contains no password.
func (c *Conn) Explain(err error) error {
	if err == nil {
		return nil
	}
	where := c.where()
	if c.target.Kind == Sentinel && strings.Contains(err.Error(), "sentinels") {
		return c.explainSentinel(err)
	}
	var (
		certErr   *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		opErr     *net.OpError
		dnsErr    *net.DNSError
		netErr    net.Error
	)
	switch {
	case errors.Is(err, ErrNotReplicated):
		return err
	case errors.As(err, &certErr):
		return fmt.Errorf("%s: the server's TLS certificate is not trusted (%w): pass its CA with --redis-ca", where, err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("%s does not speak TLS on this port (%w): use redis:// instead of rediss://, or the server's tls-port", where, err)
	case errors.As(err, &opErr) && opErr.Op == "remote error" && c.target.TLS:
		if c.hasCert {
			return fmt.Errorf("%s refused the TLS handshake (%w): check that --redis-cert is signed by a CA the server trusts (its tls-ca-cert-file) and matches --redis-key", where, err)
		}
		return fmt.Errorf("%s refused the TLS handshake (%w): the server requires a client certificate; pass --redis-cert and --redis-key", where, err)
	case !c.target.TLS && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
		return fmt.Errorf("%s closed the connection without a reply (%w): if the server speaks TLS on this port, use rediss:// (and --redis-ca for a private CA)", where, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach %s: connection refused; start redis-server or point --redis-url (INDEXER_REDIS_URL) at it", where)
	case redis.HasErrorPrefix(err, "NOAUTH"), redis.HasErrorPrefix(err, "WRONGPASS"):
		return fmt.Errorf("%s refused the credentials (%w): set the user and password in --redis-url or --redis-password-file", where, err)
	case redis.HasErrorPrefix(err, "NOPERM"), strings.Contains(err.Error(), "can't run this command"):
		return fmt.Errorf("%s: the user lacks a permission (%w): grant the ACL in README 'Redis permissions'", where, err)
	case redis.HasErrorPrefix(err, "MOVED"), redis.HasErrorPrefix(err, "ASK"), redis.HasErrorPrefix(err, "CROSSSLOT"),
		redis.HasErrorPrefix(err, "CLUSTERDOWN"):
		return fmt.Errorf("%s is a Redis Cluster node (%w): reach the cluster with redis+cluster://host:port[,host:port…]", where, err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot reach %s: host %q not found; check the host in --redis-url", where, dnsErr.Name)
	case errors.As(err, &netErr) && netErr.Timeout() && c.target.TLS:
		return fmt.Errorf("%s did not answer in time (%w): if the port serves plain text (the server then never answers the TLS handshake), use redis:// instead of rediss://; else check the address, firewalls, and that the server is not hung", where, err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("%s did not answer in time (%w): check the address in --redis-url, firewalls, and that the server is not hung", where, err)
	case errors.As(err, &opErr):
		return fmt.Errorf("cannot reach %s (%w): check --redis-url (INDEXER_REDIS_URL) and the network", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// explainSentinel explains a failure to find the master through the
// sentinels (go-redis: "all sentinels specified in configuration are
// unreachable", joining each sentinel's error).
func (c *Conn) explainSentinel(err error) error {
	t := c.target
	where := fmt.Sprintf("the sentinels %s", strings.Join(t.Addrs, ","))
	switch {
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("%s know no master named %q: check the master name in --redis-url (redis+sentinel://hosts/<master-name>/<db>) against their 'sentinel monitor' lines", where, t.MasterName)
	case redis.HasErrorPrefix(err, "NOAUTH"), redis.HasErrorPrefix(err, "WRONGPASS"), redis.HasErrorPrefix(err, "ERR AUTH"):
		return fmt.Errorf("%s refused the credentials (%w): give the sentinels' own password with sentinel_password= in --redis-url or --redis-sentinel-password-file (the user:password before the hosts is the master's)", where, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach %s: connection refused; check the sentinel hosts and ports in --redis-url (default port %s)", where, DefaultSentinelPort)
	}
	return fmt.Errorf("cannot ask %s for master %q (%w): check --redis-url and the network", where, t.MasterName, err)
}
