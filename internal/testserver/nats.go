package testserver

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/streamindex/indexer/internal/natsserver"
)

// NATS starts an in-process nats-server with JetStream on a free loopback
// port for a test, and shuts it down (flushing its store) at t.Cleanup.
// The store directory is dir[0] if given, else a new t.TempDir(). Server
// warnings and errors go to the test log.
func NATS(t testing.TB, dir ...string) *natsserver.Server {
	t.Helper()
	d := ""
	if len(dir) > 0 {
		d = dir[0]
	}
	if d == "" {
		d = t.TempDir()
	}
	return startNATS(t, d, "127.0.0.1:0")
}

// RestartNATS shuts s down (if it is still running) and starts a new
// server on the same store directory and address, as an operator's
// restart would: streams, consumers and stored messages survive, and
// clients reconnect to the same URL. The new server is shut down at
// t.Cleanup.
func RestartNATS(t testing.TB, s *natsserver.Server) *natsserver.Server {
	t.Helper()
	s.Shutdown()
	return startNATS(t, s.Dir(), s.Addr())
}

func startNATS(t testing.TB, dir, listen string) *natsserver.Server {
	t.Helper()
	w := &testLogWriter{t: t}
	s, err := natsserver.Start(natsserver.Config{
		Dir:    dir,
		Listen: listen,
		Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		w.stop()
	})
	return s
}

// testLogWriter forwards log lines to t.Log until the test's cleanup
// stopped it (t.Log panics once the test has completed).
type testLogWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log("nats-server: " + string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
