#!/usr/bin/env bash
# make demo: the main job end to end on loopback. Starts redis-server
# (data in var/redis) and a worker with an embedded NATS server (store in
# var/nats), publishes 100,000 synthetic events, waits until they are
# indexed, prints stats and a sample query, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

EVENTS=${DEMO_EVENTS:-100000}
REDIS_PORT=${DEMO_REDIS_PORT:-6390}
NATS_LISTEN=${DEMO_NATS_LISTEN:-127.0.0.1:4290}
BIN=bin/indexer
VAR=var/demo-$$

need_redis
mkdir -p "$VAR/redis" "$VAR/nats"
export INDEXER_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"

pids=()
cleanup() {
  local code=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$VAR"
  [ $code -eq 0 ] || echo "demo: failed (logs were in $VAR)" >&2
  exit $code
}
trap cleanup EXIT INT TERM

echo "== starting redis-server on 127.0.0.1:${REDIS_PORT} (data in $VAR/redis)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$VAR/redis" --save "" --appendonly no \
  --daemonize no --logfile "$PWD/$VAR/redis/redis.log" &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "demo: redis-server did not start; see $VAR/redis/redis.log" >&2; exit 1; }

echo "== starting the worker: indexer run --source nats --embedded-nats $VAR/nats (NATS on $NATS_LISTEN)"
"$BIN" run --source nats --embedded-nats "$VAR/nats" --embedded-nats-listen "$NATS_LISTEN" \
  --metrics-addr 127.0.0.1:0 --log-format text >"$VAR/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "worker started" "$VAR/worker.log" 2>/dev/null && break; sleep 0.1; done
grep -q "worker started" "$VAR/worker.log" || { echo "demo: the worker did not start:" >&2; cat "$VAR/worker.log" >&2; exit 1; }

echo "== publishing $EVENTS synthetic events (30% deletes, 5% merges, 10% published twice)"
"$BIN" publish --source nats --nats-url "nats://$NATS_LISTEN" --generate "$EVENTS" --duplicate-ratio 0.1 \
  --database demo --table events

echo "== waiting until every event is indexed"
# NATS stored each event once: the duplicate publishes carried the same
# Nats-Msg-Id and were dropped by the server.
addr=$(grep -o 'addr=[0-9.:]*' "$VAR/worker.log" | head -1 | cut -d= -f2)
scrape() { # GET /metrics with bash alone (no curl on a fresh machine)
  exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || return 0
  printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3
  cat <&3
  exec 3<&-
}
start=$(date +%s)
while :; do
  acked=$(scrape | awk '/^indexer_acks_total/ {printf "%d", $2}')
  acked=${acked:-0}
  printf '\r   %d of %d events indexed' "$acked" "$EVENTS"
  [ "$acked" -ge "$EVENTS" ] && break
  [ $(( $(date +%s) - start )) -gt 300 ] && { echo; echo "demo: not indexed after 5 minutes; worker log:" >&2; tail -20 "$VAR/worker.log" >&2; exit 1; }
  sleep 0.5
done
echo

echo "== indexer stats"
"$BIN" stats
echo
echo "== indexer query --database demo --table events --folder date=2024-01-15/hour=23 (first 10)"
"$BIN" query --database demo --table events --folder date=2024-01-15/hour=23 --format table --limit 10
echo
echo "== indexer check"
"$BIN" check
echo
echo "demo: done; stopping the worker and redis-server"
