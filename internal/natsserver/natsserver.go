// Package natsserver runs a NATS server with JetStream in the current
// process (github.com/nats-io/nats-server/v2), storing streams in files
// under one directory. It backs 'indexer run --embedded-nats DIR', the
// demo and the tests: one binary, no separate server to install.
//
// The server listens on loopback by default and has no authentication:
// it is meant for a single host. Production deployments run a real
// nats-server cluster and reach it with jetstream.Dial.
package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures Start. The zero value is invalid: Dir is required.
type Config struct {
	// Dir is the JetStream store directory, created if missing; streams,
	// consumers and their messages live here and survive a restart on the
	// same Dir. One server at a time may use it (Start locks it). Required.
	Dir string
	// Listen is the client address, host:port. Port 0 picks a free port
	// (see Server.ClientURL). Default "127.0.0.1:4222".
	Listen string
	// Logger receives the server's own logs with the key "component" =
	// "nats-server". Default slog.Default().
	Logger *slog.Logger
	// LogLevel is the lowest server log level passed to Logger: notices
	// map to slog.LevelInfo, debug statements to slog.LevelDebug (the
	// server's protocol trace is never enabled: it would show
	// credentials). Default slog.LevelWarn.
	LogLevel slog.Leveler
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections, including JetStream recovering its store. Default 60 s.
	ReadyTimeout time.Duration
}

// Server is a running in-process nats-server. Its methods are safe for
// concurrent use.
type Server struct {
	ns   *server.Server
	dir  string
	addr string   // host:port listened on
	url  string   // nats://addr, with a loopback host for a wildcard one
	lock *os.File // holds the store directory's lock
	once sync.Once
}

// ErrAddrInUse is wrapped by Start's error when the listen address is
// taken (it also matches syscall.EADDRINUSE).
var ErrAddrInUse = errors.New("address in use")

// ErrDirInUse is wrapped by Start's error when another server (of this
// package, in any process) runs on the same store directory.
var ErrDirInUse = errors.New("store directory in use")

// Start starts the server and returns once it accepts client connections
// and JetStream is ready (its store recovered). It fails with an error
// wrapping ErrAddrInUse when Listen is taken, ErrDirInUse when another
// server runs on Dir, and with the server's own message for any other
// start-up failure (an unwritable Dir, say).
func Start(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("natsserver: Dir (the JetStream store directory) is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:4222"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	level := slog.LevelWarn
	if cfg.LogLevel != nil {
		level = cfg.LogLevel.Level()
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("natsserver: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("natsserver: listen address %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as its default, 4222
	}
	opts := &server.Options{
		Host:      host,
		Port:      port,
		JetStream: true,
		StoreDir:  cfg.Dir,
		NoSigs:    true, // the embedding process owns signal handling
		Debug:     level <= slog.LevelDebug,
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		unlock(lock)
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	lg := &logger{log: cfg.Logger.With("component", "nats-server"), level: level, fatal: make(chan string, 1)}
	ns.SetLoggerV2(lg, opts.Debug, false, false)
	go ns.Start()

	s := &Server{ns: ns, dir: cfg.Dir, lock: lock}
	if err := waitReady(ns, lg, cfg); err != nil {
		s.Shutdown()
		return nil, err
	}
	a, ok := ns.Addr().(*net.TCPAddr)
	if !ok {
		s.Shutdown()
		return nil, errors.New("natsserver: server started without a TCP listener")
	}
	s.addr = net.JoinHostPort(host, strconv.Itoa(a.Port))
	urlHost := host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		urlHost = "127.0.0.1"
	}
	s.url = "nats://" + net.JoinHostPort(urlHost, strconv.Itoa(a.Port))
	return s, nil
}

func unlock(f *os.File) {
	if f != nil {
		f.Close() // releases the flock
	}
}

// waitReady polls until the server listens with JetStream enabled, a
// fatal start-up error was logged, or the timeout passed.
func waitReady(ns *server.Server, lg *logger, cfg Config) error {
	deadline := time.Now().Add(cfg.ReadyTimeout)
	for {
		select {
		case msg := <-lg.fatal:
			if strings.Contains(msg, "address already in use") {
				return fmt.Errorf("natsserver: %w: another nats-server? pass --embedded-nats-listen", &addrInUse{addr: cfg.Listen})
			}
			return fmt.Errorf("natsserver: %s", msg)
		default:
		}
		// ReadyForConnections polls without sleeping for waits under 25 ms.
		if ns.ReadyForConnections(time.Millisecond) && ns.JetStreamEnabled() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsserver: not ready for connections on %s after %v (store %s)", cfg.Listen, cfg.ReadyTimeout, cfg.Dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addrInUse prints as "address 127.0.0.1:4222 in use" and matches
// ErrAddrInUse and syscall.EADDRINUSE with errors.Is.
type addrInUse struct{ addr string }

func (e *addrInUse) Error() string { return "address " + e.addr + " in use" }
func (e *addrInUse) Is(target error) bool {
	return target == ErrAddrInUse || target == syscall.EADDRINUSE
}

// ClientURL returns the URL clients on this host connect to,
// "nats://host:port" (127.0.0.1 when the server listens on all addresses).
func (s *Server) ClientURL() string { return s.url }

// Addr returns the address the server listens on, "host:port" (with the
// port picked when Listen asked for port 0), for a restart on the same
// address.
func (s *Server) Addr() string { return s.addr }

// Dir returns the JetStream store directory.
func (s *Server) Dir() string { return s.dir }

// Shutdown stops the server cleanly: it closes client connections, stops
// JetStream (flushing and closing every stream and consumer file) and
// returns once all of it is done. It is idempotent and safe to call from
// several goroutines; every call returns after the shutdown finished.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		unlock(s.lock)
	})
	s.ns.WaitForShutdown()
}

// logger routes nats-server's logs to slog. A fatal message (the server
// could not listen, JetStream could not start) is also handed to Start,
// which turns it into its error; the server never exits the process.
type logger struct {
	log   *slog.Logger
	level slog.Level
	fatal chan string
}

func (l *logger) emit(level slog.Level, format string, v []any) {
	if level < l.level {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}

func (l *logger) Noticef(format string, v ...any) { l.emit(slog.LevelInfo, format, v) }
func (l *logger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *logger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *logger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
func (l *logger) Tracef(format string, v ...any)  {} // trace is never enabled
func (l *logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error("fatal: " + msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
