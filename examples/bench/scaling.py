"""How Warren's cost grows: message size, topic bindings, queues, connections, queue depth.
Starts a release warren (in memory) and runs warren-perf sweeps against it; prints a markdown
table. Usage: python3 examples/bench/scaling.py [--seconds 3]"""
import argparse
import json
import os
import socket
import subprocess
import time

p = argparse.ArgumentParser()
p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
p.add_argument("--seconds", type=int, default=3)
p.add_argument("--port", type=int, default=5687)
a = p.parse_args()
PERF = os.path.join(a.root, "target/release/examples/perf")
WARREN = os.path.join(a.root, "target/release/warren")
HZ = os.sysconf("SC_CLK_TCK")


def start():
    proc = subprocess.Popen([WARREN, "--port", str(a.port), "--bind", "127.0.0.1", "--in-memory"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", a.port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("warren did not start")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0


def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def run(args, seconds=None):
    proc = start()
    try:
        c0 = ticks(proc.pid)
        out = subprocess.run([PERF, "--uri", f"amqp://guest:guest@127.0.0.1:{a.port}/%2f", "--time",
                              str(seconds or a.seconds), *args.split()], capture_output=True, text=True)
        c1 = ticks(proc.pid)
        r = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
        r["rss_mib"] = rss_mib(proc.pid)
        n = max(r["consumed"], r["sent"])
        r["cpu_us"] = (c1 - c0) / HZ * 1e6 / max(n, 1)
        r["progress"] = [int(l.split("sent ")[1].split()[0]) for l in out.stderr.splitlines() if l.startswith("time ")]
        return r
    finally:
        proc.terminate()
        proc.wait()


rows = []
for size in (16, 1024, 65536, 1048576):
    r = run(f"--size {size} --autoack")
    rows.append(("message size", f"{size:,} B", f"{r['consume_rate']:,.0f} msg/s ({r['consume_rate'] * size / 1e6:,.0f} MB/s)", r["cpu_us"], r["rss_mib"]))
for n in (10, 1000, 10000, 100000):
    r = run(f"--size 16 --autoack --exchange-type topic --extra-bindings {n}")
    rows.append(("topic bindings (non-matching)", f"{n:,}", f"{r['consume_rate']:,.0f} msg/s", r["cpu_us"], r["rss_mib"]))
for n in (1, 100, 1000, 10000):
    # Unbounded publishing for the whole run, so the rate is what the broker took, not a quota.
    r = run(f"--size 16 --queues {n} --consumers 0")
    rows.append(("queues (publish spread, no consumers)", f"{n:,}", f"{r['sent'] / r['seconds']:,.0f} msg/s published", r["cpu_us"], r["rss_mib"]))
for n in (1, 10, 100, 500):
    r = run(f"--size 16 --autoack --producers {n} --consumers {n} --queues {n}")
    rows.append(("connections (N producers + N consumers)", f"{2 * n:,}", f"{r['consume_rate']:,.0f} msg/s", r["cpu_us"], r["rss_mib"]))
r = run("--size 16 --consumers 0 --pmessages 10000000", seconds=max(a.seconds, 45))
# Whole seconds only: the last one with any publishes ends when the quota runs out.
per_s = [x for x in r["progress"] if x > 0][:-1]
rows.append(("queue depth: publish rate per second while one queue grows to 10,000,000",
             "0 → 10M", " / ".join(f"{x // 1000}k" for x in per_s), r["cpu_us"], r["rss_mib"]))
print("| dimension | value | throughput | broker µs CPU/msg | RSS MiB |")
print("|---|---|---|---|---|")
for d, v, t, c, m in rows:
    print(f"| {d} | {v} | {t} | {c:.2f} | {m:,.0f} |")
