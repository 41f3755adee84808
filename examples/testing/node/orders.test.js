// The same small orders application as examples/testing/main.rs, tested with node:test and
// amqplib against the warren binary (on a test clock; started once for the file, reset
// before each test).
// Run: node --test examples/testing/node/  (amqplib from conformance/clients/node).
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const amqp = require(path.join(__dirname, '../../../conformance/clients/node/node_modules/amqplib'));

const root = path.join(__dirname, '..', '..', '..');
const auth = 'Basic ' + Buffer.from('guest:guest').toString('base64');
let proc, amqpUrl, mgmtPort;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function api(method, p, body) {
  const r = await fetch(`http://127.0.0.1:${mgmtPort}/api/${p}`, {
    method, headers: { authorization: auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  const bin = process.env.WARREN_BIN || path.join(root, 'target', 'debug', 'warren');
  const portsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'warren-')), 'ports.json');
  mgmtPort = await freePort();
  proc = spawn(bin, ['--port', '0', '--bind', '127.0.0.1', '--in-memory', '--mgmt-port',
    String(mgmtPort), '--test-clock', '--ports-file', portsFile], { stdio: 'ignore' });
  const deadline = Date.now() + 10000;
  while (!(fs.existsSync(portsFile) && fs.readFileSync(portsFile, 'utf8').trim())) {
    if (Date.now() > deadline) throw new Error('warren did not start');
    await new Promise((r) => setTimeout(r, 5));
  }
  const ports = JSON.parse(fs.readFileSync(portsFile, 'utf8'));
  amqpUrl = `amqp://guest:guest@127.0.0.1:${ports.amqp}`;
});

after(() => proc.kill('SIGTERM'));

beforeEach(async () => {
  assert.strictEqual((await api('POST', 'warren/reset', {})).status, 204);
});

async function declareTopology(ch, retryMs) {
  await ch.assertExchange('orders', 'topic', { durable: true });
  await ch.assertQueue('billing', { durable: true, arguments: {
    'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing.retry' } });
  await ch.bindQueue('billing', 'orders', 'order.*');
  await ch.assertQueue('billing.retry', { durable: true, arguments: {
    'x-message-ttl': retryMs, 'x-dead-letter-exchange': 'orders',
    'x-dead-letter-routing-key': 'order.retried' } });
}

async function waitFor(queue, n) {
  return (await api('POST', 'warren/wait', { queue, messages: n, timeout_ms: 5000 })).status === 200;
}

test('an order reaches billing', async () => {
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createConfirmChannel();
  await declareTopology(ch, 100);
  ch.publish('orders', 'order.created', Buffer.from('order-7'), { persistent: true });
  await ch.waitForConfirms();
  assert.ok(await waitFor('billing', 1));
  const peeked = (await api('GET', 'warren/peek/%2F/billing?count=1')).body;
  assert.strictEqual(peeked[0].payload, 'order-7');
  await conn.close();
});

test('a rejected order comes back after an hour in the retry queue', async () => {
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createConfirmChannel();
  await declareTopology(ch, 3600000);
  ch.publish('orders', 'order.created', Buffer.from('order-8'), { persistent: true });
  await ch.waitForConfirms();
  const m = await ch.get('billing');
  ch.reject(m, false);
  assert.ok(await waitFor('billing.retry', 1));
  // The test clock: the hour passes at once, and the retry runs before the call returns.
  assert.strictEqual((await api('POST', 'warren/clock', { advance: '1h' })).status, 200);
  assert.ok(await waitFor('billing', 1));
  const again = await ch.get('billing', { noAck: true });
  assert.strictEqual(again.fields.routingKey, 'order.retried');
  await conn.close();
});

test('each test starts clean', async () => {
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createChannel();
  ch.on('error', () => {}); // the 404 closes the channel; the assertion below checks it
  await assert.rejects(ch.checkQueue('billing'), /404/);
  await conn.close();
});
