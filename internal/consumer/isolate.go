package consumer

import (
	"context"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
)

// ApplyFunc applies events to the index, as (*index.Index).Apply does.
type ApplyFunc func(ctx context.Context, events []event.Event) (index.Result, error)

// ApplyIsolating applies events with apply. When apply fails with an
// error Classify calls Poison (the index refuses some of the events: a key
// of the wrong type, a corrupt counter, an invalid event), it splits the
// events in halves around the refused ones, so the others still go
// through, and calls refused for each event refused on its own (its
// outcome stays 0). Other errors stop it and are returned; the events
// applied before stay applied (applying them again is harmless).
func ApplyIsolating(ctx context.Context, events []event.Event, apply ApplyFunc, refused func(i int, err error)) ([]index.Outcome, error) {
	out := make([]index.Outcome, len(events))
	var rec func(lo, hi int) error
	rec = func(lo, hi int) error {
		res, err := apply(ctx, events[lo:hi])
		if err == nil {
			copy(out[lo:hi], res.Outcomes)
			return nil
		}
		if Classify(err) != Poison {
			return err
		}
		if hi-lo == 1 {
			refused(lo, err)
			return nil
		}
		mid := (lo + hi) / 2
		if err := rec(lo, mid); err != nil {
			return err
		}
		return rec(mid, hi)
	}
	if len(events) == 0 {
		return out, nil
	}
	return out, rec(0, len(events))
}
