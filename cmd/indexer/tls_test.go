package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/streamindex/indexer/internal/testserver"
)

// TestRedisTLSVerifiedByDefault: rediss:// verifies the server's
// certificate; an untrusted one is refused with a line naming --redis-ca,
// and the CA makes it work. A plain redis:// URL against the TLS port, and
// a server that wants a client certificate, are explained too.
func TestRedisTLSVerifiedByDefault(t *testing.T) {
	files := testserver.NewTLSFiles(t)
	tlsPort, mtlsPort := testserver.FreePort(t), testserver.FreePort(t)
	testserver.Redis(t, testserver.RedisConfig{Args: files.RedisArgs(tlsPort, false)})
	testserver.Redis(t, testserver.RedisConfig{Args: files.RedisArgs(mtlsPort, true)})
	url := "rediss://:secret-in-url@127.0.0.1:" + strconv.Itoa(tlsPort) + "/0"
	mtlsURL := "rediss://:secret-in-url@127.0.0.1:" + strconv.Itoa(mtlsPort) + "/0"
	check := func(name string, r testserver.Result, code int, says string) {
		t.Helper()
		if r.Code != code || !strings.Contains(r.Stderr, says) || strings.Contains(r.Stderr+r.Stdout, "secret-in-url") ||
			strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, want %d and one line saying %q:\n%s", name, r.Code, code, says, r.Stderr)
		}
	}

	check("untrusted certificate", indexer(t, nil, "", "stats", "--redis-url", url), exitFail, "--redis-ca")
	check("with --redis-ca", indexer(t, nil, "", "stats", "--redis-url", url, "--redis-ca", files.CAFile), exitOK, "")
	check("TLS flags without rediss://", indexer(t, nil, "", "stats", "--redis-url", strings.Replace(url, "rediss", "redis", 1),
		"--redis-ca", files.CAFile), exitUsage, "not rediss://")
	check("redis:// to the TLS port", indexer(t, nil, "", "stats", "--redis-url", strings.Replace(url, "rediss", "redis", 1)),
		exitFail, "use rediss://")
	check("no client certificate", indexer(t, nil, "", "stats", "--redis-url", mtlsURL, "--redis-ca", files.CAFile),
		exitFail, "requires a client certificate; pass --redis-cert and --redis-key")
	check("client certificate", indexer(t, nil, "", "stats", "--redis-url", mtlsURL, "--redis-ca", files.CAFile,
		"--redis-cert", files.CertFile, "--redis-key", files.KeyFile), exitOK, "")
}

// TestRedisURLErrorsHidePassword: every command that takes --redis-url
// refuses a URL that does not parse (or names a bad port) with exit 2 and
// one line that says what is wrong, without the password — from the flag,
// the environment or a config file.
func TestRedisURLErrorsHidePassword(t *testing.T) {
	const pw = "PWsentinel42"
	urls := map[string]string{
		"redis://u:" + pw + "%zz@h/0":                            "%-escape",
		"redis://u:" + pw + "@h:99999/0":                         "port",
		"redis://u:" + pw + "@h:abc/0":                           "port",
		"redis://u:" + pw + "@h/x":                               "database",
		"redis+sentinel://u:" + pw + "@h1,h2":                    "master name",
		"redis+sentinel://h1/m?sentinel_password=" + pw + "&x=1": `"x"`,
		"u:" + pw + "@h:6379":                                    "not a URL",
		"ftp://u:" + pw + "@h/0":                                 "unknown scheme",
	}
	cmds := [][]string{{"stats"}, {"get", "--database", "d", "--table", "t", "date=2024-01-15/hour=14/a.1.parquet"},
		{"query", "--database", "d", "--table", "t"}, {"check"}, {"apply"}, {"run"}, {"setup"}, {"publish", "--generate", "1"},
		{"status"}, {"dlq", "list"}, {"gc"}, {"replay", "--from", "earliest"}, {"group", "reset", "--to", "latest"},
		{"plan", "publish"}, {"adopt"}, {"backfill", "--root", "/nonexistent"}}
	cfg := filepath.Join(t.TempDir(), "indexer.conf")
	for url, says := range urls {
		if err := os.WriteFile(cfg, []byte("redis-url = "+url+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for i, cmd := range cmds {
			for _, how := range []string{"flag", "env", "config"} {
				var r testserver.Result
				switch how {
				case "flag":
					r = indexer(t, nil, "", append(cmd, "--redis-url", url)...)
				case "env":
					r = indexer(t, []string{"INDEXER_REDIS_URL=" + url}, "", cmd...)
				default:
					if i > 0 {
						continue // the config file reaches every command the same way
					}
					r = indexer(t, nil, "", append(cmd, "--config", cfg)...)
				}
				out := r.Stdout + r.Stderr
				if r.Code != exitUsage || strings.Contains(out, pw) || !strings.Contains(r.Stderr, says) ||
					strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
					t.Errorf("%s %v with %s %q: exit %d, want 2 and one line saying %q without the password:\n%s",
						how, cmd, how, url, r.Code, says, out)
				}
			}
		}
	}
}

// TestClusterRefused: the gigapi layout on a Redis Cluster is refused at
// start with one line naming the alternative, whether the URL says
// redis+cluster:// or the server says it is a cluster node.
func TestClusterRefused(t *testing.T) {
	node := testserver.Redis(t, testserver.RedisConfig{Args: []string{"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(t.TempDir(), "nodes.conf")}})
	for url, code := range map[string]int{"redis+cluster://" + node.Addr(): exitUsage, node.URL(): exitFail} {
		for _, cmd := range [][]string{{"stats"}, {"run", "--source", "nats", "--metrics-addr", ""}, {"check"}, {"apply"}} {
			r := indexer(t, []string{"INDEXER_REDIS_URL=" + url}, "", cmd...)
			if r.Code != code || !strings.Contains(r.Stderr, "Redis Cluster") || !strings.Contains(r.Stderr, "--layout cluster") ||
				strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
				t.Errorf("%v on %s: exit %d, want %d and one line naming --layout cluster:\n%s", cmd, url, r.Code, code, r.Stderr)
			}
		}
	}
}
