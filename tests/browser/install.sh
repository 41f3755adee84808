#!/usr/bin/env bash
# What the browser tests need (idempotent): Debian's chromium, and playwright-core (which
# drives it; it downloads no browser of its own) plus amqplib from npm, pinned.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd "$here" && npm install --no-audit --no-fund --silent)
