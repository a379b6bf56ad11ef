package integration

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/testserver"
)

// TestRedisLeastPrivilegeACL runs setup, a worker and the read-only tools
// as the ACL users the README documents, so the documented permissions are
// exactly enough.
func TestRedisLeastPrivilegeACL(t *testing.T) {
	e := newEnv(t, testserver.RedisConfig{})
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The ACL lines of the README, continuation lines joined.
	block := regexp.MustCompile("(?s)```\n(  # workers.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README has no ACL block")
	}
	text := strings.ReplaceAll(string(block[1]), "\\\n", " ")
	ctx := context.Background()
	users := map[string]string{}
	acls := map[string][]any{} // the ACL SETUSER command of each user
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "ACL SETUSER") {
			continue
		}
		args := []any{}
		for _, f := range shellFields(t, line) {
			args = append(args, f)
		}
		name := args[2].(string)
		pw := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(args[4].(string), ">"), "_PASSWORD")) + "-pw"
		args[4] = ">" + pw
		if err := e.rdb.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		users[name] = pw
		acls[name] = args
	}
	if len(users) != 3 {
		t.Fatalf("README defines users %v, want worker, admin and reader", users)
	}
	// noRefusals fails the test if Redis refused anyone a command since the
	// last call (ACL LOG), and forgets.
	noRefusals := func(who string) {
		t.Helper()
		if log := e.rdb.Do(ctx, "ACL", "LOG").Val(); log != nil && len(log.([]any)) > 0 {
			t.Errorf("Redis refused %s a command: ACL LOG %v", who, log)
		}
		e.rdb.Do(ctx, "ACL", "LOG", "RESET")
	}
	as := func(user string) []string {
		return []string{"INDEXER_REDIS_URL=redis://" + user + ":" + users[user] + "@" + e.redis.Addr() + "/0"}
	}
	admin := *e
	admin.vars = append(append([]string{}, e.vars...), as("indexer-admin")...)
	admin.must("", "setup", "--source", "redis")

	h := e.publish(3000, 21) // writers use their own credentials
	// The worker also collects tombstones (with a lock).
	// Merge items are due after 1 s, so the worker publishes them into
	// GigAPI's :idle lists too.
	w := e.start("w1", as("indexer-worker"), redisWorkerArgs("--gc-interval", "200ms", "--tombstone-min-age", "0",
		"--merge-timeout-base", "1s")...)
	e.waitRedisDrained(stream, group, time.Minute)
	e.checkIndex(h.model)
	w.waitLog(t, `"msg":"tombstones collected"`, 10*time.Second)
	waitFor(t, 20*time.Second, "merge items published", func() bool {
		keys, _ := e.rdb.Keys(ctx, "merge:*:idle").Result()
		return len(keys) > 0
	})
	// Entries trimmed before the worker could read them: it counts them
	// (which moves the group's read counter: XGROUP SETID).
	addAndTrim := func() {
		pipe := e.rdb.TxPipeline()
		for i := 0; i < 10; i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", "{}", "ct", "json"}})
		}
		pipe.XTrimMaxLen(ctx, stream, 0)
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	addAndTrim()
	w.waitLog(t, "ALARM: messages were trimmed from the stream before any worker read them", 20*time.Second)
	if n := w.metric(t, `indexer_lost_messages_total{source="redis"}`); n != 10 {
		t.Errorf("%v messages counted lost, want the 10 trimmed", n)
	}
	// Invalid events are dead-lettered (a script adding to the dead
	// letters and acknowledging in the stream), and the worker's gauges
	// read the stream and the dead letters.
	for i := 0; i < 3; i++ {
		e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", "{}", "ct", "json"}})
	}
	waitFor(t, 20*time.Second, "3 dead letters", func() bool { return e.rdb.XLen(ctx, stream+":dlq").Val() == 3 })
	waitFor(t, 20*time.Second, "the dead-letter gauge", func() bool {
		return w.metric(t, `indexer_dead_letter_messages{source="redis"}`) == 3
	})
	// Nothing the worker did was refused: every command it runs is granted.
	noRefusals("the worker (or the admin's setup)")
	// A refusal inside a script leaves the writes before it in place
	// (Redis does not roll scripts back): the ACL must allow every command.
	// Redis 7.0 words a refusal inside a script "can't run this command".
	if b, _ := os.ReadFile(w.logPath); strings.Contains(string(b), "NOPERM") || strings.Contains(string(b), "can't run this command") {
		t.Errorf("the worker was refused a command:\n%s", b)
	}
	// A worker whose user lacks +xgroup|setid (an ACL from before it was
	// needed) says once what to grant, stops counting, and goes on.
	// (The permission is in a selector: set them all again without it.)
	setWorker := func(drop string) {
		args := []any{"ACL", "SETUSER", "indexer-worker", "clearselectors"}
		for _, a := range acls["indexer-worker"][3:] {
			if s := a.(string); drop != "" && strings.HasPrefix(s, "(") {
				a = strings.ReplaceAll(s, " "+drop, "")
			}
			args = append(args, a)
		}
		if err := e.rdb.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	setWorker("+xgroup|setid")
	addAndTrim()
	const refusal = "cannot count the messages trimmed from the stream before they were read"
	w.waitLog(t, refusal, 20*time.Second)
	time.Sleep(6 * time.Second) // more than one more LagEvery (5 s)
	if b, _ := os.ReadFile(w.logPath); strings.Count(string(b), refusal) != 1 || !strings.Contains(string(b), "+xgroup|setid") {
		t.Errorf("want the refusal logged once, naming the permission to grant; the log:\n%s", b)
	}
	if !w.alive() {
		t.Fatal("the worker exited")
	}
	setWorker("")
	e.rdb.Do(ctx, "ACL", "LOG", "RESET") // forget the refusals just provoked

	// The operator commands, as the admin.
	admin.must("", "status", "--format", "json")
	admin.must("", "replay", "--from", "earliest", "--quiet")
	admin.must("", "group", "reset", "--to", "latest")
	admin.must("", "dlq", "list")
	admin.must("", "dlq", "requeue", "--all")
	admin.must("", "dlq", "purge")
	admin.must("", "gc")
	noRefusals("the admin")
	ac := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), Username: "indexer-admin", Password: users["indexer-admin"]})
	defer ac.Close()
	if err := ac.FlushAll(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("admin FLUSHALL: %v, want NOPERM", err)
	}
	e.rdb.Do(ctx, "ACL", "LOG", "RESET") // forget the refusal just provoked

	reader := *e
	reader.vars = append(append([]string{}, e.vars...), as("indexer-reader")...)
	reader.must("", "check")
	reader.must("", "stats")
	reader.must("", "query", "--database", "demo", "--table", "events", "--format", "ndjson")

	noRefusals("the reader") // which loads no script

	// And not more: the worker cannot flush, nor delete, trim or forge the
	// events stream or the dead letters, with a command or in a script;
	// the reader cannot write, nor read the stream.
	wc := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), Username: "indexer-worker", Password: users["indexer-worker"]})
	defer wc.Close()
	if err := wc.FlushAll(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("worker FLUSHALL: %v, want NOPERM", err)
	}
	// --redis-wait-replicas: the barrier write and WAIT (no replica here,
	// so WAIT 0) are granted.
	if err := wc.Set(ctx, "idx:wait", "1", 0).Err(); err != nil {
		t.Errorf("worker SET idx:wait (the --redis-wait-replicas barrier): %v", err)
	}
	if err := wc.Do(ctx, "WAIT", 0, 10).Err(); err != nil {
		t.Errorf("worker WAIT: %v", err)
	}
	dlq := stream + ":dlq"
	lengths := func() [2]int64 { return [2]int64{e.rdb.XLen(ctx, stream).Val(), e.rdb.XLen(ctx, dlq).Val()} }
	before := lengths()
	forged := `{"v":1,"id":"forged","type":"file.deleted","time":1,"database":"demo","table":"events","layer":"default","path":"date=2024-01-15/hour=01/x.1.parquet"}`
	for _, cmd := range [][]any{
		{"DEL", stream}, {"UNLINK", stream}, {"XADD", stream, "*", "data", forged}, {"XTRIM", stream, "MAXLEN", "0"},
		{"XDEL", stream, "0-1"}, {"XGROUP", "DESTROY", stream, group}, {"SET", stream, "x"}, {"RENAME", stream, "x"},
		{"DEL", dlq}, {"XTRIM", dlq, "MAXLEN", "0"}, {"XDEL", dlq, "0-1"},
		{"EVAL", "return redis.call('DEL', KEYS[1])", "2", stream, dlq},
		{"EVAL", "return redis.call('XADD', KEYS[1], '*', 'data', ARGV[1])", "2", stream, dlq, forged},
		{"EVAL", "return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)", "2", stream, dlq},
		{"EVAL", "return redis.call('DEL', KEYS[2])", "2", stream, dlq},
		{"EVAL", "return redis.call('XADD', 'idx:events', '*', 'data', ARGV[1])", "0", forged},
	} {
		err := wc.Do(ctx, cmd...).Err()
		if err == nil || !(strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "The user executing the script can't")) {
			t.Errorf("worker %v: %v, want a refusal", cmd[:2], err)
		}
	}
	if after := lengths(); after != before {
		t.Errorf("stream and dead-letter lengths %v after the worker's attempts, want %v", after, before)
	}
	if err := wc.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []any{"data", "{}"}}).Err(); err != nil {
		t.Errorf("worker XADD to the dead letters: %v (dead-lettering needs it)", err)
	}
	rc := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), Username: "indexer-reader", Password: users["indexer-reader"]})
	defer rc.Close()
	if err := rc.HSet(ctx, "files:demo:events:date=2024-01-15", "x", "y").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("reader HSET: %v, want NOPERM", err)
	}
	if err := rc.XRange(ctx, stream, "-", "+").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("reader XRANGE of the stream: %v, want NOPERM", err)
	}
	ev := `{"v":1,"id":"a","type":"file.created","time":1,"database":"demo","table":"events","layer":"default","path":"date=2024-01-15/hour=01/acl.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":2}`
	if r := reader.indexer(ev+"\n", "apply"); r.Code == 0 || !strings.Contains(r.Stderr, "NOPERM") {
		t.Errorf("reader apply: exit %d, %s; want a NOPERM failure", r.Code, r.Stderr)
	}
	_ = w
}

// shellFields splits a command line into fields as a shell (or redis-cli)
// does for the ACL lines: on spaces, with single-quoted parts kept whole.
func shellFields(t *testing.T, line string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, in = !quoted, true
		case r == ' ' && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quote in %q", line)
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
