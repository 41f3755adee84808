// amqplib workload: topology, confirms, prefetch, manual acks, reject to a DLX, properties and
// headers read back. Exits non-zero on failure.
const amqp = require('amqplib');
const assert = require('assert');

async function main(url) {
  const tag = 'amqplib';
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  const ex = `ex-${tag}`, dlx = `dlx-${tag}`, q = `q-${tag}`, dead = `dead-${tag}`;
  await ch.assertExchange(ex, 'topic', { autoDelete: true });
  await ch.assertExchange(dlx, 'fanout', { autoDelete: true });
  await ch.assertQueue(q, { arguments: { 'x-dead-letter-exchange': dlx } });
  await ch.assertQueue(dead);
  await ch.bindQueue(q, ex, 'orders.*');
  await ch.bindQueue(dead, dlx, '');
  for (let n = 0; n < 10; n++) {
    ch.publish(ex, 'orders.new', Buffer.from(JSON.stringify({ n })), {
      contentType: 'application/json', persistent: true, correlationId: `c${n}`, headers: { n, lang: tag },
    });
  }
  await ch.waitForConfirms();
  // A channel error stays on the channel (404), the connection survives.
  const probe = await conn.createChannel();
  probe.on('error', () => {});
  await assert.rejects(probe.checkQueue('no-such-queue-' + Date.now()), /404/);
  await ch.prefetch(5);
  const seen = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout after ${seen.length}`)), 5000);
    ch.consume(q, (msg) => {
      try {
        const n = JSON.parse(msg.content.toString()).n;
        assert.strictEqual(msg.properties.contentType, 'application/json');
        assert.strictEqual(msg.properties.correlationId, `c${n}`);
        assert.strictEqual(msg.properties.headers.n, n);
        assert.strictEqual(msg.properties.headers.lang, tag);
        assert.strictEqual(msg.properties.deliveryMode, 2);
        if (n === 3) ch.reject(msg, false); else ch.ack(msg);
        seen.push(n);
        if (seen.length === 10) { clearTimeout(timer); resolve(); }
      } catch (e) { clearTimeout(timer); reject(e); }
    });
  });
  assert.deepStrictEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  let got = false;
  for (let i = 0; i < 50 && !got; i++) {
    got = await ch.get(dead, { noAck: true });
    if (!got) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(got, 'nothing dead-lettered');
  assert.strictEqual(JSON.parse(got.content.toString()).n, 3);
  assert.strictEqual(got.properties.headers['x-death'][0].reason, 'rejected');
  await ch.deleteQueue(q);
  await ch.deleteQueue(dead);
  await conn.close();
  await closeWhilePublishing(url);
  console.log(`${tag}: ok`);
}

// amqplib publishes into its own buffer and closes with publishes still in flight: the close
// must still end cleanly. (tests/integration/wire.rs forces the interleaving that used to end in
// a reset; here it depends on timing.)
async function closeWhilePublishing(url) {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const body = Buffer.alloc(4096, 'x');
  for (let i = 0; i < 5000; i++) {
    if (!ch.publish('', 'nowhere-' + Date.now(), body)) break;
  }
  let failed = null;
  conn.on('error', (e) => { failed = e; });
  await conn.close();
  assert.strictEqual(failed, null, `close while publishing failed: ${failed}`);
}

main(process.argv[2]).catch((e) => { console.error(e); process.exit(1); });
