"""aio-pika workload: the same scenario as pika's, on asyncio."""
import asyncio
import json
import sys

import aio_pika
from aio_pika.patterns import RPC, JsonRPC


async def multiply(*, x, y):
    return x * y


async def rpc_round_trips(conn) -> None:
    """aio-pika's RPC patterns: create, call, close, and create again. Closing unbinds from an
    auto-delete exchange that may already be gone; RabbitMQ answers unbind-ok, so must we."""
    for pattern in (RPC, JsonRPC, RPC):
        ch = await conn.channel()
        rpc = await pattern.create(ch)
        await rpc.register("multiply", multiply, auto_delete=True)
        assert await rpc.proxy.multiply(x=6, y=7) == 42
        await rpc.close()
        await ch.close()


async def main(url: str) -> None:
    tag = "aio-pika"
    conn = await aio_pika.connect_robust(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange(f"ex-{tag}", aio_pika.ExchangeType.TOPIC, auto_delete=True)
        dlx = await ch.declare_exchange(f"dlx-{tag}", aio_pika.ExchangeType.FANOUT, auto_delete=True)
        q = await ch.declare_queue(f"q-{tag}", arguments={"x-dead-letter-exchange": dlx.name})
        dead = await ch.declare_queue(f"dead-{tag}")
        await q.bind(ex, "orders.*")
        await dead.bind(dlx)
        for n in range(10):
            await ex.publish(
                aio_pika.Message(
                    json.dumps({"n": n}).encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    correlation_id=f"c{n}",
                    headers={"n": n, "lang": tag},
                ),
                routing_key="orders.new",
            )
        await ch.set_qos(prefetch_count=5)
        seen = []
        async with q.iterator() as it:
            async for message in it:
                n = json.loads(message.body)["n"]
                assert message.content_type == "application/json"
                assert message.correlation_id == f"c{n}"
                assert message.headers["n"] == n and message.headers["lang"] == tag
                if n == 3:
                    await message.reject(requeue=False)
                else:
                    await message.ack()
                seen.append(n)
                if len(seen) == 10:
                    break
        assert seen == list(range(10)), seen
        got = None
        for _ in range(50):
            got = await dead.get(no_ack=True, fail=False)
            if got:
                break
            await asyncio.sleep(0.05)
        assert got is not None, "nothing dead-lettered"
        assert json.loads(got.body)["n"] == 3
        assert got.headers["x-death"][0]["reason"] == "rejected"
        await q.delete()
        await dead.delete()
        await rpc_round_trips(conn)
    print(f"{tag}: ok")


asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
