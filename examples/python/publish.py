#!/usr/bin/env python3
"""Publish indexer events to a Redis stream from Python, with redis-py.

The contract is JSON over a Redis Stream: one entry per event, with the
fields ``data`` (the event, JSON) and ``ct`` (``json``). This script
publishes synthetic file.created and file.deleted events (one in five
deletes a file published before) and prints how many it published.

    python3 examples/python/publish.py --redis-url redis://127.0.0.1:6379/0 --events 1000

Needs redis-py: ``sudo apt-get install -y python3-redis`` (Debian, Ubuntu)
or ``pip install redis``. Every option also reads INDEXER_<OPTION> from
the environment, as indexer does (INDEXER_REDIS_URL, ...).
"""

import argparse
import json
import os
import sys
import time
import uuid

try:
    import redis
except ImportError:
    sys.exit("publish.py: redis-py is missing: install it with 'sudo apt-get install -y python3-redis' or 'pip install redis'")

HOUR_NS = 3600 * 10**9


def env(name, default):
    return os.environ.get("INDEXER_" + name.upper().replace("-", "_"), default)


def file_created(database, table, layer, path, size_bytes, row_count, min_time, max_time):
    """A file.created event: every field is required except writer_id, min and max."""
    return {
        "v": 1,                          # schema version
        "id": str(uuid.uuid4()),         # unique per event; a retry of the same event keeps its id
        "type": "file.created",
        "time": time.time_ns(),          # when the writer made the change, Unix ns
        "database": database,            # [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
        "table": table,
        "layer": layer,                  # one of the workers' --layers
        "path": path,                    # date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet, UTC
        "size_bytes": size_bytes,        # 0 <= x < 2^53
        "row_count": row_count,
        "chunk_time": min_time,          # Unix ns (a number, or a decimal string)
        "min_time": min_time,
        "max_time": max_time,            # min_time <= max_time
    }


def file_deleted(database, table, layer, path):
    """A file.deleted event: layer and path name the file."""
    return {"v": 1, "id": str(uuid.uuid4()), "type": "file.deleted", "time": time.time_ns(),
            "database": database, "table": table, "layer": layer, "path": path}


def history(n, database, table, layer):
    """n events: files hour by hour from a day ago; every fifth deletes the
    file created two events earlier."""
    start = (time.time_ns() // HOUR_NS - 24) * HOUR_NS
    created = []
    for i in range(n):
        if i % 5 == 4 and len(created) >= 2:
            yield file_deleted(database, table, layer, created[-2])
            continue
        hour = start + (i % 24) * HOUR_NS
        directory = time.strftime("date=%Y-%m-%d/hour=%H", time.gmtime(hour // 10**9))
        path = f"{directory}/py-{uuid.uuid4().hex}.1.parquet"
        created.append(path)
        yield file_created(database, table, layer, path, 1000 + i, 10 + i % 100, hour, hour + HOUR_NS - 1)


def main():
    p = argparse.ArgumentParser(description="Publish synthetic indexer events to a Redis stream.")
    p.add_argument("--redis-url", default=env("redis-url", "redis://127.0.0.1:6379/0"), help="Redis server URL")
    p.add_argument("--stream", default=env("stream", "idx:events"), help="events stream key")
    p.add_argument("--events", type=int, default=int(env("events", "1000")), help="how many events")
    p.add_argument("--database", default=env("database", "demo"))
    p.add_argument("--table", default=env("table", "python"))
    p.add_argument("--layer", default=env("layer", "default"), help="one of the workers' --layers")
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    pipe = r.pipeline(transaction=False)
    published = 0
    for e in history(args.events, args.database, args.table, args.layer):
        pipe.xadd(args.stream, {"data": json.dumps(e, separators=(",", ":")), "ct": "json"})
        published += 1
        if published % 500 == 0:
            pipe.execute()  # raises on any failure: publish the batch again (events are idempotent)
    pipe.execute()
    print(f"published {published} events to {args.stream}")


if __name__ == "__main__":
    main()
