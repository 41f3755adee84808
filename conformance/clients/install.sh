#!/usr/bin/env bash
# Install the real clients the workloads use (idempotent): Debian packages for rabbitmq-c
# (amqp-tools), the Java client and the Go client; pinned PyPI and npm packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
command -v amqp-publish >/dev/null || need+=(amqp-tools)
[ -f /usr/share/java/amqp-client.jar ] || need+=(librabbitmq-client-java)
[ -f /usr/share/java/slf4j-api.jar ] || need+=(libslf4j-java)
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/rabbitmq/amqp091-go ] || need+=(golang-github-rabbitmq-amqp091-go-dev)
command -v javac >/dev/null || need+=(default-jdk-headless)
command -v node >/dev/null || need+=(nodejs npm)
command -v openssl >/dev/null || need+=(openssl)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q -r "$here/python/requirements.txt"
(cd "$here/node" && npm install --no-audit --no-fund --silent)
