#!/usr/bin/env bash
# rabbitmq-definitions.sh — produce a reference GET /api/definitions export from a
# real RabbitMQ 3.10.8 node (throw-away, via conformance/rabbitmq-local.sh), for
# Warren's definitions import/export conformance tests.
#
# Usage:
#   conformance/rabbitmq-definitions.sh [PORT] [OUT]
#     PORT  AMQP port of the throw-away node              default 5680
#           (management HTTP listens on 127.0.0.1:PORT+10000, e.g. 15680)
#     OUT   where to write the definitions JSON
#           default conformance/fixtures/rabbitmq-3.10.8-definitions.json
#
# The node is started fresh (state wiped), populated, exported and stopped again.
# Requires: rabbitmq-server 3.10.8 (see rabbitmq-local.sh), curl, python3.
#
# What it creates (tests log in with these credentials):
#   vhosts:  "/" (default, pre-existing)  and  "prod" (description "production", tags "prod")
#   users (password -> tags):
#     alice / alice-pw   tags administrator   sha256 (default hashing)
#     bob   / bob-pw     tags management      sha256
#     carol / carol-pw   no tags              sha256
#     dave  / dave-pw    no tags              rabbit_password_hashing_sha512, imported via
#                        PUT /api/users/dave {"password_hash", "hashing_algorithm"} with a
#                        hash computed here: base64(salt4 ++ sha512(salt4 ++ "dave-pw"))
#     guest / guest      administrator (built-in default user, loopback only)
#   permissions (configure / write / read):
#     alice  "/"    .*  .*  .*
#     alice  prod   .*  .*  .*
#     bob    prod   ^bob-.*  .*  .*
#     carol  "/"    ''  ^amq\.default$  .*
#     guest  "/"    .*  .*  .*   (default)
#   topic permissions:  bob  prod  exchange amq.topic  write ^bob\.  read .*
#   vhost limits:       prod  max-connections 100, max-queues 50
#   user limits:        bob   max-connections 10,  max-channels 20
#   in vhost prod (declared as alice): durable direct exchange "orders-x",
#     durable classic queue "orders" (x-max-length 1000),
#     binding orders-x -> orders routing key "new"
#
# Prints the output path on success.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PORT="${1:-5680}"
OUT="${2:-$REPO/conformance/fixtures/rabbitmq-3.10.8-definitions.json}"
MGMT_PORT=$((PORT + 10000))
API="http://127.0.0.1:${MGMT_PORT}/api"
LOCAL="$HERE/rabbitmq-local.sh"

log() { echo "[rabbitmq-definitions] $*" >&2; }

started=0
cleanup() {
    if [ "$started" = 1 ]; then
        bash "$LOCAL" stop "$PORT" >&2 || true
    fi
}
trap cleanup EXIT

# --- start the node (management on PORT+10000, loopback only) -----------------
RMQ_PLUGINS=rabbitmq_management \
RMQ_EXTRA_CONF=$'management.tcp.port = '"$MGMT_PORT"$'\nmanagement.tcp.ip = 127.0.0.1' \
    bash "$LOCAL" start "$PORT" >&2
started=1

ctl() { bash "$LOCAL" ctl "$PORT" "$@" >&2; }

# api METHOD PATH [JSON] [USER:PASS] — fails unless the status is 2xx
api() {
    local method="$1" path="$2" body="${3:-}" creds="${4:-guest:guest}"
    local args=(-sS -o /dev/stderr -w '%{http_code}' -u "$creds" -X "$method" "$API$path")
    [ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
    local code
    code="$(curl "${args[@]}")"
    case "$code" in
        2??) ;;
        *) log "$method $path -> HTTP $code"; exit 1 ;;
    esac
}

log "waiting for management API on port $MGMT_PORT"
for _ in $(seq 1 300); do
    if curl -sf -o /dev/null -u guest:guest "$API/overview"; then break; fi
    sleep 0.1
done
curl -sf -o /dev/null -u guest:guest "$API/overview" || { log "management API did not come up"; exit 1; }

# --- users ---------------------------------------------------------------------
api PUT /users/alice '{"password":"alice-pw","tags":"administrator"}'
api PUT /users/bob   '{"password":"bob-pw","tags":"management"}'
api PUT /users/carol '{"password":"carol-pw","tags":""}'
DAVE_HASH="$(python3 -c '
import base64, hashlib, os
salt = os.urandom(4)
print(base64.b64encode(salt + hashlib.sha512(salt + b"dave-pw").digest()).decode())
')"
api PUT /users/dave "{\"password_hash\":\"$DAVE_HASH\",\"hashing_algorithm\":\"rabbit_password_hashing_sha512\",\"tags\":\"\"}"

# --- vhosts (created by alice so guest gets no implicit grant on prod) ----------
api PUT /vhosts/prod '{"description":"production","tags":"prod"}' alice:alice-pw

# --- permissions -----------------------------------------------------------------
api PUT /permissions/%2F/alice  '{"configure":".*","write":".*","read":".*"}'
api PUT /permissions/prod/alice '{"configure":".*","write":".*","read":".*"}'
api PUT /permissions/prod/bob   '{"configure":"^bob-.*","write":".*","read":".*"}'
api PUT /permissions/%2F/carol  '{"configure":"","write":"^amq\\.default$","read":".*"}'
api PUT /topic-permissions/prod/bob '{"exchange":"amq.topic","write":"^bob\\.","read":".*"}'

# --- limits ----------------------------------------------------------------------
api PUT /vhost-limits/prod/max-connections '{"value":100}'
api PUT /vhost-limits/prod/max-queues      '{"value":50}'
api PUT /user-limits/bob/max-connections   '{"value":10}'
api PUT /user-limits/bob/max-channels      '{"value":20}'

# --- topology in prod --------------------------------------------------------------
api PUT /exchanges/prod/orders-x '{"type":"direct","durable":true,"auto_delete":false,"internal":false,"arguments":{}}' alice:alice-pw
api PUT /queues/prod/orders '{"durable":true,"auto_delete":false,"arguments":{"x-max-length":1000}}' alice:alice-pw
api POST /bindings/prod/e/orders-x/q/orders '{"routing_key":"new","arguments":{}}' alice:alice-pw

# --- sanity: every user can authenticate ----------------------------------------------
# alice/bob have management tags (200); carol/dave have no tags, so a correct
# password yields 401 "Not management user" while a wrong one yields "Login failed".
for cred in alice:alice-pw bob:bob-pw; do
    curl -sf -o /dev/null -u "$cred" "$API/whoami" || { log "login check failed for ${cred%%:*}"; exit 1; }
done
for cred in carol:carol-pw dave:dave-pw; do
    if ! curl -s -u "$cred" "$API/whoami" | grep -q 'Not management user'; then
        log "login check failed for ${cred%%:*}"; exit 1
    fi
done
ctl authenticate_user dave dave-pw

# --- export ------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
tmp="$OUT.tmp.$$"
curl -sSf -u guest:guest "$API/definitions" -o "$tmp"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp"
mv "$tmp" "$OUT"

bash "$LOCAL" stop "$PORT" >&2
started=0
echo "$OUT"
