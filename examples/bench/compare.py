"""Orchestrates examples/bench/compare.sh: starts RabbitMQ and Warren on loopback, runs each
scenario against them alternately, samples broker CPU from /proc, and writes a markdown table of
medians and Warren/RabbitMQ ratios plus an SVG chart of the ratios."""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--seconds", type=int, default=10)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--rmq-port", type=int, default=5675)
p.add_argument("--warren-port", type=int, default=5685)
p.add_argument("--rows", default="abcdefgh",
               help="rows to run; a subset prints its table and leaves results.md and the chart alone")
a = p.parse_args()

ROOT = a.root
PERF = os.path.join(ROOT, "target/release/examples/perf")
FLOOR = os.path.join(ROOT, "target/release/examples/latency_floor")
WARREN = os.path.join(ROOT, "target/release/warren")
RMQ = os.path.join(ROOT, "conformance/rabbitmq-local.sh")
HZ = os.sysconf("SC_CLK_TCK")

SCENARIOS = [
    ("a", "1p1c 16 B transient, autoack", "--size 16 --autoack", "rate"),
    ("b", "1p1c 16 B, manual ack every 50, qos 100", "--size 16 --qos 100 --multi-ack-every 50", "rate"),
    ("c", "1 KiB persistent, durable queue, confirms 1000, qos 100, ack every 50",
     "--size 1024 --persistent --confirm 1000 --qos 100 --multi-ack-every 50", "rate"),
    ("d", "1p fanout to 10 queues, 10c, 16 B, autoack (deliveries/s)", "--size 16 --fanout-queues 10 --autoack", "rate"),
    ("e", "1p1c 16 B autoack at 1,000 msg/s: p99 latency (us)", "--size 16 --autoack --rate 1000", "p99"),
    ("f", "4p4c 4 queues 256 B autoack", "--producers 4 --consumers 4 --queues 4 --size 256 --autoack", "rate"),
]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def descendants(pid):
    out = [pid]
    try:
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        kids = []
    for k in kids:
        out += descendants(int(k))
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Rabbit:
    name = "RabbitMQ"

    def __init__(self):
        self.port = a.rmq_port

    def start(self):
        out = subprocess.run([RMQ, "start", str(self.port)], capture_output=True, text=True, check=True).stdout
        self.startup_ms = int(out.split("startup_ms=")[1].split()[0])
        wrapper = int(open(f"/tmp/rabbitmq-local-{self.port}/wrapper.pid").read())
        self.pids = descendants(wrapper)

    def stop(self):
        subprocess.run([RMQ, "stop", str(self.port)], capture_output=True)


class Warren:
    name = "Warren"

    def __init__(self):
        self.port = a.warren_port
        self.dir = tempfile.mkdtemp(prefix="warren-bench-")

    def start(self, extra=()):
        t0 = time.time()
        self.proc = subprocess.Popen([WARREN, "--port", str(self.port), "--bind", "127.0.0.1", "--data-dir", self.dir, *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not first_start(self.port):
            time.sleep(0.002)
        self.startup_ms = (time.time() - t0) * 1000
        self.pids = [self.proc.pid]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir, exist_ok=True)


def first_start(port):
    """True once the broker answers the protocol header with connection.start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(1) == b"\x01"
    except OSError:
        return False


def pause(broker, on):
    """Stop (or resume) a broker's processes while the other one is measured: an idle Erlang VM
    keeps its schedulers spinning, which would tax whichever broker runs beside it."""
    for pid in broker.pids:
        try:
            os.kill(pid, signal.SIGSTOP if on else signal.SIGCONT)
        except OSError:
            pass


def perf(broker, args, seconds):
    other = warren if broker is rabbit else rabbit
    pause(other, True)
    try:
        return measure(broker, args, seconds)
    finally:
        pause(other, False)


def measure(broker, args, seconds):
    uri = f"amqp://guest:guest@127.0.0.1:{broker.port}/%2f"
    c0 = cpu_ticks(broker.pids)
    out = subprocess.run([PERF, "--uri", uri, "--time", str(seconds), *args.split()], capture_output=True, text=True)
    c1 = cpu_ticks(broker.pids)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not line:
        raise RuntimeError(f"perf failed on {broker.name}: {out.stderr[-500:]}")
    r = json.loads(line[-1])
    deliveries = r["consumed"]
    r["cpu_us_per_msg"] = (c1 - c0) / HZ * 1e6 / max(deliveries, 1)
    return r


def floor(seconds):
    """Row e's floor: the same paced client through a relay thread that does no work (both brokers
    paused), run in the same rounds so it drifts with the machine like the brokers do."""
    pause(rabbit, True)
    pause(warren, True)
    try:
        out = subprocess.run([FLOOR, "--mode", "thread", "--rate", "1000", "--time", str(seconds)],
                             capture_output=True, text=True)
    finally:
        pause(rabbit, False)
        pause(warren, False)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not line:
        raise RuntimeError(f"latency_floor failed: {out.stderr[-500:]}")
    return json.loads(line[-1])


SCENARIOS = [s for s in SCENARIOS if s[0] in a.rows]
full = set("abcdefgh") <= set(a.rows)
rabbit, warren = Rabbit(), Warren()
rabbit.start()
warren.start()
results = {}  # (scenario, broker) -> list of runs
try:
    for key, _, args, _ in SCENARIOS:
        for rnd in range(a.rounds):
            for b in (rabbit, warren):
                r = perf(b, args, a.seconds)
                results.setdefault((key, b.name), []).append(r)
                print(f"{key} round {rnd + 1} {b.name}: {r['consume_rate']:.0f} msg/s, p99 {r['latency_us']['p99']} us, "
                      f"{r['cpu_us_per_msg']:.2f} us CPU/msg", flush=True)
            if key == "e":
                r = floor(a.seconds)
                results.setdefault(("e", "floor"), []).append(r)
                print(f"e round {rnd + 1} floor (relay thread, no broker): p99 {r['latency_us']['p99']} us", flush=True)
    # g: RSS with 1,000,000 queued 16 B transient messages, no consumer.
    for b in (rabbit, warren) if "g" in a.rows else ():
        pause(rabbit if b is warren else warren, False)
        before = rss_kib(b.pids)
        perf(b, "--size 16 --consumers 0 --pmessages 1000000 --confirm 1000 --keep", 30)
        time.sleep(2)
        results[("g", b.name)] = [{"rss_mib": rss_kib(b.pids) / 1024, "idle_before_mib": before / 1024}]
        print(f"g {b.name}: {results[('g', b.name)][0]['rss_mib']:.0f} MiB with 1M queued", flush=True)
finally:
    rabbit.stop()
    warren.stop()

# h: start to first connection.start, and idle RSS.
h = {}
for extra, label in (((), "sled"), (("--in-memory",), "in-memory")) if "h" in a.rows else ():
    times, rss = [], []
    for _ in range(5):
        warren.start(extra)
        times.append(warren.startup_ms)
        time.sleep(0.3)
        rss.append(rss_kib(warren.pids) / 1024)
        warren.stop()
    h[label] = (statistics.median(times), statistics.median(rss))
if "h" in a.rows:
    rabbit.start()
    time.sleep(2)
    h["rabbit"] = (rabbit.startup_ms, rss_kib(rabbit.pids) / 1024)
    rabbit.stop()


def med(key, name, field):
    vals = []
    for r in results[(key, name)]:
        v = r
        for f in field.split("."):
            v = v[f]
        vals.append(v)
    return statistics.median(vals)


rows, chart = [], []
for key, desc, _, metric in SCENARIOS:
    f = "consume_rate" if metric == "rate" else "latency_us.p99"
    rm, wm = med(key, "RabbitMQ", f), med(key, "Warren", f)
    rc, wc = med(key, "RabbitMQ", "cpu_us_per_msg"), med(key, "Warren", "cpu_us_per_msg")
    ratio = wm / rm if rm else 0
    rows.append(f"| {key} | {desc} | {rm:,.0f} | {wm:,.0f} | **{ratio:.2f}×** | {rc:.2f} | {wc:.2f} | {wc / rc if rc else 0:.2f} |")
    chart.append((key, ratio if metric == "rate" else (rm / wm if wm else 0)))
    if key == "e":
        fm = med("e", "floor", "latency_us.p99")
        rows.append(f"| e | floor: the same paced client through a relay thread, no broker: p99 (us) | | {fm:,.0f} | "
                    f"**{fm / rm if rm else 0:.2f}×** | | | |")
if not full:
    print("\n".join(rows))
    raise SystemExit(0)
g_r, g_w = results[("g", "RabbitMQ")][0]["rss_mib"], results[("g", "Warren")][0]["rss_mib"]
rows.append(f"| g | RSS with 1,000,000 queued 16 B transient messages (MiB) | {g_r:,.0f} | {g_w:,.0f} | **{g_w / g_r:.2f}×** | | | |")
rows.append(f"| h | start to first connection.start (ms): sled / in-memory | {h['rabbit'][0]:,.0f} | {h['sled'][0]:.1f} / {h['in-memory'][0]:.1f} | | | | |")
rows.append(f"| h | idle RSS (MiB): sled / in-memory | {h['rabbit'][1]:,.0f} | {h['sled'][1]:.1f} / {h['in-memory'][1]:.1f} | | | | |")
chart.append(("g", g_r / g_w if g_w else 0))

table = "\n".join([
    f"Medians of {a.rounds} interleaved rounds of {a.seconds} s (RabbitMQ, Warren, RabbitMQ, Warren, ...).",
    "Rates are consumed msg/s (deliveries/s for d); e is p99 latency in µs (lower is better, so its",
    "ratio is Warren/RabbitMQ latency); CPU is broker utime+stime per consumed message.",
    "",
    "| row | scenario | RabbitMQ 3.10.8 | Warren | Warren/RabbitMQ | RabbitMQ µs CPU/msg | Warren µs CPU/msg | CPU ratio |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
])
open(os.path.join(ROOT, "examples/bench/results.md"), "w").write(table + "\n")

# SVG: one bar per row, the advantage factor (higher is better for Warren), log-free.
W, BAR, GAP, LEFT = 640, 26, 10, 40
top = max(v for _, v in chart) or 1
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{len(chart) * (BAR + GAP) + 60}" font-family="sans-serif" font-size="13">',
       '<text x="10" y="20">Warren advantage over RabbitMQ 3.10.8 (× faster; e: × lower p99; g: × less RSS)</text>']
for i, (k, v) in enumerate(chart):
    y = 35 + i * (BAR + GAP)
    w = (W - LEFT - 90) * v / top
    svg.append(f'<text x="10" y="{y + 18}">{k}</text><rect x="{LEFT}" y="{y}" width="{w:.0f}" height="{BAR}" fill="#3b7dd8"/>'
               f'<text x="{LEFT + w + 6:.0f}" y="{y + 18}">{v:.1f}×</text>')
x1 = LEFT + (W - LEFT - 90) * 1 / top
svg.append(f'<line x1="{x1:.0f}" y1="30" x2="{x1:.0f}" y2="{len(chart) * (BAR + GAP) + 35}" stroke="#c33" stroke-dasharray="4"/>')
svg.append("</svg>")
open(os.path.join(ROOT, "examples/bench/ratios.svg"), "w").write("\n".join(svg) + "\n")
print(table)
