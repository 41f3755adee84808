#!/usr/bin/env bash
# Run Warren's integration tests against a real RabbitMQ 3.10 (Debian's rabbitmq-server), the
# referee for every behaviour. Installs RabbitMQ if missing, starts a throw-away node on a spare
# loopback port with its own state directory, runs `cargo test --test integration` against it
# (WARREN_TEST_AMQP_URL), stops the node, and prints the test summary line.
#
# Usage: conformance/against-rabbitmq.sh [PORT]        (default 5673)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
PORT="${1:-5673}"

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    echo "installing rabbitmq-server (Debian package)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # policy-rc.d keeps the package from starting a system node.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq rabbitmq-server amqp-tools >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

"$here/rabbitmq-local.sh" start "$PORT"
trap '"$here/rabbitmq-local.sh" stop "$PORT" >/dev/null 2>&1 || true' EXIT

cd "$root"
log="$(mktemp)"
set +e
WARREN_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:${PORT}/%2f" \
    cargo test --test integration -- --test-threads=4 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo
echo "RabbitMQ 3.10 referee: $(grep -E '^test result:' "$log" | tail -n1)"
rm -f "$log"
exit "$rc"
