package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisStartPingSetGet(t *testing.T) {
	s := Redis(t)
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want \"v\"", got, err)
	}
	if s.PID() <= 0 {
		t.Errorf("PID = %d", s.PID())
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil || opt.Addr != s.Addr() {
		t.Errorf("URL %q parses to %+v, %v; want addr %s", s.URL(), opt, err, s.Addr())
	}
}

// setThenRestartAfterKill writes a key, SIGKILLs the server, restarts it and
// reports whether the key survived.
func setThenRestartAfterKill(t *testing.T, cfg RedisConfig) bool {
	s := Redis(t, cfg)
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "durable", "yes", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	addr, pid := s.Addr(), s.PID()
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("server still accepts connections after Kill")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Addr() != addr || s.PID() == pid {
		t.Fatalf("after Restart addr %s pid %d; before %s pid %d", s.Addr(), s.PID(), addr, pid)
	}
	got, err := c.Get(ctx, "durable").Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false
	case err != nil:
		t.Fatalf("GET after restart: %v", err)
	case got != "yes":
		t.Fatalf("GET after restart = %q", got)
	}
	return true
}

func TestRedisRestartWithAOFKeepsData(t *testing.T) {
	if !setThenRestartAfterKill(t, RedisConfig{AOF: true}) {
		t.Fatal("key written before Kill is lost despite AOF")
	}
}

func TestRedisRestartWithoutAOFLosesData(t *testing.T) {
	if setThenRestartAfterKill(t, RedisConfig{}) {
		t.Fatal("key survived Kill without persistence")
	}
}

func TestRedisRestartWhileRunning(t *testing.T) {
	s := Redis(t, RedisConfig{AOF: true})
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Restart = %q, %v", got, err)
	}
}

func TestRedisStopIdempotent(t *testing.T) {
	s, err := StartRedis(context.Background(), RedisConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Stop(); err != nil {
			t.Fatalf("Stop #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
		t.Errorf("temp dir %s still exists after Stop (stat: %v)", s.Dir(), err)
	}
	if err := s.Kill(); err != nil {
		t.Errorf("Kill after Stop: %v", err)
	}
}

func TestRedisStopKeepsCallerDir(t *testing.T) {
	dir := t.TempDir()
	s := Redis(t, RedisConfig{Dir: dir, AOF: true})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/redis.log"); err != nil {
		t.Errorf("caller's dir was touched by Stop: %v", err)
	}
}

func TestRedisStopWhileSIGSTOPped(t *testing.T) {
	s := Redis(t)
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop of a stopped server took %v", d)
	}
	if err := s.Signal(syscall.SIGCONT); err == nil {
		t.Error("Signal after Stop succeeded")
	}
}

func TestRedisTwoServers(t *testing.T) {
	a, b := Redis(t), Redis(t)
	if a.Addr() == b.Addr() || a.Dir() == b.Dir() {
		t.Fatalf("servers share addr or dir: %s %s, %s %s", a.Addr(), a.Dir(), b.Addr(), b.Dir())
	}
	ca, cb := a.Client(t), b.Client(t)
	ctx := t.Context()
	if err := ca.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cb.Set(ctx, "k", "b", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := ca.Get(ctx, "k").Val(); got != "a" {
		t.Errorf("server a: k = %q, want a", got)
	}
	if got := cb.Get(ctx, "k").Val(); got != "b" {
		t.Errorf("server b: k = %q, want b", got)
	}
}

func TestRedisBadArgsReportsLog(t *testing.T) {
	_, err := StartRedis(t.Context(), RedisConfig{Args: []string{"--no-such-option", "1"}})
	if err == nil {
		t.Fatal("StartRedis with a bad option succeeded")
	}
	t.Logf("error (expected): %v", err)
}

func TestRedisPortTakenIsReported(t *testing.T) {
	a := Redis(t)
	_, err := StartRedis(t.Context(), RedisConfig{Port: a.cfg.Port})
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("StartRedis on a taken port: err = %v, want %v", err, errPortInUse)
	}
	if err := a.Client(t).Ping(t.Context()).Err(); err != nil {
		t.Errorf("first server hurt: %v", err)
	}
}

// fatalRecorder records t.Fatal instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestRedisMissingBinaryIsFatal(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Redis(f)
		t.Error("Redis returned without a redis-server on PATH")
	}()
	<-done
	if !strings.Contains(f.msg, "sudo apt-get install -y redis-server") || !strings.Contains(f.msg, "never skip") {
		t.Errorf("fatal message %q does not say how to install redis-server", f.msg)
	}
}
