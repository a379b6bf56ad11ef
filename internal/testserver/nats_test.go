package testserver

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestNATSRestartKeepsStreams(t *testing.T) {
	s := NATS(t)
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	s2 := RestartNATS(t, s)
	if s2.ClientURL() != s.ClientURL() || s2.Dir() != s.Dir() {
		t.Fatalf("restarted at %s %s, want %s %s", s2.ClientURL(), s2.Dir(), s.ClientURL(), s.Dir())
	}
	// The same client reconnects and finds the stream and its message.
	var info *jetstream.StreamInfo
	for info == nil || info.State.Msgs != 1 {
		st, err := js.Stream(ctx, "S")
		if ctx.Err() != nil {
			t.Fatalf("stream after restart: %v", err)
		}
		if err == nil {
			info = st.CachedInfo()
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestNATSTwoServers(t *testing.T) {
	a, b := NATS(t), NATS(t, t.TempDir())
	if a.ClientURL() == b.ClientURL() || a.Dir() == b.Dir() {
		t.Fatalf("servers share an address or a store: %s %s, %s %s", a.ClientURL(), a.Dir(), b.ClientURL(), b.Dir())
	}
}
