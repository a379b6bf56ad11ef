package natspub_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish/natspub"
)

// BenchmarkPublishNATS publishes b.N synthetic events to an in-process
// nats-server (file storage) through Publish (validate, encode, publish
// asynchronously with up to 4096 PubAcks outstanding), 1000 per call, and
// reports events/s and the CPU of this process (publisher and server)
// per event. The cases are the stream's default settings, publishing
// without Nats-Msg-Id (Config.NoMsgID: no de-duplication), and that with
// asynchronous persistence (the opt-in settings of issue 16):
//
//	go test -run '^$' -bench PublishNATS -benchtime 200000x -count 4 ./publish/natspub
func BenchmarkPublishNATS(b *testing.B) {
	for _, c := range []struct {
		name           string
		noMsgID, async bool
	}{{"default", false, false}, {"no-msg-id", true, false}, {"no-msg-id+async", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			srv := testserver.NATS(b)
			js := connect(b, srv.ClientURL())
			sc := jetstream.StreamConfig{Name: "IDX_EVENTS", Subjects: []string{"idx.events.>"}, Duplicates: 2 * time.Minute}
			if c.async {
				sc.PersistMode = jetstream.AsyncPersistMode
			}
			if _, err := js.CreateStream(ctx, sc); err != nil {
				b.Fatal(err)
			}
			p, err := natspub.New(js, natspub.Config{NoMsgID: c.noMsgID})
			if err != nil {
				b.Fatal(err)
			}
			ev := events(b.N, 9) // distinct events, as a writer publishes
			b.ReportAllocs()
			cpu0 := cpuMicros()
			b.ResetTimer()
			for i := 0; i < len(ev); i += 1000 {
				if err := p.Publish(ctx, ev[i:min(i+1000, len(ev))]...); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric((cpuMicros()-cpu0)/float64(b.N), "cpu-µs/event")
			if c.noMsgID {
				return
			}
			s, err := js.Stream(ctx, "IDX_EVENTS")
			if err != nil || s.CachedInfo().State.Msgs != uint64(b.N) {
				b.Fatalf("stream: %v, want %d messages", err, b.N)
			}
		})
	}
}

// cpuMicros is the CPU time (user + system) this process used so far.
func cpuMicros() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}
