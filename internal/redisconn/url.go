package redisconn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/streamindex/indexer/internal/redact"
)

// Kind is the deployment a URL names.
type Kind int

const (
	// Standalone is one Redis server: redis:// or rediss://.
	Standalone Kind = iota
	// Sentinel is a master found through Redis Sentinel:
	// redis+sentinel:// or rediss+sentinel://.
	Sentinel
	// Cluster is a Redis Cluster: redis+cluster:// or rediss+cluster://.
	Cluster
)

func (k Kind) String() string {
	switch k {
	case Sentinel:
		return "sentinel"
	case Cluster:
		return "cluster"
	}
	return "standalone"
}

// Default ports when a URL names a host without one.
const (
	DefaultPort         = "6379"
	DefaultSentinelPort = "26379"
)

// ErrInvalid marks an error in the configuration (a URL that cannot be
// parsed, flags that do not go together), as opposed to a failure to
// connect. Errors wrapping it never contain a password.
var ErrInvalid = errors.New("invalid Redis configuration")

// Target is a parsed Redis URL. It holds the credentials; render it with
// String, which hides them.
type Target struct {
	Kind Kind
	// TLS is set by the rediss schemes: every connection (to the servers
	// and, with Sentinel, to the sentinels) uses TLS.
	TLS bool
	// Addrs are host:port pairs: the server, the sentinels, or the
	// cluster's seed nodes.
	Addrs []string
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	// DB is the database number (always 0 on a cluster).
	DB int
	// Username and Password authenticate to the Redis servers (the master
	// and its replicas, or the cluster's nodes).
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (query parameters sentinel_username and sentinel_password).
	SentinelUsername, SentinelPassword string
}

var schemes = map[string]struct {
	kind Kind
	tls  bool
}{
	"redis":           {Standalone, false},
	"rediss":          {Standalone, true},
	"redis+sentinel":  {Sentinel, false},
	"rediss+sentinel": {Sentinel, true},
	"redis+cluster":   {Cluster, false},
	"rediss+cluster":  {Cluster, true},
}

// Schemes lists the URL forms Parse accepts, for messages.
const Schemes = "redis://, rediss://, redis+sentinel://, rediss+sentinel:// or redis+cluster://, rediss+cluster://"

// Parse reads a Redis URL:
//
//	redis://[user:password@]host[:port][/db]
//	rediss://…                                     the same over TLS
//	redis+sentinel://[user:password@]host[:port][,host[:port]…]/master-name[/db][?sentinel_username=U&sentinel_password=P]
//	rediss+sentinel://…                            the same over TLS (sentinels and servers)
//	redis+cluster://[user:password@]host[:port][,host[:port]…]
//	rediss+cluster://…                             the same over TLS
//
// The user and password authenticate to the Redis servers (with Sentinel:
// the master and its replicas, as with redis://); the sentinels' own
// credentials, when they require any, are the query parameters. User,
// password and master name are %-decoded. Ports default to 6379, and to
// 26379 for sentinels.
//
// Errors wrap ErrInvalid and show the URL only as Redact renders it: no
// error contains the password, even for a URL that does not parse.
func Parse(raw string) (*Target, error) {
	fail := func(format string, args ...any) (*Target, error) {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, redact.URL(raw), fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !redact.IsScheme(scheme) {
		return fail("not a URL; use %s", Schemes)
	}
	sc, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		return fail("unknown scheme %q; use %s", scheme, Schemes)
	}
	t := &Target{Kind: sc.kind, TLS: sc.tls}

	// The authority ends at the first '/', '?' or '#' after the userinfo
	// (whose '@' is the last one before them: an unescaped '/' in a
	// password would otherwise cut it).
	var userinfo string
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo, rest = rest[:at], rest[at+1:]
		if strings.ContainsAny(userinfo, "?#") {
			return fail("the user or password contains '?' or '#': write them as %%3F and %%23")
		}
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	hosts, rest := rest[:end], rest[end:]
	path, query := rest, ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		path, query = rest[:i], rest[i+1:]
	}
	if strings.Contains(path, "#") || strings.Contains(query, "#") {
		return fail("a URL fragment (#…) means nothing here; remove it")
	}

	if userinfo != "" {
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err1, err2 error
		t.Username, err1 = url.PathUnescape(user)
		if hasPass {
			t.Password, err2 = url.PathUnescape(pass)
		}
		if err1 != nil || err2 != nil {
			return fail("the user or password has an invalid %%-escape: write special characters as %%XX (%%40 for @, %%25 for %%)")
		}
	}

	defPort := DefaultPort
	if t.Kind == Sentinel {
		defPort = DefaultSentinelPort
	}
	for _, h := range strings.Split(hosts, ",") {
		addr, err := hostPort(h, defPort)
		if err != nil {
			return fail("%v", err)
		}
		t.Addrs = append(t.Addrs, addr)
	}
	if t.Kind == Standalone && len(t.Addrs) > 1 {
		return fail("several hosts: use redis+sentinel://…/<master-name> for Sentinel, or redis+cluster:// for a cluster")
	}

	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	switch t.Kind {
	case Sentinel:
		if len(segs) == 0 {
			return fail("no master name: write redis+sentinel://host:port[,host:port…]/<master-name>[/<db>]")
		}
		name, err := url.PathUnescape(segs[0])
		if err != nil || name == "" {
			return fail("master name %q is not valid", segs[0])
		}
		t.MasterName, segs = name, segs[1:]
	case Cluster:
		if len(segs) > 1 || len(segs) == 1 && segs[0] != "0" {
			return fail("a Redis Cluster has only database 0; remove the path")
		}
		segs = nil
	}
	switch len(segs) {
	case 0:
	case 1:
		db, err := strconv.Atoi(segs[0])
		if err != nil || db < 0 {
			return fail("database %q is not a number (0, 1, …)", segs[0])
		}
		t.DB = db
	default:
		return fail("path %q: expected /<db> (after the master name, with Sentinel)", path)
	}

	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return fail("the query (after '?') does not parse: write special characters as %%XX")
		}
		for k, v := range q {
			switch {
			case t.Kind == Sentinel && k == "sentinel_username":
				t.SentinelUsername = v[len(v)-1]
			case t.Kind == Sentinel && k == "sentinel_password":
				t.SentinelPassword = v[len(v)-1]
			case t.Kind == Sentinel:
				return fail("unknown query parameter %q; only sentinel_username and sentinel_password exist", k)
			default:
				return fail("unknown query parameter %q; %s URLs take none", k, t.Kind)
			}
		}
	}
	return t, nil
}

// hostPort validates one host[:port] and adds the default port.
func hostPort(h, defPort string) (string, error) {
	if h == "" {
		return "", errors.New("a host is missing (write host:port, comma-separated for several)")
	}
	host, port := h, defPort
	if strings.HasPrefix(h, "[") { // [IPv6]:port
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return "", fmt.Errorf("host %q: missing ']'", h)
		}
		host = h[1:i]
		if r := h[i+1:]; r != "" {
			if !strings.HasPrefix(r, ":") {
				return "", fmt.Errorf("host %q: expected :port after ']'", h)
			}
			port = r[1:]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if strings.Contains(host, ":") {
			return "", fmt.Errorf("host %q: write an IPv6 address in brackets, [::1]:6379", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("host %q has no name", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q: port %q is not a number from 1 to 65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// String renders the target as a URL without its passwords.
func (t *Target) String() string {
	var b strings.Builder
	switch t.Kind {
	case Sentinel:
		b.WriteString("redis+sentinel://")
	case Cluster:
		b.WriteString("redis+cluster://")
	default:
		b.WriteString("redis://")
	}
	if t.TLS {
		s := b.String()
		b.Reset()
		b.WriteString("rediss" + strings.TrimPrefix(s, "redis"))
	}
	if t.Username != "" || t.Password != "" {
		b.WriteString(url.PathEscape(t.Username))
		if t.Password != "" {
			b.WriteString(":" + redact.Mask)
		}
		b.WriteString("@")
	}
	b.WriteString(strings.Join(t.Addrs, ","))
	if t.Kind == Sentinel {
		b.WriteString("/" + url.PathEscape(t.MasterName))
	}
	if t.Kind != Cluster {
		fmt.Fprintf(&b, "/%d", t.DB)
	}
	return b.String()
}
