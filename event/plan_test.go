package event_test

import (
	"errors"
	"testing"

	"github.com/streamindex/indexer/event"
)

// TestPlanRules: Validate checks a plan built in Go as Decode does, and a
// plan survives both codecs.
func TestPlanRules(t *testing.T) {
	replaced := func(p *event.Plan) event.Event {
		return event.Event{ID: "r1", Type: event.FilesReplaced, Time: 1, Database: "d", Table: "t",
			Remove: []event.File{{Layer: "h", Path: "date=2024-01-01/hour=00/a.1.parquet"}}, Plan: p}
	}
	for _, tc := range []struct {
		name  string
		e     event.Event
		field string
	}{
		{"on a create", event.Event{ID: "c1", Type: event.FileCreated, Time: 1, Database: "d", Table: "t",
			File: event.File{Layer: "h", Path: "date=2024-01-01/hour=00/a.1.parquet"}, Plan: &event.Plan{Kind: event.PlanMerge, ID: "x", Token: "1"}}, "plan"},
		{"drop kind", replaced(&event.Plan{Kind: "drop", ID: "x", Token: "1"}), "plan.kind"},
		{"empty id", replaced(&event.Plan{Kind: event.PlanMove, Token: "1"}), "plan.id"},
		{"token zero", replaced(&event.Plan{Kind: event.PlanMove, ID: "x", Token: "0"}), "plan.token"},
		{"token 20 digits", replaced(&event.Plan{Kind: event.PlanMove, ID: "x", Token: "12345678901234567890"}), "plan.token"},
	} {
		var ve *event.ValidationError
		if err := event.Validate(&tc.e); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: %v, want an error on %s", tc.name, err, tc.field)
		}
	}
	e := replaced(&event.Plan{Kind: event.PlanMerge, ID: "m3f9c2a7d41e08b65-5a6b7c8d.1", Token: "9223372036854775807"})
	checkRoundTrip(t, e)
}
