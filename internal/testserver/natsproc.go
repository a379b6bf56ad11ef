package testserver

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BuildNATSServer builds nats-server, at the version this module requires,
// into dir and returns the binary's path: a real server process that a
// test can SIGKILL (the in-process server of NATS cannot be killed without
// killing the test). It is meant for TestMain.
func BuildNATSServer(dir string) (string, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	bin := filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = strings.TrimSpace(string(root))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
}

// NATSProcess is a nats-server child process with JetStream, on a fixed
// loopback port and store directory that survive Kill and Restart. Its
// methods may be called from any goroutine.
type NATSProcess struct {
	bin, dir string
	port     int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartNATSProcess starts bin (see BuildNATSServer) with JetStream on a
// free loopback port, its store and log under a new t.TempDir(), waits
// until JetStream answers, and stops it at t.Cleanup.
func StartNATSProcess(t testing.TB, bin string) *NATSProcess {
	t.Helper()
	n, err := StartNATSProcessIn(t.Context(), bin, t.TempDir())
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(n.Stop)
	return n
}

// StartNATSProcessIn is StartNATSProcess without a testing.TB, for
// benchmarks and main programs: the store and log go under dir (which the
// caller owns and removes), and the caller must call Stop.
func StartNATSProcessIn(ctx context.Context, bin, dir string) (*NATSProcess, error) {
	n := &NATSProcess{bin: bin, dir: dir}
	var err error
	for attempt := 0; attempt < portAttempts; attempt++ {
		if n.port, err = freePort(); err != nil {
			break
		}
		if err = n.start(ctx); err == nil {
			return n, nil
		}
	}
	return nil, err
}

// ClientURL is nats://127.0.0.1:PORT; it does not change on Restart.
func (n *NATSProcess) ClientURL() string { return "nats://" + n.Addr() }

// Addr is 127.0.0.1:PORT.
func (n *NATSProcess) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// StoreDir is the JetStream store directory.
func (n *NATSProcess) StoreDir() string { return filepath.Join(n.dir, "store") }

// PID is the process id of the current (or last) server process.
func (n *NATSProcess) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to exit, like a crash; the
// store is kept.
func (n *NATSProcess) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kill()
}

func (n *NATSProcess) kill() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.done:
	default:
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
	}
}

// Restart kills the server if it runs and starts it again on the same
// port and store, waiting until JetStream recovered the store and answers.
func (n *NATSProcess) Restart(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kill()
	return n.startLocked(ctx)
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 5 s).
func (n *NATSProcess) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		n.kill()
	}
}

func (n *NATSProcess) start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.startLocked(ctx)
}

func (n *NATSProcess) startLocked(ctx context.Context) error {
	logFile := filepath.Join(n.dir, "nats.log")
	cmd := exec.Command(n.bin, "-js", "-sd", n.StoreDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-l", logFile)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testserver: start %s: %w", n.bin, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() { cmd.Wait(); close(done) }()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var err error
	for {
		if err = jetStreamReady(ctx, n.ClientURL()); err == nil {
			return nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("testserver: nats-server exited during start-up (%v); log:\n%s", err, tailLines(string(b), logTailLines))
		case <-ctx.Done():
			n.kill()
			return fmt.Errorf("testserver: nats-server on %s not ready: %v", n.Addr(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// jetStreamReady connects and asks for the account's JetStream info.
func jetStreamReady(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(actx)
	if err != nil && errors.Is(err, context.Canceled) {
		return ctx.Err()
	}
	return err
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
