// The procedures of the shipped e-commerce app (docs/ecommerce.md "Procedures") against
// config/ecommerce.json: results, every documented error, ledger and audit side effects,
// and the server-emitted events an admin subscribed to order.* / wallet.* receives.
//
// Each describe block runs on its own fresh server (the shipped config limits every
// user to 100 requests a minute, so the blocks keep their budgets apart).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertError } from './store-helpers.mjs';
import {
  assertConflict,
  assertLedgerInvariant,
  eventPush,
  getRecord,
  procErr,
  procOk,
  shopClient,
  shutdown,
  sleep,
  startShop,
} from './shop-helpers.mjs';

const T = { timeout: 10000 };

/* A fresh server with Alice, Bob and an admin subscribed to order.* and wallet.*. */
function shopFixture() {
  const f = { clients: [] };
  before(async () => {
    f.srv = await startShop();
    f.alice = await shopClient(f.srv, 'alice');
    f.bob = await shopClient(f.srv, 'bob');
    f.admin = await shopClient(f.srv, 'admin');
    f.clients.push(f.alice, f.bob, f.admin);
    f.orderSub = (await f.admin.ok('rules.subscribe', { pattern: 'order.*' })).subscriptionId;
    f.walletSub = (await f.admin.ok('rules.subscribe', { pattern: 'wallet.*' })).subscriptionId;
  });
  after(async () => {
    await shutdown(f.srv, f.clients);
  });
  f.stock = async (id) => (await getRecord(f.admin, 'products', id)).stock;
  f.balance = async (walletId) => {
    const w = await getRecord(f.admin, 'wallets', walletId);
    return w ? w.balanceMinor : null;
  };
  /* Asserts that no event push on topic arrives within ms. */
  f.noEvent = async (topic, ms = 150) => {
    await sleep(ms);
    const extra = f.admin.pushes.filter((p) => p.channel === 'event' && p.data.topic === topic);
    assert.deepEqual(extra, [], `unexpected ${topic} event`);
  };
  return f;
}

describe('procedures.list and calling conventions', () => {
  const f = shopFixture();

  test('procedures.list names every procedure with adminOnly and an input schema', T, async () => {
    const { procedures } = await f.alice.ok('procedures.list');
    const names = procedures.map((p) => p.name).sort();
    assert.deepEqual(names, ['addToCart', 'cancelOrder', 'checkout', 'deliverOrder', 'getCart', 'removeFromCart', 'shipOrder', 'topUpWallet', 'transfer', 'updateCartItem']);
    for (const p of procedures) {
      assert.equal(typeof p.description, 'string');
      assert.equal(p.adminOnly, p.name === 'shipOrder' || p.name === 'deliverOrder', `adminOnly of ${p.name}`);
      assert.equal(p.input.type, 'object', `input schema of ${p.name}`);
      assert.equal(JSON.stringify(p.input).includes('priceMinor'), false, `${p.name} must not take a price`);
    }
    const checkout = procedures.find((p) => p.name === 'checkout');
    assert.deepEqual(checkout.input.required, ['walletCurrency']);
  });

  test('unauthenticated procedures.call is UNAUTHORIZED', T, async () => {
    const anon = await shopClient(f.srv, null);
    f.clients.push(anon);
    assertError(await anon.call('procedures.call', { name: 'getCart', input: {} }), 'UNAUTHORIZED', 'Authentication required');
    assertError(await anon.call('procedures.list'), 'UNAUTHORIZED', 'Authentication required');
  });

  test('an unknown procedure is an error, not a result', T, async () => {
    const m = await f.alice.call('procedures.call', { name: 'refundEverything', input: {} });
    assert.equal(m.type, 'error');
    assert.ok(['UNKNOWN_OPERATION', 'NOT_FOUND'].includes(m.code), `code ${m.code}`);
  });

  test('the procedures.call envelope: name required, input an object (optional when there is none)', T, async () => {
    assertError(await f.alice.call('procedures.call', { input: {} }), 'VALIDATION_ERROR', 'Missing or invalid "name": expected non-empty string');
    assertError(await f.alice.call('procedures.call', { name: 'getCart', input: [] }), 'VALIDATION_ERROR', 'Missing or invalid "input": expected object');
    assertError(await f.alice.call('procedures.call', { name: 'checkout', input: 'USD' }), 'VALIDATION_ERROR', 'Missing or invalid "input": expected object');
    assert.deepEqual(await f.alice.ok('procedures.call', { name: 'getCart' }), { items: [], totals: [] });
    assertError(await f.alice.call('procedures.call', { name: 'getCart', input: { userId: 'user-bob' } }), 'VALIDATION_ERROR', 'Unknown field "userId" for procedure "getCart"');
  });

  test('integers may be written 5.0; "5", 5.5 and negatives are refused', T, async () => {
    const raw = await f.alice.raw('{"id":9001,"type":"procedures.call","name":"addToCart","input":{"productId":"prod-5","quantity":2.0}}');
    assert.equal(raw.type, 'result', JSON.stringify(raw));
    assert.equal(raw.data.items[0].quantity, 2);
    for (const q of ['2', 2.5, -1]) {
      const m = await procErr(f.alice, 'addToCart', { productId: 'prod-5', quantity: q });
      assertError(m, 'VALIDATION_ERROR', 'Missing or invalid "quantity": expected positive integer');
      assert.deepEqual(m.details, { field: 'quantity' });
    }
  });
});

describe('checkout', () => {
  const f = shopFixture();

  test('pays at server prices with FX per line (rounded half away from zero) and emits order.placed', T, async () => {
    const before = await f.balance('user-alice:USD');
    const order = await procOk(f.alice, 'checkout', {
      walletCurrency: 'USD',
      items: [
        { productId: 'prod-4', quantity: 1 }, // 249.00 EUR × 1.087 = 270.663 → 27066
        { productId: 'prod-6', quantity: 1 }, // 16 800 JPY × 0.006734 = 113.1312 → 11313
        { productId: 'prod-1', quantity: 2 }, // 2 × 79.99 USD, not converted
      ],
    });
    assert.equal(order.status, 'paid');
    assert.equal(order.currency, 'USD');
    const byId = Object.fromEntries(order.items.map((i) => [i.productId, i]));
    assert.deepEqual(
      [byId['prod-4'].unitPriceMinor, byId['prod-4'].currency, byId['prod-4'].lineTotalMinor, byId['prod-4'].chargedMinor, Number(byId['prod-4'].fxRate)],
      [24900, 'EUR', 24900, 27066, 1.087],
    );
    assert.deepEqual([byId['prod-6'].chargedMinor, Number(byId['prod-6'].fxRate)], [11313, 0.006734]);
    assert.deepEqual([byId['prod-1'].quantity, byId['prod-1'].lineTotalMinor, byId['prod-1'].chargedMinor, 'fxRate' in byId['prod-1']], [2, 15998, 15998, false]);
    assert.equal(order.totalMinor, 27066 + 11313 + 15998);
    assert.equal(await f.balance('user-alice:USD'), before - order.totalMinor);
    assert.deepEqual([await f.stock('prod-4'), await f.stock('prod-6'), await f.stock('prod-1')], [14, 19, 23]);
    const ledger = await f.admin.ok('store.where', { bucket: 'ledger', filter: { orderId: order.id } });
    assert.deepEqual(ledger.map((e) => [e.kind, e.amountMinor, e.balanceAfterMinor, e.userId, e.currency]), [['payment', -order.totalMinor, before - order.totalMinor, 'user-alice', 'USD']]);
    const audit = await f.admin.ok('store.where', { bucket: 'audit-logs', filter: { action: 'order_placed' } });
    assert.ok(audit.some((a) => a.details.orderId === order.id && a.userId === 'user-alice'), 'order_placed audit entry');
    const ev = await eventPush(f.admin, 'order.placed', { subscriptionId: f.orderSub });
    assert.deepEqual(ev.data.event.data, { orderId: order.id, userId: 'user-alice', totalMinor: order.totalMinor, currency: 'USD' });
    assert.equal(await f.admin.ok('rules.getFact', { key: `order:${order.id}:status` }), 'paid');
  });

  test('insufficient_stock {productId, available, requested}; nothing changes', T, async () => {
    const bal = await f.balance('user-alice:USD');
    const m = await procErr(f.alice, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }, { productId: 'prod-3', quantity: 4 }] });
    assertConflict(m, 'insufficient_stock', { productId: 'prod-3', available: 3, requested: 4 });
    assert.equal(await f.stock('prod-3'), 3);
    assert.equal(await f.stock('prod-1'), 23, 'the other line did not take stock either');
    assert.equal(await f.balance('user-alice:USD'), bal);
    await f.noEvent('order.placed');
  });

  test('a product listed twice is merged before the stock check', T, async () => {
    const m = await procErr(f.bob, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-3', quantity: 2 }, { productId: 'prod-3', quantity: 2 }] });
    assertConflict(m, 'insufficient_stock', { productId: 'prod-3', available: 3, requested: 4 });
  });

  test('insufficient_funds {required, available, currency} for a real and a missing wallet', T, async () => {
    // 14 × 249.00 EUR = 3 486.00 EUR × 1.087 = 3 789.282 USD → 378 928 cents > Bob's 300 000.
    const m = await procErr(f.bob, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-4', quantity: 14 }] });
    assertConflict(m, 'insufficient_funds', { required: 378928, available: 300000, currency: 'USD' });
    // Bob has no JPY wallet: available 0. 79.99 USD × 148.5 = 11 878.515 → 11 879 yen.
    const j = await procErr(f.bob, 'checkout', { walletCurrency: 'JPY', items: [{ productId: 'prod-1', quantity: 1 }] });
    assertConflict(j, 'insufficient_funds', { required: 11879, available: 0, currency: 'JPY' });
    assert.equal(await f.balance('user-bob:USD'), 300000);
    assert.equal(await f.balance('user-bob:JPY'), null, 'a refused checkout creates no wallet');
    assert.equal(await f.stock('prod-4'), 14);
  });

  test('no_fx_rate {from, to} when no direct rate exists (GBP wallet)', T, async () => {
    await procOk(f.bob, 'topUpWallet', { currency: 'GBP', amountMinor: 100000 });
    const m = await procErr(f.bob, 'checkout', { walletCurrency: 'GBP', items: [{ productId: 'prod-1', quantity: 1 }] });
    assertConflict(m, 'no_fx_rate', { from: 'USD', to: 'GBP' });
    assert.equal(await f.balance('user-bob:GBP'), 100000);
  });

  test('product_inactive, cart_empty, NOT_FOUND for an unknown product', T, async () => {
    assertConflict(await procErr(f.bob, 'checkout', { walletCurrency: 'EUR', items: [{ productId: 'prod-8', quantity: 1 }] }), 'product_inactive', { productId: 'prod-8' });
    assertConflict(await procErr(f.bob, 'checkout', { walletCurrency: 'EUR' }), 'cart_empty');
    const nf = await procErr(f.bob, 'checkout', { walletCurrency: 'EUR', items: [{ productId: 'prod-404', quantity: 1 }] });
    assertError(nf, 'NOT_FOUND');
  });

  test('VALIDATION_ERROR for bad input: quantity 0/1000, missing productId, client-sent prices, currencies', T, async () => {
    const cases = [
      [{ walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 0 }] }, 'Missing or invalid "items[0].quantity": expected positive integer', 'items[0].quantity'],
      [{ walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1000 }] }, 'Invalid "items[0].quantity": expected at most 999', 'items[0].quantity'],
      [{ walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }, { quantity: 1 }] }, 'Missing or invalid "items[1].productId": expected non-empty string', 'items[1].productId'],
      [{ walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }, { productId: 'prod-2', quantity: 0 }] }, 'Missing or invalid "items[1].quantity": expected positive integer', 'items[1].quantity'],
      [{ items: [{ productId: 'prod-1', quantity: 1 }] }, 'Missing or invalid "walletCurrency": expected ISO 4217 currency code (3 uppercase letters)', 'walletCurrency'],
      [{ walletCurrency: 'usd', items: [{ productId: 'prod-1', quantity: 1 }] }, 'Missing or invalid "walletCurrency": expected ISO 4217 currency code (3 uppercase letters)', 'walletCurrency'],
      [{ walletCurrency: 'XYZ', items: [{ productId: 'prod-1', quantity: 1 }] }, 'Invalid "walletCurrency": unsupported currency "XYZ"', 'walletCurrency'],
    ];
    for (const [input, message, field] of cases) {
      const m = await procErr(f.alice, 'checkout', input);
      assertError(m, 'VALIDATION_ERROR', message);
      assert.equal(m.details?.field, field, `details.field for ${JSON.stringify(input)}`);
    }
    // Client-sent prices and totals are unknown fields.
    for (const [input, re] of [
      [{ walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1, priceMinor: 1 }] }, /Unknown field "priceMinor"/],
      [{ walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1, unitPriceMinor: 1 }] }, /Unknown field "unitPriceMinor"/],
      [{ walletCurrency: 'USD', totalMinor: 1, items: [{ productId: 'prod-1', quantity: 1 }] }, /^Unknown field "totalMinor" for procedure "checkout"$/],
      [{ walletCurrency: 'USD', price: 1, items: [{ productId: 'prod-1', quantity: 1 }] }, /^Unknown field "price" for procedure "checkout"$/],
    ]) {
      assertError(await procErr(f.alice, 'checkout', input), 'VALIDATION_ERROR', re);
    }
    assertError(await procErr(f.alice, 'checkout', { walletCurrency: 'USD', items: [] }), 'VALIDATION_ERROR');
    const lines101 = Array.from({ length: 101 }, () => ({ productId: 'prod-1', quantity: 1 }));
    assertError(await procErr(f.alice, 'checkout', { walletCurrency: 'USD', items: lines101 }), 'VALIDATION_ERROR', /"items"/);
    assertError(await procErr(f.alice, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }], idempotencyKey: 'k'.repeat(129) }), 'VALIDATION_ERROR');
    assert.equal(await f.stock('prod-1'), 23);
    await f.noEvent('order.placed');
  });
});

describe('order lifecycle: shipOrder, deliverOrder, cancelOrder transitions', () => {
  const f = shopFixture();
  let order;

  test('customers get FORBIDDEN for shipOrder/deliverOrder, before the order is looked up', T, async () => {
    order = await procOk(f.alice, 'checkout', { walletCurrency: 'EUR', items: [{ productId: 'prod-5', quantity: 1 }] });
    await eventPush(f.admin, 'order.placed', { subscriptionId: f.orderSub });
    assertError(await procErr(f.alice, 'shipOrder', { orderId: order.id }), 'FORBIDDEN', 'Only admins may ship orders');
    assertError(await procErr(f.alice, 'shipOrder', { orderId: 'no-such-order' }), 'FORBIDDEN', 'Only admins may ship orders');
    assertError(await procErr(f.bob, 'deliverOrder', { orderId: order.id }), 'FORBIDDEN');
    assert.equal((await getRecord(f.admin, 'orders', order.id)).status, 'paid');
  });

  test('NOT_FOUND for an unknown order (admin ship/deliver/cancel, customer cancel); another user\'s order looks the same', T, async () => {
    for (const name of ['shipOrder', 'deliverOrder', 'cancelOrder']) {
      assertError(await procErr(f.admin, name, { orderId: 'no-such-order' }), 'NOT_FOUND', 'Order "no-such-order" not found');
    }
    assertError(await procErr(f.alice, 'cancelOrder', { orderId: 'no-such-order' }), 'NOT_FOUND', 'Order "no-such-order" not found');
    assertError(await procErr(f.bob, 'cancelOrder', { orderId: order.id }), 'NOT_FOUND', `Order "${order.id}" not found`);
    assert.equal((await getRecord(f.admin, 'orders', order.id)).status, 'paid');
  });

  test('invalid_transition: deliver a paid order', T, async () => {
    assertConflict(await procErr(f.admin, 'deliverOrder', { orderId: order.id }), 'invalid_transition', { from: 'paid', to: 'delivered' });
  });

  test('ship → shipped (shippedAt, audit, order.shipped); customer cannot cancel it; ship twice is invalid', T, async () => {
    const shipped = await procOk(f.admin, 'shipOrder', { orderId: order.id });
    assert.equal(shipped.status, 'shipped');
    assert.ok(Number.isInteger(shipped.shippedAt));
    const ev = await eventPush(f.admin, 'order.shipped', { subscriptionId: f.orderSub });
    assert.deepEqual(ev.data.event.data, { orderId: order.id, userId: 'user-alice', status: 'shipped' });
    const m = await procErr(f.alice, 'cancelOrder', { orderId: order.id });
    assertConflict(m, 'invalid_transition', { from: 'shipped', to: 'cancelled' });
    assert.equal(m.message, 'Cannot cancel an order that is shipped');
    assertConflict(await procErr(f.admin, 'shipOrder', { orderId: order.id }), 'invalid_transition', { from: 'shipped', to: 'shipped' });
    assert.equal(await f.admin.ok('rules.getFact', { key: `order:${order.id}:status` }), 'shipped');
  });

  test('deliver → delivered (deliveredAt, audit, order.delivered); nobody can cancel a delivered order', T, async () => {
    const delivered = await procOk(f.admin, 'deliverOrder', { orderId: order.id });
    assert.equal(delivered.status, 'delivered');
    assert.ok(Number.isInteger(delivered.deliveredAt));
    assert.ok(Number.isInteger(delivered.shippedAt));
    const ev = await eventPush(f.admin, 'order.delivered', { subscriptionId: f.orderSub });
    assert.deepEqual(ev.data.event.data, { orderId: order.id, userId: 'user-alice', status: 'delivered' });
    const m = await procErr(f.admin, 'cancelOrder', { orderId: order.id });
    assertConflict(m, 'invalid_transition', { from: 'delivered', to: 'cancelled' });
    assert.equal(m.message, 'Cannot cancel an order that is delivered');
    assertConflict(await procErr(f.alice, 'cancelOrder', { orderId: order.id }), 'invalid_transition', { from: 'delivered', to: 'cancelled' });
    assertConflict(await procErr(f.admin, 'deliverOrder', { orderId: order.id }), 'invalid_transition', { from: 'delivered', to: 'delivered' });
    const audit = await f.admin.ok('store.where', { bucket: 'audit-logs', filter: { userId: 'admin-1' } });
    assert.deepEqual(audit.map((a) => a.action).sort(), ['order_delivered', 'order_shipped']);
    assert.ok(audit.every((a) => a.details.orderId === order.id));
    assert.equal(await f.admin.ok('rules.getFact', { key: `order:${order.id}:status` }), 'delivered');
  });

  test('VALIDATION_ERROR for missing orderId and an over-long reason', T, async () => {
    assertError(await procErr(f.admin, 'shipOrder', {}), 'VALIDATION_ERROR', 'Missing or invalid "orderId": expected non-empty string');
    assertError(await procErr(f.alice, 'cancelOrder', { orderId: '' }), 'VALIDATION_ERROR', 'Missing or invalid "orderId": expected non-empty string');
    assertError(await procErr(f.alice, 'cancelOrder', { orderId: order.id, reason: 'x'.repeat(501) }), 'VALIDATION_ERROR', /"reason"/);
    // ≤ 500 bytes, not characters: 251 × "é" is 502 bytes.
    assertError(await procErr(f.alice, 'cancelOrder', { orderId: order.id, reason: 'é'.repeat(251) }), 'VALIDATION_ERROR', /"reason"/);
  });
});

describe('cancelOrder restores stock and money', () => {
  const f = shopFixture();

  test('customer cancels own paid order: stock back, refund ledger entry, order.cancelled, audit', T, async () => {
    const usd = await f.balance('user-alice:USD');
    const order = await procOk(f.alice, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 2 }, { productId: 'prod-4', quantity: 1 }] });
    assert.equal(order.totalMinor, 15998 + 27066);
    assert.deepEqual([await f.stock('prod-1'), await f.stock('prod-4')], [23, 14]);
    assert.equal(await f.balance('user-alice:USD'), usd - order.totalMinor);

    const c = await procOk(f.alice, 'cancelOrder', { orderId: order.id, reason: 'changed my mind' });
    assert.equal(c.id, order.id);
    assert.equal(c.status, 'cancelled');
    assert.equal(c.cancelledBy, 'user-alice');
    assert.equal(c.cancelReason, 'changed my mind');
    assert.ok(Number.isInteger(c.cancelledAt));
    assert.deepEqual(c.items, order.items, 'the order keeps its items');
    assert.deepEqual([await f.stock('prod-1'), await f.stock('prod-4')], [25, 15]);
    assert.equal(await f.balance('user-alice:USD'), usd, 'the full total is refunded');
    const ledger = await f.admin.ok('store.where', { bucket: 'ledger', filter: { orderId: order.id } });
    assert.deepEqual(
      ledger.map((e) => [e.kind, e.amountMinor, e.balanceAfterMinor]).sort(),
      [['payment', -order.totalMinor, usd - order.totalMinor], ['refund', order.totalMinor, usd]].sort(),
    );
    await eventPush(f.admin, 'order.placed', { subscriptionId: f.orderSub });
    const ev = await eventPush(f.admin, 'order.cancelled', { subscriptionId: f.orderSub });
    assert.deepEqual(ev.data.event.data, { orderId: order.id, userId: 'user-alice', cancelledBy: 'user-alice', totalMinor: order.totalMinor, currency: 'USD', reason: 'changed my mind' });
    const audit = await f.admin.ok('store.where', { bucket: 'audit-logs', filter: { action: 'order_cancelled' } });
    assert.equal(audit.length, 1);
    assert.equal(audit[0].details.orderId, order.id);
    assert.equal(await f.admin.ok('rules.getFact', { key: `order:${order.id}:status` }), 'cancelled');
    // Cancelling twice is an invalid transition and refunds nothing more.
    assertConflict(await procErr(f.alice, 'cancelOrder', { orderId: order.id }), 'invalid_transition', { from: 'cancelled', to: 'cancelled' });
    assert.equal(await f.balance('user-alice:USD'), usd);
  });

  test('admin cancels a shipped order: refund goes to the owner\'s wallet; reason null when none', T, async () => {
    const eur = await f.balance('user-bob:EUR');
    const order = await procOk(f.bob, 'checkout', { walletCurrency: 'EUR', items: [{ productId: 'prod-5', quantity: 3 }] });
    await procOk(f.admin, 'shipOrder', { orderId: order.id });
    assert.equal(await f.stock('prod-5'), 37);
    const c = await procOk(f.admin, 'cancelOrder', { orderId: order.id });
    assert.equal(c.status, 'cancelled');
    assert.equal(c.cancelledBy, 'admin-1');
    assert.equal(await f.stock('prod-5'), 40);
    assert.equal(await f.balance('user-bob:EUR'), eur);
    assert.equal(await f.balance('admin-1:EUR'), null, 'no wallet for the admin who cancelled');
    const ev = await eventPush(f.admin, 'order.cancelled', { subscriptionId: f.orderSub, where: (d) => d.orderId === order.id });
    assert.deepEqual(ev.data.event.data, { orderId: order.id, userId: 'user-bob', cancelledBy: 'admin-1', totalMinor: 12600, currency: 'EUR', reason: null });
    await assertLedgerInvariant(f.admin);
  });
});

describe('wallets: topUpWallet and transfer', () => {
  const f = shopFixture();

  test('topUpWallet creates the wallet, writes a topup ledger entry and emits wallet.topped_up', T, async () => {
    const w = await procOk(f.alice, 'topUpWallet', { currency: 'JPY', amountMinor: 5000 });
    assert.deepEqual(w, { id: 'user-alice:JPY', userId: 'user-alice', currency: 'JPY', balanceMinor: 5000 });
    const w2 = await procOk(f.alice, 'topUpWallet', { currency: 'USD', amountMinor: 2500 });
    assert.deepEqual(w2, { id: 'user-alice:USD', userId: 'user-alice', currency: 'USD', balanceMinor: 502500 });
    const e1 = await eventPush(f.admin, 'wallet.topped_up', { subscriptionId: f.walletSub });
    assert.deepEqual(e1.data.event.data, { userId: 'user-alice', walletId: 'user-alice:JPY', currency: 'JPY', amountMinor: 5000, balanceMinor: 5000 });
    const e2 = await eventPush(f.admin, 'wallet.topped_up', { subscriptionId: f.walletSub });
    assert.deepEqual(e2.data.event.data, { userId: 'user-alice', walletId: 'user-alice:USD', currency: 'USD', amountMinor: 2500, balanceMinor: 502500 });
    const ledger = await f.alice.ok('store.where', { bucket: 'ledger', filter: { walletId: 'user-alice:JPY' } });
    assert.deepEqual(ledger.map((e) => [e.kind, e.amountMinor, e.balanceAfterMinor]), [['topup', 5000, 5000]]);
    const audit = await f.admin.ok('store.where', { bucket: 'audit-logs', filter: { action: 'wallet_topped_up' } });
    assert.equal(audit.length, 2);
  });

  test('topUpWallet validation: 0, over the limit, bad currency, client-sent balance', T, async () => {
    assertError(await procErr(f.alice, 'topUpWallet', { currency: 'USD', amountMinor: 0 }), 'VALIDATION_ERROR', /"amountMinor"/);
    assertError(await procErr(f.alice, 'topUpWallet', { currency: 'USD', amountMinor: 100000001 }), 'VALIDATION_ERROR', 'Invalid "amountMinor": expected at most 100000000');
    assertError(await procErr(f.alice, 'topUpWallet', { currency: 'XYZ', amountMinor: 1 }), 'VALIDATION_ERROR', 'Invalid "currency": unsupported currency "XYZ"');
    assertError(await procErr(f.alice, 'topUpWallet', { currency: 'USD', amountMinor: 1, balanceMinor: 1 }), 'VALIDATION_ERROR', /Unknown field "balanceMinor"/);
    assert.equal(await f.balance('user-alice:USD'), 502500);
  });

  test('transfer moves money: two ledger entries sharing a transferId, balances, wallet.transferred', T, async () => {
    const t = await procOk(f.alice, 'transfer', { toUserId: 'user-bob', currency: 'USD', amountMinor: 1500 });
    assert.equal(typeof t.transferId, 'string');
    assert.deepEqual(
      { ...t, transferId: undefined },
      { transferId: undefined, fromUserId: 'user-alice', toUserId: 'user-bob', currency: 'USD', amountMinor: 1500, wallet: { id: 'user-alice:USD', userId: 'user-alice', currency: 'USD', balanceMinor: 501000 } },
    );
    assert.equal(await f.balance('user-bob:USD'), 301500);
    const ledger = (await f.admin.ok('store.all', { bucket: 'ledger' })).filter((e) => e.transferId === t.transferId);
    const rows = ledger.map((e) => [e.kind, e.walletId, e.amountMinor, e.balanceAfterMinor, e.counterparty]).sort();
    assert.deepEqual(rows, [
      ['transfer_in', 'user-bob:USD', 1500, 301500, 'user-alice'],
      ['transfer_out', 'user-alice:USD', -1500, 501000, 'user-bob'],
    ]);
    const ev = await eventPush(f.admin, 'wallet.transferred', { subscriptionId: f.walletSub });
    assert.deepEqual(ev.data.event.data, { transferId: t.transferId, fromUserId: 'user-alice', toUserId: 'user-bob', currency: 'USD', amountMinor: 1500 });
    // Bob sees his side only.
    const bobs = (await f.bob.ok('store.all', { bucket: 'ledger' })).filter((e) => e.transferId === t.transferId);
    assert.deepEqual(bobs.map((e) => e.kind), ['transfer_in']);
    f.transferId = t.transferId;
  });

  test('the ledger can be queried by its documented transferId field', T, async () => {
    // docs/ecommerce.md lists `transferId?` among the ledger fields; a filter may name
    // only declared fields (docs/protocol.md), so the bucket must declare it.
    const m = await f.admin.call('store.where', { bucket: 'ledger', filter: { transferId: f.transferId } });
    assert.equal(m.type, 'result', `store.where ledger by transferId: ${JSON.stringify(m)}`);
    assert.deepEqual(m.data.map((e) => e.kind).sort(), ['transfer_in', 'transfer_out']);
  });

  test('transfer creates the recipient wallet when missing', T, async () => {
    const t = await procOk(f.alice, 'transfer', { toUserId: 'user-bob', currency: 'JPY', amountMinor: 1200 });
    await eventPush(f.admin, 'wallet.transferred', { subscriptionId: f.walletSub, where: (d) => d.transferId === t.transferId });
    assert.equal(await f.balance('user-bob:JPY'), 1200);
    assert.equal(await f.balance('user-alice:JPY'), 3800);
  });

  test('transfer errors: to yourself, unknown user, insufficient_funds, validation', T, async () => {
    assertError(await procErr(f.alice, 'transfer', { toUserId: 'user-alice', currency: 'USD', amountMinor: 1 }), 'VALIDATION_ERROR', 'Invalid "toUserId": cannot transfer to yourself');
    assertError(await procErr(f.alice, 'transfer', { toUserId: 'user-nobody', currency: 'USD', amountMinor: 1 }), 'NOT_FOUND');
    assertConflict(await procErr(f.bob, 'transfer', { toUserId: 'user-alice', currency: 'EUR', amountMinor: 100001 }), 'insufficient_funds', { required: 100001, available: 100000, currency: 'EUR' });
    assertConflict(await procErr(f.bob, 'transfer', { toUserId: 'user-alice', currency: 'GBP', amountMinor: 1 }), 'insufficient_funds', { required: 1, available: 0, currency: 'GBP' });
    assertError(await procErr(f.bob, 'transfer', { toUserId: 'user-alice', currency: 'EUR', amountMinor: -5 }), 'VALIDATION_ERROR');
    assertError(await procErr(f.bob, 'transfer', { currency: 'EUR', amountMinor: 5 }), 'VALIDATION_ERROR', 'Missing or invalid "toUserId": expected non-empty string');
    assert.equal(await f.balance('user-bob:EUR'), 100000);
    assert.equal(await f.balance('user-bob:GBP'), null);
    await f.noEvent('wallet.transferred');
  });

  test('customers cannot write wallets or the ledger directly; every balance equals its ledger sum', T, async () => {
    assertError(await f.alice.call('store.update', { bucket: 'wallets', key: 'user-alice:USD', data: { balanceMinor: 10 ** 9 } }), 'FORBIDDEN');
    assertError(await f.alice.call('store.insert', { bucket: 'ledger', data: { walletId: 'user-alice:USD', amountMinor: 1 } }), 'FORBIDDEN');
    assertError(await f.alice.call('rules.emit', { topic: 'wallet.topped_up', data: {} }), 'FORBIDDEN', 'No permission for rules.emit on wallet.topped_up');
    assertError(await f.alice.call('rules.subscribe', { pattern: 'wallet.*' }), 'FORBIDDEN');
    await assertLedgerInvariant(f.admin);
  });
});

describe('idempotency keys', () => {
  const f = shopFixture();

  test('checkout repeated with the same key answers the first result and charges once', T, async () => {
    const usd = await f.balance('user-alice:USD');
    const input = { walletCurrency: 'USD', items: [{ productId: 'prod-2', quantity: 2 }], idempotencyKey: 'order-abc' };
    const first = await f.alice.call('procedures.call', { name: 'checkout', input });
    assert.equal(first.type, 'result', JSON.stringify(first));
    const second = await f.alice.call('procedures.call', { name: 'checkout', input: { idempotencyKey: 'order-abc', items: [{ quantity: 2, productId: 'prod-2' }], walletCurrency: 'USD' } });
    assert.equal(second.type, 'result', JSON.stringify(second));
    assert.equal(JSON.stringify(second.data), JSON.stringify(first.data), 'the repeat answers the first result');
    // Byte-for-byte on the wire (apart from the request id).
    const frame = (id) => f.alice.ws.raw.map((r) => r.text).find((t) => t.startsWith(`{"id":${id},`));
    const body = (t) => t.replace(/^\{"id":\d+,/, '{');
    assert.ok(frame(first.id) && frame(second.id), 'raw frames of both answers');
    assert.equal(body(frame(second.id)), body(frame(first.id)), 'the repeat answers the first result byte-for-byte');
    assert.equal(await f.balance('user-alice:USD'), usd - 9000);
    assert.equal(await f.stock('prod-2'), 48);
    const orders = await f.alice.ok('store.all', { bucket: 'orders' });
    assert.equal(orders.length, 1);
    await eventPush(f.admin, 'order.placed', { subscriptionId: f.orderSub });
    await f.noEvent('order.placed');
  });

  test('idempotency_key_reused {idempotencyKey} for the same key with a different input', T, async () => {
    const m = await procErr(f.alice, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-2', quantity: 3 }], idempotencyKey: 'order-abc' });
    assertConflict(m, 'idempotency_key_reused', { idempotencyKey: 'order-abc' });
    const m2 = await procErr(f.alice, 'checkout', { walletCurrency: 'EUR', items: [{ productId: 'prod-2', quantity: 2 }], idempotencyKey: 'order-abc' });
    assertConflict(m2, 'idempotency_key_reused', { idempotencyKey: 'order-abc' });
    assert.equal(await f.stock('prod-2'), 48);
  });

  test('keys are per user and per procedure', T, async () => {
    const bobOrder = await procOk(f.bob, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-2', quantity: 2 }], idempotencyKey: 'order-abc' });
    assert.equal(bobOrder.userId, 'user-bob');
    assert.equal(await f.stock('prod-2'), 46);
    const w = await procOk(f.alice, 'topUpWallet', { currency: 'EUR', amountMinor: 100, idempotencyKey: 'order-abc' });
    assert.equal(w.balanceMinor, 200100);
  });

  test('idempotencyKey is at most 128 bytes', T, async () => {
    assertError(await procErr(f.bob, 'topUpWallet', { currency: 'EUR', amountMinor: 1, idempotencyKey: 'é'.repeat(65) }), 'VALIDATION_ERROR', /"idempotencyKey"/);
    assertError(await procErr(f.bob, 'topUpWallet', { currency: 'EUR', amountMinor: 1, idempotencyKey: '' }), 'VALIDATION_ERROR', /"idempotencyKey"/);
    assert.equal(await f.balance('user-bob:EUR'), 100000);
  });

  test('a failed call stores nothing: the same key succeeds once the cause is fixed', T, async () => {
    const input = { walletCurrency: 'JPY', items: [{ productId: 'prod-7', quantity: 1 }], idempotencyKey: 'jpy-1' };
    assertConflict(await procErr(f.alice, 'checkout', input), 'insufficient_funds', { required: 2200, available: 0, currency: 'JPY' });
    await procOk(f.alice, 'topUpWallet', { currency: 'JPY', amountMinor: 3000 });
    const order = await procOk(f.alice, 'checkout', input);
    assert.equal(order.totalMinor, 2200);
    assert.equal(await f.balance('user-alice:JPY'), 800);
  });

  test('topUpWallet and transfer with a repeated key apply once', T, async () => {
    const a = await procOk(f.bob, 'topUpWallet', { currency: 'USD', amountMinor: 700, idempotencyKey: 'top-1' });
    const b = await procOk(f.bob, 'topUpWallet', { currency: 'USD', amountMinor: 700, idempotencyKey: 'top-1' });
    assert.deepEqual(b, a);
    assertConflict(await procErr(f.bob, 'topUpWallet', { currency: 'USD', amountMinor: 701, idempotencyKey: 'top-1' }), 'idempotency_key_reused', { idempotencyKey: 'top-1' });
    const t1 = await procOk(f.bob, 'transfer', { toUserId: 'user-alice', currency: 'USD', amountMinor: 300, idempotencyKey: 'tr-1' });
    const t2 = await procOk(f.bob, 'transfer', { toUserId: 'user-alice', currency: 'USD', amountMinor: 300, idempotencyKey: 'tr-1' });
    assert.deepEqual(t2, t1);
    assert.equal(await f.balance('user-bob:USD'), 300000 - 9000 + 700 - 300);
    const transfers = await f.admin.ok('store.where', { bucket: 'ledger', filter: { kind: 'transfer_out', userId: 'user-bob' } });
    assert.equal(transfers.length, 1);
    await assertLedgerInvariant(f.admin);
  });
});

describe('carts', () => {
  const f = shopFixture();

  test('addToCart / updateCartItem / removeFromCart / getCart and a checkout of the cart', T, async () => {
    let cart = await procOk(f.alice, 'addToCart', { productId: 'prod-1', quantity: 2 });
    cart = await procOk(f.alice, 'addToCart', { productId: 'prod-4', quantity: 1 });
    cart = await procOk(f.alice, 'addToCart', { productId: 'prod-1', quantity: 1 });
    assert.deepEqual(cart.items.map((i) => [i.productId, i.quantity, i.unitPriceMinor, i.lineTotalMinor, i.available]), [
      ['prod-1', 3, 7999, 23997, true],
      ['prod-4', 1, 24900, 24900, true],
    ]);
    assert.deepEqual(cart.totals, [{ currency: 'USD', totalMinor: 23997 }, { currency: 'EUR', totalMinor: 24900 }]);
    cart = await procOk(f.alice, 'updateCartItem', { productId: 'prod-1', quantity: 1 });
    cart = await procOk(f.alice, 'removeFromCart', { productId: 'prod-4' });
    cart = await procOk(f.alice, 'removeFromCart', { productId: 'prod-4' });
    assert.deepEqual(await procOk(f.alice, 'getCart', {}), cart);
    assert.deepEqual(cart.items.map((i) => [i.productId, i.quantity]), [['prod-1', 1]]);

    assertError(await procErr(f.alice, 'updateCartItem', { productId: 'prod-2', quantity: 1 }), 'NOT_FOUND');
    assertError(await procErr(f.alice, 'addToCart', { productId: 'prod-404', quantity: 1 }), 'NOT_FOUND');
    assertConflict(await procErr(f.alice, 'addToCart', { productId: 'prod-8', quantity: 1 }), 'product_inactive', { productId: 'prod-8' });
    assertError(await procErr(f.alice, 'addToCart', { productId: 'prod-1', quantity: 1, priceMinor: 1 }), 'VALIDATION_ERROR', 'Unknown field "priceMinor" for procedure "addToCart"');
    assertError(await procErr(f.alice, 'addToCart', { productId: 'prod-1', quantity: 0 }), 'VALIDATION_ERROR', 'Missing or invalid "quantity": expected positive integer');
    assertError(await procErr(f.alice, 'addToCart', { productId: 'prod-1', quantity: 1000 }), 'VALIDATION_ERROR', 'Invalid "quantity": expected at most 999');
    assertError(await procErr(f.alice, 'addToCart', { quantity: 1 }), 'VALIDATION_ERROR', 'Missing or invalid "productId": expected non-empty string');
    assertError(await f.alice.call('store.insert', { bucket: 'carts', data: { id: 'user-alice:prod-2', userId: 'user-alice', productId: 'prod-2', quantity: 1 } }), 'FORBIDDEN');

    const order = await procOk(f.alice, 'checkout', { walletCurrency: 'USD' });
    assert.equal(order.totalMinor, 7999);
    assert.deepEqual((await procOk(f.alice, 'getCart', {})).items, [], 'the cart is emptied by its checkout');
    assertConflict(await procErr(f.alice, 'checkout', { walletCurrency: 'USD' }), 'cart_empty');
  });
});
