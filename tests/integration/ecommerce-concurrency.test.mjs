// Concurrency of the shipped e-commerce app (config/ecommerce.json): 40 connections of
// two customers (20 as Alice, 20 as Bob) race for the last units of a product and for
// the same wallet balance, and retry idempotent calls concurrently and sequentially.
//
// Invariants checked at the end (docs/ecommerce.md "Consistency and idempotency"):
// stock never negative (every pushed value of an admin subscription ≥ 0), every wallet
// balance equals the sum of its ledger entries, every paid order has its order_placed
// audit entry and one payment ledger entry, no idempotent retry charges twice.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  assertConflict,
  assertLedgerInvariant,
  getRecord,
  proc,
  shopClient,
  shutdown,
  sleep,
  startShop,
} from './shop-helpers.mjs';

const T = { timeout: 15000 };
const N = 20; // connections per customer

/* Sends the same procedure call on every client at once; resolves with the answers in
 * client order. */
function race(clients, name, inputFor) {
  return Promise.all(clients.map((c, i) => proc(c, name, typeof inputFor === 'function' ? inputFor(i) : inputFor, 8000)));
}

describe('40 connections of Alice and Bob racing on the shipped config', () => {
  let srv;
  let admin;
  const alices = [];
  const bobs = [];
  const all = [];
  const s = {};

  before(async () => {
    srv = await startShop();
    admin = await shopClient(srv, 'admin');
    // Subscriptions first, so that every change is observed.
    s.productSub = (await admin.ok('store.subscribe', { query: 'product-by-slug', params: { slug: 'usb-c-hub' } })).subscriptionId;
    s.lowSub = (await admin.ok('store.subscribe', { query: 'low-stock-products' })).subscriptionId;
    s.orderEvents = (await admin.ok('rules.subscribe', { pattern: 'order.*' })).subscriptionId;
    s.invEvents = (await admin.ok('rules.subscribe', { pattern: 'inventory.*' })).subscriptionId;
    s.walletEvents = (await admin.ok('rules.subscribe', { pattern: 'wallet.*' })).subscriptionId;
    const conns = await Promise.all([
      ...Array.from({ length: N }, () => shopClient(srv, 'alice')),
      ...Array.from({ length: N }, () => shopClient(srv, 'bob')),
    ]);
    alices.push(...conns.slice(0, N));
    bobs.push(...conns.slice(N));
    all.push(...conns);
    for (const c of alices) assert.equal(c.login.userId, 'user-alice');
    for (const c of bobs) assert.equal(c.login.userId, 'user-bob');
  });

  after(async () => {
    await shutdown(srv, admin, all);
  });

  /* Every stock value the admin's subscriptions were pushed so far. */
  function pushedStocks() {
    const out = [];
    for (const p of admin.pushes) {
      if (p.subscriptionId === s.productSub && p.data) out.push({ id: p.data.id, stock: p.data.stock });
      if (p.subscriptionId === s.lowSub) for (const r of p.data) out.push({ id: r.id, stock: r.stock });
    }
    return out;
  }
  const events = (sub, topic) => admin.pushes.filter((p) => p.subscriptionId === sub && p.data.topic === topic).map((p) => p.data.event.data);

  test('the last 3 units: exactly 3 of 40 concurrent checkouts succeed, stock ends at 0, never negative', T, async () => {
    const set = await admin.ok('store.update', { bucket: 'products', key: 'prod-2', data: { stock: 3 } });
    assert.equal(set.stock, 3);
    const usdBefore = { alice: (await getRecord(admin, 'wallets', 'user-alice:USD')).balanceMinor, bob: (await getRecord(admin, 'wallets', 'user-bob:USD')).balanceMinor };

    const answers = await race(all, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-2', quantity: 1 }] });
    const ok = answers.filter((m) => m.type === 'result');
    const failed = answers.filter((m) => m.type !== 'result');
    assert.equal(ok.length, 3, `successful checkouts: ${ok.length}; errors: ${JSON.stringify(failed.slice(0, 3))}`);
    for (const m of failed) assertConflict(m, 'insufficient_stock', { productId: 'prod-2', available: 0, requested: 1 });
    assert.equal(new Set(ok.map((m) => m.data.id)).size, 3, 'three distinct orders');
    for (const m of ok) {
      assert.equal(m.data.status, 'paid');
      assert.equal(m.data.totalMinor, 4500);
    }
    s.stockOrders = ok.map((m) => m.data);

    assert.equal((await getRecord(admin, 'products', 'prod-2')).stock, 0);
    // Money moved only for the three winners.
    const wins = { alice: ok.filter((m) => m.data.userId === 'user-alice').length, bob: ok.filter((m) => m.data.userId === 'user-bob').length };
    assert.equal(wins.alice + wins.bob, 3);
    assert.equal((await getRecord(admin, 'wallets', 'user-alice:USD')).balanceMinor, usdBefore.alice - 4500 * wins.alice);
    assert.equal((await getRecord(admin, 'wallets', 'user-bob:USD')).balanceMinor, usdBefore.bob - 4500 * wins.bob);
    s.usdAfterStock = { alice: usdBefore.alice - 4500 * wins.alice, bob: usdBefore.bob - 4500 * wins.bob };

    // The admin's product subscription ends at 0 and never showed a negative value.
    const deadline = Date.now() + 2000;
    while (!admin.pushes.some((p) => p.subscriptionId === s.productSub && p.data && p.data.stock === 0) && Date.now() < deadline) await sleep(10);
    const seen = pushedStocks().filter((x) => x.id === 'prod-2').map((x) => x.stock);
    assert.ok(seen.includes(3), `pushed stock values: ${seen}`);
    assert.equal(seen.filter((v) => v === 0).length >= 1, true, `no push with stock 0: ${seen}`);
    for (const v of seen) assert.ok(Number.isInteger(v) && v >= 0, `pushed stock ${v}`);
    const productPushes = admin.pushes.filter((p) => p.subscriptionId === s.productSub).map((p) => p.data.stock);
    for (let i = 1; i < productPushes.length; i++) assert.ok(productPushes[i] <= productPushes[i - 1], `stock went up during the race: ${productPushes}`);
    assert.equal(productPushes.at(-1), 0);

    // The admin edit 50 → 3 crossed below 5 once; the sales after it raise no alert.
    await sleep(100);
    const low = events(s.invEvents, 'inventory.low_stock').filter((d) => d.productId === 'prod-2');
    assert.deepEqual(low, [{ productId: 'prod-2', title: 'USB-C Hub', currentStock: 3 }]);
  });

  test('the same wallet balance: 40 concurrent EUR checkouts, Alice can afford 8 and Bob 4', T, async () => {
    // prod-4 costs 249.00 EUR; Alice has 2 000.00 EUR (8 × 249 = 1 992), Bob 1 000.00 (4 × 249 = 996).
    const stockBefore = (await getRecord(admin, 'products', 'prod-4')).stock;
    assert.equal(stockBefore, 15);
    const answers = await race(all, 'checkout', { walletCurrency: 'EUR', items: [{ productId: 'prod-4', quantity: 1 }] });
    const byUser = (u) => answers.filter((m, i) => (i < N ? 'user-alice' : 'user-bob') === u);
    const aliceOk = byUser('user-alice').filter((m) => m.type === 'result');
    const bobOk = byUser('user-bob').filter((m) => m.type === 'result');
    assert.equal(aliceOk.length, 8, `Alice's successful checkouts`);
    assert.equal(bobOk.length, 4, `Bob's successful checkouts`);
    for (const m of byUser('user-alice').filter((x) => x.type !== 'result')) assertConflict(m, 'insufficient_funds', { required: 24900, available: 800, currency: 'EUR' });
    for (const m of byUser('user-bob').filter((x) => x.type !== 'result')) assertConflict(m, 'insufficient_funds', { required: 24900, available: 400, currency: 'EUR' });
    s.eurOrders = [...aliceOk, ...bobOk].map((m) => m.data);

    assert.equal((await getRecord(admin, 'wallets', 'user-alice:EUR')).balanceMinor, 800);
    assert.equal((await getRecord(admin, 'wallets', 'user-bob:EUR')).balanceMinor, 400);
    assert.equal((await getRecord(admin, 'products', 'prod-4')).stock, stockBefore - 12);
    const ledger = await admin.ok('store.where', { bucket: 'ledger', filter: { kind: 'payment', currency: 'EUR' } });
    assert.equal(ledger.length, 12);
    for (const e of ledger) assert.ok(e.balanceAfterMinor >= 0, `negative balanceAfter ${JSON.stringify(e)}`);
    // 15 → 3 crossed below 5 once, at the sale 5 → 4.
    await sleep(100);
    assert.deepEqual(events(s.invEvents, 'inventory.low_stock').filter((d) => d.productId === 'prod-4'), [{ productId: 'prod-4', title: 'Noise-Cancelling Headphones', currentStock: 4 }]);
    await assertLedgerInvariant(admin);
  });

  test('idempotent checkout retried concurrently on 10 connections and then sequentially charges once per user', T, async () => {
    const input = { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }], idempotencyKey: 'race-1' };
    const clients = [...alices.slice(0, 10), ...bobs.slice(0, 10)];
    const answers = await race(clients, 'checkout', input);
    for (const m of answers) assert.equal(m.type, 'result', JSON.stringify(m));
    const aliceTexts = new Set(answers.slice(0, 10).map((m) => JSON.stringify(m.data)));
    const bobTexts = new Set(answers.slice(10).map((m) => JSON.stringify(m.data)));
    assert.equal(aliceTexts.size, 1, `Alice's answers differ: ${[...aliceTexts].join('\n')}`);
    assert.equal(bobTexts.size, 1, `Bob's answers differ: ${[...bobTexts].join('\n')}`);
    const aliceOrder = answers[0].data;
    const bobOrder = answers[10].data;
    assert.notEqual(aliceOrder.id, bobOrder.id, 'keys are per user');
    assert.equal(aliceOrder.userId, 'user-alice');
    assert.equal(bobOrder.userId, 'user-bob');

    // Sequential retries, on the same and on another connection.
    for (const c of [alices[0], alices[0], alices[15]]) {
      const m = await proc(c, 'checkout', input);
      assert.equal(m.type, 'result', JSON.stringify(m));
      assert.equal(JSON.stringify(m.data), JSON.stringify(aliceOrder));
    }
    assertConflict(await proc(alices[1], 'checkout', { ...input, items: [{ productId: 'prod-1', quantity: 2 }] }), 'idempotency_key_reused', { idempotencyKey: 'race-1' });

    assert.equal((await getRecord(admin, 'products', 'prod-1')).stock, 23, 'two units sold, one per user');
    assert.equal((await getRecord(admin, 'wallets', 'user-alice:USD')).balanceMinor, s.usdAfterStock.alice - 7999);
    assert.equal((await getRecord(admin, 'wallets', 'user-bob:USD')).balanceMinor, s.usdAfterStock.bob - 7999);
    for (const o of [aliceOrder, bobOrder]) {
      const pays = await admin.ok('store.where', { bucket: 'ledger', filter: { orderId: o.id } });
      assert.equal(pays.length, 1, `ledger entries of ${o.id}`);
    }
    const orders = await admin.ok('store.all', { bucket: 'orders' });
    assert.equal(orders.filter((o) => o.items.some((i) => i.productId === 'prod-1')).length, 2);
    s.idemOrders = [aliceOrder, bobOrder];
  });

  test('idempotent topUpWallet and transfer retried concurrently apply once', T, async () => {
    const bobUsd = (await getRecord(admin, 'wallets', 'user-bob:USD')).balanceMinor;
    const tops = await race(bobs.slice(0, 10), 'topUpWallet', { currency: 'USD', amountMinor: 1000, idempotencyKey: 'top-race' });
    for (const m of tops) assert.equal(m.type, 'result', JSON.stringify(m));
    assert.equal(new Set(tops.map((m) => JSON.stringify(m.data))).size, 1);
    assert.equal(tops[0].data.balanceMinor, bobUsd + 1000);
    assert.equal((await getRecord(admin, 'wallets', 'user-bob:USD')).balanceMinor, bobUsd + 1000);

    // Alice has 8.00 EUR left; ten concurrent copies of one 5.00 EUR transfer move it once.
    const trs = await race(alices.slice(0, 10), 'transfer', { toUserId: 'user-bob', currency: 'EUR', amountMinor: 500, idempotencyKey: 'tr-race' });
    for (const m of trs) assert.equal(m.type, 'result', JSON.stringify(m));
    assert.equal(new Set(trs.map((m) => JSON.stringify(m.data))).size, 1);
    assert.equal((await getRecord(admin, 'wallets', 'user-alice:EUR')).balanceMinor, 300);
    assert.equal((await getRecord(admin, 'wallets', 'user-bob:EUR')).balanceMinor, 900);
    // ... and different keys racing for the rest: 3.00 EUR covers one 2.00 EUR transfer.
    const more = await race(alices.slice(10), 'transfer', (i) => ({ toUserId: 'user-bob', currency: 'EUR', amountMinor: 200, idempotencyKey: `tr-more-${i}` }));
    assert.equal(more.filter((m) => m.type === 'result').length, 1);
    for (const m of more.filter((x) => x.type !== 'result')) assertConflict(m, 'insufficient_funds', { required: 200, available: 100, currency: 'EUR' });
    assert.equal((await getRecord(admin, 'wallets', 'user-alice:EUR')).balanceMinor, 100);
    assert.equal((await getRecord(admin, 'wallets', 'user-bob:EUR')).balanceMinor, 1100);

    const ledger = await admin.ok('store.all', { bucket: 'ledger' });
    assert.equal(ledger.filter((e) => e.kind === 'topup' && e.walletId === 'user-bob:USD').length, 2, 'seed top-up + one');
    assert.equal(ledger.filter((e) => e.kind === 'transfer_out').length, 2);
    assert.equal(ledger.filter((e) => e.kind === 'transfer_in').length, 2);
    await sleep(100);
    assert.equal(admin.pushes.filter((p) => p.subscriptionId === s.walletEvents && p.data.topic === 'wallet.topped_up').length, 1, 'one wallet.topped_up');
    assert.equal(admin.pushes.filter((p) => p.subscriptionId === s.walletEvents && p.data.topic === 'wallet.transferred').length, 2, 'two wallet.transferred');
  });

  test('the same order cancelled concurrently from 10 connections is refunded once', T, async () => {
    const order = s.idemOrders[0]; // Alice's prod-1 order, paid in USD
    const usd = (await getRecord(admin, 'wallets', 'user-alice:USD')).balanceMinor;
    const answers = await race(alices.slice(0, 10), 'cancelOrder', { orderId: order.id });
    const ok = answers.filter((m) => m.type === 'result');
    assert.equal(ok.length, 1, `successful cancels: ${ok.length}`);
    for (const m of answers.filter((x) => x.type !== 'result')) assertConflict(m, 'invalid_transition', { from: 'cancelled', to: 'cancelled' });
    assert.equal((await getRecord(admin, 'wallets', 'user-alice:USD')).balanceMinor, usd + order.totalMinor);
    assert.equal((await getRecord(admin, 'products', 'prod-1')).stock, 24);
    const refunds = await admin.ok('store.where', { bucket: 'ledger', filter: { orderId: order.id, kind: 'refund' } });
    assert.equal(refunds.length, 1);
    await sleep(100);
    assert.equal(events(s.orderEvents, 'order.cancelled').length, 1);
    s.cancelledId = order.id;
  });

  test('final invariants: balances = ledger sums, stock ≥ 0, every paid order audited and paid once, one event per order', T, async () => {
    const { ledger } = await assertLedgerInvariant(admin);
    const products = await admin.ok('store.all', { bucket: 'products' });
    for (const p of products) assert.ok(Number.isInteger(p.stock) && p.stock >= 0, `stock of ${p.id}: ${p.stock}`);
    for (const x of pushedStocks()) assert.ok(x.stock >= 0, `pushed stock of ${x.id}: ${x.stock}`);

    const orders = await admin.ok('store.all', { bucket: 'orders' });
    assert.equal(orders.length, 3 + 12 + 2);
    const audit = await admin.ok('store.where', { bucket: 'audit-logs', filter: { action: 'order_placed' } });
    for (const o of orders) {
      assert.equal(o.status, o.id === s.cancelledId ? 'cancelled' : 'paid');
      const entries = audit.filter((a) => a.details.orderId === o.id);
      assert.equal(entries.length, 1, `order_placed audit entries of ${o.id}: ${entries.length}`);
      assert.equal(entries[0].userId, o.userId);
      const pays = ledger.filter((e) => e.orderId === o.id && e.kind === 'payment');
      assert.deepEqual(pays.map((e) => [e.amountMinor, e.walletId]), [[-o.totalMinor, `${o.userId}:${o.currency}`]]);
      const refunds = ledger.filter((e) => e.orderId === o.id && e.kind === 'refund');
      assert.equal(refunds.length, o.status === 'cancelled' ? 1 : 0, `refunds of ${o.id}`);
    }
    // Units sold = stock taken.
    const sold = (id) => orders.filter((o) => o.status === 'paid').flatMap((o) => o.items).filter((i) => i.productId === id).reduce((n, i) => n + i.quantity, 0);
    assert.deepEqual([sold('prod-2'), sold('prod-4'), sold('prod-1')], [3, 12, 1]);
    const stock = Object.fromEntries(products.map((p) => [p.id, p.stock]));
    assert.deepEqual([stock['prod-2'], stock['prod-4'], stock['prod-1']], [0, 15 - 12, 25 - 1]);

    // One order.placed per order, none for refused or repeated calls.
    const deadline = Date.now() + 2000;
    while (events(s.orderEvents, 'order.placed').length < orders.length && Date.now() < deadline) await sleep(10);
    await sleep(100);
    const placed = events(s.orderEvents, 'order.placed');
    assert.equal(placed.length, orders.length);
    assert.deepEqual(placed.map((d) => d.orderId).sort(), orders.map((o) => o.id).sort());
  });
});
