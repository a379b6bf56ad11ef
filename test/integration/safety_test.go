package integration

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/testserver"
)

// TestRedisTrimmedBeforeFirstRead: the operator's sequence of issue 12
// item 2 — setup; publish 5,000 events trimming the stream to about 2,000;
// run — counts every trimmed entry as lost, with the alarm, and applies
// the rest.
func TestRedisTrimmedBeforeFirstRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	e.publish(5000, 21, "--source", "redis", "--maxlen", "2000")
	left := e.rdb.XLen(context.Background(), stream).Val()
	if left >= 5000 || left < 2000 {
		t.Fatalf("the stream holds %d entries after publishing 5000 with --maxlen 2000", left)
	}
	w := e.start("w1", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, 2*time.Minute)
	want := float64(5000 - left)
	waitFor(t, time.Minute, "the trimmed entries counted lost", func() bool {
		return w.metric(t, `indexer_lost_messages_total{source="redis"}`) >= want
	})
	if n := w.metric(t, `indexer_lost_messages_total{source="redis"}`); n != want {
		t.Errorf("indexer_lost_messages_total = %v, want %v", n, want)
	}
	if n := w.metric(t, `indexer_acks_total{source="redis"}`); n != float64(left) {
		t.Errorf("indexer_acks_total = %v, want the %d entries left", n, left)
	}
	w.waitLog(t, "ALARM: messages were trimmed from the stream before any worker read them", 10*time.Second)
}

// TestRedisEntryWithDataTwice: a stream entry carrying the field data
// twice (two valid events) is dead-lettered with a reason naming its
// fields; neither event reaches the index, and the entries around it are
// applied.
func TestRedisEntryWithDataTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	ctx := context.Background()
	e.must("", "setup", "--source", "redis")
	var creates []event.Event
	for _, ev := range eventsOf(50, 31, "dup") {
		if ev.Type == event.FileCreated {
			creates = append(creates, ev)
		}
	}
	a, err := event.Encode(event.JSON, &creates[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(event.JSON, &creates[1])
	if err != nil {
		t.Fatal(err)
	}
	h := e.publish(200, 32)
	if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", a, "data", b, "ct", "json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	h2 := e.publish(200, 33)
	e.start("w1", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, 2*time.Minute)

	dead := e.rdb.XRange(ctx, dlq, "-", "+").Val()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if r, _ := dead[0].Values["reason"].(string); !strings.Contains(r, `its fields: "data", "data", "ct"`) {
		t.Errorf("dead letter reason %q does not name the entry's fields", r)
	}
	if d, _ := dead[0].Values["data"].(string); d != string(a) {
		t.Errorf("dead letter data %q, want the entry's first data", d)
	}
	x, err := index.New(e.rdb, index.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range creates[:2] {
		if en, err := x.Get(ctx, "demo", "dup", ev.File.Path); err == nil {
			t.Errorf("%s reached the index: %+v", ev.File.Path, en)
		}
	}
	m := h.model
	m.Apply(h2.events...)
	e.checkIndex(m)
}

func TestRedisDeadLetterDetails(t *testing.T) {
	t.Parallel()
	testDeadLetterDetails(t, newOpsEnv(t, "redis", 0))
}

func TestNATSDeadLetterDetails(t *testing.T) {
	t.Parallel()
	testDeadLetterDetails(t, newOpsEnv(t, "nats", 2*time.Second))
}

// testDeadLetterDetails: what the dead letters keep and show. A msgpack
// payload is listed in base64 with its content type; an oversized one
// keeps its first --max-message-bytes (the default of
// --dead-letter-max-bytes) with its size and digest, and requeueing it is
// refused, naming it; requeueing an id that does not exist fails naming
// it; an event the index refuses --max-deliver times carries the last
// error in its dead letter. setup states the dead letters' retention.
func testDeadLetterDetails(t *testing.T, o *opsEnv) {
	ctx := context.Background()
	if o.source == "nats" {
		r := o.must("", o.args("setup", "--ack-wait", "2s", "--max-deliver", "5")...)
		if !strings.Contains(r.Stderr, "dead-letter stream IDX_DLQ discards dead letters older than 720h0m0s (max_age) or beyond 100000 messages (max_msgs)") {
			t.Errorf("setup does not state the dead letters' retention:\n%s%s", r.Stdout, r.Stderr)
		}
	} else if r := o.must("", o.args("setup")...); !strings.Contains(r.Stdout, `dead letters go to "idx:events:dlq"; workers with --dead-letter-max-len 100000 keep about the newest 100000`) {
		t.Errorf("setup does not state the dead letters' retention:\n%s", r.Stdout)
	}
	// A key of the wrong type where the refused event's entry goes.
	if err := o.rdb.Set(ctx, "files:demo:t9:date=2024-01-15", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	refused := []byte(`{"v":1,"id":"refused-1","type":"file.created","time":1,"database":"demo","table":"t9","layer":"default",` +
		`"path":"date=2024-01-15/hour=01/r1.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":1}`)
	msgpack := []byte{0x81, 0xa1, 'v', 0x01} // {"v":1}: not an event
	big := []byte(`{"v":1,"id":"` + strings.Repeat("x", 100_000) + `"}`)
	o.publishRaw(refused, "json", "t9")
	o.publishRaw(msgpack, "msgpack", "events")
	o.publishRaw(big, "json", "events")
	w := o.start("w1", nil, o.workerArgs("--max-deliver", "5")...)
	waitFor(t, 2*time.Minute, "three dead letters", func() bool { return o.dlqCount() == 3 })

	var list []map[string]any
	o.jsonOut(&list, o.args("dlq", "list", "--format", "json")...)
	if len(list) != 3 {
		t.Fatalf("dlq list: %d dead letters, want 3", len(list))
	}
	byOriginalData := map[string]map[string]any{}
	for _, d := range list {
		switch {
		case d["data_base64"] != nil:
			byOriginalData["msgpack"] = d
		case d["truncated"] == true:
			byOriginalData["big"] = d
		default:
			byOriginalData["refused"] = d
		}
	}
	wantCT := map[string]string{"redis": "msgpack", "nats": "application/msgpack"}[o.source]
	if d := byOriginalData["msgpack"]; d == nil || d["data_base64"] != base64.StdEncoding.EncodeToString(msgpack) || d["content_type"] != wantCT || d["data"] != nil {
		t.Errorf("msgpack dead letter %v, want its payload in base64 with content type %s", d, wantCT)
	}
	sum := sha256.Sum256(big)
	d := byOriginalData["big"]
	if data, _ := d["data"].(string); d == nil || len(data) != 65536 || data != string(big[:65536]) || d["data_size"] != float64(len(big)) ||
		d["data_sha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("oversized dead letter: %d bytes kept, size %v, sha256 %v; want its first 65536 bytes, %d and %x",
			len(data), d["data_size"], d["data_sha256"], len(big), sum)
	}
	if r, _ := byOriginalData["refused"]["reason"].(string); !strings.Contains(r, "delivered 6 times") || !strings.Contains(r, "last error: the index refused the event") ||
		!strings.Contains(r, "WRONGTYPE") {
		t.Errorf("max-deliver dead letter reason %q, want the last error", r)
	}
	if o.source == "redis" {
		if n := o.rdb.XLen(ctx, dlq).Val(); n != 3 {
			t.Errorf("%d dead letters in the stream", n)
		}
	}

	bigID, _ := d["id"].(string)
	r := o.indexer("", o.args("dlq", "requeue", "--id", bigID)...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "refused truncated dead letter "+bigID) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("requeue of a truncated dead letter: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	missing := map[string]string{"redis": "1-1", "nats": "999999"}[o.source]
	r = o.indexer("", o.args("dlq", "requeue", "--id", missing)...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "dead letter "+missing+" not in") {
		t.Errorf("requeue of a missing id: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if n := o.dlqCount(); n != 3 {
		t.Errorf("%d dead letters after the refused requeues, want 3", n)
	}
	if !w.alive() {
		t.Error("the worker exited")
	}
}

// publishRaw publishes data as it is, with content type ct (json or
// msgpack), to the events stream (NATS: on idx.events.demo.<table>).
func (o *opsEnv) publishRaw(data []byte, ct, table string) {
	o.t.Helper()
	ctx := context.Background()
	if o.source == "redis" {
		if err := o.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", data, "ct", ct}}).Err(); err != nil {
			o.t.Fatal(err)
		}
		return
	}
	m := nats.NewMsg("idx.events.demo." + table)
	m.Data = data
	m.Header.Set("Content-Type", "application/"+ct)
	if _, err := o.js().PublishMsg(ctx, m); err != nil {
		o.t.Fatal(err)
	}
}

// TestRedisShutdownWhileRedisHangs: Redis is SIGSTOPped while a worker
// applies a batch, and the worker is told to stop with --shutdown-timeout
// 2s: it exits (long before a generous bound; go-redis alone would wait
// out its read timeouts and retries), with code 0 since nothing
// acknowledged is lost, saying the batch was left unacknowledged. Once
// Redis runs again another worker applies it.
func TestRedisShutdownWhileRedisHangs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	e.must("", "setup", "--source", "redis")
	h := e.publish(300, 41)
	w := e.start("w1", []string{"INDEXER_FAILPOINT=before-apply-stall:1", "INDEXER_FAILPOINT_STALL=1s"},
		redisWorkerArgs("--shutdown-timeout", "2s")...)
	w.waitLog(t, "failpoint: before-apply: stalling", time.Minute)
	if err := e.redis.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	w.signal(t, syscall.SIGTERM)
	code := w.exitCode(t, 30*time.Second)
	if err := e.redis.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("exit %d, want 0: nothing acknowledged was lost", code)
	}
	w.waitLog(t, "the shutdown timeout passed with a batch in flight", time.Second)
	e.start("w2", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, 2*time.Minute)
	e.checkIndex(h.model)
}

// TestRedisShutdownDuringReadOnlyRetries: Redis turns read-only (a
// replica) while a worker is about to apply a batch; the worker retries
// READONLY, and told to stop with --shutdown-timeout 2s it exits 0, the
// batch unacknowledged. Once Redis is writable another worker applies it.
func TestRedisShutdownDuringReadOnlyRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	ctx := context.Background()
	e.must("", "setup", "--source", "redis")
	h := e.publish(300, 42)
	w := e.start("w1", []string{"INDEXER_FAILPOINT=before-apply-stall:1", "INDEXER_FAILPOINT_STALL=1s"},
		redisWorkerArgs("--shutdown-timeout", "2s")...)
	w.waitLog(t, "failpoint: before-apply: stalling", time.Minute)
	// A replica of a master that does not exist refuses every write.
	if err := e.rdb.Do(ctx, "REPLICAOF", "127.0.0.1", freePort(t)).Err(); err != nil {
		t.Fatal(err)
	}
	w.waitLog(t, "READONLY", time.Minute)
	w.signal(t, syscall.SIGTERM)
	if code := w.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d, want 0: nothing acknowledged was lost", code)
	}
	w.waitLog(t, "the shutdown timeout passed with a batch in flight", time.Second)
	if err := e.rdb.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	e.start("w2", nil, redisWorkerArgs()...)
	e.waitRedisDrained(stream, group, 2*time.Minute)
	e.checkIndex(h.model)
}

// TestRedisWorkerStartsBeforeRedis: a worker started while Redis is down
// does not exit: it serves /healthz (200) and /readyz (503), logs one line
// per attempt at growing intervals, and indexes the events once Redis is
// up.
func TestRedisWorkerStartsBeforeRedis(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{AOF: true})
	e.must("", "setup", "--source", "redis")
	h := e.publish(500, 43)
	if err := e.redis.Kill(); err != nil {
		t.Fatal(err)
	}
	w := e.start("w1", nil, redisWorkerArgs()...)
	waitStartupRetries(t, w)
	if err := e.redis.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.waitRedisDrained(stream, group, 2*time.Minute)
	e.checkIndex(h.model)
	waitFor(t, time.Minute, "/readyz to say ready", func() bool { return w.ready(t) })
}

// TestNATSWorkerStartsBeforeNATS: the same with a NATS server that is
// down when the worker starts.
func TestNATSWorkerStartsBeforeNATS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisConfig{})
	ns := testserver.StartNATSProcess(t, natsBin)
	e.vars = append(e.vars, "INDEXER_NATS_URL="+ns.ClientURL(), "INDEXER_SOURCE=nats")
	e.must("", "setup")
	h := e.publish(500, 44)
	ns.Kill()
	w := e.start("w1", nil, natsWorkerArgs()...)
	waitStartupRetries(t, w)
	if err := ns.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the consumer drained", func() bool {
		pending, ackPending, err := natsConsumerState(ns.ClientURL())
		return err == nil && pending == 0 && ackPending == 0
	})
	e.checkIndex(h.model)
	waitFor(t, time.Minute, "/readyz to say ready", func() bool { return w.ready(t) })
}

// waitStartupRetries waits until a worker waiting for its server logged
// three attempts, at growing intervals, and checks that it is alive, up
// (/healthz) and not ready (/readyz).
func waitStartupRetries(t *testing.T, w *worker) {
	t.Helper()
	var waits []time.Duration
	waitFor(t, 2*time.Minute, "three start-up attempts logged", func() bool {
		waits = waits[:0]
		b, _ := os.ReadFile(w.logPath)
		for _, line := range strings.Split(string(b), "\n") {
			var rec struct {
				Msg     string `json:"msg"`
				RetryIn any    `json:"retry_in"` // nanoseconds, or a duration string
			}
			if json.Unmarshal([]byte(line), &rec) == nil && strings.HasSuffix(rec.Msg, "not reachable yet; retrying") {
				var d time.Duration
				switch v := rec.RetryIn.(type) {
				case float64:
					d = time.Duration(v)
				case string:
					d, _ = time.ParseDuration(v)
				}
				waits = append(waits, d)
			}
		}
		return len(waits) >= 3
	})
	if !(waits[0] < waits[1] && waits[1] < waits[2]) {
		t.Errorf("waits between attempts %v, want growing", waits[:3])
	}
	if !w.alive() {
		t.Fatal("the worker exited while its server was down")
	}
	w.metric(t, "go_goroutines") // waits for the metrics address
	w.mu.Lock()
	addr := w.metricsAddr
	w.mu.Unlock()
	if !http2xx("http://" + addr + "/healthz") {
		t.Error("/healthz is not 200 while the worker waits for its server")
	}
	if w.ready(t) {
		t.Error("/readyz says ready while the worker waits for its server")
	}
}
