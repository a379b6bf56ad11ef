package testserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartNATSServer starts an in-process nats-server with opts for a test
// (JetStream on, a store under a new t.TempDir() and a free loopback
// client port unless opts say otherwise; server warnings go to the test
// log), waits until it accepts connections, and shuts it down at
// t.Cleanup. For servers the package's NATS helper cannot configure:
// users and permissions, clusters.
func StartNATSServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := startNATSServer(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startNATSServer is StartNATSServer without t.Fatal, for goroutines.
func startNATSServer(t testing.TB, opts *server.Options) (*server.Server, error) {
	o := *opts
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	o.JetStream, o.NoSigs = true, true
	s, err := server.NewServer(&o)
	if err != nil {
		return nil, fmt.Errorf("nats-server %s: %w", o.ServerName, err)
	}
	w := &testLogWriter{t: t}
	s.SetLoggerV2(&serverLog{w: w, name: o.ServerName}, false, false, false)
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
		w.stop()
	})
	if !s.ReadyForConnections(30 * time.Second) {
		return nil, fmt.Errorf("nats-server %s not ready for connections after 30 s", o.ServerName)
	}
	return s, nil
}

// serverLog sends a server's warnings and errors to the test log.
type serverLog struct {
	w    *testLogWriter
	name string
}

func (l *serverLog) logf(level, format string, v []any) {
	fmt.Fprintf(l.w, "%s %s: %s", l.name, level, fmt.Sprintf(format, v...))
}
func (l *serverLog) Noticef(string, ...any)         {}
func (l *serverLog) Debugf(string, ...any)          {}
func (l *serverLog) Tracef(string, ...any)          {}
func (l *serverLog) Warnf(format string, v ...any)  { l.logf("warning", format, v) }
func (l *serverLog) Errorf(format string, v ...any) { l.logf("error", format, v) }
func (l *serverLog) Fatalf(format string, v ...any) { l.logf("fatal", format, v) }

// NATSCluster is a cluster of in-process nats-servers with JetStream,
// on loopback: servers n1, n2, … of the cluster "indexer-test", each with
// its own store directory, client port and route port, which survive
// Shutdown and Restart. Its methods are safe for concurrent use.
type NATSCluster struct {
	t       testing.TB
	mu      sync.Mutex
	opts    []*server.Options
	servers []*server.Server // nil while shut down
}

// StartNATSCluster starts an n-server cluster for a test, waits until
// JetStream has elected its meta leader, and shuts every server down at
// t.Cleanup.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	c := &NATSCluster{t: t, opts: make([]*server.Options, n), servers: make([]*server.Server, n)}
	clusterPorts := make([]int, n)
	for i := range n {
		cp, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		clusterPorts[i] = cp
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       port,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "indexer-test", Host: "127.0.0.1", Port: cp},
		}
	}
	for i := range n {
		var routes []string
		for j, cp := range clusterPorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cp))
			}
		}
		c.opts[i].Routes = server.RoutesFromStr(strings.Join(routes, ","))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { // a server waits for its routes: start them together
			defer wg.Done()
			c.start(i)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	c.WaitJetStream(t.Context())
	return c
}

func (c *NATSCluster) start(i int) {
	s, err := startNATSServer(c.t, c.opts[i])
	if err != nil {
		c.t.Error(err)
		return
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
}

// ClientURL is server i's client URL (from 0).
func (c *NATSCluster) ClientURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// URL is the comma-separated list of every server's client URL, as
// clients of a cluster are given (nats.Connect, --nats-url).
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.opts))
	for i := range c.opts {
		urls[i] = c.ClientURL(i)
	}
	return strings.Join(urls, ",")
}

// Server returns server i (from 0), or nil while it is shut down.
func (c *NATSCluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// StreamLeader returns the index of the server leading stream (of the
// default account), or -1 when none does right now.
func (c *NATSCluster) StreamLeader(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.servers {
		if s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// Shutdown stops server i (its clients are disconnected; the others
// elect new leaders for what it led). Restart starts it again.
func (c *NATSCluster) Shutdown(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts server i again, on its ports and store directory, and
// waits until JetStream answers.
func (c *NATSCluster) Restart(i int) {
	c.t.Helper()
	c.start(i)
	if c.t.Failed() {
		c.t.FailNow()
	}
	c.WaitJetStream(c.t.Context())
}

// WaitJetStream waits (at most a minute) until a client of the cluster
// gets an answer from the JetStream API, that is until a meta leader is
// elected, and the meta leader has current statistics of every running
// server: until then it may refuse to place a stream on all of them
// ("no suitable peers for placement").
func (c *NATSCluster) WaitJetStream(ctx context.Context) {
	c.t.Helper()
	nc, err := nats.Connect(c.URL())
	if err != nil {
		c.t.Fatalf("connect to the cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			if err = c.peersCurrent(); err == nil {
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.t.Fatalf("the cluster's JetStream did not answer within a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// peersCurrent fails unless the meta leader counts every running server
// as a peer it can place streams on.
func (c *NATSCluster) peersCurrent() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	running, leader := 0, (*server.Server)(nil)
	for _, s := range c.servers {
		if s == nil {
			continue
		}
		running++
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		return errors.New("no meta leader among the running servers")
	}
	if peers := leader.JetStreamClusterPeers(); len(peers) < running {
		return fmt.Errorf("the meta leader has current statistics of %d of %d servers (%v)", len(peers), running, peers)
	}
	return nil
}
