"""Topologies that popular frameworks declare, rebuilt with pika, run against a broker URL:

- MassTransit: a message-type fanout exchange bound (exchange to exchange) to each endpoint's
  fanout exchange, each bound to its queue; faults moved to `<endpoint>_error`.
- NServiceBus delayed delivery (v2): levels of topic exchanges and TTL queues that dead-letter
  into the level below, the routing key spelling the delay in binary, into a delivery exchange.
- Spring AMQP retry: a queue dead-letters rejected messages to a retry queue whose TTL sends
  them back; after three x-death rounds the consumer parks the message.
- A quorum queue with x-delivery-limit: requeued until the limit, then dead-lettered.

Exits non-zero on the first difference from what RabbitMQ 3.10.8 does."""
import sys
import time

import pika

url = sys.argv[1]
tag = "topo"
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
cleanup_q, cleanup_x = [], []


def queue(name, **args):
    ch.queue_declare(name, durable=True, arguments=args or None)
    ch.queue_purge(name)
    cleanup_q.append(name)


def exchange(name, kind):
    ch.exchange_declare(name, exchange_type=kind, durable=True)
    cleanup_x.append(name)


def get(q, timeout=5.0, ack=True):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = ch.basic_get(q, auto_ack=ack)
        if m[0] is not None:
            return m
        time.sleep(0.02)
    raise AssertionError(f"nothing in {q} within {timeout}s")


def count(q):
    return ch.queue_declare(q, passive=True).method.message_count


def masstransit():
    msg_type = f"{tag}.Contracts:OrderSubmitted"
    exchange(msg_type, "fanout")
    for endpoint in (f"{tag}-order-service", f"{tag}-audit-service"):
        exchange(endpoint, "fanout")
        queue(endpoint)
        ch.queue_bind(endpoint, endpoint)
        ch.exchange_bind(destination=endpoint, source=msg_type)
        exchange(f"{endpoint}_error", "fanout")
        queue(f"{endpoint}_error")
        ch.queue_bind(f"{endpoint}_error", f"{endpoint}_error")
    for n in range(3):
        ch.basic_publish(msg_type, "", f"order-{n}".encode(),
                         pika.BasicProperties(content_type="application/vnd.masstransit+json",
                                              message_id=f"m{n}", delivery_mode=2))
    order, audit = f"{tag}-order-service", f"{tag}-audit-service"
    for endpoint in (order, audit):
        deadline = time.time() + 5
        while count(endpoint) < 3 and time.time() < deadline:
            time.sleep(0.02)
        assert count(endpoint) == 3, (endpoint, count(endpoint))
    # The order service faults on order-1: MassTransit republishes it to the error exchange
    # with its fault headers, then acks the original.
    for _ in range(3):
        method, props, body = ch.basic_get(order)
        if body == b"order-1":
            headers = {"MT-Fault-Message": "boom", "MT-Reason": "fault"}
            ch.basic_publish(f"{order}_error", "", body,
                             pika.BasicProperties(message_id=props.message_id, headers=headers))
        ch.basic_ack(method.delivery_tag)
    _, props, body = get(f"{order}_error")
    assert body == b"order-1" and props.message_id == "m1", (body, props)
    assert props.headers["MT-Fault-Message"] == "boom"
    assert count(audit) == 3


def nservicebus_delays():
    # Two levels: delays of 0 to 3 seconds. Key: "<bit1>.<bit0>.<destination>".
    levels = 2
    delivery = f"{tag}.nsb.v2.delay-delivery"
    exchange(delivery, "topic")
    for n in range(levels):
        x = f"{tag}.nsb.v2.delay-level-{n:02d}"
        exchange(x, "topic")
        below = f"{tag}.nsb.v2.delay-level-{n - 1:02d}" if n > 0 else delivery
        queue(x, **{"x-message-ttl": (2 ** n) * 1000, "x-dead-letter-exchange": below,
                    "x-queue-mode": "lazy"})
    for n in range(levels):
        x = f"{tag}.nsb.v2.delay-level-{n:02d}"
        below = f"{tag}.nsb.v2.delay-level-{n - 1:02d}" if n > 0 else delivery
        prefix = "*." * (levels - 1 - n)
        ch.queue_bind(x, x, routing_key=f"{prefix}1.#")
        ch.exchange_bind(destination=below, source=x, routing_key=f"{prefix}0.#")
    endpoint = f"{tag}-sales"
    queue(endpoint)
    ch.queue_bind(endpoint, delivery, routing_key=f"#.{endpoint}")
    top = f"{tag}.nsb.v2.delay-level-{levels - 1:02d}"
    start = time.time()
    for delay in (3, 0, 2, 1):
        key = f"{delay >> 1 & 1}.{delay & 1}.{endpoint}"
        ch.basic_publish(top, key, f"after-{delay}".encode())
    arrived = []
    while len(arrived) < 4:
        _, _, body = get(endpoint, timeout=6)
        arrived.append((body.decode(), time.time() - start))
    assert [b for b, _ in arrived] == ["after-0", "after-1", "after-2", "after-3"], arrived
    for body, at in arrived:
        delay = int(body.split("-")[1])
        assert delay - 0.2 <= at <= delay + 2.5, (body, at)


def spring_retry():
    main_x, dlx = f"{tag}.orders", f"{tag}.orders.dlx"
    main_q, retry_q, parking = f"{tag}.orders.q", f"{tag}.orders.retry", f"{tag}.orders.parking-lot"
    exchange(main_x, "direct")
    exchange(dlx, "direct")
    queue(main_q, **{"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "retry"})
    queue(retry_q, **{"x-message-ttl": 100, "x-dead-letter-exchange": main_x,
                      "x-dead-letter-routing-key": "order"})
    queue(parking)
    ch.queue_bind(main_q, main_x, routing_key="order")
    ch.queue_bind(retry_q, dlx, routing_key="retry")
    ch.basic_publish(main_x, "order", b"poison", pika.BasicProperties(headers={"attempt": 0}))
    rounds = 0
    while True:
        method, props, body = get(main_q, ack=False)
        deaths = (props.headers or {}).get("x-death", [])
        if rounds == 0:
            assert deaths == [], deaths
        else:
            # Newest first: the main queue's rejection, then the retry queue's expiry.
            # Newest first: each round moves the entry it updates to the front (RabbitMQ 3.10).
            assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
                (retry_q, "expired", rounds), (main_q, "rejected", rounds)], deaths
            main = next(d for d in deaths if d["queue"] == main_q)
            assert main["exchange"] == main_x and main["routing-keys"] == ["order"], main
            retry = next(d for d in deaths if d["queue"] == retry_q)
            assert retry["exchange"] == dlx and retry["routing-keys"] == ["retry"], retry
        if rounds == 3:
            ch.basic_publish("", parking, body, pika.BasicProperties(headers=props.headers))
            ch.basic_ack(method.delivery_tag)
            break
        ch.basic_reject(method.delivery_tag, requeue=False)
        rounds += 1
    _, props, body = get(parking)
    assert body == b"poison"
    assert props.headers["x-first-death-queue"] == main_q, props.headers
    assert props.headers["x-first-death-reason"] == "rejected"
    assert count(main_q) == 0 and count(retry_q) == 0


def quorum_delivery_limit():
    q, parked = f"{tag}.quorum", f"{tag}.quorum.parked"
    queue(parked)
    queue(q, **{"x-queue-type": "quorum", "x-delivery-limit": 2,
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": parked})
    ch.basic_publish("", q, b"flaky")
    counts = []
    for _ in range(3):
        method, props, _ = get(q, ack=False)
        counts.append((props.headers or {}).get("x-delivery-count"))
        ch.basic_nack(method.delivery_tag, requeue=True)
    assert counts == [0, 1, 2], counts
    _, props, body = get(parked)
    assert body == b"flaky"
    death = props.headers["x-death"][0]
    assert (death["queue"], death["reason"]) == (q, "delivery_limit"), death
    assert count(q) == 0


for scenario in (masstransit, nservicebus_delays, spring_retry, quorum_delivery_limit):
    scenario()
    print(f"{tag}: {scenario.__name__} ok")
for q in cleanup_q:
    ch.queue_delete(q)
for x in cleanup_x:
    ch.exchange_delete(x)
conn.close()
print(f"{tag}: ok")
