#!/usr/bin/env python3
"""Exchange and queue federation between Warren and RabbitMQ 3.10.8, both directions (issue 17).

Starts a throw-away RabbitMQ node with rabbitmq_federation and rabbitmq_management
(conformance/rabbitmq-local.sh) and a `warren` binary. Then:

  core -> edge: Warren federates its exchange `edge.events` from RabbitMQ's (a
  `federation-upstream` parameter and a policy on Warren). Messages published to RabbitMQ's
  `edge.events` arrive in Warren's queue bound to it, for the keys bound on Warren only.

  edge -> core: RabbitMQ federates its exchange `core.events` from Warren's (the same
  parameter and policy on RabbitMQ: its federation plugin declares an `x-federation-upstream`
  exchange on Warren). Messages published to Warren's `core.events` arrive in RabbitMQ's queue.

  Queue federation, both ways: a queue `jobs.edge` on Warren pulls from RabbitMQ's queue of
  the same name while a consumer waits on Warren, and `jobs.core` on RabbitMQ from Warren's.

Each direction publishes --messages persistent messages with confirms, counts what arrives
(each must arrive once; duplicates are reported) and checks that an unbound key does not
cross. Prints one JSON line; exits 1 on a missing message.

usage: conformance/federation.py [--warren target/release/warren] [--messages 10000]
"""
import argparse, base64, json, os, random, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.request

import pika

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


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


def must(result, what):
    status, body = result
    if status >= 300:
        raise RuntimeError(f"{what}: {status} {body}")


def topology(port, exchange, queue, key):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.exchange_declare(exchange, "topic", durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, key)
    conn.close()


def federate(mgmt, upstream_uri, pattern, apply_to="exchanges", policy="federate"):
    must(http(mgmt, "PUT", "/api/parameters/federation-upstream/%2F/peer",
              {"value": {"uri": upstream_uri, "reconnect-delay": 1}}), "upstream")
    must(http(mgmt, "PUT", f"/api/policies/%2F/{policy}",
              {"pattern": pattern, "apply-to": apply_to,
               "definition": {"federation-upstream-set": "all"}}), "policy")
    deadline = time.time() + 30
    while time.time() < deadline:
        status, links = http(mgmt, "GET", "/api/federation-links")
        if status == 200 and links and all(l.get("status") == "running" for l in links):
            return links
        time.sleep(0.2)
    raise RuntimeError(f"link not running: {links}")


def publish(port, exchange, key, n):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    for i in range(n):
        ch.basic_publish(exchange, key, str(i).encode(), props)
    ch.basic_publish(exchange, "unbound.key", b"must not cross", props)
    conn.close()


def publish_to_queue(port, queue, n):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    for i in range(n):
        ch.basic_publish("", queue, str(i).encode(), props)
    conn.close()


def consume_all(port, queue, n, quiet_secs=5):
    """A consumer on `queue` (which pulls the upstream's messages through a queue link)."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.basic_qos(prefetch_count=200)
    seen, last, hopped = {}, time.time(), 0
    for method, props, body in ch.consume(queue, inactivity_timeout=0.2):
        if method is None:
            if len(seen) >= n or time.time() - last > quiet_secs:
                break
            continue
        last = time.time()
        seen[body.decode()] = seen.get(body.decode(), 0) + 1
        if (props.headers or {}).get("x-received-from"):
            hopped += 1
        ch.basic_ack(method.delivery_tag)
    ch.cancel()
    conn.close()
    missing = sum(1 for i in range(n) if str(i) not in seen)
    return {"arrived": len(seen), "missing": missing,
            "duplicates": sum(c - 1 for c in seen.values()), "with_x_received_from": hopped}


def collect(port, queue, n, quiet_secs=5):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    seen, stray, last = {}, 0, time.time()
    while time.time() - last < quiet_secs:
        m = ch.basic_get(queue, auto_ack=True)
        if m[0] is None:
            if len(seen) >= n:
                break
            time.sleep(0.05)
            continue
        last = time.time()
        body = m[2].decode()
        if body.isdigit():
            seen[body] = seen.get(body, 0) + 1
            hops = (m[1].headers or {}).get("x-received-from")
            if not hops:
                raise RuntimeError(f"no x-received-from on {body}: {m[1].headers}")
        else:
            stray += 1
    conn.close()
    missing = sum(1 for i in range(n) if str(i) not in seen)
    dups = sum(c - 1 for c in seen.values())
    return {"arrived": len(seen), "missing": missing, "duplicates": dups, "unbound_crossed": stray}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--warren", default=os.path.join(HERE, "..", "target", "release", "warren"))
    ap.add_argument("--messages", type=int, default=10000)
    a = ap.parse_args()
    # rabbitmq-local.sh puts Erlang distribution at PORT + 20000: keep it below 65536.
    rport = next(p for p in iter(lambda: random.randint(21000, 40000), None) if port_free(p))
    rmgmt = free_port()
    env = dict(os.environ, RMQ_PLUGINS="rabbitmq_management,rabbitmq_federation,rabbitmq_federation_management",
               RMQ_EXTRA_CONF=f"management.tcp.port = {rmgmt}")
    local = os.path.join(HERE, "rabbitmq-local.sh")
    subprocess.run(["bash", local, "start", str(rport)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    data = tempfile.mkdtemp(prefix="warren-federation-")
    wport, wmgmt = free_port(), free_port()
    warren = subprocess.Popen(
        [a.warren, "--bind", "127.0.0.1", "--port", str(wport), "--mgmt-port", str(wmgmt),
         "--no-prometheus", "--data-dir", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {"messages": a.messages}
    ok = False
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", wport), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        for _ in range(300):
            if http(rmgmt, "GET", "/api/overview")[0] == 200:
                break
            time.sleep(0.1)

        # core -> edge: Warren downstream of RabbitMQ.
        topology(wport, "edge.events", "edge.inbox", "orders.#")
        links = federate(wmgmt, f"amqp://guest:guest@127.0.0.1:{rport}", r"^edge\.")
        t = time.time()
        publish(rport, "edge.events", "orders.new", a.messages)
        r = collect(wport, "edge.inbox", a.messages)
        r["seconds"] = round(time.time() - t, 2)
        r["link"] = {k: links[0].get(k) for k in ("status", "upstream", "uri")}
        results["rabbitmq_to_warren"] = r

        # edge -> core: RabbitMQ downstream of Warren.
        topology(rport, "core.events", "core.inbox", "audit.#")
        links = federate(rmgmt, f"amqp://guest:guest@127.0.0.1:{wport}", r"^core\.")
        t = time.time()
        publish(wport, "core.events", "audit.login", a.messages)
        r = collect(rport, "core.inbox", a.messages)
        r["seconds"] = round(time.time() - t, 2)
        r["link"] = {k: links[0].get(k) for k in ("status", "upstream", "uri")}
        _, xs = http(wmgmt, "GET", "/api/exchanges/%2F")
        r["declared_on_warren"] = sorted(x["name"] for x in xs if x["name"].startswith("federation: "))
        results["warren_to_rabbitmq"] = r

        # Queue federation, core -> edge: Warren's `jobs.edge` pulls from RabbitMQ's while a
        # consumer on Warren waits.
        publish_to_queue(rport, "jobs.edge", a.messages)
        federate(wmgmt, f"amqp://guest:guest@127.0.0.1:{rport}", r"^jobs\.", "queues", "fq")
        t = time.time()
        r = consume_all(wport, "jobs.edge", a.messages)
        r["seconds"] = round(time.time() - t, 2)
        results["queue_rabbitmq_to_warren"] = r

        # Queue federation, edge -> core: RabbitMQ's `jobs.core` pulls from Warren's.
        publish_to_queue(wport, "jobs.core", a.messages)
        federate(rmgmt, f"amqp://guest:guest@127.0.0.1:{wport}", r"^jobs\.", "queues", "fq")
        t = time.time()
        r = consume_all(rport, "jobs.core", a.messages)
        r["seconds"] = round(time.time() - t, 2)
        results["queue_warren_to_rabbitmq"] = r

        ok = all(results[d]["missing"] == 0 and results[d]["unbound_crossed"] == 0
                 for d in ("rabbitmq_to_warren", "warren_to_rabbitmq"))
        ok = ok and all(results[d]["missing"] == 0
                        for d in ("queue_rabbitmq_to_warren", "queue_warren_to_rabbitmq"))
    finally:
        warren.send_signal(signal.SIGTERM)
        warren.wait(30)
        subprocess.run(["bash", local, "stop", str(rport)], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(data, ignore_errors=True)
        print(json.dumps(results))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
