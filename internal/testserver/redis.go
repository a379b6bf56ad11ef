// Package testserver starts real servers on free loopback ports with their
// own temporary directories, for tests and benchmarks: redis-server as a
// child process of the caller, and nats-server with JetStream in-process
// (internal/natsserver, the same code 'indexer run --embedded-nats' uses).
// Nothing here is a fake.
//
// redis-server processes are started in their own process group, so a
// Ctrl-C sent to the terminal does not kill them before test cleanup runs,
// and on Linux they get SIGKILL when the process that started them dies, so
// a crashed test binary does not leak servers. The package needs a
// Unix-like system.
package testserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	readyTimeout = time.Minute     // StartRedis/Restart wait up to this long for PING (a busy machine is slow)
	stopTimeout  = 5 * time.Second // Stop waits this long after SIGTERM before SIGKILL
	portAttempts = 5               // tries with a fresh free port when it was stolen
	logTailLines = 20              // lines of redis.log quoted in start errors
)

// RedisConfig configures a redis-server process. The zero value gives a
// server on a free loopback port with a fresh temporary directory, no
// persistence and the redis-server found on PATH.
type RedisConfig struct {
	// Dir is the data directory (--dir); redis.log is written there too.
	// Default: a new temporary directory, which Stop removes. A Dir given
	// by the caller is never removed.
	Dir string
	// Port is the TCP port on 127.0.0.1. Default: a free port, picked again
	// (up to 5 times) if another process takes it before redis binds.
	Port int
	// AOF enables the append-only file with appendfsync always, so every
	// acknowledged write survives Kill. Without it nothing is persisted.
	AOF bool
	// Args are extra "--key value" arguments, passed verbatim after the
	// package's own arguments (so they win).
	Args []string
	// Binary is the redis-server executable. Default: "redis-server" from PATH.
	Binary string
	// Password, when set, is required of clients (requirepass); the
	// readiness check authenticates with it. Default: none.
	Password string
	// Sentinel, when set, runs a sentinel instead of a data server
	// (redis-server <Dir>/sentinel.conf --sentinel) with these lines in
	// its configuration file, which it rewrites as the topology changes
	// and keeps across Restart. See StartSentinels.
	Sentinel []string
}

// RedisServer is a running (or stopped) redis-server child process.
// Its methods may be called from any goroutine; they are serialized.
type RedisServer struct {
	mu     sync.Mutex
	cfg    RedisConfig // Binary, Dir and Port resolved
	ownDir bool        // Dir was created by StartRedis; Stop removes it
	cmd    *exec.Cmd   // nil before the first start
	out    *bytes.Buffer
	done   chan struct{} // closed once cmd has been waited for
	exit   error         // cmd.Wait result, valid after done is closed
}

// StartRedis starts redis-server and waits until it answers PING, at most
// a minute (less if ctx ends first). It does not need a testing.TB, so it is
// usable from benchmarks and main programs; the caller must call Stop.
func StartRedis(ctx context.Context, cfg RedisConfig) (*RedisServer, error) {
	if cfg.Binary == "" {
		cfg.Binary = "redis-server"
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	cfg.Binary = bin
	cfg.Args = append([]string(nil), cfg.Args...)
	s := &RedisServer{cfg: cfg}
	if cfg.Dir == "" {
		if s.cfg.Dir, err = os.MkdirTemp("", "testserver-redis-"); err != nil {
			return nil, fmt.Errorf("testserver: %w", err)
		}
		s.ownDir = true
	}
	for attempt := 1; ; attempt++ {
		if cfg.Port == 0 {
			if s.cfg.Port, err = freePort(); err != nil {
				break
			}
		}
		err = s.start(ctx)
		if err == nil || cfg.Port != 0 || attempt == portAttempts || !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Redis starts a server for a test or benchmark with StartRedis (using the
// first cfg, if any) and registers Stop with t.Cleanup. A missing
// redis-server is a fatal error, never a skip.
func Redis(t testing.TB, cfg ...RedisConfig) *RedisServer {
	t.Helper()
	var c RedisConfig
	if len(cfg) > 0 {
		c = cfg[0]
	}
	if c.Binary == "" {
		requireRedis(t)
	}
	s, err := StartRedis(t.Context(), c)
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop redis-server: %v", err)
		}
	})
	return s
}

// requireRedis fails t, saying how to install it, if redis-server is not
// on PATH.
func requireRedis(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found on PATH: install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis`; tests never skip for a missing server")
	}
}

// Client returns a go-redis client for s (database 0), closed at t.Cleanup.
func (s *RedisServer) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

// Addr returns the server address, "127.0.0.1:PORT". It does not change on Restart.
func (s *RedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.cfg.Port))
}

// URL returns the server URL for database 0, "redis://127.0.0.1:PORT/0".
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir returns the data directory, which holds the AOF files and redis.log.
func (s *RedisServer) Dir() string { return s.cfg.Dir }

// PID returns the process id of the current (or last) redis-server process.
func (s *RedisServer) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Stop shuts the server down with SIGTERM (and SIGCONT, in case it was
// stopped), waits up to 5 s, then SIGKILLs its process group. It removes Dir
// if StartRedis created it. Stop is idempotent; it returns an error only if
// the server had to be killed or exited with a failure status after SIGTERM.
func (s *RedisServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.terminate()
	if s.ownDir {
		if rerr := os.RemoveAll(s.cfg.Dir); rerr != nil && err == nil {
			err = fmt.Errorf("testserver: %w", rerr)
		}
	}
	return err
}

// Kill sends SIGKILL to the server's process group and waits for it to exit,
// like a crash; Dir and its files are kept. Kill is idempotent.
func (s *RedisServer) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	return nil
}

// Restart starts the server again on the same port and Dir with the same
// config, stopping it first (SIGTERM) if it is running. It waits, at most
// a minute, until the server answers PING, i.e. also until it has finished
// loading its AOF. After Stop a Dir created by StartRedis has been removed,
// so it is recreated empty; use Kill to keep the data.
func (s *RedisServer) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.terminate(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	return s.start(ctx)
}

// Signal sends sig to the redis-server process (e.g. SIGSTOP and SIGCONT to
// simulate a hung server). It fails if the server is not running.
func (s *RedisServer) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return errors.New("testserver: redis-server is not running")
	}
	return s.cmd.Process.Signal(sig)
}

var errPortInUse = errors.New("address already in use")

// start launches the process and waits for it to be ready; s.mu is held
// (or s is not yet shared).
func (s *RedisServer) start(ctx context.Context) error {
	c := s.cfg
	appendonly := "no"
	if c.AOF {
		appendonly = "yes"
	}
	var args []string
	if len(c.Sentinel) > 0 {
		conf := filepath.Join(c.Dir, "sentinel.conf")
		if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(conf, []byte(strings.Join(c.Sentinel, "\n")+"\n"), 0o600); err != nil {
				return fmt.Errorf("testserver: %w", err)
			}
		}
		args = append(args, conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(c.Port), "--bind", "127.0.0.1", "--dir", c.Dir,
		"--save", "", "--appendonly", appendonly, "--daemonize", "no",
		"--protected-mode", "yes", "--logfile", c.Dir+"/redis.log", "--loglevel", "warning",
	)
	if c.AOF {
		args = append(args, "--appendfsync", "always")
	}
	if c.Password != "" {
		args = append(args, "--requirepass", c.Password)
	}
	cmd := exec.Command(c.Binary, append(args, c.Args...)...)
	s.out = new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = time.Second // a forked child holding the pipe must not block Wait
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testserver: start %s: %w", c.Binary, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { s.exit = cmd.Wait(); close(done) }(s.done)

	if err := s.waitReady(ctx); err != nil {
		s.terminate()
		return err
	}
	return nil
}

// waitReady polls until the server answers PING (not LOADING) on Addr and
// reports our PID, so a redis-server of another process on a stolen port
// is not mistaken for ours.
func (s *RedisServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var err error
	for {
		select {
		case <-s.done:
			log := s.logTail()
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("testserver: redis-server on %s: %w; log:\n%s", s.Addr(), errPortInUse, log)
			}
			return fmt.Errorf("testserver: redis-server exited during startup (%v); output:\n%s\nlog:\n%s", s.exit, s.out, log)
		case <-ctx.Done():
			return fmt.Errorf("testserver: redis-server on %s not ready: %w (last PING: %v); log:\n%s",
				s.Addr(), ctx.Err(), err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if err = s.ping(ctx); err == nil {
			return nil
		}
	}
}

// ping sends PING and INFO server over a fresh connection (raw RESP, so no
// client library logging or dial backoff gets in the way).
func (s *RedisServer) ping(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(conn)
	if s.cfg.Password != "" {
		fmt.Fprintf(conn, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(s.cfg.Password), s.cfg.Password)
		if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
			return fmt.Errorf("AUTH: %q, %v", line, err)
		}
	}
	if _, err := io.WriteString(conn, "PING\r\nINFO server\r\n"); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		return fmt.Errorf("PING: %q, %v", line, err) // e.g. "-LOADING ..."
	}
	for { // INFO's bulk reply is CRLF-separated "key:value" lines
		if line, err = r.ReadString('\n'); err != nil {
			return fmt.Errorf("INFO server: %v", err)
		}
		if strings.HasPrefix(line, "process_id:") {
			if line != fmt.Sprintf("process_id:%d\r\n", s.cmd.Process.Pid) {
				return fmt.Errorf("%w: another redis-server answers on %s", errPortInUse, s.Addr())
			}
			return nil
		}
	}
}

// terminate sends SIGTERM (+SIGCONT), waits up to stopTimeout, then SIGKILLs.
func (s *RedisServer) terminate() error {
	if !s.running() {
		return nil
	}
	p := s.cmd.Process
	p.Signal(syscall.SIGTERM)
	p.Signal(syscall.SIGCONT)
	select {
	case <-s.done:
		if s.exit != nil {
			return fmt.Errorf("testserver: redis-server exited after SIGTERM: %v", s.exit)
		}
		return nil
	case <-time.After(stopTimeout):
		syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("testserver: redis-server pid %d ignored SIGTERM for %v; killed", p.Pid, stopTimeout)
	}
}

// running reports whether the current process has not exited yet.
func (s *RedisServer) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// logTail returns the last lines of Dir/redis.log.
func (s *RedisServer) logTail() string {
	b, err := os.ReadFile(s.cfg.Dir + "/redis.log")
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-logTailLines):], "\n")
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testserver: find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
