// Package redact keeps credentials out of what indexer prints: it masks
// the secrets of URLs (user:password@, token@, password query parameters)
// for messages and logs, and it wraps a writer so that any secret the
// program knows of is replaced before the bytes leave the process, even
// inside an error text of a library that echoes a URL.
package redact

import (
	"bytes"
	"io"
	"net/url"
	"strings"
	"sync"
)

// Mask replaces every secret.
const Mask = "REDACTED"

// MinLen is the shortest secret a Writer replaces: replacing shorter ones
// would garble every message that happens to contain those letters. URL
// and Value mask secrets of any length.
const MinLen = 4

// URL returns raw, a URL or a comma-separated list of URLs, with every
// secret masked: the password of user:password@, a token given as the
// only user information (token@), and the values of query parameters
// named like a password, token or secret. It works on the text as
// written, so a URL that does not parse (a bad escape, a bad port) is
// masked too.
func URL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = oneURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func oneURL(p string) string {
	scheme, user, pass, hasUser, rest := split(p)
	switch {
	case !hasUser:
	case pass:
		scheme += user + ":" + Mask + "@"
	default:
		scheme += Mask + "@"
	}
	return scheme + maskQuery(rest)
}

// split cuts "scheme://user:password@rest" as written, without parsing
// escapes, so that a URL that does not parse is masked too. The user
// information ends at the last '@': a password may hold '/', '?', '#' or
// '@' unescaped, and the URLs indexer takes never have an '@' after it.
// pass reports whether a ':' separates a password from the user.
func split(p string) (scheme, user string, pass, hasUser bool, rest string) {
	rest = p
	if k := strings.Index(rest, "://"); k >= 0 {
		scheme, rest = rest[:k+3], rest[k+3:]
		if !IsScheme(scheme[:k]) { // "user:password://…": hide it all
			scheme = Mask + "://"
		}
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return scheme, "", false, false, rest
	}
	user, _, pass = strings.Cut(rest[:at], ":")
	return scheme, user, pass, true, rest[at+1:]
}

// IsScheme reports whether s is made of a URL scheme's characters (a
// letter, then letters, digits, '+', '-' or '.'), so that a string cut at
// "://" inside a password is not taken for a scheme.
func IsScheme(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// maskQuery masks the values of secret query parameters in a raw
// "/path?query" that may not parse.
func maskQuery(rest string) string {
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		return rest
	}
	pairs := strings.Split(rest[q+1:], "&")
	for i, kv := range pairs {
		if k, _, ok := strings.Cut(kv, "="); ok && secretName(k) {
			pairs[i] = k + "=" + Mask
		}
	}
	return rest[:q+1] + strings.Join(pairs, "&")
}

func secretName(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "pass") || strings.Contains(k, "token") || strings.Contains(k, "secret")
}

// URLSecrets returns the secrets in raw (see URL), each as written and,
// where it differs, URL-decoded, for a Writer to replace.
func URLSecrets(raw string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		_, _, _, hasUser, rest := split(p)
		if hasUser {
			info := p[:len(p)-len(rest)-1]
			if k := strings.Index(info, "://"); k >= 0 {
				info = info[k+3:]
			}
			if _, pw, ok := strings.Cut(info, ":"); ok {
				add(pw)
			} else {
				add(info)
			}
		}
		if q := strings.IndexByte(rest, '?'); q >= 0 {
			for _, kv := range strings.Split(rest[q+1:], "&") {
				if k, v, ok := strings.Cut(kv, "="); ok && secretName(k) {
					add(v)
				}
			}
		}
	}
	return out
}

// Writer replaces every secret it was told of before writing to the
// underlying writer. A secret is found within one Write call: callers
// write whole lines (fmt.Fprintf, log/slog handlers), so it is never cut
// in two. It is safe for concurrent use.
type Writer struct {
	w       io.Writer
	mu      sync.RWMutex
	secrets [][]byte
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Add tells the Writer of secrets. Those shorter than MinLen are ignored.
func (w *Writer) Add(secrets ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range secrets {
		if len(s) < MinLen {
			continue
		}
		dup := false
		for _, have := range w.secrets {
			dup = dup || string(have) == s
		}
		if !dup {
			w.secrets = append(w.secrets, []byte(s))
		}
	}
	// Longest first, so a secret containing another is masked whole.
	for i := 1; i < len(w.secrets); i++ {
		for j := i; j > 0 && len(w.secrets[j]) > len(w.secrets[j-1]); j-- {
			w.secrets[j], w.secrets[j-1] = w.secrets[j-1], w.secrets[j]
		}
	}
}

// Write writes p with every secret replaced by Mask. It returns len(p)
// when the underlying writer took everything.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.RLock()
	out := p
	for _, s := range w.secrets {
		if bytes.Contains(out, s) {
			out = bytes.ReplaceAll(out, s, []byte(Mask))
		}
	}
	w.mu.RUnlock()
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
