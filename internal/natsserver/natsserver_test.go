package natsserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func TestStartJetStreamAndRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(Config{Dir: dir, Listen: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(s.ClientURL(), ":0") {
		t.Fatalf("ClientURL = %q, want the picked port", s.ClientURL())
	}
	if s.Dir() != dir {
		t.Errorf("Dir = %q", s.Dir())
	}
	ctx := context.Background()
	_, js := connect(t, s.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("JetStream not ready after Start: %v", err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.Shutdown() // idempotent

	s2, err := Start(Config{Dir: dir, Listen: s.Addr(), Logger: quiet()})
	if err != nil {
		t.Fatalf("restart on %s: %v", s.Addr(), err)
	}
	defer s2.Shutdown()
	if s2.ClientURL() != s.ClientURL() {
		t.Errorf("restarted on %s, want %s", s2.ClientURL(), s.ClientURL())
	}
	_, js2 := connect(t, s2.ClientURL())
	st, err := js2.Stream(ctx, "S")
	if err != nil {
		t.Fatalf("stream lost over a restart: %v", err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("message after restart = %v, %v", m, err)
	}
}

func TestShutdownConcurrent(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for range 3 {
		go func() { s.Shutdown(); done <- struct{}{} }()
	}
	for range 3 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown did not return")
		}
	}
	if _, err := nats.Connect(s.ClientURL(), nats.Timeout(time.Second)); err == nil {
		t.Fatal("server still accepts connections after Shutdown")
	}
}

func TestPortInUse(t *testing.T) {
	a, err := Start(Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	start := time.Now()
	_, err = Start(Config{Dir: t.TempDir(), Listen: a.Addr(), Logger: quiet()})
	if err == nil {
		t.Fatal("second server on the same port started")
	}
	if !errors.Is(err, ErrAddrInUse) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not match ErrAddrInUse and EADDRINUSE", err)
	}
	want := "address " + a.Addr() + " in use: another nats-server? pass --embedded-nats-listen"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("reporting the taken port took %v", took)
	}
	nc, err := nats.Connect(a.ClientURL())
	if err != nil {
		t.Fatalf("first server hurt: %v", err)
	}
	nc.Close()
}

func TestConfigErrors(t *testing.T) {
	if _, err := Start(Config{}); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Errorf("Start without Dir: %v", err)
	}
	if _, err := Start(Config{Dir: t.TempDir(), Listen: "nonsense"}); err == nil {
		t.Error("Start with a bad listen address succeeded")
	}
}

func TestLogsGoToLogger(t *testing.T) {
	var buf bytes.Buffer
	s, err := Start(Config{Dir: t.TempDir(), Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), LogLevel: slog.LevelInfo})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	out := buf.String()
	if !strings.Contains(out, "component=nats-server") || !strings.Contains(out, "Starting nats-server") {
		t.Errorf("server notices missing from the log at LogLevel info:\n%s", out)
	}
	if strings.Contains(out, "level=DEBUG") {
		t.Errorf("debug lines logged at LogLevel info")
	}

	buf.Reset()
	s, err = Start(Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	if strings.Contains(buf.String(), "Starting nats-server") {
		t.Errorf("notices logged by default (want warnings and above):\n%s", buf.String())
	}
}

func TestDirInUse(t *testing.T) {
	dir := t.TempDir() + "/store" // created by Start
	a, err := Start(Config{Dir: dir, Listen: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(Config{Dir: dir, Listen: "127.0.0.1:0", Logger: quiet()})
	if !errors.Is(err, ErrDirInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second server on the same store: %v, want ErrDirInUse naming the directory", err)
	}
	a.Shutdown()
	b, err := Start(Config{Dir: dir, Listen: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatalf("start after the first server shut down: %v", err)
	}
	b.Shutdown()
}

func TestWildcardListenClientURL(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir(), Listen: "0.0.0.0:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") || !strings.HasPrefix(s.Addr(), "0.0.0.0:") {
		t.Errorf("ClientURL %s Addr %s", s.ClientURL(), s.Addr())
	}
	connect(t, s.ClientURL())
}
