"""The same small orders application as examples/testing/main.rs, tested with pika and pytest
against the warren binary (fixtures in conftest.py)."""
import pika


def declare_topology(ch, retry_ms):
    ch.exchange_declare("orders", "topic", durable=True)
    ch.queue_declare("billing", durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "billing.retry"})
    ch.queue_bind("billing", "orders", "order.*")
    ch.queue_declare("billing.retry", durable=True, arguments={
        "x-message-ttl": retry_ms, "x-dead-letter-exchange": "orders",
        "x-dead-letter-routing-key": "order.retried"})


def publish_order(ch, order_id):
    ch.confirm_delivery()
    ch.basic_publish("orders", "order.created", f"order-{order_id}".encode(),
                     pika.BasicProperties(delivery_mode=2))


def channel(warren):
    conn = pika.BlockingConnection(pika.URLParameters(warren.url))
    return conn, conn.channel()


def test_an_order_reaches_billing(warren):
    conn, ch = channel(warren)
    declare_topology(ch, 100)
    publish_order(ch, 7)
    assert warren.wait_for_messages("billing", 1)
    assert warren.peek("billing")[0]["payload"] == "order-7"
    conn.close()


def test_a_rejected_order_comes_back_after_an_hour_in_the_retry_queue(warren):
    conn, ch = channel(warren)
    declare_topology(ch, 3_600_000)
    publish_order(ch, 8)
    method, _, _ = ch.basic_get("billing")
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert warren.wait_for_messages("billing.retry", 1)
    warren.advance("59m")
    assert warren.wait_for_messages("billing.retry", 1, timeout_ms=0)
    warren.advance("1m")  # the hour is over: the retry runs before this returns
    assert warren.wait_for_messages("billing", 1, timeout_ms=0)
    method, _, body = ch.basic_get("billing", auto_ack=True)
    assert (method.routing_key, body) == ("order.retried", b"order-8")
    conn.close()


def test_each_test_starts_clean(warren):
    # The autouse fixture reset the broker: the previous tests' queues are gone.
    conn, ch = channel(warren)
    try:
        ch.queue_declare("billing", passive=True)
        assert False, "billing should not exist after a reset"
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404
    conn.close()
