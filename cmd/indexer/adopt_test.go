package main

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/testserver"
)

// gigapiAdd writes an entry as GigAPI's metadata library does: re-encoded
// by cjson into the files: hash, the folder count incremented, nothing
// else (docs/gigapi-layout.md).
var gigapiAdd = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(cjson.decode(ARGV[2])))
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)`)

// TestAdoptTheIssuesSymptoms: the symptoms of an index GigAPI's library
// wrote (check "ok: 0 tables"; a delete making FILES -1 and BYTES -500; a
// create counted duplicate with statistics 0) are gone after adopt, and
// check --repair fixes a counter GigAPI's own Batch left wrong.
func TestAdoptTheIssuesSymptoms(t *testing.T) {
	env, srv := redisEnv(t)
	l, _ := index.NewLayout("")
	adoptSymptoms(t, env, srv.Client(t), l)
}

// TestAdoptCluster: the same on a 3-master Redis Cluster in the cluster
// layout, with another writer writing its keys directly: adopt and
// check --repair work there too.
func TestAdoptCluster(t *testing.T) {
	rc := testserver.RedisClusterFor(t, testserver.ClusterConfig{})
	l, _ := index.NewClusterLayout("")
	adoptSymptoms(t, []string{"INDEXER_REDIS_URL=" + rc.URL(), "INDEXER_LAYOUT=cluster"}, rc.Client(t), l)
}

// adoptSymptoms runs the scenario of TestAdoptTheIssuesSymptoms with the
// binary's environment env on the Redis c holds, in layout l.
func adoptSymptoms(t *testing.T, env []string, c redis.UniversalClient, l index.Layout) {
	t.Helper()
	ctx := t.Context()
	part := l.Part("db", "t", "date=2024-01-15")
	files, folders := l.Files("db", "t", "date=2024-01-15"), l.Folders(part)
	for _, name := range []string{"a", "b"} {
		path := "date=2024-01-15/hour=14/" + name + ".1.parquet"
		entry := `{"layer":"default","database":"db","table":"t","path":"` + path + `","size_bytes":500,"row_count":10,"chunk_time":0,"min_time":0,"max_time":0,` +
			`"str_chunk_time":"1705327200000000000","str_min_time":"1705327200000000000","str_max_time":"1705327260000000000","min":{},"max":{},"writer_id":"","cmd":"ADD"}`
		if err := gigapiAdd.Run(ctx, c, []string{files, folders}, path, entry, "date=2024-01-15/hour=14").Err(); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	if r := indexer(t, env, "", "check"); r.Code != exitFail || !strings.Contains(r.Stdout, "not registered") || !strings.Contains(r.Stdout, "indexer adopt") {
		t.Fatalf("check of a GigAPI-written index: %+v, want a drift naming adopt", r)
	}
	before := c.DBSize(ctx).Val()
	if r := indexer(t, env, "", "adopt", "--dry-run"); r.Code != exitOK || !strings.Contains(r.Stdout, "dry run: nothing changed") ||
		!strings.Contains(r.Stdout, "1 not registered before") || !strings.Contains(r.Stdout, "would set") {
		t.Fatalf("adopt --dry-run: %+v", r)
	}
	if after := c.DBSize(ctx).Val(); after != before {
		t.Fatalf("the dry run added keys: %d -> %d", before, after)
	}
	if r := indexer(t, env, "", "adopt"); r.Code != exitOK || !strings.Contains(r.Stdout, "entries:     2 checked, 0 unreadable") {
		t.Fatalf("adopt: %+v", r)
	}
	if r := indexer(t, env, "", "check"); r.Code != exitOK || !strings.Contains(r.Stdout, "ok: 1 tables, 2 files") {
		t.Fatalf("check after adopt: %+v", r)
	}
	del := `{"v":1,"id":"d","type":"file.deleted","time":2,"database":"db","table":"t","layer":"default","path":"date=2024-01-15/hour=14/a.1.parquet"}`
	create := createdLine("c", "t", "date=2024-01-15/hour=14/b.1.parquet", 1705327200000000000, 1705327260000000000)
	if r := indexer(t, env, del+"\n"+create+"\n", "apply"); r.Code != exitOK || !strings.Contains(r.Stdout, "applied=1 ") || !strings.Contains(r.Stdout, "duplicate=1 ") {
		t.Fatalf("apply after adopt: %+v", r)
	}
	r := indexer(t, env, "", "stats", "--format", "json")
	if low := strings.ToLower(r.Stdout); r.Code != exitOK || !strings.Contains(low, `"files": 1,`) || !strings.Contains(low, `"bytes": 500,`) {
		t.Fatalf("stats after deleting an adopted file: %+v", r)
	}
	if r := indexer(t, env, "", "check"); r.Code != exitOK {
		t.Fatalf("check after deleting an adopted file: %+v", r)
	}

	// GigAPI's compactor commits with its own Batch: a file appears
	// behind indexer's back. check finds it, check --repair fixes it.
	path := "date=2024-01-15/hour=15/m.2.parquet"
	entry := `{"layer":"default","database":"db","table":"t","path":"` + path + `","size_bytes":900,"row_count":20,"chunk_time":0,"min_time":0,"max_time":0,"writer_id":"","cmd":"ADD"}`
	gigapiAdd.Run(ctx, c, []string{files, folders}, path, entry, "date=2024-01-15/hour=15")
	if r := indexer(t, env, "", "check"); r.Code != exitFail || !strings.Contains(r.Stdout, "check --repair") {
		t.Fatalf("check after a bypassing commit: %+v", r)
	}
	r = indexer(t, env, "", "check", "--repair")
	if r.Code != exitOK || !strings.Contains(r.Stdout, "repaired: "+l.Stats(part)+" bytes: 500 -> 1400") || !strings.Contains(r.Stdout, "ok: 1 tables, 2 files") {
		t.Fatalf("check --repair: %+v", r)
	}
	if r := indexer(t, env, "", "check", "--repair"); r.Code != exitOK || !strings.Contains(r.Stdout, "repaired 0 counters") {
		t.Fatalf("check --repair again: %+v", r)
	}
}
