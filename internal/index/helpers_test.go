package index_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/testserver"
)

// newIndex starts a redis-server and returns an index over DB 0 and the
// client, with a fixed clock.
func newIndex(t *testing.T, cfg index.Config) (*index.Index, *redis.Client) {
	t.Helper()
	srv := testserver.Redis(t)
	c := srv.Client(t)
	return openIndex(t, c, cfg), c
}

func openIndex(t *testing.T, c index.Client, cfg index.Config) *index.Index {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	}
	x, err := index.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return x
}

func apply(t *testing.T, x *index.Index, events ...event.Event) index.Result {
	t.Helper()
	res, err := x.Apply(context.Background(), events)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

// file returns a valid file in hour h of 2024-01-15 (h may pass 23 into
// the next day).
func file(h int, name string) event.File {
	t := time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC).Add(time.Duration(h) * time.Hour)
	return event.File{
		Layer:     "default",
		Path:      t.Format("date=2006-01-02/hour=15/") + name + ".1.parquet",
		SizeBytes: 100 + int64(len(name)),
		RowCount:  10,
		ChunkTime: t.UnixNano(),
		MinTime:   t.UnixNano(),
		MaxTime:   t.Add(59 * time.Minute).UnixNano(),
	}
}

var seq int

func created(f event.File) event.Event {
	seq++
	return event.Event{ID: fmt.Sprintf("c%d", seq), Type: event.FileCreated, Time: 1, Database: "db", Table: "t", File: f}
}

func deleted(f event.File) event.Event {
	seq++
	return event.Event{ID: fmt.Sprintf("d%d", seq), Type: event.FileDeleted, Time: 2, Database: "db", Table: "t",
		File: event.File{Layer: f.Layer, Path: f.Path}}
}

func replaced(add []event.File, remove []event.File) event.Event {
	seq++
	e := event.Event{ID: fmt.Sprintf("r%d", seq), Type: event.FilesReplaced, Time: 3, Database: "db", Table: "t", Add: add}
	for _, f := range remove {
		e.Remove = append(e.Remove, event.File{Layer: f.Layer, Path: f.Path})
	}
	return e
}

// dump returns DUMP of every key in the database (of the client's DB), by
// name. Two equal dumps mean byte-for-byte equal data.
func dump(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		v, err := c.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// content returns the logical content of the index keys a reader sees
// (files:, folders:) and the statistics, ignoring encodings and order, and
// the tombstoned paths without their scores. Queues are left out: how
// files are grouped into items depends on how events were batched
// (queue_test.go checks them).
func content(t *testing.T, c *redis.Client) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]map[string]string)
	for _, k := range keys {
		if isQueueKey(k) {
			continue
		}
		switch typ := c.Type(ctx, k).Val(); typ {
		case "hash":
			h, err := c.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			delete(h, "last_event_ns")
			out[k] = h
		case "zset":
			m, err := c.ZRange(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			out[k] = setOf(m)
		case "set":
			m, err := c.SMembers(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			out[k] = setOf(m)
		default:
			t.Fatalf("unexpected key %s of type %s", k, typ)
		}
	}
	return out
}

// isQueueKey reports whether k is a queue list or a queue record key.
func isQueueKey(k string) bool {
	for _, p := range []string{"merge:", "move:", "drop:", "idx:q:", "idx:qc:", "idx:qx:", "idx:qd:", "idx:qr:", "idx:ql:"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func setOf(members []string) map[string]string {
	m := make(map[string]string, len(members))
	for _, v := range members {
		m[v] = ""
	}
	return m
}

// diff describes the first differences between two contents.
func diff(a, b map[string]map[string]string) []string {
	var out []string
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		ha, hb := a[k], b[k]
		if ha == nil || hb == nil {
			out = append(out, fmt.Sprintf("key %s: present %v vs %v", k, ha != nil, hb != nil))
			continue
		}
		for f, v := range ha {
			if w, ok := hb[f]; !ok || w != v {
				out = append(out, fmt.Sprintf("%s %s: %q vs %q", k, f, v, w))
			}
		}
		for f, w := range hb {
			if _, ok := ha[f]; !ok {
				out = append(out, fmt.Sprintf("%s %s: missing vs %q", k, f, w))
			}
		}
		if len(out) > 10 {
			break
		}
	}
	return out
}

// redisDB returns a client of the same server on database db.
func redisDB(t *testing.T, c *redis.Client, db int) *redis.Client {
	t.Helper()
	opt := *c.Options()
	opt.DB = db
	oc := redis.NewClient(&opt)
	t.Cleanup(func() { oc.Close() })
	return oc
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// redeliver returns history as an at-least-once stream delivers it: each
// event 1 to maxCopies times, shuffled.
func redeliver(rng *rand.Rand, history []event.Event, maxCopies int) []event.Event {
	var out []event.Event
	for _, e := range history {
		for n := rng.IntN(maxCopies); n >= 0; n-- {
			out = append(out, e)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
