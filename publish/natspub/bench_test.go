package natspub_test

import (
	"context"
	"testing"

	"github.com/streamindex/indexer/internal/testserver"
	"github.com/streamindex/indexer/publish/natspub"
)

// BenchmarkPublishNATS publishes b.N synthetic events to an in-process
// nats-server (file storage) through Publish (validate, encode, publish
// asynchronously with up to 4096 PubAcks outstanding), 1000 per call, and
// reports events/s.
func BenchmarkPublishNATS(b *testing.B) {
	ctx := context.Background()
	srv := testserver.NATS(b)
	js := connect(b, srv.ClientURL())
	createStream(b, js, 1)
	p, err := natspub.New(js, natspub.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ev := events(b.N, 9) // distinct events, as a writer publishes
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < len(ev); i += 1000 {
		if err := p.Publish(ctx, ev[i:min(i+1000, len(ev))]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
