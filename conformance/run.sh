#!/usr/bin/env bash
# One suite, two brokers: runs the scenario suite (the integration tests, which take any broker
# URL) against RabbitMQ 3.10.8 from Debian and against Warren, and prints a table of both
# results per scenario. Installs RabbitMQ if missing and runs it as a throw-away node on a
# spare loopback port with its own state directory (with the management, Prometheus and
# consistent-hash plugins; the management and Prometheus ports are RabbitMQ's defaults). Exits non-zero if a scenario fails on
# Warren (a scenario failing on RabbitMQ is a wrong scenario: it is reported, to be fixed).
#
# Usage: conformance/run.sh [RABBITMQ_PORT]     (default 5673; SKIP_RABBITMQ=1 for Warren only)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
PORT="${1:-5673}"
work="$(mktemp -d)"
started_rabbitmq=0
cleanup() {
    [ "$started_rabbitmq" = 1 ] && "$here/rabbitmq-local.sh" stop "$PORT" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
cd "$root"

# Scenarios for Warren-only behaviour (or needing the warren binary) are skipped on RabbitMQ.
warren_only='^(persistence|process|store_model)::|::(headers_exchange_with_x_variants|message_over_max_size_is_406|stream_queues_are_refused_clearly|delayed_)'

cargo test --test integration --no-run -q 2>/dev/null

run_suite() { # $1 = label, rest = env assignments
    local label="$1"; shift
    # A failing scenario must not stop the run: collect every result.
    { env "$@" cargo test --test integration -- --test-threads=4 2>&1 || true; } |
        sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored\)$/\1 \2/p' | sort >"$work/$label"
}

# The real-client workloads (conformance/clients: pika, aio-pika, kombu, framework topologies,
# amqplib, rabbitmq-c, Java, Go), one row each.
run_clients() { # $1 = label, $2 = URL (none: the clients' script starts Warren)
    { bash "$here/clients/run.sh" ${2:+"$2"} 2>&1 || true; } |
        sed -n 's/^\([a-z-]*\) *\(ok\|FAILED\)$/client:\1 \2/p' >>"$work/$1"
}

if [ "${SKIP_RABBITMQ:-0}" != 1 ]; then
    if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
        echo "installing rabbitmq-server (Debian package)..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        apt-get install -y -qq rabbitmq-server >/dev/null
        rm -f /usr/sbin/policy-rc.d
    fi
    # With the management and Prometheus plugins, so that those scenarios run on both brokers.
    RMQ_PLUGINS="${RMQ_PLUGINS:-rabbitmq_management,rabbitmq_prometheus,rabbitmq_consistent_hash_exchange,rabbitmq_shovel,rabbitmq_shovel_management}" \
        "$here/rabbitmq-local.sh" start "$PORT" >&2
    started_rabbitmq=1
    run_suite rabbitmq WARREN_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:${PORT}/%2f" \
        WARREN_TEST_MGMT_ADDR=127.0.0.1:15672 WARREN_TEST_PROMETHEUS_ADDR=127.0.0.1:15692
    run_clients rabbitmq "amqp://guest:guest@127.0.0.1:${PORT}/%2f"
    "$here/rabbitmq-local.sh" stop "$PORT" >/dev/null 2>&1 || true
    started_rabbitmq=0
else
    : >"$work/rabbitmq"
fi
run_suite warren WARREN_TEST_AMQP_URL=
run_clients warren
sort -o "$work/warren" "$work/warren"
sort -o "$work/rabbitmq" "$work/rabbitmq"

printf '| scenario | RabbitMQ 3.10.8 | Warren |\n|---|---|---|\n'
warren_fail=0; rmq_fail=0; n=0; rmq_ok=0; w_ok=0
while read -r name result; do
    n=$((n + 1))
    rmq=$(awk -v t="$name" '$1 == t { print $2 }' "$work/rabbitmq")
    if [ -z "$rmq" ] || grep -qE "$warren_only" <<<"$name"; then
        rmq="skipped (Warren-only)"
        [ "${SKIP_RABBITMQ:-0}" = 1 ] && rmq="not run"
    elif [ "$rmq" = ok ]; then rmq_ok=$((rmq_ok + 1)); else rmq_fail=$((rmq_fail + 1)); fi
    [ "$result" = ok ] && w_ok=$((w_ok + 1)) || warren_fail=$((warren_fail + 1))
    printf '| %s | %s | %s |\n' "$name" "$rmq" "$result"
done <"$work/warren"
echo
echo "scenarios: $n; Warren: $w_ok ok, $warren_fail failed; RabbitMQ 3.10.8: $rmq_ok ok, $rmq_fail failed, $((n - rmq_ok - rmq_fail)) skipped"
[ "$warren_fail" = 0 ]
