package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamindex/indexer/internal/testserver"
)

// binary is the indexer built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "indexer-bin")
	if err != nil {
		panic(err)
	}
	if binary, err = testserver.BuildIndexer(dir); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// indexer runs the binary with args, stdin and extra environment.
func indexer(t *testing.T, env []string, stdin string, args ...string) testserver.Result {
	t.Helper()
	return testserver.Run(t, binary, env, stdin, args...)
}

// redisEnv starts a redis-server and returns the environment pointing the
// binary at it.
func redisEnv(t *testing.T) ([]string, *testserver.RedisServer) {
	t.Helper()
	srv := testserver.Redis(t)
	return []string{"INDEXER_REDIS_URL=" + srv.URL()}, srv
}

// goldenNDJSON returns the valid golden examples as NDJSON.
func goldenNDJSON(t *testing.T) (string, int) {
	t.Helper()
	files, err := filepath.Glob("../../schemas/examples/valid/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden examples: %v", err)
	}
	var b strings.Builder
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		b.Write(buf.Bytes())
		b.WriteByte('\n')
	}
	return b.String(), len(files)
}

func TestUsageAndExitCodes(t *testing.T) {
	if r := indexer(t, nil, ""); r.Code != exitUsage || !strings.Contains(r.Stderr, "Commands:") {
		t.Errorf("no command: %+v", r)
	}
	if r := indexer(t, nil, "", "nope"); r.Code != exitUsage || !strings.Contains(r.Stderr, `unknown command "nope"`) {
		t.Errorf("unknown command: %+v", r)
	}
	if r := indexer(t, nil, "", "query", "--bogus"); r.Code != exitUsage {
		t.Errorf("unknown flag: %+v", r)
	}
	r := indexer(t, nil, "", "query", "--help")
	if r.Code != exitOK || strings.Count(r.Stdout, "Usage:") != 1 {
		t.Errorf("--help: %+v", r)
	}
	for _, f := range []string{"--after", "--format", "--redis-url", "INDEXER_REDIS_URL", "--key-prefix"} {
		if !strings.Contains(r.Stdout, f) {
			t.Errorf("query --help lacks %s", f)
		}
	}
}

func TestApplyGoldenTwiceThenCheck(t *testing.T) {
	env, srv := redisEnv(t)
	input, n := goldenNDJSON(t)
	// The golden examples use layers beyond the default one.
	env = append(env, "INDEXER_LAYERS=*")
	first := indexer(t, env, input, "apply")
	if first.Code != exitOK {
		t.Fatalf("first apply: %+v", first)
	}
	second := indexer(t, env, input, "apply")
	if second.Code != exitOK || !strings.Contains(second.Stdout, "applied=0 ") || !strings.Contains(second.Stdout, "invalid=0") {
		t.Fatalf("second apply should change nothing: %+v", second)
	}
	if !strings.Contains(first.Stdout, "invalid=0") || strings.Contains(first.Stdout, "applied=0 ") {
		t.Fatalf("first apply of %d examples: %q", n, first.Stdout)
	}
	if r := indexer(t, env, "", "check"); r.Code != exitOK || !strings.Contains(r.Stdout, "no drift") {
		t.Fatalf("check after apply: %+v", r)
	}

	// Corrupt one folder count by hand: check must exit 1 and name it.
	c := srv.Client(t)
	ctx := t.Context()
	keys := c.Keys(ctx, "folders:*").Val()
	if len(keys) == 0 {
		t.Fatal("no folders key")
	}
	fields := c.HKeys(ctx, keys[0]).Val()
	c.HIncrBy(ctx, keys[0], fields[0], 5)
	r := indexer(t, env, "", "check")
	if r.Code != exitFail || !strings.Contains(r.Stdout, keys[0]+" "+fields[0]) || !strings.Contains(r.Stdout, "stored ") {
		t.Fatalf("check after corruption: %+v", r)
	}
}

func TestApplyReportsInvalidLines(t *testing.T) {
	env, srv := redisEnv(t)
	good := `{"v":1,"id":"a","type":"file.created","time":1,"database":"db","table":"t","layer":"default","path":"date=2024-01-15/hour=01/a.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":2}`
	input := good + "\n\n{not json}\n" + strings.Replace(good, `"default"`, `"cold"`, 1) + "\n"
	r := indexer(t, env, input, "apply")
	if r.Code != exitFail {
		t.Fatalf("apply with invalid lines: %+v", r)
	}
	for _, want := range []string{"line 3: invalid event: invalid JSON", `line 4: invalid event: layer: layer "cold" is not configured`, "2 invalid lines"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr %q lacks %q", r.Stderr, want)
		}
	}
	if !strings.Contains(r.Stdout, "applied=1 ") || !strings.Contains(r.Stdout, "invalid=2") {
		t.Errorf("summary %q", r.Stdout)
	}
	if n := srv.Client(t).HLen(t.Context(), "files:db:t:date=2024-01-15").Val(); n != 1 {
		t.Errorf("%d entries, want the 1 valid event applied", n)
	}
}

// TestQueryAcrossMidnightInTimeZones runs the binary under two TZ values:
// a range given in UTC selects the same files.
func TestQueryAcrossMidnightInTimeZones(t *testing.T) {
	env, _ := redisEnv(t)
	var b strings.Builder
	for _, p := range []string{"date=2024-01-15/hour=22/a", "date=2024-01-15/hour=23/b", "date=2024-01-16/hour=00/c", "date=2024-01-16/hour=02/d"} {
		hour := p[len("date=2024-01-15/hour=") : len("date=2024-01-15/hour=")+2]
		day := p[len("date=") : len("date=")+10]
		start := day + "T" + hour + ":00:00Z"
		b.WriteString(`{"v":1,"id":"` + p[len(p)-1:] + `","type":"file.created","time":1,"database":"db","table":"t","layer":"default","path":"` + p +
			`.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":"` + ns(t, start) + `","max_time":"` + ns(t, start) + `"}` + "\n")
	}
	if r := indexer(t, env, b.String(), "apply"); r.Code != exitOK {
		t.Fatalf("apply: %+v", r)
	}
	for _, tz := range []string{"UTC", "Asia/Tokyo"} {
		r := indexer(t, append(env, "TZ="+tz), "", "query", "--database", "db", "--table", "t",
			"--after", "2024-01-15T23:00:00Z", "--before", "2024-01-16T01:00:00Z", "--format", "ndjson")
		if r.Code != exitOK {
			t.Fatalf("TZ=%s query: %+v", tz, r)
		}
		got := strings.Count(r.Stdout, "\n")
		if got != 2 || !strings.Contains(r.Stdout, "hour=23/b") || !strings.Contains(r.Stdout, "hour=00/c") {
			t.Errorf("TZ=%s: %d entries:\n%s", tz, got, r.Stdout)
		}
	}
}

// ns returns an RFC 3339 time as decimal Unix nanoseconds.
func ns(t *testing.T, rfc string) string {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, rfc)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(tm.UnixNano(), 10)
}

func TestEnvConfigAndSecrets(t *testing.T) {
	_, srv := redisEnv(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "indexer.conf")
	os.WriteFile(cfg, []byte("# test\nredis-url = "+srv.URL()+"\nformat = json\n"), 0o600)
	r := indexer(t, nil, "", "stats", "--config", cfg)
	if r.Code != exitOK || strings.TrimSpace(r.Stdout) != "[]" {
		t.Fatalf("stats from config: %+v", r)
	}
	// The environment wins over the file, the command line over both.
	r = indexer(t, []string{"INDEXER_FORMAT=table"}, "", "stats", "--config", cfg)
	if !strings.Contains(r.Stdout, "no tables") {
		t.Fatalf("env over config: %+v", r)
	}
	r = indexer(t, []string{"INDEXER_FORMAT=table"}, "", "stats", "--config", cfg, "--format", "json")
	if strings.TrimSpace(r.Stdout) != "[]" {
		t.Fatalf("flag over env: %+v", r)
	}
	// An unreachable server: one line, how to fix it, no password.
	r = indexer(t, []string{"INDEXER_REDIS_URL=redis://user:hunter2@127.0.0.1:1/0"}, "", "stats")
	if r.Code != exitFail || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 ||
		!strings.Contains(r.Stderr, "connection refused") || strings.Contains(r.Stderr, "hunter2") {
		t.Fatalf("unreachable redis: %+v", r)
	}
	// A password file is read and used.
	c := srv.Client(t)
	c.ConfigSet(t.Context(), "requirepass", "s3cret")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	r = indexer(t, []string{"INDEXER_REDIS_URL=" + srv.URL()}, "", "stats", "--redis-password-file", pw)
	if r.Code != exitOK {
		t.Fatalf("password file: %+v", r)
	}
	r = indexer(t, []string{"INDEXER_REDIS_URL=redis://:wrong@" + srv.Addr() + "/0"}, "", "stats")
	if r.Code != exitFail || !strings.Contains(r.Stderr, "refused the credentials") || strings.Contains(r.Stderr, "wrong@") {
		t.Fatalf("wrong password: %+v", r)
	}
}
