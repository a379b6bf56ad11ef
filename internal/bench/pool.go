package bench

import (
	"fmt"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/publish/natspub"
)

// The synthetic tables the bench writes.
const (
	benchDatabase = "bench"
	eventsTable   = "events"  // the history every stream run publishes
	markersTable  = "markers" // latency markers, never deleted
	queryTable    = "query"   // the one-day table 'indexer query' reads
)

// payload is one encoded event, ready to publish to either stream.
type payload struct {
	data    []byte // JSON, schema v1
	id      string // the event id: the NATS Nats-Msg-Id
	subject string // the NATS subject of its table (the workers check it)
}

func newPayload(e *event.Event, data []byte) payload {
	return payload{data: data, id: e.ID, subject: natspub.TableSubject(natspub.DefaultSubjectPrefix, e.Database, e.Table)}
}

// pool is the history the stream runs publish: synthetic events (30%
// deletes, 5% merges) encoded once and published again in every run, each
// run starting from an empty index. It grows on demand.
type pool struct {
	gen    *synth.Generator
	events []payload
}

func newPool() *pool {
	return &pool{gen: synth.New(synth.Config{Seed: 1, Database: benchDatabase, Table: eventsTable})}
}

// take returns the first n events of the history. The slice is shared:
// callers must not change it.
func (p *pool) take(n int) ([]payload, error) {
	for len(p.events) < n {
		e := p.gen.Next()
		d, err := event.Encode(event.JSON, &e)
		if err != nil {
			return nil, fmt.Errorf("bench: encode synthetic event: %w", err)
		}
		p.events = append(p.events, newPayload(&e, d))
	}
	return p.events[:n], nil
}

// marker is a file.created event whose visibility in the index the
// latency runs watch for.
type marker struct {
	payload
	key, path string    // the files: hash and field that appear once it is indexed
	sent      time.Time // when it was published
	seen      time.Time // when the poller saw it in the index
}

// markers returns n marker events of their own table, so that no event of
// the history deletes them.
func markers(n int, filesKey func(date string) string) ([]*marker, error) {
	g := synth.New(synth.Config{Seed: 2, Database: benchDatabase, Table: markersTable})
	out := make([]*marker, 0, n)
	for len(out) < n {
		e := g.Next()
		if e.Type != event.FileCreated {
			continue
		}
		d, err := event.Encode(event.JSON, &e)
		if err != nil {
			return nil, fmt.Errorf("bench: encode marker: %w", err)
		}
		out = append(out, &marker{payload: newPayload(&e, d), key: filesKey(e.File.Date()), path: e.File.Path})
	}
	return out, nil
}
