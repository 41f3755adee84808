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
