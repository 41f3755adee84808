#!/usr/bin/env bash
# Side-by-side benchmark of Warren and RabbitMQ 3.10 (Debian) with warren-perf, interleaved
# (A B A B A B) per scenario. Installs RabbitMQ if missing, builds Warren and the tool in
# release mode, and writes examples/bench/results.md and examples/bench/ratios.svg.
# Usage: examples/bench/compare.sh [SECONDS_PER_RUN] [ROUNDS] [ROWS]   (defaults 10, 3, abcdefgh;
# a subset of rows, e.g. "e", only prints its table)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    echo "installing rabbitmq-server (Debian package)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq rabbitmq-server >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
(cd "$root" && cargo build --release -q --bin warren --example perf --example latency_floor)
exec python3 "$here/compare.py" --root "$root" --seconds "${1:-10}" --rounds "${2:-3}" --rows "${3:-abcdefgh}"
