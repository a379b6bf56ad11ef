package main

import (
	"strings"
	"testing"
	"time"
)

func TestParsePosition(t *testing.T) {
	at := time.Date(2024, 1, 15, 14, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in, source string
		first      bool
		want       position
		bad        bool
	}{
		{in: "earliest", source: sourceRedis, want: position{kind: posEarliest}},
		{in: "latest", source: sourceNATS, want: position{kind: posLatest}},
		{in: "2024-01-15T14:00:00Z", source: sourceRedis, want: position{kind: posTime, t: at}},
		{in: "2024-01-15T15:00:00+01:00", source: sourceNATS, want: position{kind: posTime, t: at}},
		{in: "1700000000000-3", source: sourceRedis, want: position{kind: posID, id: "1700000000000-3"}},
		{in: "1700000000000", source: sourceRedis, first: true, want: position{kind: posID, id: "1700000000000-0"}},
		{in: "1700000000000", source: sourceRedis, want: position{kind: posID, id: "1700000000000-18446744073709551615"}},
		{in: "42", source: sourceNATS, want: position{kind: posID, seq: 42}},
		{in: "0", source: sourceNATS, bad: true},
		{in: "1-2", source: sourceNATS, bad: true},
		{in: "yesterday", source: sourceRedis, bad: true},
		{in: "", source: sourceRedis, bad: true},
	} {
		got, err := parsePosition("to", tc.in, tc.source, tc.first)
		if tc.bad {
			if err == nil {
				t.Errorf("%s %q: accepted as %+v", tc.source, tc.in, got)
			}
			continue
		}
		if err != nil || got.kind != tc.want.kind || got.id != tc.want.id || got.seq != tc.want.seq || !got.t.Equal(tc.want.t) {
			t.Errorf("%s %q: %+v, %v; want %+v", tc.source, tc.in, got, err, tc.want)
		}
	}
}

// TestOpsUsage: the operator commands refuse bad calls with exit 2 and a
// line that says what to give, before contacting any server.
func TestOpsUsage(t *testing.T) {
	env := []string{"INDEXER_REDIS_URL=redis://127.0.0.1:1/0"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"group"}, "group reset --to"},
		{[]string{"group", "reset"}, "--to is required"},
		{[]string{"group", "reset", "--to", "soon"}, "RFC 3339"},
		{[]string{"replay"}, "--from is required"},
		{[]string{"replay", "--from", "latest"}, "replays nothing"},
		{[]string{"dlq"}, "list, requeue or purge"},
		{[]string{"dlq", "requeue"}, "--id ID"},
		{[]string{"dlq", "requeue", "--id", "1-0", "--all"}, "--id ID"},
		{[]string{"dlq", "list", "--limit", "0"}, "--limit"},
		{[]string{"status", "--format", "xml"}, "table or json"},
		{[]string{"gc", "--tombstone-min-age", "-1h"}, "must not be negative"},
	} {
		r := indexer(t, env, "", tc.args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("indexer %s: exit %d, %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), r.Code, r.Stderr, tc.want)
		}
	}
}
