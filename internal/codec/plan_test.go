package codec_test

import (
	"errors"
	"testing"

	"github.com/streamindex/indexer/internal/codec"
)

// TestPlanRules: Validate checks a plan built in Go as Decode does, and a
// plan survives both codecs.
func TestPlanRules(t *testing.T) {
	replaced := func(p *codec.Plan) codec.Event {
		return codec.Event{ID: "r1", Type: codec.FilesReplaced, Time: 1, Database: "d", Table: "t",
			Remove: []codec.File{{Layer: "h", Path: "date=2024-01-01/hour=00/a.1.parquet"}}, Plan: p}
	}
	for _, tc := range []struct {
		name  string
		e     codec.Event
		field string
	}{
		{"on a create", codec.Event{ID: "c1", Type: codec.FileCreated, Time: 1, Database: "d", Table: "t",
			File: codec.File{Layer: "h", Path: "date=2024-01-01/hour=00/a.1.parquet"}, Plan: &codec.Plan{Kind: codec.PlanMerge, ID: "x", Token: "1"}}, "plan"},
		{"drop kind", replaced(&codec.Plan{Kind: "drop", ID: "x", Token: "1"}), "plan.kind"},
		{"empty id", replaced(&codec.Plan{Kind: codec.PlanMove, Token: "1"}), "plan.id"},
		{"token zero", replaced(&codec.Plan{Kind: codec.PlanMove, ID: "x", Token: "0"}), "plan.token"},
		{"token 20 digits", replaced(&codec.Plan{Kind: codec.PlanMove, ID: "x", Token: "12345678901234567890"}), "plan.token"},
	} {
		var ve *codec.ValidationError
		if err := codec.Validate(&tc.e, nil); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: %v, want an error on %s", tc.name, err, tc.field)
		}
	}
	e := replaced(&codec.Plan{Kind: codec.PlanMerge, ID: "m3f9c2a7d41e08b65-5a6b7c8d.1", Token: "9223372036854775807"})
	checkRoundTrip(t, e)
}
