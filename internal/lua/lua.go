// Package lua holds indexer's Redis scripts and their typed Go wrappers.
//
// Each script is its own .lua file, embedded and wrapped once in a
// redis.Script. Load (the index's) and LoadStream (the Redis Streams
// source's) load them at start-up, so a broken script fails at boot; every call runs EVALSHA and falls back to EVAL on NOSCRIPT, so a
// Redis restart or SCRIPT FLUSH heals itself. No other package builds KEYS
// or ARGV for these scripts: callers pass keys computed by the index's
// layout and typed values, and the wrappers lay them out.
package lua

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed patch_index.lua
	patchIndexSrc string
	//go:embed gc_tombstones.lua
	gcTombstonesSrc string

	patchIndex   = redis.NewScript(withShared(patchIndexSrc))
	gcTombstones = redis.NewScript(gcTombstonesSrc)
)

// indexScripts are the scripts of the index (internal/index): applying
// events, GigAPI's work queues, tombstone collection and its lock.
var indexScripts = map[string]*redis.Script{
	"patch_index.lua":   patchIndex,
	"gc_tombstones.lua": gcTombstones,
	"lock_release.lua":  lockRelease,

	"queue_publish.lua":    queuePublish,
	"queue_lease.lua":      queueLease,
	"queue_lease_drop.lua": queueLeaseDrop,
	"queue_redeliver.lua":  queueRedeliver,
	"queue_done.lua":       queueDone,
}

// streamScripts are the scripts of the Redis Streams source
// (internal/consumer/redisstream).
var streamScripts = map[string]*redis.Script{
	"stream_dead_letter.lua":     streamDeadLetter,
	"stream_claim.lua":           streamClaim,
	"stream_extend.lua":          streamExtend,
	"stream_delete_consumer.lua": streamDeleteConsumer,
	"stream_requeue.lua":         streamRequeue,
	"stream_trimmed.lua":         streamTrimmed,
}

// Load loads the index's scripts (patch_index, the queue scripts,
// tombstone collection, the lock) into c's script cache. It fails if a
// script does not compile or c cannot be reached; call it once at start-up
// of a command that writes the index. Commands that only read run no
// script and load none, so a read-only Redis user needs no SCRIPT LOAD.
func Load(ctx context.Context, c redis.Scripter) error { return load(ctx, c, indexScripts) }

// LoadStream loads the Redis Streams source's scripts, as Load does the
// index's; call it once at start-up of a worker reading a Redis stream.
func LoadStream(ctx context.Context, c redis.Scripter) error { return load(ctx, c, streamScripts) }

func load(ctx context.Context, c redis.Scripter, scripts map[string]*redis.Script) error {
	for name, s := range scripts {
		if err := s.Load(ctx, c).Err(); err != nil {
			return fmt.Errorf("lua: load %s: %w", name, err)
		}
	}
	return nil
}

// GCTombstones removes up to limit members of the tombstone set key whose
// score (last touch, Unix milliseconds) is below beforeMillis, atomically,
// and returns how many it removed.
func GCTombstones(ctx context.Context, c redis.Scripter, key string, beforeMillis int64, limit int) (int, error) {
	n, err := gcTombstones.Run(ctx, c, []string{key}, beforeMillis, limit).Int()
	if err != nil {
		return 0, fmt.Errorf("gc_tombstones %s: %w", key, err)
	}
	return n, nil
}
