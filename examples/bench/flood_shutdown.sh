#!/usr/bin/env bash
# Issue 10's flood: two publishers of 64 B persistent messages (no confirms) into one durable
# queue while two consumers ack part of it, for T seconds; broker RSS sampled every 0.5 s; then
# SIGTERM, the time the shutdown takes, a restart on the same directory, and the queue's count
# before and after. Usage: flood_shutdown.sh [seconds] [warren binary] [extra broker flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${1:-8}
BIN=${2:-target/release/warren}
shift 2 || true
cargo build --release -q --example perf --bin warrenctl
PORT=$((20000 + RANDOM % 20000)); MGMT=$((PORT + 1))
DIR=$(mktemp -d)
start() { "$BIN" --port "$PORT" --mgmt-port "$MGMT" --bind 127.0.0.1 --data-dir "$DIR" "$@" 2>>"$DIR.log" & PID=$!;
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return; sleep 0.05; done; echo "no start"; exit 1; }
count() { target/release/warrenctl --port "$MGMT" --format tsv list queues name messages | awk '$1 ~ /^perf-q/ {print $2}'; }
start "$@"
MAX=0
target/release/examples/perf --uri "amqp://guest:guest@127.0.0.1:$PORT/%2f" --producers 2 --consumers 2 \
  --size 64 --persistent --qos 100 --multi-ack-every 50 --time "$T" --keep >"$DIR.perf" 2>&1 &
PERF=$!
while kill -0 $PERF 2>/dev/null; do
  R=$(awk '/VmRSS/ {print $2}' /proc/$PID/status); [ "$R" -gt "$MAX" ] && MAX=$R; sleep 0.5
done
sleep 1
BEFORE=$(count)
T0=$(date +%s.%N); kill -TERM $PID; wait $PID || echo "exit code $?"; T1=$(date +%s.%N)
start
sleep 1
AFTER=$(count)
kill -TERM $PID; wait $PID || true
echo "max RSS $((MAX / 1024)) MiB; queued at SIGTERM $BEFORE; after restart $AFTER; shutdown $(echo "$T1 - $T0" | bc) s"
grep -E "publish|consume" "$DIR.perf" | tail -2 || true
rm -rf "$DIR" "$DIR.log" "$DIR.perf"
