package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/consumertest"
	"github.com/streamindex/indexer/internal/natsserver"
	"github.com/streamindex/indexer/internal/testserver"
)

func TestConformance(t *testing.T) {
	srv := testserver.NATS(t)
	// Each test deletes its streams at cleanup. Deleting an account's last
	// stream makes nats-server remove the account's store directory in a
	// goroutine, which races with the next test's stream creation
	// ("error creating store for stream", 3 in 2,000 create/delete rounds
	// here). A stream kept for the whole run keeps that directory.
	_, js := testConn(t, srv.ClientURL(), "anchor")
	if _, err := js.CreateStream(context.Background(), natsjs.StreamConfig{Name: "ANCHOR", Subjects: []string{"anchor"}}); err != nil {
		t.Fatal(err)
	}
	consumertest.Run(t, &harness{srv: srv})
}

// harness runs every test of the suite on one server, each with its own
// streams, subjects and consumer.
type harness struct {
	srv *natsserver.Server
	n   atomic.Int64
}

type env struct {
	cfg   SetupConfig
	url   string
	js    natsjs.JetStream
	pub   *testPublisher
	msgID atomic.Int64

	mu      sync.Mutex
	sources []*Source
}

// testNames returns fresh stream, subject and consumer names.
func testNames(n int64) SetupConfig {
	return SetupConfig{
		Stream:           fmt.Sprintf("T%d", n),
		SubjectPrefix:    fmt.Sprintf("t%d.events", n),
		DeadLetters:      fmt.Sprintf("T%d_DLQ", n),
		DeadLetterPrefix: fmt.Sprintf("t%d.dlq", n),
		Consumer:         "workers",
	}
}

// testConn connects to url, closing the connection at t.Cleanup.
func testConn(t testing.TB, url, name string) (*nats.Conn, natsjs.JetStream) {
	t.Helper()
	nc, err := Dial(ConnConfig{URL: url, Name: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func (h *harness) Setup(t *testing.T, opts consumertest.Options) consumertest.Env {
	cfg := testNames(h.n.Add(1))
	cfg.AckWait, cfg.MaxDeliver = opts.ClaimAfter, opts.MaxDeliver
	_, js := testConn(t, h.srv.ClientURL(), "harness")
	ctx := context.Background()
	if _, _, err := Setup(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		js.DeleteStream(ctx, cfg.Stream)
		js.DeleteStream(ctx, cfg.DeadLetters)
		js.DeleteStream(ctx, DefaultAdvisories(cfg.Stream))
	})
	return &env{cfg: cfg, url: h.srv.ClientURL(), js: js, pub: newTestPublisher(js, cfg.SubjectPrefix)}
}

// NewSource opens a source on a connection of its own, as a worker has.
func (e *env) NewSource(t *testing.T, name string) consumer.Source {
	_, js := testConn(t, e.url, name)
	src, err := New(context.Background(), js, Config{
		Stream: e.cfg.Stream, Consumer: e.cfg.Consumer, SubjectPrefix: e.cfg.SubjectPrefix,
		DeadLetterPrefix: e.cfg.DeadLetterPrefix, MaxDeliver: e.cfg.MaxDeliver, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.sources = append(e.sources, src)
	e.mu.Unlock()
	return src
}

// Publish publishes raws with unique message ids (the suite publishes
// some payloads twice and expects both stored). Valid events go to their
// own subject, others to <prefix>.t.t.
func (e *env) Publish(t *testing.T, raws ...consumertest.Raw) {
	out := make([]Outgoing, len(raws))
	for i, r := range raws {
		o := &out[i]
		o.Data, o.MsgID = r.Data, "m"+strconv.FormatInt(e.msgID.Add(1), 10)
		switch r.ContentType {
		case "json", "":
			o.Format = event.JSON
		case "msgpack":
			o.Format = event.MsgPack
		default:
			o.ContentType = r.ContentType
		}
		if ev, err := event.Decode(o.Format, r.Data); err == nil && o.ContentType == "" {
			o.Event = &ev
		} else {
			o.Subject = e.cfg.SubjectPrefix + ".t.t"
		}
	}
	if err := e.pub.Publish(context.Background(), out); err != nil {
		t.Fatal(err)
	}
}

func (e *env) DeadLetters(t *testing.T) []consumertest.Dead {
	return readDeadLetters(t, e.js, e.cfg.DeadLetters)
}

func readDeadLetters(t testing.TB, js natsjs.JetStream, name string) []consumertest.Dead {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	var out []consumertest.Dead
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		n, _ := strconv.Atoi(m.Header.Get(HeaderDeliveries))
		out = append(out, consumertest.Dead{
			OriginalID: m.Header.Get(HeaderOriginalSeq),
			Reason:     m.Header.Get(HeaderReason),
			Deliveries: n,
			Data:       m.Data,
		})
	}
	return out
}

// Pending first waits for the server to confirm the acks the sources
// sent (Ack does not wait), then reads the consumer's NumAckPending.
func (e *env) Pending(t *testing.T) int {
	e.mu.Lock()
	for _, s := range e.sources {
		if err := s.Flush(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("flush acks: %v", err)
		}
	}
	e.mu.Unlock()
	c, err := e.js.Consumer(context.Background(), e.cfg.Stream, e.cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().NumAckPending
}

var _ consumertest.Harness = (*harness)(nil)

// waitFor polls cond every 10 ms until it holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
