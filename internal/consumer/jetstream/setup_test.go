package jetstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/testserver"
)

func TestSetupIdempotent(t *testing.T) {
	srv := testserver.NATS(t)
	_, js := testConn(t, srv.ClientURL(), "setup")
	ctx := context.Background()
	cfg := testNames(1)
	created, warnings, err := Setup(ctx, js, cfg)
	if err != nil || created != (Created{Stream: true, DeadLetters: true, Consumer: true, Advisories: true}) {
		t.Fatalf("first Setup: created %+v, %v", created, err)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "max_age") || !strings.Contains(warnings[0], "168h0m0s") ||
		!strings.Contains(warnings[1], "dead-letter stream T1_DLQ discards dead letters older than 720h0m0s (max_age) or beyond 100000 messages (max_msgs)") {
		t.Errorf("warnings %q, want one about the default max_age of 7 days and one about the dead letters' retention", warnings)
	}
	created, _, err = Setup(ctx, js, cfg)
	if err != nil || created.Any() {
		t.Fatalf("second Setup: created %+v, %v", created, err)
	}
	// Only the consumer missing: only the consumer is created.
	if err := js.DeleteConsumer(ctx, cfg.Stream, cfg.Consumer); err != nil {
		t.Fatal(err)
	}
	created, _, err = Setup(ctx, js, cfg)
	if err != nil || created != (Created{Consumer: true}) {
		t.Fatalf("Setup without the consumer: created %+v, %v", created, err)
	}

	s, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	if sc.Retention != natsjs.LimitsPolicy || sc.Storage != natsjs.FileStorage || sc.Duplicates != 2*time.Minute ||
		sc.MaxAge != 7*24*time.Hour || len(sc.Subjects) != 1 || sc.Subjects[0] != "t1.events.>" {
		t.Errorf("events stream %+v", sc)
	}
	d, err := js.Stream(ctx, cfg.DeadLetters)
	if dc := d.CachedInfo().Config; err != nil || dc.Subjects[0] != "t1.dlq.>" || dc.MaxAge != 30*24*time.Hour || dc.MaxMsgs != 100_000 || dc.Discard != natsjs.DiscardOld {
		t.Errorf("dead-letter stream: %+v, %v", dc, err)
	}
	c, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if cc.AckPolicy != natsjs.AckExplicitPolicy || cc.AckWait != 30*time.Second || cc.MaxDeliver != 6 ||
		cc.MaxAckPending != 20000 || cc.DeliverSubject != "" {
		t.Errorf("consumer %+v", cc)
	}
}

// setUp starts a server and runs Setup with testNames(1) on it.
func setUp(t *testing.T) (natsjs.JetStream, SetupConfig) {
	t.Helper()
	_, js := testConn(t, testserver.NATS(t).ClientURL(), "setup")
	cfg := testNames(1)
	if _, _, err := Setup(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	return js, cfg
}

func TestSetupMismatchNamesFields(t *testing.T) {
	js, cfg := setUp(t)
	ctx := context.Background()

	other := cfg
	other.AckWait, other.MaxDeliver = 10*time.Second, 3
	_, _, err := Setup(ctx, js, other)
	var me *MismatchError
	if !errors.As(err, &me) || me.Kind != "consumer" {
		t.Fatalf("Setup with another AckWait: %v, want a consumer *MismatchError", err)
	}
	fields := map[string]bool{}
	for _, d := range me.Diffs {
		fields[d.Field] = true
	}
	if !fields["ack_wait"] || len(me.Diffs) != 1 {
		t.Errorf("diffs %+v, want ack_wait only (a lower MaxDeliver is compatible)", me.Diffs)
	}
	for _, want := range []string{"ack_wait is 30s, want 10s", "nats consumer rm T1 workers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	other = cfg
	other.MaxAge, other.Duplicates = time.Hour, time.Minute
	_, _, err = Setup(ctx, js, other)
	if !errors.As(err, &me) || me.Kind != "stream" || me.Name != "T1" {
		t.Fatalf("Setup with another MaxAge: %v, want a stream *MismatchError", err)
	}
	if !strings.Contains(err.Error(), "max_age is 168h0m0s, want 1h0m0s") || !strings.Contains(err.Error(), "duplicate_window is 2m0s, want 1m0s") {
		t.Errorf("error %q does not name max_age and duplicate_window", err)
	}
	// Nothing was changed.
	if _, _, err := Setup(ctx, js, cfg); err != nil {
		t.Errorf("Setup with the first settings after refusals: %v", err)
	}
}

func TestSetupWarningsAndOptions(t *testing.T) {
	srv := testserver.NATS(t)
	_, js := testConn(t, srv.ClientURL(), "setup")
	ctx := context.Background()

	cfg := testNames(1)
	cfg.MaxAge, cfg.DeadLetterMaxAge, cfg.DeadLetterMaxMsgs = -1, -1, -1
	_, warnings, err := Setup(ctx, js, cfg)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Setup without limits: %q, %v; want no warnings", warnings, err)
	}

	cfg = testNames(2)
	cfg.MaxBytes, cfg.MaxMsgs = 1<<30, 1000
	cfg.DeadLetterMaxAge, cfg.DeadLetterMaxMsgs = -1, -1
	cfg.DeliverFrom.Seq = 3
	_, warnings, err = Setup(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "max_bytes") || !strings.Contains(warnings[0], "max_msgs") || !strings.Contains(warnings[0], "has not read yet") {
		t.Errorf("warnings %q, want one naming max_bytes and max_msgs", warnings)
	}
	c, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if err != nil || c.CachedInfo().Config.OptStartSeq != 3 || c.CachedInfo().Config.DeliverPolicy != natsjs.DeliverByStartSequencePolicy {
		t.Errorf("DeliverFrom.Seq not applied: %v", err)
	}
	cfg.DeliverFrom = DeliverFrom{Time: time.Now()}
	_, warnings, err = Setup(ctx, js, cfg)
	if err != nil || len(warnings) != 2 || !strings.Contains(warnings[1], "DeliverFrom was ignored") {
		t.Errorf("Setup again with another DeliverFrom: %q, %v", warnings, err)
	}

	for name, bad := range map[string]SetupConfig{
		"replicas":    {Replicas: 7},
		"duplicates":  {MaxAge: time.Minute, Duplicates: time.Hour},
		"deliverfrom": {DeliverFrom: DeliverFrom{Seq: 1, Time: time.Now()}},
		"prefixes":    {SubjectPrefix: "x", DeadLetterPrefix: "x"},
	} {
		if _, _, err := Setup(ctx, js, bad); err == nil {
			t.Errorf("%s: Setup(%+v) succeeded", name, bad)
		}
	}
}

// TestSetupReplicasOnCluster: on a 3-server cluster Setup creates R3
// streams and consumer by default, warns about an explicit R1, and keeps
// an existing stream's replicas when none are asked for.
func TestSetupReplicasOnCluster(t *testing.T) {
	c := testserver.StartNATSCluster(t, 3)
	_, js := testConn(t, c.URL(), "setup")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	replicas := func(cfg SetupConfig) (events, dlq, consumer int) {
		t.Helper()
		s, err := js.Stream(ctx, cfg.Stream)
		if err != nil {
			t.Fatal(err)
		}
		d, err := js.Stream(ctx, cfg.DeadLetters)
		if err != nil {
			t.Fatal(err)
		}
		k, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.Replicas, d.CachedInfo().Config.Replicas, k.CachedInfo().Config.Replicas
	}
	auto := testNames(1)
	_, warnings, err := Setup(ctx, js, auto)
	if err != nil {
		t.Fatal(err)
	}
	if e, d, k := replicas(auto); e != 3 || d != 3 || k != 3 {
		t.Errorf("default on a 3-server cluster: replicas %d %d %d, want 3", e, d, k)
	}
	for _, w := range warnings {
		if strings.Contains(w, "replica") {
			t.Errorf("warning about replicas with R3: %s", w)
		}
	}

	one := testNames(2)
	one.Replicas = 1
	_, warnings, err = Setup(ctx, js, one)
	if err != nil {
		t.Fatal(err)
	}
	if !slicesContain(warnings, "only 1 replica on the 3-server cluster") {
		t.Errorf("R1 on a cluster: warnings %q, want one about the single replica", warnings)
	}
	// Run again without --replicas: the R1 stream is kept (no mismatch),
	// and the warning repeated.
	one.Replicas = 0
	created, warnings, err := Setup(ctx, js, one)
	if err != nil || created.Any() {
		t.Fatalf("setup again: created %v, %v", created, err)
	}
	if e, _, _ := replicas(one); e != 1 || !slicesContain(warnings, "only 1 replica") {
		t.Errorf("setup again: replicas %d, warnings %q", e, warnings)
	}
}

func slicesContain(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestSetupPersistAsync: asynchronous persistence is opt-in, set on the
// events stream only, fixed once the stream exists, and refused with
// replicas.
func TestSetupPersistAsync(t *testing.T) {
	js, cfg := setUp(t)
	ctx := context.Background()
	mode := func(name string) natsjs.PersistModeType {
		t.Helper()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.PersistMode
	}
	if m := mode(cfg.Stream); m != natsjs.DefaultPersistMode {
		t.Fatalf("default setup: persist mode %v, want default", m)
	}

	async := cfg
	async.PersistAsync = true
	_, _, err := Setup(ctx, js, async)
	var me *MismatchError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "persist_mode is default, want async") ||
		!strings.Contains(err.Error(), "persist_mode cannot be changed") {
		t.Fatalf("PersistAsync on an existing synchronous stream: %v, want a mismatch naming persist_mode", err)
	}

	async = testNames(2)
	async.PersistAsync = true
	if _, _, err := Setup(ctx, js, async); err != nil {
		t.Fatalf("Setup with PersistAsync: %v", err)
	}
	if m := mode(async.Stream); m != natsjs.AsyncPersistMode {
		t.Errorf("events stream: persist mode %v, want async", m)
	}
	if m := mode(async.DeadLetters); m != natsjs.DefaultPersistMode {
		t.Errorf("dead-letter stream: persist mode %v, want default", m)
	}
	if _, _, err := Setup(ctx, js, async); err != nil {
		t.Errorf("second Setup with PersistAsync: %v", err)
	}
	sync := testNames(2)
	if _, _, err := Setup(ctx, js, sync); err == nil || !strings.Contains(err.Error(), "persist_mode is async, want default") {
		t.Errorf("Setup without PersistAsync on an asynchronous stream: %v, want a mismatch", err)
	}

	async.Replicas = 3
	if _, _, err := Setup(ctx, js, async); err == nil || !strings.Contains(err.Error(), "one replica, not 3") {
		t.Errorf("PersistAsync with 3 replicas: %v, want a refusal", err)
	}
}
