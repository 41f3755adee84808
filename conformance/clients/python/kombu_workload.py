"""kombu (Celery's transport) workload: declare through kombu entities, publish with
confirms, consume and ack, reject one to the dead-letter exchange."""
import sys
import time

from kombu import Connection, Exchange, Queue

url = sys.argv[1]
tag = "kombu"
ex = Exchange(f"ex-{tag}", type="topic", auto_delete=True)
dlx = Exchange(f"dlx-{tag}", type="fanout", auto_delete=True)
queue = Queue(f"q-{tag}", ex, routing_key="orders.*", queue_arguments={"x-dead-letter-exchange": dlx.name})
dead = Queue(f"dead-{tag}", dlx)
with Connection(url, transport_options={"confirm_publish": True}) as conn:
    channel = conn.channel()
    for q in (queue, dead):
        q(channel).declare()
    producer = conn.Producer(serializer="json")
    for n in range(10):
        producer.publish({"n": n}, exchange=ex, routing_key="orders.new", headers={"n": n}, delivery_mode=2, retry=True)
    seen = []

    def on_message(body, message):
        n = body["n"]
        assert message.headers["n"] == n, message.headers
        assert message.content_type == "application/json"
        if n == 3:
            message.reject()
        else:
            message.ack()
        seen.append(n)

    with conn.Consumer(queue, callbacks=[on_message], prefetch_count=5):
        while len(seen) < 10:
            conn.drain_events(timeout=5)
    assert seen == list(range(10)), seen
    got = None
    for _ in range(50):
        got = dead(channel).get(no_ack=True)
        if got:
            break
        time.sleep(0.05)
    assert got is not None, "nothing dead-lettered"
    assert got.payload["n"] == 3
    queue(channel).delete()
    dead(channel).delete()
print(f"{tag}: ok")

# Celery's remote control: kombu's pidbox. Workers listen on a fanout exchange
# (`<name>.pidbox`) with per-node auto-delete queues carrying x-message-ttl and x-expires;
# replies come back through a direct exchange (`reply.<name>.pidbox`) to the caller's own
# auto-delete queue. `celery inspect ping` is a broadcast that collects replies.
import socket
import threading

from kombu.pidbox import Mailbox

mailbox = Mailbox(f"{tag}-celery", type="fanout", accept=["json"])
handlers = {"ping": lambda state, **kw: {"ok": "pong"},
            "add": lambda state, x=0, y=0, **kw: x + y}
stop = threading.Event()
listening = threading.Barrier(3)


def worker(hostname):
    with Connection(url) as wconn:
        node = mailbox.Node(hostname, state={}, handlers=handlers, channel=wconn.channel())
        node.listen(callback=None)
        listening.wait(10)
        while not stop.is_set():
            try:
                wconn.drain_events(timeout=0.1)
            except socket.timeout:
                pass


workers = [threading.Thread(target=worker, args=(f"w{i}@{tag}",), daemon=True) for i in (1, 2)]
for w in workers:
    w.start()
listening.wait(10)
with Connection(url) as conn:
    box = mailbox(conn)
    replies = box._broadcast("ping", reply=True, timeout=2, limit=2)
    got = sorted(list(r)[0] for r in replies)
    assert got == [f"w1@{tag}", f"w2@{tag}"], replies
    assert all(list(r.values())[0] == {"ok": "pong"} for r in replies), replies
    # A command addressed to one node only reaches that node.
    one = box._broadcast("add", arguments={"x": 2, "y": 3}, reply=True, timeout=2,
                         destination=[f"w2@{tag}"], limit=1)
    assert one == [{f"w2@{tag}": 5}], one
stop.set()
for w in workers:
    w.join(5)
print(f"{tag}: pidbox ok")
