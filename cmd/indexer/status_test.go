package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestStatusFailOn: --fail-on-lag and --fail-on-dead-letters make status
// exit 1, with one line naming each threshold crossed, after printing the
// status as usual.
func TestStatusFailOn(t *testing.T) {
	env, srv := redisEnv(t)
	c := srv.Client(t)
	ctx := t.Context()
	if r := indexer(t, env, "", "setup", "--source", "redis"); r.Code != exitOK {
		t.Fatalf("setup: %+v", r)
	}
	status := func(args ...string) (int, string) {
		t.Helper()
		r := indexer(t, env, "", append([]string{"status", "--source", "redis"}, args...)...)
		if !strings.Contains(r.Stdout, "GROUP") {
			t.Errorf("status %v printed no status: %+v", args, r)
		}
		if r.Code != exitOK && strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("status %v: more than one line on stderr: %q", args, r.Stderr)
		}
		return r.Code, r.Stderr
	}
	if code, _ := status("--fail-on-lag", "0", "--fail-on-dead-letters"); code != exitOK {
		t.Errorf("empty stream: exit %d", code)
	}
	for i := 0; i < 3; i++ {
		c.XAdd(ctx, &redis.XAddArgs{Stream: "idx:events", Values: []any{"data", "{}", "ct", "json"}})
	}
	if code, stderr := status("--fail-on-lag", "2"); code != exitFail || !strings.Contains(stderr, "lag") || !strings.Contains(stderr, "3, more than --fail-on-lag 2") {
		t.Errorf("lag 3 over 2: exit %d %q", code, stderr)
	}
	if code, _ := status("--fail-on-lag", "3", "--fail-on-dead-letters"); code != exitOK {
		t.Errorf("lag 3 under --fail-on-lag 3: exit %d", code)
	}
	if code, _ := status(); code != exitOK {
		t.Errorf("no threshold: exit %d", code)
	}
	c.XAdd(ctx, &redis.XAddArgs{Stream: "idx:events:dlq", Values: []any{"data", "{}", "reason", "test"}})
	if code, stderr := status("--fail-on-dead-letters"); code != exitFail || !strings.Contains(stderr, "idx:events:dlq holds 1 dead letters") {
		t.Errorf("a dead letter: exit %d %q", code, stderr)
	}
	if code, stderr := status("--fail-on-lag", "2", "--fail-on-dead-letters"); code != exitFail || !strings.Contains(stderr, "lag") || !strings.Contains(stderr, "dead letters") {
		t.Errorf("both: exit %d %q", code, stderr)
	}
	c.XGroupDestroy(ctx, "idx:events", "indexer")
	if code, stderr := status("--fail-on-lag", "100"); code != exitFail || !strings.Contains(stderr, "missing") {
		t.Errorf("group missing: exit %d %q", code, stderr)
	}
	if code, _ := status(); code != exitOK {
		t.Errorf("group missing, no threshold: exit %d", code)
	}
}

// TestStatsAndStatusJSONKeys: 'stats --format json' describes a table with
// the same snake_case keys as the tables of 'status --format json'.
func TestStatsAndStatusJSONKeys(t *testing.T) {
	env, _ := redisEnv(t)
	env = append(env, "INDEXER_LAYERS=*")
	input, _ := goldenNDJSON(t)
	if r := indexer(t, env, input, "apply"); r.Code != exitOK {
		t.Fatalf("apply: %+v", r)
	}
	if r := indexer(t, env, "", "setup", "--source", "redis"); r.Code != exitOK {
		t.Fatalf("setup: %+v", r)
	}
	keys := func(args ...string) (first []string, all []map[string]any) {
		t.Helper()
		r := indexer(t, env, "", args...)
		if r.Code != exitOK {
			t.Fatalf("%v: %+v", args, r)
		}
		if args[0] == "status" {
			var doc struct{ Tables []map[string]any }
			if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			all = doc.Tables
		} else if err := json.Unmarshal([]byte(r.Stdout), &all); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if len(all) == 0 {
			t.Fatalf("%v: no tables", args)
		}
		for k := range all[0] {
			first = append(first, k)
		}
		slices.Sort(first)
		return first, all
	}
	statsKeys, stats := keys("stats", "--format", "json")
	statusKeys, _ := keys("status", "--source", "redis", "--format", "json")
	want := []string{"bytes", "database", "files", "freshness_seconds", "newest_event", "rows", "table", "tombstones"}
	if !slices.Equal(statusKeys, want) {
		t.Errorf("status table keys %v, want %v", statusKeys, want)
	}
	if !slices.Equal(statsKeys, append(want[:2:2], append([]string{"dates"}, want[2:]...)...)) {
		t.Errorf("stats keys %v, want status's %v and dates", statsKeys, want)
	}
	for _, d := range stats[0]["dates"].(map[string]any) {
		var k []string
		for x := range d.(map[string]any) {
			k = append(k, x)
		}
		slices.Sort(k)
		if !slices.Equal(k, []string{"bytes", "files", "rows"}) {
			t.Errorf("date keys %v", k)
		}
	}
}
