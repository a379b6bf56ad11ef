package consumertest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
)

func opaque(n int) []Raw {
	out := make([]Raw, n)
	for i := range out {
		out[i] = Raw{Data: []byte(fmt.Sprintf(`{"n":%d}`, i)), ContentType: "json"}
	}
	return out
}

func testFetchAndAck(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: time.Second, MaxDeliver: 5})
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	pub := opaque(10)
	pub[3].ContentType = "msgpack"
	env.Publish(t, pub...)
	got := fetchN(t, src, 10, 5*time.Second)
	if len(got) != 10 {
		t.Fatalf("fetched %d messages, want 10", len(got))
	}
	if len(ids(got)) != 10 {
		t.Fatalf("message ids are not unique: %v", ids(got))
	}
	for i, m := range got {
		if !bytes.Equal(m.Data, pub[i].Data) {
			t.Errorf("message %d: data %q, want %q (in publish order)", i, m.Data, pub[i].Data)
		}
		if m.Deliveries != 1 || m.Lost {
			t.Errorf("message %d: deliveries %d lost %v, want a first delivery", i, m.Deliveries, m.Lost)
		}
		if m.Time.IsZero() || time.Since(m.Time) > time.Minute {
			t.Errorf("message %d: time %v, want when it was stored", i, m.Time)
		}
	}
	if !strings.Contains(got[3].ContentType, "msgpack") || strings.Contains(got[0].ContentType, "msgpack") {
		t.Errorf("content types %q %q, want msgpack for message 3 only", got[3].ContentType, got[0].ContentType)
	}
	if n := env.Pending(t); n != 10 {
		t.Errorf("pending before ack = %d, want 10", n)
	}
	ack(t, src, got)
	if n := env.Pending(t); n != 0 {
		t.Errorf("pending after ack = %d, want 0", n)
	}
	expectNone(t, src, 500*time.Millisecond)
}

func testFetchMax(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: time.Second, MaxDeliver: 5})
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	env.Publish(t, opaque(10)...)
	time.Sleep(50 * time.Millisecond)
	msgs, err := src.Fetch(context.Background(), 3, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 || len(msgs) > 3 {
		t.Fatalf("Fetch(max 3) returned %d messages", len(msgs))
	}
	rest := fetchN(t, src, 10-len(msgs), 5*time.Second)
	ack(t, src, append(msgs, rest...))
}

// testRedelivery: consumer a fetches and never acknowledges (it closes, or
// just disappears); consumer b receives the same messages after ClaimAfter,
// with a higher delivery count.
func testRedelivery(t *testing.T, h Harness, closeFirst bool) {
	claim := 700 * time.Millisecond
	env := h.Setup(t, Options{ClaimAfter: claim, MaxDeliver: 5})
	a := env.NewSource(t, "a")
	env.Publish(t, opaque(5)...)
	first := fetchN(t, a, 5, 5*time.Second)
	if len(first) != 5 {
		t.Fatalf("a fetched %d, want 5", len(first))
	}
	if closeFirst {
		closeSource(t, a)
	}
	b := env.NewSource(t, "b")
	defer closeSource(t, b)
	start := time.Now()
	again := fetchN(t, b, 5, 10*claim+5*time.Second)
	if len(again) != 5 {
		t.Fatalf("b received %d of a's 5 messages", len(again))
	}
	if took := time.Since(start); took < claim/2 {
		t.Errorf("redelivered after %v, before ClaimAfter %v", took, claim)
	}
	want := ids(first)
	for _, m := range again {
		if !want[m.ID] {
			t.Errorf("b received %s, not one of a's", m.ID)
		}
		if m.Deliveries < 2 {
			t.Errorf("%s: deliveries %d, want at least 2", m.ID, m.Deliveries)
		}
	}
	ack(t, b, again)
	if n := env.Pending(t); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
	if !closeFirst {
		closeSource(t, a)
	}
}

func testDeliveryCount(t *testing.T, h Harness) {
	claim := 500 * time.Millisecond
	env := h.Setup(t, Options{ClaimAfter: claim, MaxDeliver: 5})
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	env.Publish(t, opaque(1)...)
	for want := 1; want <= 3; want++ {
		got := fetchN(t, src, 1, 10*claim+5*time.Second)
		if len(got) != 1 {
			t.Fatalf("delivery %d did not come", want)
		}
		if got[0].Deliveries != want {
			t.Fatalf("delivery %d reported as %d", want, got[0].Deliveries)
		}
	}
}

func testExtend(t *testing.T, h Harness) {
	claim := 600 * time.Millisecond
	env := h.Setup(t, Options{ClaimAfter: claim, MaxDeliver: 5})
	a := env.NewSource(t, "a")
	defer closeSource(t, a)
	ext, ok := a.(consumer.Extender)
	if !ok {
		t.Fatal("the source must implement consumer.Extender: a batch applied longer than ClaimAfter would be delivered twice at once")
	}
	if every := ext.ExtendEvery(); every <= 0 || every >= claim {
		t.Fatalf("ExtendEvery = %v, want a positive fraction of ClaimAfter %v", every, claim)
	}
	env.Publish(t, opaque(2)...)
	held := fetchN(t, a, 2, 5*time.Second)
	if len(held) != 2 {
		t.Fatalf("fetched %d, want 2", len(held))
	}
	b := env.NewSource(t, "b")
	defer closeSource(t, b)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(ext.ExtendEvery())
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- nil
				return
			case <-tick.C:
				if err := ext.Extend(context.Background(), held); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	expectNone(t, b, 4*claim)
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("extend: %v", err)
	}
	ack(t, a, held)
}

func testDeadLetter(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: time.Second, MaxDeliver: 5})
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	pub := opaque(3)
	env.Publish(t, pub...)
	got := fetchN(t, src, 3, 5*time.Second)
	if len(got) != 3 {
		t.Fatalf("fetched %d, want 3", len(got))
	}
	dead := []consumer.DeadLetter{{Message: got[0], Reason: "reason zero"}, {Message: got[2], Reason: "reason two"}}
	if err := src.DeadLetter(context.Background(), dead); err != nil {
		t.Fatalf("dead-letter: %v", err)
	}
	if n := env.Pending(t); n != 1 {
		t.Errorf("pending = %d, want 1 (dead letters are acknowledged)", n)
	}
	ack(t, src, got[1:2])
	dl := env.DeadLetters(t)
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(dl), dl)
	}
	byID := map[string]Dead{}
	for _, d := range dl {
		byID[d.OriginalID] = d
	}
	for i, want := range []struct {
		m      consumer.Message
		reason string
		data   []byte
	}{{got[0], "reason zero", pub[0].Data}, {got[2], "reason two", pub[2].Data}} {
		d, ok := byID[want.m.ID]
		if !ok {
			t.Errorf("dead letter %d: original id %s missing from %+v", i, want.m.ID, dl)
			continue
		}
		if d.Reason != want.reason || d.Deliveries != 1 || !bytes.Equal(d.Data, want.data) {
			t.Errorf("dead letter %d = %+v, want reason %q, 1 delivery, data %q", i, d, want.reason, want.data)
		}
	}
	if n := env.Pending(t); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

func testCancelWhileBlocked(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: time.Second, MaxDeliver: 5})
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := src.Fetch(ctx, 10, 30*time.Second)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case <-done:
		if took := time.Since(start); took > time.Second {
			t.Errorf("Fetch took %v to return after cancel", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Fetch did not return after its context was cancelled")
	}
}

func testCloseWhileBlocked(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: time.Second, MaxDeliver: 5})
	src := env.NewSource(t, "a")
	done := make(chan struct{})
	go func() {
		src.Fetch(context.Background(), 10, 3*time.Second)
		close(done)
	}()
	time.Sleep(200 * time.Millisecond)
	if err := src.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Fetch did not return after Close")
	}
}

// testCancelledContext: a fetch cut short by its context must not lose a
// message: a later fetch delivers it.
func testCancelledContext(t *testing.T, h Harness) {
	env := h.Setup(t, Options{ClaimAfter: 500 * time.Millisecond, MaxDeliver: 5})
	src := env.NewSource(t, "a")
	defer closeSource(t, src)
	env.Publish(t, opaque(3)...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, _ := src.Fetch(ctx, 10, time.Second)
	for i := 0; i < 5; i++ { // cancellation racing the server
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		more, _ := src.Fetch(ctx, 10, time.Second)
		cancel()
		msgs = append(msgs, more...)
	}
	got := ids(msgs)
	for _, m := range fetchN(t, src, 3, 10*time.Second) {
		got[m.ID] = true
	}
	if len(got) != 3 {
		t.Fatalf("received %d distinct messages, want 3: cancelled fetches lost some", len(got))
	}
}
