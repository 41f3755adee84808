#!/usr/bin/env bash
# rabbitmq-cluster.sh — a throw-away 3-node RabbitMQ 3.10.8 cluster on loopback, for the
# scenarios of issue 17 (Warren at the edge of a cluster). Built on rabbitmq-local.sh: three
# nodes on AMQP ports P, P+1, P+2 (management on P+10000.., Erlang distribution on P+20000..),
# one shared Erlang cookie, nodes 2 and 3 joined to node 1, and a quorum queue declared.
#
# Usage:
#   rabbitmq-cluster.sh start [P] [QUEUE...]   # default P=5681, QUEUE=orders (quorum, 3 replicas)
#   rabbitmq-cluster.sh stop  [P]
#   rabbitmq-cluster.sh stop-node  P+i         # stop one node (its data is kept)
#   rabbitmq-cluster.sh start-node P+i         # start it again; it rejoins the cluster
#   rabbitmq-cluster.sh status [P]             # cluster_status from node 1
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:-}"
P="${2:-5681}"
COOKIE="warren-cluster-cookie-${P}"
PLUGINS="${RMQ_PLUGINS:-rabbitmq_management}"

node_env() { # $1 = AMQP port
    export RMQ_BASE="${TMPDIR:-/tmp}/rabbitmq-cluster-$1"
    export RMQ_EXTRA_CONF="management.tcp.port = $(( $1 + 10000 ))"
    export RMQ_PLUGINS="$PLUGINS"
}

start_node() { # $1 = AMQP port; keep=1 keeps its data (a restart)
    node_env "$1"
    mkdir -p "$RMQ_BASE"
    if [ ! -f "$RMQ_BASE/.erlang.cookie" ]; then
        printf '%s' "$COOKIE" > "$RMQ_BASE/.erlang.cookie"
        chmod 400 "$RMQ_BASE/.erlang.cookie"
    fi
    RMQ_KEEP_DATA="${keep:-0}" bash "$here/rabbitmq-local.sh" start "$1"
}

ctl() { # $1 = port, rest = rabbitmqctl args
    local port="$1"; shift
    node_env "$port"
    bash "$here/rabbitmq-local.sh" ctl "$port" "$@"
}

case "$cmd" in
    start)
        shift 2 2>/dev/null || shift
        queues=("$@"); [ "${#queues[@]}" -gt 0 ] || queues=(orders)
        for p in "$P" $((P + 1)) $((P + 2)); do
            rm -rf "${TMPDIR:-/tmp}/rabbitmq-cluster-$p"
            start_node "$p"
        done
        for p in $((P + 1)) $((P + 2)); do
            ctl "$p" stop_app >/dev/null
            ctl "$p" join_cluster "rmqlocal${P}@localhost" >/dev/null
            ctl "$p" start_app >/dev/null
        done
        for q in "${queues[@]}"; do
            curl -sf -u guest:guest -X PUT -H 'content-type: application/json' \
                "http://127.0.0.1:$((P + 10000))/api/queues/%2F/$q" \
                -d '{"durable": true, "arguments": {"x-queue-type": "quorum"}}' >/dev/null
        done
        echo "cluster ready: amqp ports $P $((P + 1)) $((P + 2)), management $((P + 10000)), quorum queues: ${queues[*]}"
        ;;
    stop)
        for p in "$P" $((P + 1)) $((P + 2)); do
            node_env "$p"
            bash "$here/rabbitmq-local.sh" stop "$p" || true
            rm -rf "$RMQ_BASE"
        done
        ;;
    stop-node)
        node_env "$P"
        bash "$here/rabbitmq-local.sh" stop "$P"
        ;;
    start-node)
        keep=1 start_node "$P"
        ;;
    status)
        ctl "$P" cluster_status
        ;;
    *)
        echo "usage: $0 start|stop|status [PORT] | stop-node PORT | start-node PORT" >&2
        exit 2
        ;;
esac
