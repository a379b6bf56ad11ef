package event_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/streamindex/indexer/event"
)

// TestSingleDate: with Config.SingleDate a files.replaced whose files lie
// in two dates is invalid, naming both; one date, and any other event,
// passes; without it both pass.
func TestSingleDate(t *testing.T) {
	msg := func(removeDate string) []byte {
		return []byte(`{"v":1,"id":"r1","type":"files.replaced","time":1,"database":"db","table":"t",` +
			`"add":[{"layer":"l","path":"date=2024-01-15/hour=14/m.2.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":1}],` +
			`"remove":[{"layer":"l","path":"` + removeDate + `/hour=23/a.1.parquet"}]}`)
	}
	strict, err := event.NewDecoder(event.Config{SingleDate: true})
	if err != nil {
		t.Fatal(err)
	}
	lax, _ := event.NewDecoder(event.Config{})
	if _, err := strict.Decode(event.JSON, msg("date=2024-01-15")); err != nil {
		t.Fatalf("one date: %v", err)
	}
	_, err = strict.Decode(event.JSON, msg("date=2024-01-14"))
	var ve *event.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "spans date=2024-01-14 and date=2024-01-15") {
		t.Fatalf("two dates: %v, want a validation error naming both", err)
	}
	e, err := lax.Decode(event.JSON, msg("date=2024-01-14"))
	if err != nil {
		t.Fatalf("two dates without SingleDate: %v", err)
	}
	if err := event.CheckSingleDate(&e); err == nil {
		t.Fatal("CheckSingleDate passed a files.replaced over two dates")
	}
}
