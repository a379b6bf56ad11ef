package redisconn_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/redisconn"
	"github.com/streamindex/indexer/internal/testserver"
)

// pw is the password of every test server; no error may contain it.
const pw = "S3cr3t-pw"

// openErr opens o and returns the error, which must be one line without
// the password.
func openErr(t *testing.T, o redisconn.Options) error {
	t.Helper()
	return openErrWithin(t, o, time.Minute)
}

func openErrWithin(t *testing.T, o redisconn.Options, within time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	c, err := redisconn.Open(ctx, o)
	if err == nil {
		c.Close()
		return nil
	}
	if s := err.Error(); strings.Contains(s, pw) || strings.Contains(s, "\n") {
		t.Errorf("the error shows the password or spans lines: %q", s)
	}
	return err
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one saying %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

// TestOpenExplains: each usual mistake gets one line naming its likely
// cause and the fix, without the password.
func TestOpenExplains(t *testing.T) {
	t.Parallel()
	files := testserver.NewTLSFiles(t)
	plainTLS, mutualTLS := testserver.FreePort(t), testserver.FreePort(t)
	srv := testserver.Redis(t, testserver.RedisConfig{Password: pw, Args: files.RedisArgs(plainTLS, false)})
	mtls := testserver.Redis(t, testserver.RedisConfig{Args: files.RedisArgs(mutualTLS, true)})
	tlsURL := func(port int) string { return "rediss://:" + pw + "@127.0.0.1:" + strconv.Itoa(port) + "/0" }
	_ = mtls

	t.Run("refused", func(t *testing.T) {
		wantErr(t, openErr(t, redisconn.Options{URL: "redis://:" + pw + "@127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))}),
			"connection refused", "start redis-server")
	})
	t.Run("wrong password", func(t *testing.T) {
		wantErr(t, openErr(t, redisconn.Options{URL: "redis://:" + pw + "-wrong@" + srv.Addr()}), "refused the credentials", "--redis-password-file")
	})
	t.Run("password file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(f, []byte(pw+"\n"), 0o600)
		if err := openErr(t, redisconn.Options{URL: "redis://:wrong@" + srv.Addr(), PasswordFile: f}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("plain text to a TLS port", func(t *testing.T) {
		wantErr(t, openErr(t, redisconn.Options{URL: "redis://:" + pw + "@127.0.0.1:" + strconv.Itoa(plainTLS)}), "use rediss://")
	})
	t.Run("TLS to a plain port", func(t *testing.T) {
		// The server reads the TLS hello as an inline command: it answers
		// an error if the hello holds a newline, else it waits for one and
		// the handshake times out. Both say what to do.
		wantErr(t, openErrWithin(t, redisconn.Options{URL: "rediss://:" + pw + "@" + srv.Addr(), CAFile: files.CAFile}, 3*time.Second), "use redis://")
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		wantErr(t, openErr(t, redisconn.Options{URL: tlsURL(plainTLS)}), "not trusted", "--redis-ca")
	})
	t.Run("TLS verified", func(t *testing.T) {
		if err := openErr(t, redisconn.Options{URL: tlsURL(plainTLS), CAFile: files.CAFile}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("client certificate missing", func(t *testing.T) {
		wantErr(t, openErr(t, redisconn.Options{URL: tlsURL(mutualTLS), CAFile: files.CAFile}), "requires a client certificate", "--redis-cert and --redis-key")
	})
	t.Run("client certificate", func(t *testing.T) {
		if err := openErr(t, redisconn.Options{URL: tlsURL(mutualTLS), CAFile: files.CAFile, CertFile: files.CertFile, KeyFile: files.KeyFile}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("TLS flags without rediss", func(t *testing.T) {
		err := openErr(t, redisconn.Options{URL: "redis://" + srv.Addr(), CAFile: files.CAFile})
		if !errors.Is(err, redisconn.ErrInvalid) {
			t.Fatalf("%v; want ErrInvalid", err)
		}
	})
}

// TestSentinelExplains: an unknown master name, and sentinels that want a
// password of their own.
func TestSentinelExplains(t *testing.T) {
	t.Parallel()
	master := testserver.Redis(t)
	s, err := testserver.StartRedis(t.Context(), testserver.RedisConfig{Password: pw, Sentinel: []string{
		"sentinel monitor m1 127.0.0.1 " + strings.TrimPrefix(master.Addr(), "127.0.0.1:") + " 1",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	base := "redis+sentinel://" + s.Addr()

	wantErr(t, openErr(t, redisconn.Options{URL: base + "/m1"}), "refused the credentials", "sentinel_password=")
	wantErr(t, openErr(t, redisconn.Options{URL: base + "/nope?sentinel_password=" + pw}), `know no master named "nope"`)
	wantErr(t, openErr(t, redisconn.Options{URL: "redis+sentinel://127.0.0.1:" + strconv.Itoa(testserver.FreePort(t)) + "/m1"}),
		"connection refused", "sentinel hosts")
	if err := openErr(t, redisconn.Options{URL: base + "/m1/0?sentinel_password=" + pw}); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "spw")
	os.WriteFile(f, []byte(pw), 0o600)
	if err := openErr(t, redisconn.Options{URL: base + "/m1", SentinelPasswordFile: f}); err != nil {
		t.Fatal(err)
	}
}

// TestRequireSingleShard: a Redis Cluster, named by the URL or found by
// asking the server, is refused with the alternative, and so is a
// sentinel reached with redis://; a standalone server is not.
func TestRequireSingleShard(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	node := testserver.Redis(t, testserver.RedisConfig{Args: []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf")}})
	plain := testserver.Redis(t)
	for _, url := range []string{"redis://" + node.Addr(), "redis+cluster://" + node.Addr()} {
		c, err := redisconn.New(redisconn.Options{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		err = c.RequireSingleShard(ctx)
		c.Close()
		wantErr(t, err, "is a Redis Cluster", "span hash slots", "--layout cluster", "redis+cluster://")
	}
	sentinel, err := testserver.StartRedis(ctx, testserver.RedisConfig{Sentinel: []string{"sentinel monitor m 127.0.0.1 " +
		strings.TrimPrefix(plain.Addr(), "127.0.0.1:") + " 1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sentinel.Stop() })
	sc, err := redisconn.New(redisconn.Options{URL: "redis://" + sentinel.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, sc.RequireSingleShard(ctx), "is a Redis Sentinel", "redis+sentinel://"+sentinel.Addr()+"/<master-name>")
	sc.Close()

	c, err := redisconn.Open(ctx, redisconn.Options{URL: plain.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if mode, err := c.Mode(ctx); err != nil || mode != "standalone" {
		t.Errorf("Mode: %q, %v", mode, err)
	}
	if err := c.RequireSingleShard(ctx); err != nil {
		t.Error(err)
	}
}

var setScript = redis.NewScript(`return redis.call('SET', KEYS[1], ARGV[1])`)

// TestWaitScripter: a script call through Wait.Scripter succeeds once the
// replica has the write, and fails with ErrNotReplicated while the replica
// is stopped — also when the call wrote nothing itself and another
// connection's write is what is missing on the replica (the barrier).
// The script, the barrier and WAIT run on one connection (MONITOR).
func TestWaitScripter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := testserver.Redis(t)
	replica := testserver.Redis(t, testserver.RedisConfig{Args: []string{"--replicaof", "127.0.0.1", strings.TrimPrefix(master.Addr(), "127.0.0.1:")}})
	c, err := redisconn.Open(ctx, redisconn.Options{URL: master.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := redisconn.Wait{Replicas: 1, Timeout: 300 * time.Millisecond}
	s := w.Scripter(c.Client, "idx:wait")
	run := func(v string) error { return setScript.Run(ctx, s, []string{"k"}, v).Err() }
	rc := replica.Client(t)

	// The link comes up; then writes are confirmed.
	deadline := time.Now().Add(30 * time.Second)
	for run("1") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the replica never confirmed a write")
		}
	}
	if got := rc.Get(ctx, "k").Val(); got != "1" {
		t.Fatalf("the replica holds %q after a confirmed write", got)
	}

	mon := monitor(t, master.Addr())
	if err := run("2"); err != nil {
		t.Fatal(err)
	}
	if err := mon.sameClient("evalsha", "set", "wait"); err != nil {
		t.Error(err)
	}

	if err := replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	err = run("3")
	var nr *redisconn.NotReplicatedError
	if !errors.Is(err, redisconn.ErrNotReplicated) || !errors.As(err, &nr) || nr.Got != 0 || nr.Want != 1 {
		t.Fatalf("with the replica stopped: %v; want ErrNotReplicated, 0 of 1", err)
	}
	// Another connection writes; a call that writes nothing itself must
	// not be confirmed while that write has not reached the replica.
	other := master.Client(t)
	if err := other.Set(ctx, "k", "4", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := redis.NewScript(`return redis.call('GET', KEYS[1])`).Run(ctx, w.Scripter(c.Client, "idx:wait"), []string{"k"}).Err(); !errors.Is(err, redisconn.ErrNotReplicated) {
		t.Fatalf("a read-only call with another connection's write unreplicated: %v; want ErrNotReplicated", err)
	}
	if err := replica.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for run("5") != nil {
		if time.Now().After(deadline) {
			t.Fatal("writes not confirmed after the replica resumed")
		}
	}
	if err := c.Client.ScriptFlush(ctx).Err(); err != nil { // NOSCRIPT: redis.Script falls back to EVAL, confirmed too
		t.Fatal(err)
	}
	if err := run("6"); err != nil {
		t.Fatal(err)
	}
	if got := rc.Get(ctx, "k").Val(); got != "6" {
		t.Fatalf("the replica holds %q", got)
	}
}

// monitorLog reads a MONITOR connection.
type monitorLog struct {
	mu    sync.Mutex
	lines []string
}

func monitor(t *testing.T, addr string) *monitorLog {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprint(conn, "MONITOR\r\n")
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("MONITOR: %q, %v", line, err)
	}
	m := &monitorLog{}
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			m.mu.Lock()
			m.lines = append(m.lines, line)
			m.mu.Unlock()
		}
	}()
	return m
}

// sameClient waits until MONITOR showed each command in order and reports
// whether one client address sent them all.
func (m *monitorLog) sameClient(cmds ...string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		lines := append([]string(nil), m.lines...)
		m.mu.Unlock()
		// A line: +<time> [<db> <addr>] "<command>" ...
		var addrs []string
		i := 0
		for _, l := range lines {
			if strings.Contains(l, " lua] ") {
				continue // a command the script ran
			}
			if i < len(cmds) && strings.Contains(strings.ToLower(l), `] "`+cmds[i]+`"`) {
				addrs = append(addrs, l[strings.IndexByte(l, '[')+1:strings.IndexByte(l, ']')])
				i++
			}
		}
		if i == len(cmds) {
			for _, a := range addrs[1:] {
				if a != addrs[0] {
					return fmt.Errorf("%v sent from %v: not one connection", cmds, addrs)
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MONITOR never showed %v: %q", cmds, lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSentinelFollowsFailover: a client of redis+sentinel:// keeps writing
// (confirmed by the replica) through a SENTINEL FAILOVER: it finds the new
// master through the sentinels, and logs the change.
func TestSentinelFollowsFailover(t *testing.T) {
	t.Parallel()
	g := testserver.Sentinels(t)
	ctx := t.Context()
	var logs testserver.Buffer
	c, err := redisconn.Open(ctx, redisconn.Options{URL: g.URL(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := redisconn.Wait{Replicas: 1, Timeout: time.Second}
	s := w.Scripter(c.Client, "idx:wait")
	write := func(v string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			err := setScript.Run(ctx, s, []string{"k"}, v).Err()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %s: %v", v, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	write("before")
	old, cur, err := g.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	write("after")
	for _, n := range []*testserver.RedisServer{old, cur} {
		if got := n.Client(t).Get(ctx, "k").Val(); got != "after" {
			t.Errorf("%s holds %q", n.Addr(), got)
		}
	}
	if !strings.Contains(logs.String(), "Redis master changed") || !strings.Contains(logs.String(), "to="+cur.Addr()) {
		t.Errorf("no log of the new master %s:\n%s", cur.Addr(), logs.String())
	}
}

// TestReadOnlyHint: a redis:// client whose server was demoted to a
// replica gets READONLY (retried by its caller) and a log line saying what
// follows failovers.
func TestReadOnlyHint(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := testserver.Redis(t)
	demoted := testserver.Redis(t)
	var logs testserver.Buffer
	c, err := redisconn.Open(ctx, redisconn.Options{URL: demoted.URL(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	host, port, _ := net.SplitHostPort(master.Addr())
	if err := demoted.Client(t).SlaveOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Set(ctx, "k", "v", 0).Err(); !redis.HasErrorPrefix(err, "READONLY") {
		t.Fatalf("SET on a replica: %v; want READONLY", err)
	}
	c.Client.Set(ctx, "k", "v", 0) // logged once a minute at most
	if got := logs.String(); strings.Count(got, "answers READONLY") != 1 || !strings.Contains(got, "redis+sentinel://") {
		t.Errorf("want one hint naming redis+sentinel://, got:\n%s", got)
	}
}
