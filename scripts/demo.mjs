#!/usr/bin/env node
// A by-hand demo of the seed walkthrough (docs/demo.md) against a running shopd started
// with `make run` (config/ecommerce.json). Connects as Alice, Bob and the admin with the
// development tokens and prints every frame sent (→) and received (←), step by step.
//
//   node scripts/demo.mjs [ws://localhost:8080/] [--full] [--no-rate-limit]
//
//   --full            print whole frames (default: long frames are cut at 300 characters)
//   --no-rate-limit   skip step 10 (it spends Bob's 100 requests for the next minute)
//
// The script never stops on an error answer: refused requests are part of the demo. It
// is safe to run again on the same data directory: the setup puts the keyboard's stock
// back to 25, and the orders it places are cancelled (refunded) at the end.

let WebSocketImpl;
try {
  WebSocketImpl = (await import('ws')).default;
} catch {
  WebSocketImpl = globalThis.WebSocket;
}
if (!WebSocketImpl) {
  console.error('scripts/demo.mjs needs the `ws` package: run `npm ci` (or `make test-deps`) in the repository first.');
  process.exit(2);
}

const args = process.argv.slice(2);
const URL_ARG = args.find((a) => !a.startsWith('--')) || process.env.SHOPD_URL || 'ws://localhost:8080/';
const FULL = args.includes('--full');
const RATE_LIMIT = !args.includes('--no-rate-limit');
const MAX = FULL ? Infinity : 300;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (text) => (text.length > MAX ? `${text.slice(0, MAX)} … (+${text.length - MAX} chars)` : text);

function header(title, note) {
  console.log(`\n── ${title} ${'─'.repeat(Math.max(3, 78 - title.length))}`);
  if (note) console.log(`   ${note}`);
}
const say = (text) => console.log(`   ${text}`);

class Client {
  constructor(name) {
    this.name = name;
    this.nextId = 1;
    this.pending = new Map();
    this.pushes = [];
    this.waiters = new Set();
    this.quiet = false; // do not print (step 10's flood)
  }

  log(dir, text) {
    if (!this.quiet) console.log(`${this.name.padEnd(6)}${dir} ${show(text)}`);
  }

  connect(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocketImpl(url);
      this.ws = ws;
      let welcomed = false;
      const onMessage = (raw) => {
        const text = typeof raw === 'string' ? raw : raw.toString();
        const m = JSON.parse(text);
        if (m.type === 'ping') {
          // Heartbeat (every 30 s): answer so the server keeps the connection.
          ws.send(JSON.stringify({ type: 'pong', timestamp: m.timestamp }));
          return;
        }
        this.log(' ←', text);
        if (!welcomed && m.type === 'welcome') {
          welcomed = true;
          resolve(m);
          return;
        }
        if ((m.type === 'result' || m.type === 'error') && this.pending.has(m.id)) {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          p(m);
        } else if (m.type === 'push') {
          this.pushes.push(m);
          for (const w of this.waiters) w();
        }
      };
      if (ws.on) {
        ws.on('message', onMessage);
        ws.on('error', reject);
      } else {
        ws.onmessage = (e) => onMessage(e.data);
        ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
      }
    });
  }

  /* Sends a request and resolves with the answer (result or error). */
  call(type, fields = {}) {
    const id = this.nextId++;
    const frame = JSON.stringify({ id, type, ...fields });
    this.log(' →', frame);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        say(`(no answer to #${id} within 5 s)`);
        resolve({ type: 'error', code: 'TIMEOUT' });
      }, 5000);
      this.pending.set(id, (m) => {
        clearTimeout(t);
        resolve(m);
      });
      this.ws.send(frame);
    });
  }

  /* procedures.call {name, input} */
  proc(name, input) {
    return this.call('procedures.call', { name, input });
  }

  /* Waits for a push matching pred (already printed when it arrived). */
  waitPush(pred, what, ms = 2000) {
    return new Promise((resolve) => {
      const check = () => {
        const i = this.pushes.findIndex(pred);
        if (i >= 0) {
          done();
          resolve(this.pushes.splice(i, 1)[0]);
        }
      };
      const t = setTimeout(() => {
        done();
        say(`(expected ${what} did not arrive within ${ms} ms)`);
        resolve(null);
      }, ms);
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  close() {
    this.ws.close();
  }
}

const isEvent = (topic) => (p) => p.channel === 'event' && p.data.topic === topic;
const settle = () => sleep(150); // lets pushes caused by a step print before the next one

async function main() {
  console.log(`shopd demo against ${URL_ARG}`);
  const alice = new Client('alice');
  const bob = new Client('bob');
  const admin = new Client('admin');

  header('Setup', 'the admin connects first so the demo can be repeated on the same data');
  await admin.connect(URL_ARG);
  const adminLogin = await admin.call('auth.login', { token: 'admin-token' });
  if (adminLogin.type !== 'result') {
    say('admin login failed — is this the server of `make run` (config/ecommerce.json)?');
    process.exit(1);
  }
  await admin.call('store.update', { bucket: 'products', key: 'prod-1', data: { stock: 25 } });

  header('Step 1: connect and authenticate');
  await alice.connect(URL_ARG);
  await alice.call('auth.login', { token: 'customer-token-alice' });

  header('Step 2: browse products', 'prices are integer minor units: priceMinor 7999 + currency "USD" is $79.99');
  const catalog = await alice.call('store.subscribe', { query: 'product-catalog' });
  const catalogSub = catalog.data?.subscriptionId;

  header('Step 3: place an order', 'the seed lets the client send its own transaction (with its own prices) — here that is FORBIDDEN');
  await alice.call('store.transaction', {
    operations: [
      { op: 'update', bucket: 'products', key: 'prod-1', data: { stock: 24 } },
      { op: 'insert', bucket: 'audit-logs', data: { action: 'order_placed', userId: 'user-alice', timestamp: Date.now() } },
    ],
  });
  say('instead the checkout procedure reads price, stock and FX on the server and pays from a wallet:');
  const placed = await alice.proc('checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }] });
  const order1 = placed.data;
  await alice.waitPush((p) => p.subscriptionId === catalogSub, 'catalog push (stock 24)');

  header('Step 4: emit the order event', 'customers may not emit order.* — checkout already emitted order.placed on the server');
  await alice.call('rules.emit', { topic: 'order.placed', data: { orderId: order1?.id, userId: 'user-alice' } });

  header('Step 5: subscribe to order status');
  const userOrders = await alice.call('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } });
  const ordersSub = userOrders.data?.subscriptionId;
  say('Bob may not subscribe with Alice\'s id:');
  await bob.connect(URL_ARG);
  await bob.call('auth.login', { token: 'customer-token-bob' });
  await bob.call('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } });

  header('Step 6: admin ships the order', 'a plain store.update by the admin still works; Alice\'s subscription is pushed');
  await admin.call('auth.whoami');
  await admin.call('store.update', { bucket: 'orders', key: order1?.id, data: { status: 'shipped' } });
  await alice.waitPush((p) => p.subscriptionId === ordersSub, 'user-orders push (shipped)');
  await admin.call('rules.emit', { topic: 'order.shipped', data: { orderId: order1?.id, userId: 'user-alice' } });

  header('Step 7: order status facts', 'the rule order-status-fact already keeps order:<id>:status; facts are admin-only');
  await admin.call('rules.setFact', { key: `order:${order1?.id}:status`, value: 'shipped' });
  await alice.call('rules.queryFacts', { pattern: 'order:*:status' });
  await admin.call('rules.getFact', { key: `order:${order1?.id}:status` });

  header('Step 8: admin subscribes to order events', 'then Bob places an order');
  const orderEvents = await admin.call('rules.subscribe', { pattern: 'order.*' });
  const orderEventsSub = orderEvents.data?.subscriptionId;
  const bobOrder = await bob.proc('checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-2', quantity: 1 }] });
  await admin.waitPush((p) => p.subscriptionId === orderEventsSub && p.data.topic === 'order.placed', 'order.placed push');

  header('Step 9: permission enforcement');
  await alice.call('store.delete', { bucket: 'products', key: 'prod-1' });
  await alice.call('store.all', { bucket: 'users' });
  await settle();

  if (RATE_LIMIT) {
    header('Step 10: rate limiting', 'Bob sends store.all until refused (100 requests per minute per user; frames not printed)');
    bob.quiet = true;
    let n = 0;
    let last;
    for (; n < 150; n++) {
      last = await bob.call('store.all', { bucket: 'categories' });
      if (last.type === 'error') break;
    }
    bob.quiet = false;
    say(`${n} requests answered, then:`);
    console.log(`bob    ← ${JSON.stringify(last)}`);
  } else {
    header('Step 10: rate limiting', 'skipped (--no-rate-limit)');
  }

  header('Step 11: whoami and logout');
  await alice.call('auth.whoami');
  await alice.call('auth.logout');
  await alice.call('store.all', { bucket: 'products' });

  header('Exercise 1+2: low-stock alert', 'the shipped rule low-stock-alert emits inventory.low_stock when stock drops below 5');
  await alice.call('auth.login', { token: 'customer-token-alice' });
  const inv = await admin.call('rules.subscribe', { pattern: 'inventory.*' });
  const invSub = inv.data?.subscriptionId;
  const stock = (await alice.call('store.get', { bucket: 'products', key: 'prod-1' })).data?.stock ?? 24;
  const big = await alice.proc('checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: Math.max(1, stock - 4) }] });
  await admin.waitPush((p) => p.subscriptionId === invSub, 'inventory.low_stock push');

  header('Exercise 3: cancel an order', 'cancelOrder restores stock and refunds the wallet in one transaction');
  say('a customer may not cancel a shipped order:');
  await alice.proc('cancelOrder', { orderId: order1?.id });
  say('an admin may:');
  await admin.proc('cancelOrder', { orderId: order1?.id, reason: 'admin_cancelled' });
  await admin.waitPush((p) => p.subscriptionId === orderEventsSub && isEvent('order.cancelled')(p), 'order.cancelled push');
  await alice.waitPush((p) => p.subscriptionId === ordersSub, 'user-orders push (cancelled)');
  await settle();
  say('Alice cancels her own paid order herself:');
  await alice.proc('cancelOrder', { orderId: big.data?.id });
  await settle();
  await alice.call('store.get', { bucket: 'wallets', key: 'user-alice:USD' });
  await alice.call('store.all', { bucket: 'ledger' });

  header('Cleanup', 'the admin cancels Bob\'s order too, so a re-run starts from the same balances');
  if (bobOrder.data?.id) await admin.proc('cancelOrder', { orderId: bobOrder.data.id, reason: 'demo cleanup' });
  await settle();

  for (const c of [alice, bob, admin]) c.close();
  console.log('\ndone.');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
