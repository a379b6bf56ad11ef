#!/usr/bin/env bash
# make run: one worker in the foreground for real use: NATS embedded (store
# in var/nats, listening on 127.0.0.1:4222 for writers), Redis at
# $INDEXER_REDIS_URL (default redis://127.0.0.1:6379/0). Extra flags:
# make run RUN_ARGS='--batch-size 500'.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_redis
mkdir -p var/nats
exec bin/indexer run --source nats --embedded-nats var/nats "$@"
