package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestOpsRedisReplay(t *testing.T) { testReplay(t, newOpsEnv(t, "redis", 0)) }

func TestOpsRedisByTime(t *testing.T) {
	o := newOpsEnv(t, "redis", 0)
	ctx := context.Background()
	testByTime(t, o,
		func(at time.Time) string {
			xs := o.rdb.XRangeN(ctx, stream, fmt.Sprintf("%d-0", at.UnixMilli()), "+", 1).Val()
			if len(xs) != 1 {
				t.Fatal("no entry after the time")
			}
			return xs[0].ID
		},
		func() string {
			for _, g := range o.rdb.XInfoGroups(ctx, stream).Val() {
				if g.Name == group {
					if xs := o.rdb.XRangeN(ctx, stream, "("+g.LastDeliveredID, "+", 1).Val(); len(xs) == 1 {
						return xs[0].ID
					}
				}
			}
			return ""
		})
}

func TestOpsRedisStatus(t *testing.T) { testStatus(t, newOpsEnv(t, "redis", 0)) }

func TestOpsRedisDLQ(t *testing.T) { testDLQ(t, newOpsEnv(t, "redis", 0)) }

// oldEntries adds n valid events to the stream with ids from `from` on,
// one a minute, as if they had been published then.
func oldEntries(t *testing.T, o *opsEnv, from time.Time, n int) {
	t.Helper()
	h := historyOf(n, 47, "events")
	for i, line := range strings.Split(strings.TrimSpace(ndjson(t, h.events)), "\n") {
		id := fmt.Sprintf("%d-0", from.Add(time.Duration(i)*time.Minute).UnixMilli())
		if err := o.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, ID: id, Values: []any{"data", line, "ct", "json"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpsRedisGC: gc removes exactly the tombstones older than both the
// stream's oldest entry (less 5 minutes of clock skew) and the minimum age;
// never one younger than the oldest entry the stream holds.
func TestOpsRedisGC(t *testing.T) {
	o := newOpsEnv(t, "redis", 0)
	now := time.Now()
	oldEntries(t, o, now.Add(-time.Hour), 5) // the oldest entry is an hour old
	o.tombstones(map[string]time.Time{
		"a": now.Add(-3 * time.Hour),
		"b": now.Add(-70 * time.Minute),
		"c": now.Add(-62 * time.Minute), // older than the oldest entry, but within the skew
		"d": now.Add(-30 * time.Minute), // younger than the oldest entry
		"e": now,
	})
	var dry gcOut
	o.jsonOut(&dry, "gc", "--tombstone-min-age", "0", "--dry-run", "--format", "json")
	if dry.Removed != 2 || o.tombstonesLeft("abcde") != "abcde" {
		t.Fatalf("dry run: %+v, left %s", dry, o.tombstonesLeft("abcde"))
	}
	var rep gcOut
	o.jsonOut(&rep, "gc", "--tombstone-min-age", "0", "--format", "json")
	if rep.Removed != 2 || o.tombstonesLeft("abcde") != "cde" || rep.Oldest.UnixMilli() != now.Add(-time.Hour).UnixMilli() {
		t.Fatalf("gc: %+v, left %s; want a and b removed", rep, o.tombstonesLeft("abcde"))
	}
	// The minimum age binds when it is the tighter bound; the text report
	// says how many and why.
	o.tombstones(map[string]time.Time{"a": now.Add(-3 * time.Hour), "b": now.Add(-70 * time.Minute)})
	if r := o.must("", "gc", "--tombstone-min-age", "2h"); !strings.Contains(r.Stdout, "removed 1 tombstones") ||
		!strings.Contains(r.Stdout, "--tombstone-min-age") || o.tombstonesLeft("abcde") != "bcde" {
		t.Fatalf("gc --tombstone-min-age 2h: %s, left %s", r.Stdout, o.tombstonesLeft("abcde"))
	}
	// The stream trimmed to its last entry (56 min old): b goes, c (62
	// min) too, d (30 min) stays.
	o.rdb.XTrimMaxLen(context.Background(), stream, 1)
	o.jsonOut(&rep, "gc", "--tombstone-min-age", "0", "--format", "json")
	if rep.Removed != 2 || o.tombstonesLeft("abcde") != "de" {
		t.Fatalf("gc after trimming: %+v, left %s", rep, o.tombstonesLeft("abcde"))
	}
	// A missing stream stops it: it cannot tell what a replay could deliver.
	if r := o.indexer("", "gc", "--stream", "nope", "--tombstone-min-age", "0"); r.Code == 0 || !strings.Contains(r.Stderr, "does not exist") {
		t.Fatalf("gc of a missing stream: exit %d %s", r.Code, r.Stderr)
	}
}

// TestOpsRedisGCOneAtATime: two workers collect tombstones periodically;
// the lock lets one at a time do it: the periods in which they held it do
// not overlap, and one found it held by the other.
func TestOpsRedisGCOneAtATime(t *testing.T) {
	o := newOpsEnv(t, "redis", 0)
	now := time.Now()
	oldEntries(t, o, now.Add(-2*time.Hour), 3)
	old := map[string]time.Time{}
	for _, n := range "abcdefghij" {
		old[string(n)] = now.Add(-3 * time.Hour)
	}
	o.tombstones(old)
	stall := []string{"INDEXER_FAILPOINT=gc-locked-stall:1", "INDEXER_FAILPOINT_STALL=1500ms"}
	w1 := o.start("w1", stall, o.workerArgs("--gc-interval", "300ms", "--tombstone-min-age", "0")...)
	w2 := o.start("w2", stall, o.workerArgs("--gc-interval", "300ms", "--tombstone-min-age", "0")...)
	type held struct {
		worker   string
		from, to time.Time
		removed  int
	}
	var periods []held
	busy := 0
	deadline := time.Now().Add(patient(20 * time.Second))
	for {
		periods, busy = periods[:0], 0
		for _, w := range []*worker{w1, w2} {
			f, err := os.Open(w.logPath)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var rec struct {
					Msg        string
					Removed    int
					LockedAt   time.Time `json:"locked_at"`
					ReleasedAt time.Time `json:"released_at"`
				}
				if json.Unmarshal(sc.Bytes(), &rec) != nil {
					continue
				}
				switch {
				case rec.Msg == "tombstones collected":
					periods = append(periods, held{w.name, rec.LockedAt, rec.ReleasedAt, rec.Removed})
				case strings.HasPrefix(rec.Msg, "tombstone collection skipped"):
					busy++
				case strings.HasPrefix(rec.Msg, "tombstone collection failed"):
					t.Fatalf("%s: %s", w.name, sc.Text())
				}
			}
			f.Close()
		}
		workers := map[string]bool{}
		for _, p := range periods {
			workers[p.worker] = true
		}
		if len(workers) == 2 && busy > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %d collections by %v, %d found the lock held", len(periods), workers, busy)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(periods, func(i, j int) bool { return periods[i].from.Before(periods[j].from) })
	removed := 0
	for i, p := range periods {
		removed += p.removed
		if i > 0 && p.from.Before(periods[i-1].to) {
			t.Errorf("%s held the lock from %v while %s held it until %v", p.worker, p.from, periods[i-1].worker, periods[i-1].to)
		}
	}
	if removed != len(old) || o.tombstonesLeft("abcdefghij") != "" {
		t.Errorf("removed %d tombstones in all, want %d; left %q", removed, len(old), o.tombstonesLeft("abcdefghij"))
	}
	if n := o.rdb.Exists(context.Background(), "idx:lock:gc").Val(); n != 0 {
		// Held right now by one of them, possibly: it must expire or be released.
		if ttl := o.rdb.PTTL(context.Background(), "idx:lock:gc").Val(); ttl <= 0 || ttl > 5*time.Minute {
			t.Errorf("lock TTL %v", ttl)
		}
	}
}
