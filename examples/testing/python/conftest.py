"""pytest fixtures that run the warren binary (on a test clock) for a test session and reset it
between tests.

The binary comes from WARREN_BIN (default: target/debug/warren, built by `cargo build`). It
listens on a port the system picks and writes its ports to a file, so parallel sessions never
collide; it starts in milliseconds, so there is nothing to wait for but the file."""
import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Warren:
    def __init__(self, amqp_port, mgmt_port):
        self.amqp_port = amqp_port
        self.mgmt_port = mgmt_port
        self.url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/%2f"

    def api(self, method, path, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.mgmt_port}/api/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"authorization": AUTH, "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, None

    def reset(self):
        assert self.api("POST", "warren/reset", {})[0] == 204

    def wait_for_messages(self, queue, n, timeout_ms=5000):
        status, _ = self.api("POST", "warren/wait", {"queue": queue, "messages": n, "timeout_ms": timeout_ms})
        return status == 200

    def advance(self, duration):
        """Move the test clock ("90m", "1h", "250ms"); what falls due runs before this returns."""
        assert self.api("POST", "warren/clock", {"advance": duration})[0] == 200

    def peek(self, queue, count=1):
        return self.api("GET", f"warren/peek/%2F/{queue}?count={count}")[1]


@pytest.fixture(scope="session")
def warren():
    binary = os.environ.get("WARREN_BIN", os.path.join(ROOT, "target", "debug", "warren"))
    work = tempfile.mkdtemp()
    ports_file = os.path.join(work, "ports.json")
    mgmt = free_port()
    proc = subprocess.Popen(
        [binary, "--port", "0", "--bind", "127.0.0.1", "--in-memory", "--mgmt-port", str(mgmt),
         "--test-clock", "--ports-file", ports_file],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not os.path.exists(ports_file) or not open(ports_file).read().strip():
        assert time.time() < deadline, "warren did not start"
        time.sleep(0.005)
    ports = json.loads(open(ports_file).read())
    yield Warren(ports["amqp"], ports["management"])
    proc.terminate()
    proc.wait()


@pytest.fixture(autouse=True)
def clean(warren):
    warren.reset()
    yield
