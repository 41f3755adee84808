#!/usr/bin/env bash
# Run every real-client workload against a broker. With no URL, starts the warren binary
# (WARREN_BIN, default target/debug/warren) on a free loopback port, in memory, and stops it
# afterwards. Prints one line per client and exits non-zero if any failed.
# Usage: conformance/clients/run.sh [AMQP_URL]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

url="${1:-}"
mport=""
if [ -z "$url" ]; then
    bin="${WARREN_BIN:-$root/target/debug/warren}"
    [ -x "$bin" ] || (cd "$root" && cargo build --bin warren)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    tport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Certificates for AMQPS: a CA, a server certificate for localhost, and a client
    # certificate whose common name is a user (SASL EXTERNAL).
    certs="$work/certs"; mkdir -p "$certs"
    (
        cd "$certs"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=warren-test-ca" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=tls-client" -keyout client.key -out client.csr
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile client.ext -out client.pem
    ) >"$work/openssl.log" 2>&1
    "$bin" --port "$port" --bind 127.0.0.1 --in-memory --mgmt-port "$mport" \
        --tls-port "$tport" --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" \
        --tls-ca "$certs/ca.pem" --tls-verify-peer >"$work/warren.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    url="amqp://guest:guest@127.0.0.1:$port/%2f"
fi

CP=/usr/share/java/amqp-client.jar:/usr/share/java/slf4j-api.jar
declare -A cmds=(
    [pika]="python3 $here/python/pika_workload.py $url"
    [aio-pika]="python3 $here/python/aio_pika_workload.py $url"
    [kombu]="python3 $here/python/kombu_workload.py $url"
    [topologies]="python3 $here/python/topologies_workload.py $url"
    [amqplib]="node $here/node/workload.js $url"
    [rabbitmq-c]="bash $here/c/workload.sh $url"
    [java]="bash -c 'javac -cp $CP -d $work/java $here/java/Workload.java && java -cp $CP:$work/java Workload $url'"
    [go]="bash -c 'mkdir -p $work/go && cp $here/go/workload.go $work/go/main.go && cd $work/go && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$work/gocache go build -o workload main.go && ./workload $url'"
)
clients=(pika aio-pika kombu topologies amqplib rabbitmq-c java go)
# RabbitMQ's rabbitmqadmin against the management API, when rabbitmq-server is installed and
# we started the broker (so we know its management port).
if [ -n "$mport" ]; then
    cmds[pika-tls]="python3 $here/python/pika_tls_workload.py 127.0.0.1 $tport $mport $certs"
    clients+=(pika-tls)
fi
if [ -n "$mport" ] && command -v rabbitmqadmin >/dev/null 2>&1; then
    cmds[rabbitmqadmin]="bash $here/admin/workload.sh $mport"
    clients+=(rabbitmqadmin)
fi
failed=0
for client in "${clients[@]}"; do
    if timeout 120 bash -c "${cmds[$client]}" >"$work/$client.log" 2>&1; then
        printf '%-12s ok\n' "$client"
    else
        printf '%-12s FAILED\n' "$client"
        sed 's/^/    /' "$work/$client.log" | tail -n 20
        failed=1
    fi
done
if [ "$failed" != 0 ] && [ -n "$pid" ]; then
    echo "warren log:"; tail -n 30 "$work/warren.log"
fi
exit "$failed"
