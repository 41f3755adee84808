"""What a test suite pays for its broker: time from process start to a first passing test,
and a 100-test suite with a reset between tests, Warren vs RabbitMQ 3.10.8 (Debian),
interleaved. Each "test" declares a small topology (2 exchanges, 3 queues, 3 bindings),
publishes and consumes 10 messages with pika, then the broker is reset: Warren with
POST /api/warren/reset, RabbitMQ with a vhost per test (delete and re-create it, and grant
permissions), as its users do.

Usage: python3 examples/bench/test_suite.py [ROUNDS]   (needs the warren binary in
target/release, rabbitmq-server, pika)."""
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pika

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def api(mport, method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{mport}/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"authorization": AUTH, "content-type": "application/json"},
    )
    return urllib.request.urlopen(req, timeout=30).status


def one_test(port, vhost):
    params = pika.ConnectionParameters("127.0.0.1", port, vhost, pika.PlainCredentials("guest", "guest"))
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.exchange_declare("orders", "topic")
    ch.exchange_declare("dlx", "fanout")
    for q in ("created", "paid", "dead"):
        ch.queue_declare(q)
    ch.queue_bind("created", "orders", "order.created")
    ch.queue_bind("paid", "orders", "order.paid")
    ch.queue_bind("dead", "dlx")
    for i in range(10):
        ch.basic_publish("orders", "order.created", f"o{i}".encode())
    got = 0
    while got < 10:
        m = ch.basic_get("created", auto_ack=True)
        if m[0] is not None:
            got += 1
    conn.close()


def wait_amqp(port, deadline):
    while time.time() < deadline:
        try:
            c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
            c.close()
            return True
        except Exception:
            time.sleep(0.005)
    return False


def start_warren():
    port, mport = free_port(), free_port()
    data = tempfile.mkdtemp()
    t0 = time.time()
    proc = subprocess.Popen(
        [os.path.join(ROOT, "target/release/warren"), "--port", str(port), "--bind", "127.0.0.1",
         "--mgmt-port", str(mport), "--data-dir", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_amqp(port, t0 + 30)
    one_test(port, "/")
    first = time.time() - t0
    return proc, port, mport, first


def start_rabbitmq():
    # rabbitmq-local.sh puts Erlang distribution on PORT+20000: a low fixed port keeps it valid.
    port = 5690
    mport = port + 10000
    t0 = time.time()
    env = dict(os.environ, RMQ_PLUGINS="rabbitmq_management",
               RMQ_EXTRA_CONF=f"management.tcp.port = {mport}\nmanagement.tcp.ip = 127.0.0.1")
    subprocess.run(["bash", os.path.join(ROOT, "conformance/rabbitmq-local.sh"), "start", str(port)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    one_test(port, "/")
    first = time.time() - t0
    # The management listener comes up after AMQP.
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            api(mport, "GET", "overview")
            break
        except Exception:
            time.sleep(0.1)
    return port, mport, first


def suite(port, mport, reset):
    t0 = time.time()
    resets = 0.0
    for i in range(100):
        r0 = time.time()
        vhost = reset(i)
        resets += time.time() - r0
        one_test(port, vhost)
    return time.time() - t0, resets / 100


def warren_reset(mport):
    def reset(_i):
        api(mport, "POST", "warren/reset", {})
        return "/"
    return reset


def rabbit_reset(mport):
    def reset(i):
        v = "test-vhost"
        try:
            api(mport, "DELETE", f"vhosts/{v}")
        except urllib.error.HTTPError:
            pass
        api(mport, "PUT", f"vhosts/{v}", {})
        api(mport, "PUT", f"permissions/{v}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        return v
    return reset


results = {b: {"first": [], "suite": [], "reset": []} for b in ("warren", "rabbitmq")}
for r in range(ROUNDS):
    proc, port, mport, first = start_warren()
    results["warren"]["first"].append(first)
    total, per_reset = suite(port, mport, warren_reset(mport))
    results["warren"]["suite"].append(total)
    results["warren"]["reset"].append(per_reset * 1000)
    proc.terminate()
    proc.wait()
    port, mport, first = start_rabbitmq()
    results["rabbitmq"]["first"].append(first)
    total, per_reset = suite(port, mport, rabbit_reset(mport))
    results["rabbitmq"]["suite"].append(total)
    results["rabbitmq"]["reset"].append(per_reset * 1000)
    subprocess.run(["bash", os.path.join(ROOT, "conformance/rabbitmq-local.sh"), "stop", str(port)],
                   stdout=subprocess.DEVNULL)
    print(f"round {r + 1}: {json.dumps(results)}", file=sys.stderr)

mean = lambda xs: sum(xs) / len(xs)
print("| measure | RabbitMQ 3.10.8 | Warren | RabbitMQ/Warren |")
print("|---|---|---|---|")
for key, what in (("first", "process start to first passing test (s)"),
                  ("suite", "100 tests with a reset between each (s)"),
                  ("reset", "one reset (ms; RabbitMQ: delete + create vhost + permissions)")):
    rb, w = mean(results["rabbitmq"][key]), mean(results["warren"][key])
    print(f"| {what} | {rb:.3f} | {w:.3f} | {rb / w:.1f}x |")
