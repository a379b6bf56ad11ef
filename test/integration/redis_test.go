package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/testserver"
)

const (
	stream = "idx:events"
	group  = "indexer"
	dlq    = "idx:events:dlq"
)

func redisWorkerArgs(extra ...string) []string {
	return append([]string{"--source", "redis", "--claim-min-idle", "1s"}, extra...)
}

// TestRedisThreeWorkers: 100,000 events with duplicates and deletes,
// published while three workers run: the index equals the model, check
// passes, nothing stays pending.
func TestRedisThreeWorkers(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	for i := 1; i <= 3; i++ {
		e.start(fmt.Sprintf("w%d", i), nil, redisWorkerArgs()...)
	}
	h := e.publish(100_000, 7, "--duplicate-ratio", "0.1")
	e.waitRedisDrained(stream, group, 3*time.Minute)
	e.checkIndex(h.model)
	if n := e.rdb.XLen(context.Background(), dlq).Val(); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// TestRedisKill9MidRun: a worker holding applied, unacknowledged entries
// is killed with SIGKILL; the others claim its entries and the index
// equals the model.
func TestRedisKill9MidRun(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	h := e.publish(30_000, 8)
	// w1 stalls after applying its third batch, holding it, and is killed.
	victim := e.start("w1", []string{"INDEXER_FAILPOINT=after-apply-stall:3", "INDEXER_FAILPOINT_STALL=1h"}, redisWorkerArgs()...)
	victim.waitLog(t, "failpoint: after-apply: stalling", 30*time.Second)
	held := e.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 100000, Consumer: "w1"}).Val()
	if len(held) == 0 {
		t.Fatal("the victim holds no pending entry; the test would prove nothing")
	}
	victim.signal(t, syscall.SIGKILL)
	e.start("w2", nil, redisWorkerArgs()...)
	e.start("w3", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, 2*time.Minute)
	e.checkIndex(h.model)
	left := e.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 10, Consumer: "w1"}).Val()
	if len(left) != 0 {
		t.Errorf("the dead worker still owns %d entries", len(left))
	}
}

// TestRedisKilledAfterApplyBeforeAck: a worker dies between the Lua call
// and XACK; the entries are delivered again and re-applying them changes
// nothing (every outcome is a duplicate or ignored).
func TestRedisKilledAfterApplyBeforeAck(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	h := e.publish(800, 9) // one batch
	w1 := e.start("w1", []string{"INDEXER_FAILPOINT=after-apply-kill:1"}, redisWorkerArgs("--linger", "500ms")...)
	if code := w1.exitCode(t, 30*time.Second); code != -1 {
		t.Fatalf("w1 exit %d, want killed by the failpoint", code)
	}
	_, _, pending := e.groupState(stream, group)
	if pending != 800 {
		t.Fatalf("%d pending after the crash, want the whole batch (800)", pending)
	}
	e.checkIndex(h.model) // the batch was applied before the crash
	before := logicalIndex(t, e.rdb)

	w2 := e.start("w2", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, time.Minute)
	if d := diffIndex(before, logicalIndex(t, e.rdb)); d != "" {
		t.Fatalf("redelivery changed the index: %s", d)
	}
	if n := w2.metric(t, `indexer_events_total{outcome="applied",source="redis"}`); n != 0 {
		t.Errorf("redelivery applied %v events, want 0", n)
	}
	if n := w2.metric(t, `indexer_redeliveries_total{source="redis"}`); n != 800 {
		t.Errorf("redeliveries = %v, want 800", n)
	}
}

// TestRedisPoison: 100 malformed events of at least 10 kinds, mixed in
// with valid ones: exactly those are dead-lettered, each with a reason.
func TestRedisPoison(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	h := generated(2000, 10)
	kinds := poisonKinds()
	var poison []string
	for i := 0; i < 100; i++ {
		poison = append(poison, kinds[i%len(kinds)](i))
	}
	// Interleave: 20 valid events, one poison line, and so on.
	var valid strings.Builder
	p := 0
	for i := range h.events {
		b, err := event.Encode(event.JSON, &h.events[i])
		if err != nil {
			t.Fatal(err)
		}
		valid.Write(b)
		valid.WriteByte('\n')
		if (i+1)%20 == 0 && p < len(poison) {
			e.must(valid.String(), "publish")
			valid.Reset()
			e.must(poison[p]+"\n", "publish", "--raw")
			p++
		}
	}
	e.must(valid.String(), "publish")
	for ; p < len(poison); p++ {
		e.must(poison[p]+"\n", "publish", "--raw")
	}
	e.start("w1", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, time.Minute)
	e.checkIndex(h.model)

	dead := e.rdb.XRange(context.Background(), dlq, "-", "+").Val()
	if len(dead) != len(poison) {
		t.Fatalf("%d dead letters, want exactly the %d poison messages", len(dead), len(poison))
	}
	want := map[string]bool{}
	for _, s := range poison {
		want[s] = true
	}
	for _, d := range dead {
		data, _ := d.Values["data"].(string)
		if !want[data] {
			t.Errorf("dead letter %s is not one of the poison messages: %.80q", d.ID, data)
		}
		if r, _ := d.Values["reason"].(string); r == "" {
			t.Errorf("dead letter %s has no reason", d.ID)
		}
		if d.Values["original_id"] == nil || d.Values["deliveries"] == nil {
			t.Errorf("dead letter %s lacks original_id or deliveries: %v", d.ID, d.Values)
		}
	}
}

// poisonKinds returns generators of malformed events, one per kind.
func poisonKinds() []func(i int) string {
	valid := func(i int, mod func(string) string) string {
		s := fmt.Sprintf(`{"v":1,"id":"poison-%d","type":"file.created","time":1,"database":"demo","table":"events","layer":"default","path":"date=2024-01-15/hour=01/poison%d.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":2}`, i, i)
		return mod(s)
	}
	return []func(int) string{
		func(i int) string { return fmt.Sprintf(`{"v":1,"id":"x%d"`, i) }, // truncated JSON
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, `"v":1`, `"v":2`, 1) })
		}, // unknown version
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, "file.created", "file.moved", 1) })
		}, // unknown type
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, "date=2024-01-15", "../../etc", 1) })
		},
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, `"events"`, `"ev{x}"`, 1) })
		}, // hash tag in a name
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, `"size_bytes":1`, `"size_bytes":9007199254740993`, 1) })
		},
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, `"min_time":1`, `"min_time":5`, 1) })
		}, // min > max
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, `"demo"`, `"demo\"]]..redis.call('FLUSHALL')--"`, 1) })
		},
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, "hour=01", "hour=24", 1) })
		}, // no such hour
		func(i int) string { return valid(i, func(s string) string { return s[:len(s)-1] + `,"v":1}` }) },        // duplicate key
		func(i int) string { return valid(i, func(s string) string { return s[:len(s)-1] + `,"extra":true}` }) }, // unknown field
		func(i int) string { return strings.Repeat("[", 10000) + strings.Repeat("]", 10000) },                    // deep nesting
		func(i int) string {
			return valid(i, func(s string) string { return strings.Replace(s, "poison", strings.Repeat("p", 5000), 1) })
		}, // 5 KB path
	}
}

// TestRedisSIGTERMInFlight: SIGTERM while a batch is being applied: the
// worker finishes it, acknowledges only what it applied, exits 0; a new
// worker completes the rest.
func TestRedisSIGTERMInFlight(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	h := e.publish(20_000, 11)
	w1 := e.start("w1", []string{"INDEXER_FAILPOINT=before-apply-stall:3", "INDEXER_FAILPOINT_STALL=2s"}, redisWorkerArgs("--shutdown-timeout", "20s")...)
	w1.waitLog(t, "failpoint: before-apply: stalling", 30*time.Second)
	w1.signal(t, syscall.SIGTERM)
	if code := w1.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("w1 exit %d after SIGTERM, want 0", code)
	}
	checkAckedApplied(t, e, h)
	read, _, _ := e.groupState(stream, group)
	if read >= int64(e.rdb.XLen(context.Background(), stream).Val()) {
		t.Log("w1 read everything before stopping; the restart has nothing left to do")
	}
	e.start("w2", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, time.Minute)
	e.checkIndex(h.model)
}

// checkAckedApplied verifies that every acknowledged entry's event is in
// effect in the index: an acknowledged create of a path no event deletes
// is live; an acknowledged delete's path is tombstoned and not live.
func checkAckedApplied(t *testing.T, e *env, h history) {
	t.Helper()
	ctx := context.Background()
	deletedEver := map[string]bool{}
	for i := range h.events {
		h.events[i].Files(func(f *event.File, del bool) {
			if del {
				deletedEver[f.Path] = true
			}
		})
	}
	pendingIDs := map[string]bool{}
	for _, p := range e.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 1 << 20}).Val() {
		pendingIDs[p.ID] = true
	}
	var last string
	for _, g := range e.rdb.XInfoGroups(ctx, stream).Val() {
		if g.Name == group {
			last = g.LastDeliveredID
		}
	}
	entries := e.rdb.XRange(ctx, stream, "-", last).Val()
	acked, violations := 0, 0
	for _, m := range entries {
		if pendingIDs[m.ID] {
			continue
		}
		acked++
		data, _ := m.Values["data"].(string)
		ev, err := event.Decode(event.JSON, []byte(data))
		if err != nil {
			continue
		}
		ev.Files(func(f *event.File, del bool) {
			key := "files:demo:events:" + f.Date()
			live := e.rdb.HExists(ctx, key, f.Path).Val()
			tomb := e.rdb.ZScore(ctx, "idx:tomb:demo:events", f.Path).Err() == nil
			if del && (live || !tomb) || !del && !deletedEver[f.Path] && !live {
				violations++
			}
		})
	}
	if acked == 0 {
		t.Fatal("nothing was acknowledged before the shutdown; the test proves nothing")
	}
	if violations > 0 {
		t.Fatalf("%d acknowledged events are not in effect in the index (of %d acknowledged)", violations, acked)
	}
}

// TestRedisRestartAOF: Redis (AOF, fsync always) is killed and restarted
// mid-run; the workers reconnect and finish; the index equals the model.
func TestRedisRestartAOF(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{AOF: true})
	e.must("", "setup", "--source", "redis")
	h := e.publish(40_000, 12)
	e.start("w1", nil, redisWorkerArgs()...)
	e.start("w2", nil, redisWorkerArgs()...)
	deadline := time.Now().Add(patient(time.Minute))
	for {
		read, _, _ := e.groupState(stream, group)
		if read > 5000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("workers made no progress")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.redis.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := e.redis.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.waitRedisDrained(stream, group, 2*time.Minute)
	e.checkIndex(h.model)
}

// TestRedisKilledBeforeApply: a worker dies after reading a batch and
// before applying it; nothing of it may have been acknowledged, so another
// worker applies it all.
func TestRedisKilledBeforeApply(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	h := e.publish(5000, 13)
	w1 := e.start("w1", []string{"INDEXER_FAILPOINT=before-apply-kill:2"}, redisWorkerArgs()...)
	if code := w1.exitCode(t, 30*time.Second); code != -1 {
		t.Fatalf("w1 exit %d, want killed by the failpoint", code)
	}
	e.start("w2", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, time.Minute)
	e.checkIndex(h.model)
}
