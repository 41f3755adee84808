"""pika (BlockingConnection) workload against a broker URL: topology, confirms, prefetch,
manual acks, reject to a DLX, properties and headers read back. Exits non-zero on failure."""
import json
import sys

import pika

url = sys.argv[1]
tag = "pika"
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ex, dlx, q, dead = f"ex-{tag}", f"dlx-{tag}", f"q-{tag}", f"dead-{tag}"
ch.exchange_declare(ex, exchange_type="topic", auto_delete=True)
ch.exchange_declare(dlx, exchange_type="fanout", auto_delete=True)
ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx})
ch.queue_declare(dead)
ch.queue_bind(q, ex, routing_key="orders.*")
ch.queue_bind(dead, dlx)
ch.confirm_delivery()
for n in range(10):
    props = pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        correlation_id=f"c{n}",
        headers={"n": n, "lang": tag},
    )
    ch.basic_publish(ex, "orders.new", json.dumps({"n": n}).encode(), props, mandatory=True)
# An unroutable mandatory publish comes back.
try:
    ch.basic_publish(ex, "nowhere", b"x", mandatory=True)
    raise SystemExit("unroutable mandatory publish was not returned")
except pika.exceptions.UnroutableError:
    pass
ch.basic_qos(prefetch_count=5)
seen = []
for method, props, body in ch.consume(q, inactivity_timeout=5):
    if method is None:
        raise SystemExit(f"timed out after {len(seen)} messages")
    n = json.loads(body)["n"]
    assert props.content_type == "application/json", props
    assert props.correlation_id == f"c{n}", props
    assert props.headers["n"] == n and props.headers["lang"] == tag, props.headers
    assert props.delivery_mode == 2
    if n == 3:
        ch.basic_reject(method.delivery_tag, requeue=False)
    else:
        ch.basic_ack(method.delivery_tag)
    seen.append(n)
    if len(seen) == 10:
        break
ch.cancel()
assert seen == list(range(10)), seen
for _ in range(50):
    method, props, body = ch.basic_get(dead, auto_ack=True)
    if method:
        break
    conn.sleep(0.05)
assert method, "nothing dead-lettered"
assert json.loads(body)["n"] == 3
death = props.headers["x-death"][0]
assert death["reason"] == "rejected" and death["queue"] == q, death
for name in (q, dead):
    ch.queue_delete(name)
conn.close()
print(f"{tag}: ok")
