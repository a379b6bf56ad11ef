package integration

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/synth"
	"github.com/streamindex/indexer/internal/testserver"
)

// The operator commands (replay, group reset, status, dlq, gc) against
// both sources: ops_redis_test.go and ops_nats_test.go run the scenarios
// below with each.

// opsEnv is an env with its source.
type opsEnv struct {
	*env
	source string
	nats   *natsEnv // with --source nats
}

func newOpsEnv(t *testing.T, source string, ackWait time.Duration) *opsEnv {
	t.Helper()
	if source == "nats" {
		n := newNATSEnv(t, ackWait)
		return &opsEnv{env: n.env, source: source, nats: n}
	}
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	return &opsEnv{env: e, source: source}
}

// args prefixes a command line with --source.
func (o *opsEnv) args(cmd string, extra ...string) []string {
	return append([]string{cmd, "--source", o.source}, extra...)
}

func (o *opsEnv) workerArgs(extra ...string) []string {
	if o.source == "nats" {
		return natsWorkerArgs(extra...)
	}
	return redisWorkerArgs(extra...)
}

func (o *opsEnv) drained(within time.Duration) {
	o.t.Helper()
	if o.source == "nats" {
		o.nats.waitNATSDrained(within)
	} else {
		o.waitRedisDrained(stream, group, within)
	}
}

// js connects to the NATS server.
func (o *opsEnv) js() jetstream.JetStream { return o.nats.natsJS() }

// groups describes the live group and lists every group (consumer) of the
// stream, to show that a command left them alone.
func (o *opsEnv) groups() string {
	o.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	if o.source == "nats" {
		s, err := o.js().Stream(ctx, "IDX_EVENTS")
		if err != nil {
			o.t.Fatal(err)
		}
		for ci := range s.ListConsumers(ctx).Info() {
			b.WriteString(ci.Name + " delivered=" + strconv.FormatUint(ci.Delivered.Stream, 10) + " floor=" +
				strconv.FormatUint(ci.AckFloor.Stream, 10) + " pending=" + strconv.Itoa(ci.NumAckPending) + ";")
		}
		return b.String()
	}
	for _, g := range o.rdb.XInfoGroups(ctx, stream).Val() {
		b.WriteString(g.Name + " last=" + g.LastDeliveredID + " read=" + strconv.FormatInt(g.EntriesRead, 10) +
			" pending=" + strconv.FormatInt(g.Pending, 10) + ";")
	}
	return b.String()
}

// dlqCount counts the dead letters.
func (o *opsEnv) dlqCount() int64 {
	o.t.Helper()
	if o.source == "nats" {
		s, err := o.js().Stream(context.Background(), "IDX_DLQ")
		if err != nil {
			o.t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			o.t.Fatal(err)
		}
		return int64(info.State.Msgs)
	}
	return o.rdb.XLen(context.Background(), dlq).Val()
}

// jsonOut runs a command that prints JSON and decodes it into v.
func (o *opsEnv) jsonOut(v any, args ...string) testserver.Result {
	o.t.Helper()
	r := o.must("", args...)
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		o.t.Fatalf("indexer %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, r.Stdout)
	}
	return r
}

// replayOut is the JSON summary of 'indexer replay'.
type replayOut struct {
	From, To string
	Complete bool
	Messages int64
	Outcomes map[string]int64
	Invalid  int64
	Refused  int64
}

func (o *opsEnv) replay(args ...string) replayOut {
	o.t.Helper()
	var out replayOut
	o.jsonOut(&out, o.args("replay", append([]string{"--format", "json", "--quiet"}, args...)...)...)
	return out
}

// indexOnly keeps the index's own keys of a logical index: the entries,
// folders, tombstones, statistics and the table registry.
func indexOnly(m map[string]map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for k, v := range m {
		for _, p := range []string{"files:", "folders:", "idx:tomb:", "idx:stats:", "idx:tables"} {
			if strings.HasPrefix(k, p) {
				out[k] = v
			}
		}
	}
	return out
}

// wipe deletes the index of one table ("<db>:<table>"), or with "" the
// whole index, by hand; the streams stay.
func (o *opsEnv) wipe(table string) {
	o.t.Helper()
	ctx := context.Background()
	for _, k := range o.rdb.Keys(ctx, "*").Val() {
		if o.rdb.Type(ctx, k).Val() == "stream" {
			continue
		}
		if table == "" || strings.HasPrefix(k, "files:"+table+":") || k == "folders:"+table ||
			k == "idx:tomb:"+table || k == "idx:stats:"+table {
			o.rdb.Del(ctx, k)
		}
	}
	if table != "" {
		o.rdb.SRem(ctx, "idx:tables", table)
	}
}

// historyOf returns n synthetic events of a table and their model.
func historyOf(n int, seed uint64, table string) history {
	ev := synth.New(synth.Config{Seed: seed, Database: "demo", Table: table, DeleteRatio: 0.3}).Events(n)
	m := synth.NewModel()
	m.Apply(ev...)
	return history{events: ev, model: m}
}

// ndjson encodes events one per line.
func ndjson(t *testing.T, events []event.Event) string {
	t.Helper()
	var b strings.Builder
	for i := range events {
		d, err := event.Encode(event.JSON, &events[i])
		if err != nil {
			t.Fatal(err)
		}
		b.Write(d)
		b.WriteByte('\n')
	}
	return b.String()
}

// testReplay: a replay from the beginning onto the correct index changes
// nothing (every outcome a duplicate or ignored) and leaves the workers'
// group alone; onto an index with one table deleted by hand it repairs it;
// onto an emptied index it rebuilds it identically. A worker runs
// throughout.
func testReplay(t *testing.T, o *opsEnv) {
	o.start("w1", nil, o.workerArgs()...)
	o.publish(2000, 41)
	o.must("", o.args("publish", "--generate", "1500", "--seed", "42", "--table", "t2", "--quiet")...)
	o.must(`{"v":1,"id":"junk"}`+"\n", o.args("publish", "--raw")...)
	o.drained(time.Minute)
	want := indexOnly(logicalIndex(t, o.rdb))
	live := o.groups()

	// (a) The correct index: nothing changes.
	out := o.replay("--from", "earliest")
	if !out.Complete || out.Messages != 3501 || out.Invalid != 1 || out.Outcomes["applied"]+out.Outcomes["tombstoned"] != 0 ||
		out.Outcomes["duplicate"]+out.Outcomes["ignored_tombstoned"] != 3500 {
		t.Fatalf("replay onto the correct index: %+v; want 3,500 duplicates or ignored and the one invalid message", out)
	}
	if d := diffIndex(want, indexOnly(logicalIndex(t, o.rdb))); d != "" {
		t.Fatalf("a replay changed the correct index: %s", d)
	}
	if got := o.groups(); got != live {
		t.Fatalf("the replay touched the groups:\nbefore %s\nafter  %s", live, got)
	}
	if n := o.dlqCount(); n != 1 {
		t.Fatalf("%d dead letters after the replay, want the 1 from the workers", n)
	}

	// (c) One table deleted by hand: repaired.
	o.wipe("demo:t2")
	if diffIndex(want, indexOnly(logicalIndex(t, o.rdb))) == "" {
		t.Fatal("wiping the table changed nothing; the test proves nothing")
	}
	if out = o.replay("--from", "earliest"); !out.Complete || out.Outcomes["applied"] == 0 {
		t.Fatalf("replay onto the damaged index: %+v", out)
	}
	if d := diffIndex(want, indexOnly(logicalIndex(t, o.rdb))); d != "" {
		t.Fatalf("the replay did not repair the table: %s", d)
	}

	// (b) The whole index emptied: rebuilt identically.
	o.wipe("")
	if out = o.replay("--from", "earliest"); !out.Complete || out.Messages != 3501 {
		t.Fatalf("replay onto the emptied index: %+v", out)
	}
	if d := diffIndex(want, indexOnly(logicalIndex(t, o.rdb))); d != "" {
		t.Fatalf("the replay did not rebuild the index: %s", d)
	}
	o.must("", "check")
	if got := o.groups(); got != live {
		t.Fatalf("the replays touched the groups:\nbefore %s\nafter  %s", live, got)
	}
}

// testByTime: replay and group reset by time land on the first entry
// stored at or after it.
func testByTime(t *testing.T, o *opsEnv, firstAfter func(time.Time) string, nextOfGroup func() string) {
	o.publish(500, 43)
	time.Sleep(30 * time.Millisecond)
	at := time.Now()
	time.Sleep(30 * time.Millisecond)
	o.must("", o.args("publish", "--generate", "300", "--seed", "44", "--table", "t2", "--quiet")...)
	first := firstAfter(at)
	stamp := at.UTC().Format(time.RFC3339Nano)

	out := o.replay("--from", stamp)
	if !out.Complete || out.Messages != 300 || o.source == "nats" && out.From != first {
		t.Fatalf("replay --from %s: %+v; want the 300 messages from %s", stamp, out, first)
	}
	if out = o.replay("--from", "earliest", "--to", stamp); out.Messages != 500 {
		t.Fatalf("replay --to %s: %d messages, want the 500 before it", stamp, out.Messages)
	}

	r := o.must("", o.args("group", "reset", "--to", stamp, "--dry-run")...)
	if !strings.Contains(r.Stdout, "dry run") || nextOfGroup() == first {
		t.Fatalf("dry run:\n%s", r.Stdout)
	}
	r = o.must("", o.args("group", "reset", "--to", stamp)...)
	if got := nextOfGroup(); got != first {
		t.Fatalf("after group reset --to %s the group delivers %s next, want %s\n%s", stamp, got, first, r.Stdout)
	}
	if !strings.Contains(r.Stdout, "before:") || !strings.Contains(r.Stdout, "after:") {
		t.Errorf("group reset does not print the old and new positions:\n%s", r.Stdout)
	}
}

// statusOut is the part of 'indexer status --format json' the tests read.
type statusOut struct {
	Stream struct {
		Length int64
		First  *struct{ ID string }
	}
	Group struct {
		LastDelivered string `json:"last_delivered"`
		Lag           int64
		Pending       int64
		OldestPending *struct {
			ID         string
			Consumer   string
			Deliveries int64
		} `json:"oldest_pending"`
		Consumers []struct {
			Name    string
			Pending int64
		}
	}
	DeadLetters struct{ Count int64 } `json:"dead_letters"`
	Tables      []struct {
		Database, Table  string
		Files            int64
		FreshnessSeconds *float64 `json:"freshness_seconds"`
	}
}

// testStatus: a worker holding two batches (one being applied, one
// fetched) is killed; status shows the backlog and the pending messages
// it left, and the dead letters of the first batch.
func testStatus(t *testing.T, o *opsEnv) {
	o.must(strings.Repeat(`{"v":1,"id":"junk"}`+"\n", 3), o.args("publish", "--raw")...)
	o.publish(2000, 45)
	w := o.start("w1", []string{"INDEXER_FAILPOINT=before-apply-stall:1", "INDEXER_FAILPOINT_STALL=1h"},
		o.workerArgs("--batch-size", "500", "--linger", "200ms")...)
	w.waitLog(t, "failpoint: before-apply: stalling", 30*time.Second)
	// Batch 1 (3 invalid, dead-lettered, and 497 valid) is being applied;
	// batch 2 (500) was fetched meanwhile.
	var st statusOut
	deadline := time.Now().Add(patient(20 * time.Second))
	for {
		o.jsonOut(&st, o.args("status", "--format", "json")...)
		if st.Group.Pending == 997 && st.DeadLetters.Count == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending %d, dead letters %d; want 997 and 3", st.Group.Pending, st.DeadLetters.Count)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.signal(t, 9)
	w.exitCode(t, 10*time.Second)

	o.jsonOut(&st, o.args("status", "--format", "json")...)
	g := st.Group
	if st.Stream.Length != 2003 || g.Lag != 1003 || g.Pending != 997 || st.DeadLetters.Count != 3 || g.OldestPending == nil {
		t.Fatalf("status: length %d lag %d pending %d dead letters %d oldest %+v; want 2003, 1003, 997, 3",
			st.Stream.Length, g.Lag, g.Pending, st.DeadLetters.Count, g.OldestPending)
	}
	wantConsumer := "w1"
	if o.source == "nats" {
		wantConsumer = "indexer" // JetStream does not tell its clients apart
	}
	if len(g.Consumers) != 1 || g.Consumers[0].Name != wantConsumer || g.Consumers[0].Pending != 997 {
		t.Fatalf("consumers %+v, want %s holding 997", g.Consumers, wantConsumer)
	}
	if o.source == "redis" && (g.OldestPending.Consumer != "w1" || g.OldestPending.Deliveries != 1) {
		t.Fatalf("oldest pending %+v, want held by w1, delivered once", g.OldestPending)
	}
	r := o.must("", o.args("status")...)
	for _, s := range []string{"lag 1003", "pending 997", "DEAD LETTERS"} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("status table lacks %q:\n%s", s, r.Stdout)
		}
	}
	// A worker finishes the job; status then shows the table's freshness.
	o.start("w2", nil, o.workerArgs()...)
	if o.source == "redis" {
		o.drained(time.Minute)
	} else {
		// The killed worker's messages come back after AckWait.
		o.drained(2 * time.Minute)
	}
	o.jsonOut(&st, o.args("status", "--format", "json")...)
	if len(st.Tables) != 1 || st.Tables[0].Files == 0 || st.Tables[0].FreshnessSeconds == nil || st.Group.Lag != 0 || st.Group.Pending != 0 {
		t.Fatalf("status after draining: %+v", st)
	}
}

// testDLQ: events dead-lettered for a layer the workers did not know are
// requeued once they do, and indexed; purge empties the dead letters.
func testDLQ(t *testing.T, o *opsEnv) {
	h := historyOf(300, 46, "hot")
	for i := range h.events {
		e := &h.events[i]
		e.File.Layer = "hot"
		for j := range e.Add {
			e.Add[j].Layer = "hot"
		}
		for j := range e.Remove {
			e.Remove[j].Layer = "hot"
		}
	}
	w1 := o.start("w1", nil, o.workerArgs("--layers", "default")...)
	o.must(ndjson(t, h.events), o.args("publish")...)
	o.must(`{"v":1,"id":"junk"}`+"\n", o.args("publish", "--raw")...)
	o.drained(time.Minute)
	if n := o.dlqCount(); n != 301 {
		t.Fatalf("%d dead letters, want 301", n)
	}
	var list []struct {
		ID, Reason string
		Deliveries int
		OriginalID string `json:"original_id"`
		Data       string
	}
	o.jsonOut(&list, o.args("dlq", "list", "--limit", "500", "--format", "json")...)
	if len(list) != 301 || !strings.Contains(list[0].Reason, "hot") || list[0].OriginalID == "" || list[0].Deliveries != 1 || list[0].Data == "" {
		t.Fatalf("dlq list: %d entries, first %+v", len(list), list[0])
	}
	if r := o.must("", o.args("dlq", "list", "--limit", "2")...); !strings.Contains(r.Stdout, "reason:") || !strings.Contains(r.Stdout, "data:") {
		t.Fatalf("dlq list:\n%s", r.Stdout)
	}

	// The workers learn the layer; the dead letters are requeued: one by
	// id, then all.
	w1.signal(t, 15)
	if code := w1.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("w1 exit %d", code)
	}
	o.start("w2", nil, o.workerArgs("--layers", "default,hot")...)
	r := o.must("", o.args("dlq", "requeue", "--id", list[0].ID)...)
	if !strings.Contains(r.Stdout, "requeued 1 ") {
		t.Fatalf("requeue --id:\n%s", r.Stdout)
	}
	o.must("", o.args("dlq", "requeue", "--all")...)
	o.drained(time.Minute)
	o.checkIndex(h.model)
	// The junk is dead-lettered again; purge removes it.
	deadline := time.Now().Add(patient(10 * time.Second))
	for o.dlqCount() != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := o.dlqCount(); n != 1 {
		t.Fatalf("%d dead letters after the requeue, want the junk one again", n)
	}
	if r := o.must("", o.args("dlq", "purge")...); !strings.Contains(r.Stdout, "purged 1 ") {
		t.Fatalf("purge:\n%s", r.Stdout)
	}
	if n := o.dlqCount(); n != 0 {
		t.Fatalf("%d dead letters after purge", n)
	}
	if r := o.must("", o.args("dlq", "list")...); !strings.Contains(r.Stdout, "no dead letters") {
		t.Fatalf("dlq list after purge:\n%s", r.Stdout)
	}
}

// tombstones sets the last-touch time of tombstones of demo:events,
// creating them (through 'indexer apply') if needed.
func (o *opsEnv) tombstones(at map[string]time.Time) {
	o.t.Helper()
	var lines strings.Builder
	for name := range at {
		lines.WriteString(`{"v":1,"id":"del-` + name + `","type":"file.deleted","time":1,"database":"demo","table":"events","layer":"default","path":"` +
			tombPath(name) + `"}` + "\n")
	}
	o.must(lines.String(), "apply")
	for name, t := range at {
		o.rdb.ZAdd(context.Background(), "idx:tomb:demo:events", redis.Z{Score: float64(t.UnixMilli()), Member: tombPath(name)})
	}
}

func tombPath(name string) string { return "date=2024-01-15/hour=01/gc-" + name + ".1.parquet" }

// tombstonesLeft lists which of names still have a tombstone.
func (o *opsEnv) tombstonesLeft(names string) string {
	var left strings.Builder
	for _, n := range names {
		if o.rdb.ZScore(context.Background(), "idx:tomb:demo:events", tombPath(string(n))).Err() == nil {
			left.WriteRune(n)
		}
	}
	return left.String()
}

// gcOut is the JSON report of 'indexer gc'.
type gcOut struct {
	Removed int
	Busy    bool
	Before  time.Time
	Oldest  time.Time `json:"oldest_entry"`
}
