// The management UI in a real browser: Debian's chromium, headless, driven by playwright-core,
// against a `warren` binary started here (in memory, on free ports). What a user does: log in,
// watch a queue fill, publish from the UI and get the message back, purge, move messages,
// import a definitions file, watch the rate chart move while a publisher runs, and use the
// page in a narrow window. WARREN_UI_SCREENSHOTS=<dir> also saves screenshots of the pages.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");
const fs = require("node:fs");
const os = require("node:os");
const amqp = require("amqplib");
const { chromium } = require("playwright-core");

const root = path.resolve(__dirname, "../..");
const bin = process.env.WARREN_BIN || path.join(root, "target/debug/warren");
const shots = process.env.WARREN_UI_SCREENSHOTS;
let broker, browser, amqpPort, mgmtPort, base;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function waitFor(fn, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch (_) { /* not yet */ }
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function http(method, p, body, auth = "guest:guest") {
  const r = await fetch(base + "api/" + p, {
    method,
    headers: {
      authorization: "Basic " + Buffer.from(auth).toString("base64"),
      "content-type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function login(page, user = "guest", pass = "guest") {
  await page.goto(base);
  await page.fill("#login input[name=username]", user);
  await page.fill("#login input[name=password]", pass);
  await page.click("#login button[type=submit]");
}

async function shot(page, name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, name + ".png"), fullPage: true });
}

before(async () => {
  [amqpPort, mgmtPort] = [await freePort(), await freePort()];
  broker = spawn(bin, [
    "--in-memory", "--bind", "127.0.0.1", "--port", String(amqpPort),
    "--mgmt-port", String(mgmtPort), "--no-prometheus",
  ], { stdio: "ignore" });
  base = `http://127.0.0.1:${mgmtPort}/`;
  await waitFor(async () => (await fetch(base)).ok, "the management listener");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (broker) broker.kill("SIGTERM");
});

test("the page is served without credentials and asks for them", async () => {
  const r = await fetch(base);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /text\/html/);
  const page = await browser.newPage();
  await page.goto(base);
  await page.waitForSelector("#login:not([hidden])");
  await login(page, "guest", "wrong");
  await page.waitForSelector("#login-error:has-text('Login failed')");
  await page.close();
});

test("log in, see a queue fill, publish from the UI, get it back, purge", async () => {
  const page = await browser.newPage();
  await login(page);
  await page.waitForSelector("h1:has-text('Overview')");
  await shot(page, "overview");
  await page.click("a[data-tab=queues]");
  await page.fill("#add-queue input[name=name]", "ui-orders");
  await page.click("#add-queue button[type=submit]");
  await page.waitForSelector("td a:has-text('ui-orders')");
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${amqpPort}`);
  const ch = await conn.createConfirmChannel();
  for (let i = 0; i < 3; i++) ch.sendToQueue("ui-orders", Buffer.from("order " + i));
  await ch.waitForConfirms();
  // The list refreshes itself: the depth shows without a reload.
  const row = page.locator("tr", { has: page.locator("a:has-text('ui-orders')") });
  await waitFor(async () => (await row.locator("td").nth(5).innerText()) === "3", "ready = 3");
  await shot(page, "queues");
  // Publish from the default exchange's page.
  await page.goto(base + "#/exchanges/%2F/amq.default");
  await page.fill("#publish input[name=routing_key]", "ui-orders");
  await page.fill("#publish textarea[name=payload]", "hello from the browser");
  await page.click("#publish button[type=submit]");
  await page.waitForSelector("#published:has-text('Message published.')");
  await shot(page, "exchange");
  // The queue's page: four now; take the oldest three off and read the fourth.
  await page.goto(base + "#/queues/%2F/ui-orders");
  await page.waitForSelector("[data-fact=Ready] b:has-text('4')");
  await page.selectOption("#get select[name=ackmode]", "ack_requeue_false");
  await page.fill("#get input[name=count]", "3");
  await page.click("#get button[type=submit]");
  await page.waitForSelector("#got .payload:has-text('order 2')");
  await page.fill("#get input[name=count]", "1");
  await page.selectOption("#get select[name=ackmode]", "ack_requeue_true");
  await page.click("#get button[type=submit]");
  await page.waitForSelector("#got .payload:has-text('hello from the browser')");
  await shot(page, "queue");
  const q = await http("GET", "queues/%2F/ui-orders");
  assert.equal(q.body.messages, 1, "three acked, the browser's message requeued");
  // Purge.
  await page.click("#purge");
  await waitFor(async () => (await http("GET", "queues/%2F/ui-orders")).body.messages === 0, "purged");
  await conn.close();
  await page.close();
});

test("move messages to another queue, in order", async () => {
  await http("PUT", "queues/%2F/ui-from", { durable: true });
  await http("PUT", "queues/%2F/ui-to", { durable: true });
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${amqpPort}`);
  const ch = await conn.createConfirmChannel();
  for (let i = 0; i < 5; i++) ch.sendToQueue("ui-from", Buffer.from("m" + i), { persistent: true });
  await ch.waitForConfirms();
  const page = await browser.newPage();
  await login(page);
  await page.goto(base + "#/queues/%2F/ui-from");
  await page.fill("#move input[name=destination]", "ui-to");
  await page.click("#move button[type=submit]");
  await page.waitForSelector("#toast:has-text('Moved 5 messages')");
  const got = [];
  for (let i = 0; i < 5; i++) got.push((await ch.get("ui-to", { noAck: true })).content.toString());
  assert.deepEqual(got, ["m0", "m1", "m2", "m3", "m4"]);
  assert.equal((await http("GET", "queues/%2F/ui-from")).body.messages, 0);
  await conn.close();
  await page.close();
});

test("import a definitions file", async () => {
  const file = path.join(os.tmpdir(), `warren-ui-defs-${process.pid}.json`);
  fs.writeFileSync(file, JSON.stringify({
    queues: [{ name: "ui-imported", vhost: "/", durable: true, auto_delete: false, arguments: {} }],
    exchanges: [{ name: "ui-imported-x", vhost: "/", type: "fanout", durable: true, auto_delete: false, internal: false, arguments: {} }],
    bindings: [{ source: "ui-imported-x", vhost: "/", destination: "ui-imported", destination_type: "queue", routing_key: "", arguments: {} }],
  }));
  const page = await browser.newPage();
  await login(page);
  await page.waitForSelector("#import-file");
  await page.setInputFiles("#import-file", file);
  await page.click("#import");
  await page.waitForSelector("#toast:has-text('Definitions imported')");
  assert.equal((await http("GET", "queues/%2F/ui-imported")).status, 200);
  const b = await http("GET", "exchanges/%2F/ui-imported-x/bindings/source");
  assert.equal(b.body[0].destination, "ui-imported");
  await page.click("a[data-tab=queues]");
  await page.waitForSelector("td a:has-text('ui-imported')");
  fs.unlinkSync(file);
  await page.close();
});

test("the rate chart moves while a publisher runs", async () => {
  const page = await browser.newPage();
  await login(page);
  await page.waitForSelector("[data-series=publish] b");
  assert.equal(await page.locator("[data-series=publish] b").innerText(), "0/s");
  await http("PUT", "queues/%2F/ui-rates", { durable: false });
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${amqpPort}`);
  const ch = await conn.createChannel();
  let running = true;
  const publisher = (async () => {
    while (running) {
      for (let i = 0; i < 50; i++) ch.sendToQueue("ui-rates", Buffer.from("x"));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await waitFor(async () => {
    const text = await page.locator("[data-series=publish] b").innerText();
    return parseFloat(text.replace(/,/g, "")) > 100;
  }, "a publish rate above 100/s", 15000);
  await shot(page, "overview-rates");
  running = false;
  await publisher;
  await conn.close();
  await page.close();
});

test("user tags decide what the UI shows", async () => {
  await http("PUT", "users/ui-watcher", { password: "pw", tags: "monitoring" });
  await http("PUT", "users/ui-nobody", { password: "pw", tags: "" });
  const page = await browser.newPage();
  await login(page, "ui-watcher", "pw");
  await page.waitForSelector("h1:has-text('Overview')");
  assert.equal(await page.locator("#admin-tab").isVisible(), false, "no Admin tab without administrator");
  await page.click("#logout");
  await login(page, "ui-nobody", "pw");
  await page.waitForSelector("#login-error:has-text('Not management user')");
  await login(page);
  await page.waitForSelector("#admin-tab:visible");
  await page.click("#admin-tab");
  await page.waitForSelector("td:has-text('ui-watcher')");
  await shot(page, "admin");
  await page.close();
});

test("add a shovel on the Admin page and watch it move messages", async () => {
  await http("PUT", "queues/%2F/ui-sh-from", { durable: true });
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${amqpPort}`);
  const ch = await conn.createConfirmChannel();
  for (let i = 0; i < 20; i++) ch.sendToQueue("ui-sh-from", Buffer.from("s" + i), { persistent: true });
  await ch.waitForConfirms();
  const page = await browser.newPage();
  await login(page);
  await page.click("#admin-tab");
  await page.fill("#add-shovel input[name=name]", "ui-move");
  await page.fill("#add-shovel input[name=src-queue]", "ui-sh-from");
  await page.fill("#add-shovel input[name=dest-queue]", "ui-sh-to");
  await page.click("#add-shovel button[type=submit]");
  await page.waitForSelector("#toast:has-text('Shovel added')");
  await waitFor(async () => (await http("GET", "queues/%2F/ui-sh-to")).body?.messages === 20, "20 moved");
  await page.waitForSelector("td:has-text('ui-move')");
  await page.click("[data-del-shovel='ui-move']");
  await waitFor(async () => (await http("GET", "shovels")).body.length === 0, "the shovel removed");
  await conn.close();
  await page.close();
});

test("works in a narrow window", async () => {
  const page = await browser.newPage({ viewport: { width: 375, height: 740 } });
  await login(page);
  await page.waitForSelector("h1:has-text('Overview')");
  await page.click("a[data-tab=queues]");
  await page.waitForSelector("h1:has-text('Queues')");
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 376, `the page fits the window (scroll width ${width})`);
  assert.ok(await page.locator("a[data-tab=admin]").isVisible(), "every tab reachable");
  await shot(page, "narrow");
  await page.close();
});
