// Package consumertest is the conformance suite every consumer.Source
// must pass, against its real server: fetch and ack, redelivery after a
// crash, claim of a dead consumer's messages, lease renewal, dead-lettering,
// delivery counts, close while blocked, cancelled contexts, and the
// consume loop end to end against a real index.
//
// A source package runs it from its tests:
//
//	func TestConformance(t *testing.T) { consumertest.Run(t, harness{}) }
package consumertest

import (
	"context"
	"testing"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
)

// Options shape the group a test runs against.
type Options struct {
	// ClaimAfter is how long a message stays unacknowledged before it is
	// delivered again to the group (Redis claim-min-idle, NATS AckWait).
	// The suite uses short values.
	ClaimAfter time.Duration
	// MaxDeliver is the configured delivery limit.
	MaxDeliver int
}

// Harness connects the suite to one source implementation.
type Harness interface {
	// Setup creates a fresh stream, dead-letter destination and group (as
	// 'indexer setup' does) for one test, and returns access to them.
	// Everything is removed at t.Cleanup.
	Setup(t *testing.T, opts Options) Env
}

// Env is one test's stream and group.
type Env interface {
	// NewSource opens a source reading as the named consumer of the group.
	// The suite closes it (or abandons it, to simulate a crash).
	NewSource(t *testing.T, consumer string) consumer.Source
	// Publish appends messages to the stream, in order.
	Publish(t *testing.T, msgs ...Raw)
	// DeadLetters lists the dead-letter destination.
	DeadLetters(t *testing.T) []Dead
	// Pending counts messages delivered to the group and not acknowledged.
	Pending(t *testing.T) int
}

// Raw is a message as a writer publishes it.
type Raw struct {
	Data []byte
	// ContentType is "json" or "msgpack" (the harness maps it to the
	// transport's own form).
	ContentType string
}

// Dead is an entry of the dead-letter destination.
type Dead struct {
	// OriginalID is the id of the message in the stream
	// (consumer.Message.ID).
	OriginalID string
	Reason     string
	Deliveries int
	Data       []byte
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Run("FetchAndAck", func(t *testing.T) { testFetchAndAck(t, h) })
	t.Run("FetchHonoursMax", func(t *testing.T) { testFetchMax(t, h) })
	t.Run("RedeliveryAfterCrash", func(t *testing.T) { testRedelivery(t, h, true) })
	t.Run("ClaimOfDeadConsumer", func(t *testing.T) { testRedelivery(t, h, false) })
	t.Run("DeliveryCountGrows", func(t *testing.T) { testDeliveryCount(t, h) })
	t.Run("ExtendKeepsLease", func(t *testing.T) { testExtend(t, h) })
	t.Run("DeadLetter", func(t *testing.T) { testDeadLetter(t, h) })
	t.Run("CancelWhileBlocked", func(t *testing.T) { testCancelWhileBlocked(t, h) })
	t.Run("CloseWhileBlocked", func(t *testing.T) { testCloseWhileBlocked(t, h) })
	t.Run("CancelledContextLosesNothing", func(t *testing.T) { testCancelledContext(t, h) })
	t.Run("LoopEndToEnd", func(t *testing.T) { testLoopEndToEnd(t, h) })
	t.Run("LoopCrashAfterApply", func(t *testing.T) { testLoopCrashAfterApply(t, h) })
	t.Run("LoopShutdownFinishesBatch", func(t *testing.T) { testLoopShutdown(t, h) })
}

// fetchN fetches until n messages arrived or the deadline passed.
func fetchN(t *testing.T, src consumer.Source, n int, within time.Duration) []consumer.Message {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(within)
	var got []consumer.Message
	for len(got) < n && time.Now().Before(deadline) {
		msgs, err := src.Fetch(ctx, n-len(got), 100*time.Millisecond)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		got = append(got, msgs...)
	}
	return got
}

// expectNone asserts that nothing is delivered for d.
func expectNone(t *testing.T, src consumer.Source, d time.Duration) {
	t.Helper()
	if msgs := fetchN(t, src, 1, d); len(msgs) > 0 {
		t.Fatalf("unexpected delivery of %s (deliveries %d)", msgs[0].ID, msgs[0].Deliveries)
	}
}

func ids(msgs []consumer.Message) map[string]bool {
	out := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		out[m.ID] = true
	}
	return out
}

func ack(t *testing.T, src consumer.Source, msgs []consumer.Message) {
	t.Helper()
	if err := src.Ack(context.Background(), msgs); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

func closeSource(t *testing.T, src consumer.Source) {
	t.Helper()
	if err := src.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}
