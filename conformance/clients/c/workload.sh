#!/usr/bin/env bash
# rabbitmq-c through Debian's amqp-tools: declare, bind (amqp-consume -e/-r), publish with
# headers and properties, consume a batch with manual acks and prefetch, basic.get, delete.
# Usage: workload.sh AMQP_URL
set -euo pipefail
url="$1"
q="q-rabbitmq-c"
out_file="$(mktemp)"
trap 'rm -f "$out_file"' EXIT
for old in "$q" "$q-get"; do amqp-delete-queue --url="$url" -q "$old" >/dev/null 2>&1 || true; done
# amqp-consume declares the queue (auto-delete), binds it to amq.topic, then takes 5 messages
# (acking each, prefetch 5).
timeout 15 amqp-consume --url="$url" -q "$q" -e amq.topic -r "orders.*" -c 5 -p 5 cat >"$out_file" &
consumer=$!
sleep 0.5
for n in 0 1 2 3 4; do
  amqp-publish --url="$url" -e amq.topic -r orders.new -p -C application/json \
    -H "n: $n" -b "{\"n\": $n}"
done
wait "$consumer"
for n in 0 1 2 3 4; do
  grep -q "{\"n\": $n}" "$out_file" || { echo "message $n missing: $(cat "$out_file")" >&2; exit 1; }
done
amqp-declare-queue --url="$url" -q "$q-get" >/dev/null
amqp-publish --url="$url" -r "$q-get" -b "via-default-exchange"
got=$(timeout 10 amqp-get --url="$url" -q "$q-get")
[ "$got" = "via-default-exchange" ] || { echo "amqp-get returned '$got'" >&2; exit 1; }
amqp-delete-queue --url="$url" -q "$q-get" >/dev/null
echo "rabbitmq-c: ok"
