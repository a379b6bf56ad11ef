package testserver

import (
	"bytes"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Faults are what a Proxy does to the traffic it forwards. The zero value
// forwards everything untouched. A test changes them at any time with
// Proxy.Set; connections already open follow the new values from their
// next chunk of data.
type Faults struct {
	// Latency delays every chunk of data, in both directions.
	Latency time.Duration
	// DropReply is the probability that a chunk of data from the server
	// is discarded and the connection then reset: the request reached the
	// server (and ran there), its reply is lost. Only chunks that answer a
	// request matching ReplyTo count.
	DropReply float64
	// ReplyTo, when set, restricts DropReply to replies to requests whose
	// first chunk it accepts (e.g. a Redis EVALSHA), so that "the script
	// ran and its reply was lost" can be aimed at.
	ReplyTo func(request []byte) bool
	// ResetAfter resets a connection once it has carried about this many
	// bytes (both directions; each connection draws its budget at random
	// between ResetAfter/2 and 3×ResetAfter/2). 0: never.
	ResetAfter int64
	// Refuse resets new connections at once, as if the server were down.
	Refuse bool
}

// ProxyStats counts what a Proxy did.
type ProxyStats struct {
	Conns          int64 // connections accepted
	DroppedReplies int64 // replies discarded (each followed by a reset)
	Resets         int64 // connections reset after their byte budget, refused or cut by CutAll
}

// Faults returns the number of injected faults: dropped replies and
// resets.
func (s ProxyStats) Faults() int64 { return s.DroppedReplies + s.Resets }

// Proxy is a TCP proxy on a free loopback port between clients (the
// workers) and a server (Redis, NATS) that injects Faults into the traffic.
// It is safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	faults Faults
	rng    *rand.Rand
	conns  map[*proxyConn]struct{}
	closed bool

	accepted, dropped, resets atomic.Int64
	wg                        sync.WaitGroup
}

// NewProxy starts a proxy to target (host:port) for a test; it is closed
// at t.Cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := StartProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartProxy starts a proxy to target on a free loopback port.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		conns: make(map[*proxyConn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to, 127.0.0.1:PORT.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set replaces the faults.
func (p *Proxy) Set(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Stats returns the counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{Conns: p.accepted.Load(), DroppedReplies: p.dropped.Load(), Resets: p.resets.Load()}
}

// CutAll resets every open connection now and returns how many it reset.
func (p *Proxy) CutAll() int {
	n := p.cut()
	p.resets.Add(int64(n))
	return n
}

func (p *Proxy) cut() int {
	p.mu.Lock()
	cs := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	n := 0
	for _, c := range cs {
		if c.reset(nil) {
			n++
		}
	}
	return n
}

// Close stops accepting, resets every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.mu.Lock()
		f, closed := p.faults, p.closed
		budget := int64(0)
		if f.ResetAfter > 0 {
			budget = f.ResetAfter/2 + p.rng.Int64N(f.ResetAfter+1)
		}
		p.mu.Unlock()
		if closed || f.Refuse {
			abort(client)
			if f.Refuse {
				p.resets.Add(1)
			}
			continue
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			abort(client) // the server is down: so is the proxy
			continue
		}
		c := &proxyConn{p: p, client: client, server: server, budget: budget}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go c.pipe(client, server, true)
		go c.pipe(server, client, false)
	}
}

// abort closes a connection with a reset (RST) rather than a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// proxyConn is one client connection and its server connection.
type proxyConn struct {
	p              *Proxy
	client, server net.Conn

	mu       sync.Mutex
	done     bool
	budget   int64  // bytes left before a reset; 0: no budget
	awaiting bool   // a request was sent and not answered yet
	request  []byte // the first bytes of that request
}

// reset closes both sides with RST, once; it reports whether it did.
// When it does and count is not nil, it adds one to count first, so that
// a peer that sees the reset finds it counted in Stats.
func (c *proxyConn) reset(count *atomic.Int64) bool {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return false
	}
	c.done = true
	c.mu.Unlock()
	if count != nil {
		count.Add(1)
	}
	abort(c.client)
	abort(c.server)
	c.p.mu.Lock()
	delete(c.p.conns, c)
	c.p.mu.Unlock()
	return true
}

// pipe copies src to dst chunk by chunk, applying the faults; up says
// whether src is the client.
func (c *proxyConn) pipe(src, dst net.Conn, up bool) {
	defer c.p.wg.Done()
	defer c.reset(nil)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c.p.mu.Lock()
			f := c.p.faults
			roll := c.p.rng.Float64()
			c.p.mu.Unlock()
			if f.Latency > 0 {
				time.Sleep(f.Latency)
			}
			c.mu.Lock()
			drop, cut := false, false
			if up {
				if !c.awaiting {
					c.awaiting = true
					c.request = append(c.request[:0], buf[:min(n, 128)]...)
				}
			} else {
				if c.awaiting && f.DropReply > 0 && roll < f.DropReply && (f.ReplyTo == nil || f.ReplyTo(c.request)) {
					drop = true
				}
				c.awaiting = false
			}
			if c.budget > 0 {
				if c.budget -= int64(n); c.budget <= 0 {
					cut = true
				}
			}
			c.mu.Unlock()
			switch {
			case drop:
				c.reset(&c.p.dropped)
				return
			case cut:
				// Forward part of the chunk, then reset: the peer gets a
				// truncated request or reply.
				dst.Write(buf[:n/2])
				c.reset(&c.p.resets)
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // closing one side closes both (deferred reset)
		}
	}
}

// RedisCommandIs returns a Faults.ReplyTo that accepts requests starting
// with one of the Redis commands names (RESP arrays, e.g. "EVALSHA").
func RedisCommandIs(names ...string) func([]byte) bool {
	return func(req []byte) bool {
		// *<n>\r\n$<len>\r\n<NAME>\r\n
		i := 0
		for k := 0; k < 2; k++ {
			for i < len(req) && req[i] != '\n' {
				i++
			}
			i++
		}
		if i >= len(req) {
			return false
		}
		for _, name := range names {
			if len(req)-i >= len(name) && bytes.EqualFold(req[i:i+len(name)], []byte(name)) {
				return true
			}
		}
		return false
	}
}
