#!/usr/bin/env python3
"""Warren at the edge of a RabbitMQ cluster (issue 17): shovels in both directions through
outages, counted message by message.

Starts a 3-node RabbitMQ 3.10.8 cluster (conformance/rabbitmq-cluster.sh) with two quorum
queues, and a `warren` binary with a data directory. Then:

  edge -> core: N persistent messages published to Warren's `outbox`; a shovel on Warren
  (on-confirm) moves them to the cluster's quorum queue `orders`, its dest-uri listing all
  three nodes. While it runs, the node it is connected to is stopped and started again, and
  Warren itself is restarted (SIGTERM).

  core -> edge: N persistent messages published to the cluster's `back`; a second shovel on
  Warren moves them into Warren's `inbox`, while another cluster node is stopped and started.

Every message is then read back and counted: each must arrive; duplicates (what an outage
left unconfirmed) are counted and reported. Prints one JSON line of results; exits 1 if a
message is missing.

usage: conformance/cluster-shovel.py [--warren target/release/warren] [--messages 100000]
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time
import urllib.request, base64

import pika

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(port, method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json",
                 "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def cluster(*args):
    subprocess.run(["bash", f"{HERE}/rabbitmq-cluster.sh", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)


class Warren:
    def __init__(self, binary, data):
        self.binary, self.data = binary, data
        self.port, self.mgmt = free_port(), free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--mgmt-port",
             str(self.mgmt), "--no-prometheus", "--data-dir", self.data],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("warren did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)

    def url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"


def publish(port, queue, n, declare=None):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    if declare is not None:
        ch.queue_declare(queue, durable=True, arguments=declare)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    for i in range(n):
        ch.basic_publish("", queue, str(i).encode(), props)
    conn.close()


def depth(mgmt_ports, queue):
    for p in mgmt_ports:
        status, q = http(p, "GET", f"/api/queues/%2F/{queue}")
        if status == 200 and isinstance(q, dict) and "messages" in q:
            return q["messages"]
    return -1


def wait_for(mgmt_ports, queue, n, quiet_secs=60, warren=None):
    """Until `queue` holds at least n, or stops growing for quiet_secs."""
    last, since = -1, time.time()
    while True:
        d = depth(mgmt_ports, queue)
        if os.environ.get("VERBOSE"):
            shovels = http(warren.mgmt, "GET", "/api/shovels")[1] if warren else None
            print(queue, d, json.dumps(shovels)[:300], file=sys.stderr)
        if d >= n:
            return d
        if d != last:
            last, since = d, time.time()
        if time.time() - since > quiet_secs:
            return d
        time.sleep(0.5)


def drain(port, queue):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2000)
    seen = []
    for method, _props, body in ch.consume(queue, inactivity_timeout=3):
        if method is None:
            break
        seen.append(int(body))
        if len(seen) % 1000 == 0:
            ch.basic_ack(method.delivery_tag, multiple=True)
    ch.cancel()
    conn.close()
    return seen


def count(seen, n):
    unique = set(seen)
    missing = [i for i in range(n) if i not in unique]
    return {"received": len(seen), "unique": len(unique), "duplicates": len(seen) - len(unique),
            "missing": len(missing), "first_missing": missing[:10]}


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--warren", default="target/release/warren")
    a.add_argument("--messages", type=int, default=100_000)
    a.add_argument("--cluster-port", type=int, default=5681)
    args = a.parse_args()
    n, P = args.messages, args.cluster_port
    nodes = [P, P + 1, P + 2]
    mgmts = [p + 10000 for p in nodes]
    uris = [f"amqp://guest:guest@127.0.0.1:{p}/%2F" for p in nodes]
    data = tempfile.mkdtemp(prefix="warren-cluster-")
    results = {"messages": n}
    cluster("start", P, "orders", "back")
    w = Warren(args.warren, data)
    try:
        w.start()
        t0 = time.time()
        # The migration path (README, "Outgrowing one node"): Warren's definitions into the
        # cluster, and the cluster's back into Warren.
        http(w.mgmt, "PUT", "/api/exchanges/%2F/events", {"type": "topic", "durable": True})
        http(w.mgmt, "PUT", "/api/queues/%2F/audit", {"durable": True})
        http(w.mgmt, "POST", "/api/bindings/%2F/e/events/q/audit", {"routing_key": "order.*"})
        status, defs = http(w.mgmt, "GET", "/api/definitions")
        assert status == 200, defs
        status, body = http(mgmts[0], "POST", "/api/definitions", defs)
        assert status in (200, 201, 204), (status, body)
        status, b = http(mgmts[0], "GET", "/api/exchanges/%2F/events/bindings/source")
        results["definitions_to_core"] = status == 200 and any(x["destination"] == "audit" for x in b)
        status, core_defs = http(mgmts[0], "GET", "/api/definitions")
        status, body = http(w.mgmt, "POST", "/api/definitions", core_defs)
        assert status in (200, 201, 204), (status, body)
        status, q = http(w.mgmt, "GET", "/api/queues/%2F/orders")
        results["definitions_to_edge"] = status == 200 and q["arguments"].get("x-queue-type") == "quorum"
        # edge -> core
        publish(w.port, "outbox", n, declare={})
        results["edge_published_s"] = round(time.time() - t0, 1)
        status, body = http(w.mgmt, "PUT", "/api/parameters/shovel/%2F/to-core", {"value": {
            "src-uri": "amqp://", "src-queue": "outbox", "dest-uri": uris,
            "dest-queue": "orders", "dest-predeclared": True, "reconnect-delay": 1}})
        assert status in (201, 204), (status, body)
        t0 = time.time()
        wait_for(mgmts, "orders", n // 3, quiet_secs=60, warren=w)
        cluster("stop-node", nodes[0])          # the node the shovel connected to first
        time.sleep(3)
        cluster("start-node", nodes[0])
        wait_for(mgmts, "orders", 2 * n // 3, quiet_secs=60)
        w.stop()                                 # Warren restarts in the middle too
        w.start()
        got = wait_for(mgmts, "orders", n, quiet_secs=60)
        results["edge_to_core_s"] = round(time.time() - t0, 1)
        results["edge_to_core_depth"] = got
        http(w.mgmt, "DELETE", "/api/parameters/shovel/%2F/to-core")
        results["edge_to_core"] = count(drain(nodes[1], "orders"), n)
        # core -> edge
        publish(nodes[1], "back", n)
        status, body = http(w.mgmt, "PUT", "/api/parameters/shovel/%2F/from-core", {"value": {
            "src-uri": uris[::-1], "src-queue": "back", "src-predeclared": True,
            "dest-uri": "amqp://", "dest-queue": "inbox", "reconnect-delay": 1}})
        assert status in (201, 204), (status, body)
        t0 = time.time()
        wait_for([w.mgmt], "inbox", n // 2, quiet_secs=60)
        cluster("stop-node", nodes[2])           # the node it reads from first
        time.sleep(3)
        cluster("start-node", nodes[2])
        wait_for([w.mgmt], "inbox", n, quiet_secs=60)
        results["core_to_edge_s"] = round(time.time() - t0, 1)
        http(w.mgmt, "DELETE", "/api/parameters/shovel/%2F/from-core")
        results["core_to_edge"] = count(drain(w.port, "inbox"), n)
    finally:
        try:
            w.stop()
        except Exception:
            pass
        cluster("stop", P)
        shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(results))
    ok = (results["edge_to_core"]["missing"] == 0 and results["core_to_edge"]["missing"] == 0
          and results["definitions_to_core"] and results["definitions_to_edge"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
