// The seed walkthrough (seeds/000_b859fb97ea257c2d.txt, steps 1–11 and the exercise)
// replayed against the shipped config/ecommerce.json, with every difference that the
// secure policy of docs/ecommerce.md makes asserted explicitly:
//
//   step 3   the client-side order transaction is FORBIDDEN → the customer calls the
//            `checkout` procedure; prices are integer minor units (`priceMinor`)
//   step 4   customers may not emit `order.*` → the server emits `order.placed`
//   step 5   Bob subscribing to `user-orders` with Alice's id is FORBIDDEN
//   step 7   facts are admin-only (customers get FORBIDDEN for queryFacts/getFact)
//   step 9   customers cannot read `users`
//   step 10  rate limit: run against a copy of the config with a small rateLimit
//   exercise `inventory.low_stock` comes from the shipped rule (only when stock crosses
//            below 5); cancelling is the `cancelOrder` procedure (stock and money back)
//
// Steps share one server and run in order; each step's state feeds the next.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertError, strip } from './store-helpers.mjs';
import {
  USERS,
  assertConflict,
  assertLedgerInvariant,
  eventPush,
  getRecord,
  procErr,
  procOk,
  pushWhere,
  readShippedConfig,
  shopClient,
  shutdown,
  sleep,
  startShop,
  writeConfigCopy,
} from './shop-helpers.mjs';

const T = { timeout: 10000 };
const ALICE_USD = 500000; // seed: 5 000.00 USD
const KEYBOARD = { id: 'prod-1', priceMinor: 7999, stock: 25 };

describe('seed walkthrough on config/ecommerce.json', () => {
  let srv;
  let alice; // Alice's connection (steps 1–11)
  let admin; // the admin of step 6 onwards
  let watcher; // an admin connection subscribed to order.* before step 3 (checks step 4)
  let bob;
  const clients = [];
  const s = {}; // state carried between steps

  before(async () => {
    srv = await startShop();
    watcher = await shopClient(srv, 'admin');
    clients.push(watcher);
    s.watcherSub = (await watcher.ok('rules.subscribe', { pattern: 'order.*' })).subscriptionId;
  });

  after(async () => {
    await shutdown(srv, clients);
  });

  test('step 1: connect and authenticate (welcome requiresAuth, login as Alice)', T, async () => {
    alice = await shopClient(srv, null);
    clients.push(alice);
    const w = alice.welcome;
    assert.equal(w.type, 'welcome');
    assert.equal(w.version, '1.0.0');
    assert.equal(w.requiresAuth, true);
    assert.ok(Number.isFinite(w.serverTime) && Math.abs(w.serverTime - Date.now()) < 60000, `serverTime ${w.serverTime}`);

    // Before login every non-auth request is refused.
    assertError(await alice.call('store.all', { bucket: 'products' }), 'UNAUTHORIZED', 'Authentication required');
    assertError(await alice.call('auth.login', { token: 'customer-token-mallory' }), 'UNAUTHORIZED', 'Invalid token');

    const login = await alice.ok('auth.login', { token: 'customer-token-alice' });
    assert.deepEqual(login, { userId: 'user-alice', roles: ['customer'], expiresAt: null });
  });

  test('step 2: browse products — live catalog of active products, prices in integer minor units', T, async () => {
    const r = await alice.ok('store.subscribe', { query: 'product-catalog' });
    assert.match(r.subscriptionId, /^sub-\d+$/);
    s.catalogSub = r.subscriptionId;
    const ids = r.data.map((p) => p.id).sort();
    assert.deepEqual(ids, ['prod-1', 'prod-2', 'prod-3', 'prod-4', 'prod-5', 'prod-6', 'prod-7'], 'inactive prod-8 is not in the catalog');
    for (const p of r.data) {
      assert.ok(Number.isInteger(p.priceMinor) && p.priceMinor >= 0, `priceMinor of ${p.id}: ${p.priceMinor}`);
      assert.match(p.currency, /^[A-Z]{3}$/);
      assert.equal('price' in p, false, `the seed's float "price" field is gone: ${JSON.stringify(p)}`);
      assert.equal(p.active, true);
      assert.equal(p._version, 1);
    }
    const kb = r.data.find((p) => p.id === 'prod-1');
    assert.deepEqual(
      { title: kb.title, priceMinor: kb.priceMinor, currency: kb.currency, stock: kb.stock },
      { title: 'Wireless Keyboard', priceMinor: 7999, currency: 'USD', stock: 25 },
    );
    const stand = r.data.find((p) => p.id === 'prod-3');
    assert.deepEqual([stand.title, stand.priceMinor, stand.stock], ['Laptop Stand', 12000, 3]);
  });

  test('step 3: the seed client-side order transaction is FORBIDDEN; checkout places the order', T, async () => {
    // The seed's transaction, adapted to this schema (it would fail validation anyway
    // with the seed's fields): refused by policy before anything runs.
    const tx = await alice.call('store.transaction', {
      operations: [
        { op: 'update', bucket: 'products', key: 'prod-1', data: { stock: 24 } },
        {
          op: 'insert',
          bucket: 'orders',
          data: {
            userId: 'user-alice',
            status: 'paid',
            items: [{ productId: 'prod-1', quantity: 1, unitPriceMinor: 1 }],
            totalMinor: 1,
            currency: 'USD',
            createdAt: Date.now(),
            updatedAt: Date.now(),
          },
        },
        { op: 'insert', bucket: 'audit-logs', data: { action: 'order_placed', userId: 'user-alice', timestamp: Date.now() } },
      ],
    });
    assertError(tx, 'FORBIDDEN', /^No permission for store\.transaction on /);
    // Direct writes are refused one by one too.
    assertError(await alice.call('store.update', { bucket: 'products', key: 'prod-1', data: { stock: 24 } }), 'FORBIDDEN', 'No permission for store.update on products');
    assertError(await alice.call('store.insert', { bucket: 'orders', data: { userId: 'user-alice' } }), 'FORBIDDEN', 'No permission for store.insert on orders');
    // Nothing changed: stock 25, no order.
    assert.equal((await alice.ok('store.get', { bucket: 'products', key: 'prod-1' })).stock, 25);
    assert.deepEqual(await alice.ok('store.all', { bucket: 'orders' }), []);
    // A client-sent price is refused by the procedure's input validation.
    const priced = await procErr(alice, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1, priceMinor: 1 }] });
    assertError(priced, 'VALIDATION_ERROR', /Unknown field "priceMinor"/);

    // The secure way: the checkout procedure reads price and stock on the server.
    const order = await procOk(alice, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }] });
    s.order1 = order;
    assert.equal(typeof order.id, 'string');
    assert.equal(order.userId, 'user-alice');
    assert.equal(order.status, 'paid');
    assert.equal(order.totalMinor, KEYBOARD.priceMinor);
    assert.equal(order.currency, 'USD');
    assert.ok(Number.isInteger(order.createdAt));
    assert.equal(order.items.length, 1);
    assert.deepEqual(
      { ...order.items[0] },
      { productId: 'prod-1', title: 'Wireless Keyboard', quantity: 1, unitPriceMinor: 7999, currency: 'USD', lineTotalMinor: 7999, chargedMinor: 7999 },
    );

    // Stock 24, pushed to the catalog subscription.
    const push = await pushWhere(alice, (p) => p.subscriptionId === s.catalogSub && p.data.find((x) => x.id === 'prod-1').stock === 24, undefined, 'catalog push with stock 24');
    assert.equal(push.channel, 'subscription');
    assert.equal(push.data.find((x) => x.id === 'prod-1')._version, 2);
    // Money left Alice's wallet, with its ledger entry.
    const wallet = await alice.ok('store.get', { bucket: 'wallets', key: 'user-alice:USD' });
    assert.equal(wallet.balanceMinor, ALICE_USD - 7999);
    const ledger = await alice.ok('store.where', { bucket: 'ledger', filter: { orderId: order.id } });
    assert.deepEqual(
      ledger.map((e) => [e.kind, e.amountMinor, e.balanceAfterMinor, e.walletId]),
      [['payment', -7999, ALICE_USD - 7999, 'user-alice:USD']],
    );
    // The audit entry was written in the same transaction (admins only can read it).
    assertError(await alice.call('store.all', { bucket: 'audit-logs' }), 'FORBIDDEN', 'No permission for store.all on audit-logs');
    const audit = await watcher.ok('store.where', { bucket: 'audit-logs', filter: { action: 'order_placed' } });
    assert.equal(audit.length, 1);
    assert.equal(audit[0].userId, 'user-alice');
    assert.equal(audit[0].details.orderId, order.id);
  });

  test('step 4: customers may not emit order.*; the server emitted order.placed itself', T, async () => {
    const m = await alice.call('rules.emit', { topic: 'order.placed', data: { orderId: s.order1.id, userId: 'user-alice', totalMinor: 7999 } });
    assertError(m, 'FORBIDDEN', 'No permission for rules.emit on order.placed');
    const p = await eventPush(watcher, 'order.placed', { subscriptionId: s.watcherSub });
    assert.equal(p.channel, 'event');
    assert.equal(p.data.event.topic, 'order.placed');
    assert.equal(typeof p.data.event.id, 'string');
    assert.ok(Number.isFinite(p.data.event.timestamp));
    assert.deepEqual(p.data.event.data, { orderId: s.order1.id, userId: 'user-alice', totalMinor: 7999, currency: 'USD' });
    // Exactly one: the refused emit produced nothing.
    await sleep(150);
    assert.equal(watcher.pushes.filter((x) => x.data?.topic === 'order.placed').length, 0, 'a second order.placed arrived');
  });

  test('step 5: Alice subscribes to her orders; Bob may not use her id', T, async () => {
    const r = await alice.ok('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } });
    s.ordersSub = r.subscriptionId;
    assert.equal(r.data.length, 1);
    assert.equal(r.data[0].id, s.order1.id);
    assert.equal(r.data[0].status, 'paid');
    assert.equal(r.data[0]._version, 1);
    assert.deepEqual(strip(r.data[0]), s.order1, 'the subscription shows the order the checkout answered');

    // my-orders binds the user from the session.
    const mine = await alice.ok('store.subscribe', { query: 'my-orders' });
    assert.deepEqual(mine.data.map((o) => o.id), [s.order1.id]);
    s.myOrdersSub = mine.subscriptionId;

    bob = await shopClient(srv, 'bob');
    clients.push(bob);
    const forbidden = await bob.call('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } });
    assertError(forbidden, 'FORBIDDEN', 'No permission for store.subscribe on user-orders');
    assertError(await bob.call('store.subscribe', { query: 'order-count', params: { userId: 'user-alice' } }), 'FORBIDDEN');
    const own = await bob.ok('store.subscribe', { query: 'user-orders', params: { userId: 'user-bob' } });
    assert.deepEqual(own.data, []);
    // Nor with a missing id or a filter operator smuggled in as the parameter.
    for (const params of [{}, { userId: { $ne: 'nobody' } }, { userId: ['user-bob', 'user-alice'] }]) {
      assertError(await bob.call('store.subscribe', { query: 'user-orders', params }), 'FORBIDDEN', `No permission for store.subscribe on user-orders`);
    }
    // my-orders ignores a client-sent userId: it binds the session's.
    const bobsMine = await bob.ok('store.subscribe', { query: 'my-orders', params: { userId: 'user-alice' } });
    assert.deepEqual(bobsMine.data, []);
    // Row ownership: Bob does not see Alice's order through plain reads either.
    assert.equal(await bob.ok('store.get', { bucket: 'orders', key: s.order1.id }), null);
    assert.deepEqual(await bob.ok('store.where', { bucket: 'orders', filter: { userId: { $ne: 'nobody' } } }), []);
  });

  test('step 6: admin store.update of the order status still works; fact and Alice\'s push follow', T, async () => {
    admin = await shopClient(srv, null);
    clients.push(admin);
    assert.deepEqual(await admin.ok('auth.login', { token: 'admin-token' }), { userId: 'admin-1', roles: ['admin'], expiresAt: null });

    const updated = await admin.ok('store.update', { bucket: 'orders', key: s.order1.id, data: { status: 'shipped' } });
    assert.equal(updated.id, s.order1.id);
    assert.equal(updated.status, 'shipped');
    assert.equal(updated._version, 2);
    assert.equal(updated.userId, 'user-alice');
    assert.equal(updated.totalMinor, 7999);

    const push = await pushWhere(alice, (p) => p.subscriptionId === s.ordersSub, undefined, 'user-orders push');
    assert.equal(push.channel, 'subscription');
    assert.equal(push.data.length, 1);
    assert.equal(push.data[0].id, s.order1.id);
    assert.equal(push.data[0].status, 'shipped');
    assert.equal(push.data[0]._version, 2);
    const mine = await pushWhere(alice, (p) => p.subscriptionId === s.myOrdersSub, undefined, 'my-orders push');
    assert.equal(mine.data[0].status, 'shipped');

    // The shipped rule keeps order:<id>:status in step with the stored status.
    assert.equal(await admin.ok('rules.getFact', { key: `order:${s.order1.id}:status` }), 'shipped');
    // A status outside the schema's enum is refused, and the fact stays.
    assertError(await admin.call('store.update', { bucket: 'orders', key: s.order1.id, data: { status: 'teleported' } }), 'VALIDATION_ERROR');
    assert.equal(await admin.ok('rules.getFact', { key: `order:${s.order1.id}:status` }), 'shipped');

    // The admin may still emit the shipping event by hand.
    const ev = await admin.ok('rules.emit', { topic: 'order.shipped', data: { orderId: s.order1.id, userId: 'user-alice' } });
    assert.equal(ev.topic, 'order.shipped');
    assert.deepEqual(ev.data, { orderId: s.order1.id, userId: 'user-alice' });
    assert.equal(typeof ev.id, 'string');
    assert.ok(Number.isFinite(ev.timestamp));
    const p = await eventPush(watcher, 'order.shipped', { subscriptionId: s.watcherSub });
    assert.deepEqual(p.data.event, ev);
  });

  test('step 7: facts — admin sets and queries them; customers get FORBIDDEN', T, async () => {
    const key = `order:${s.order1.id}:status`;
    assert.deepEqual(await admin.ok('rules.setFact', { key, value: 'shipped' }), { key, value: 'shipped' });
    assertError(await alice.call('rules.queryFacts', { pattern: 'order:*:status' }), 'FORBIDDEN', 'No permission for rules.queryFacts on order:*:status');
    assertError(await alice.call('rules.getFact', { key }), 'FORBIDDEN', `No permission for rules.getFact on ${key}`);
    assertError(await alice.call('rules.setFact', { key, value: 'delivered' }), 'FORBIDDEN');
    assert.deepEqual(await admin.ok('rules.queryFacts', { pattern: 'order:*:status' }), [{ key, value: 'shipped' }]);
  });

  test('step 8: admin subscribes to order.*; Bob\'s checkout reaches the admin (event and dashboard)', T, async () => {
    const r = await admin.ok('rules.subscribe', { pattern: 'order.*' });
    assert.deepEqual(Object.keys(r), ['subscriptionId']);
    s.adminOrderSub = r.subscriptionId;
    const dash = await admin.ok('store.subscribe', { query: 'recent-orders' });
    assert.deepEqual(dash.data.map((o) => o.id), [s.order1.id]);
    s.dashSub = dash.subscriptionId;

    // Customers cannot follow other people's order events or emit them.
    assertError(await bob.call('rules.subscribe', { pattern: 'order.*' }), 'FORBIDDEN', 'No permission for rules.subscribe on order.*');
    assertError(await bob.call('store.subscribe', { query: 'recent-orders' }), 'FORBIDDEN');

    const order2 = await procOk(bob, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-2', quantity: 1 }] });
    s.order2 = order2;
    assert.equal(order2.totalMinor, 4500);
    const p = await eventPush(admin, 'order.placed', { subscriptionId: s.adminOrderSub });
    assert.deepEqual(Object.keys(p.data).sort(), ['event', 'topic']);
    assert.equal(p.data.event.topic, 'order.placed');
    assert.deepEqual(p.data.event.data, { orderId: order2.id, userId: 'user-bob', totalMinor: 4500, currency: 'USD' });
    const d = await pushWhere(admin, (x) => x.subscriptionId === s.dashSub, undefined, 'recent-orders push');
    assert.deepEqual(d.data.map((o) => o.id).sort(), [s.order1.id, order2.id].sort());
    // Alice's own order list did not change because of Bob's order.
    await sleep(100);
    assert.equal(alice.pushes.filter((x) => x.subscriptionId === s.ordersSub).length, 0, 'Alice got a push for Bob\'s order');
  });

  test('step 9: permission enforcement — delete product and read users are FORBIDDEN', T, async () => {
    assertError(await alice.call('store.delete', { bucket: 'products', key: 'prod-1' }), 'FORBIDDEN', 'No permission for store.delete on products');
    assertError(await alice.call('store.all', { bucket: 'users' }), 'FORBIDDEN', 'No permission for store.all on users');
    assertError(await alice.call('store.get', { bucket: 'users', key: 'user-alice' }), 'FORBIDDEN');
    assert.ok(await alice.ok('store.get', { bucket: 'products', key: 'prod-1' }), 'prod-1 still exists');
    const users = await admin.ok('store.all', { bucket: 'users' });
    assert.deepEqual(users.map((u) => u.id).sort(), ['admin-1', 'user-alice', 'user-bob']);
  });

  test('step 11: whoami and logout; requests after logout are UNAUTHORIZED', T, async () => {
    assert.deepEqual(await alice.ok('auth.whoami'), { authenticated: true, userId: 'user-alice', roles: ['customer'], expiresAt: null });
    // A second connection for the exercise keeps Alice logged in elsewhere.
    s.alice2 = await shopClient(srv, 'alice');
    clients.push(s.alice2);
    assert.deepEqual(await alice.ok('auth.logout'), { loggedOut: true });
    assertError(await alice.call('store.all', { bucket: 'products' }), 'UNAUTHORIZED', 'Authentication required');
    assertError(await alice.call('procedures.call', { name: 'getCart', input: {} }), 'UNAUTHORIZED', 'Authentication required');
    assert.deepEqual(await alice.ok('auth.whoami'), { authenticated: false });
    // Logging out one connection does not log out the other.
    assert.equal((await s.alice2.ok('auth.whoami')).userId, 'user-alice');
  });

  test('exercise 1+2: inventory.low_stock from the shipped rule reaches an admin subscribed to inventory.*', T, async () => {
    const a2 = s.alice2;
    const inv = await admin.ok('rules.subscribe', { pattern: 'inventory.*' });
    s.invSub = inv.subscriptionId;
    assertError(await a2.call('rules.subscribe', { pattern: 'inventory.*' }), 'FORBIDDEN', 'No permission for rules.subscribe on inventory.*');
    assertError(await a2.call('rules.emit', { topic: 'inventory.low_stock', data: { productId: 'prod-3' } }), 'FORBIDDEN');

    // Laptop Stand is already below 5 (3): a sale 3 → 2 does not cross the line, no alert.
    const standOrder = await procOk(a2, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-3', quantity: 1 }] });
    s.standOrder = standOrder;
    // Keyboard 24 → 4 crosses below 5: one alert.
    const big = await procOk(a2, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 20 }] });
    s.bigOrder = big;
    assert.equal(big.totalMinor, 20 * 7999);
    const p = await eventPush(admin, 'inventory.low_stock', { subscriptionId: s.invSub });
    assert.equal(p.data.event.topic, 'inventory.low_stock');
    assert.deepEqual(p.data.event.data, { productId: 'prod-1', title: 'Wireless Keyboard', currentStock: 4 });
    // 4 → 3: still low, but no second alert; nor was there one for prod-3.
    s.smallOrder = await procOk(a2, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-1', quantity: 1 }] });
    await sleep(200);
    const extra = admin.pushes.filter((x) => x.subscriptionId === s.invSub);
    assert.deepEqual(extra, [], 'low_stock must fire only when stock crosses below 5');

    // The seed's manual alert still works for an admin.
    const ev = await admin.ok('rules.emit', { topic: 'inventory.low_stock', data: { productId: 'prod-3', title: 'Laptop Stand', currentStock: 2 } });
    const manual = await eventPush(admin, 'inventory.low_stock', { subscriptionId: s.invSub });
    assert.deepEqual(manual.data.event, ev);
    // Admin dashboard of low stock (customers may not subscribe to it).
    assertError(await a2.call('store.subscribe', { query: 'low-stock-products' }), 'FORBIDDEN');
    const low = await admin.ok('store.subscribe', { query: 'low-stock-products' });
    assert.deepEqual(low.data.map((x) => [x.id, x.stock]), [['prod-8', 0], ['prod-3', 2], ['prod-1', 3], ['prod-7', 8]]);
  });

  test('exercise 3: cancel — customer may not cancel a shipped order; admin cancelOrder restores stock and money', T, async () => {
    const a2 = s.alice2;
    const subs = await a2.ok('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } });
    const ordersSub = subs.subscriptionId;
    const catalog = await a2.ok('store.subscribe', { query: 'product-catalog' });
    const catalogSub = catalog.subscriptionId;
    const stockBefore = catalog.data.find((p) => p.id === 'prod-1').stock; // 3
    const walletBefore = (await a2.ok('store.get', { bucket: 'wallets', key: 'user-alice:USD' })).balanceMinor;

    // Order 1 was shipped by the admin's store.update (step 6): a customer cannot cancel it.
    assertConflict(await procErr(a2, 'cancelOrder', { orderId: s.order1.id }), 'invalid_transition', { from: 'shipped', to: 'cancelled' });
    // The seed's admin-side transaction would only flip the status; the procedure refunds.
    const cancelled = await procOk(admin, 'cancelOrder', { orderId: s.order1.id, reason: 'admin_cancelled' });
    assert.equal(cancelled.status, 'cancelled');
    assert.equal(cancelled.cancelledBy, 'admin-1');
    assert.equal(cancelled.cancelReason, 'admin_cancelled');
    assert.ok(Number.isInteger(cancelled.cancelledAt));

    // Stock restored (+1) and pushed to the catalog.
    const cp = await pushWhere(a2, (p) => p.subscriptionId === catalogSub && p.data.find((x) => x.id === 'prod-1').stock === stockBefore + 1, undefined, 'catalog push with restored stock');
    assert.ok(cp);
    assert.equal((await admin.ok('store.get', { bucket: 'products', key: 'prod-1' })).stock, stockBefore + 1);
    // Money restored to the owner's wallet with a refund ledger entry.
    const wallet = await a2.ok('store.get', { bucket: 'wallets', key: 'user-alice:USD' });
    assert.equal(wallet.balanceMinor, walletBefore + 7999);
    const refunds = await a2.ok('store.where', { bucket: 'ledger', filter: { orderId: s.order1.id, kind: 'refund' } });
    assert.deepEqual(refunds.map((e) => [e.amountMinor, e.balanceAfterMinor, e.walletId]), [[7999, walletBefore + 7999, 'user-alice:USD']]);
    // Alice's order list is pushed with the cancelled status.
    const op = await pushWhere(a2, (p) => p.subscriptionId === ordersSub && p.data.some((o) => o.id === s.order1.id && o.status === 'cancelled'), undefined, 'user-orders push (cancelled)');
    assert.ok(op);
    // The admin's order.* subscription gets order.cancelled.
    const ev = await eventPush(admin, 'order.cancelled', { subscriptionId: s.adminOrderSub });
    assert.deepEqual(ev.data.event.data, {
      orderId: s.order1.id,
      userId: 'user-alice',
      cancelledBy: 'admin-1',
      totalMinor: 7999,
      currency: 'USD',
      reason: 'admin_cancelled',
    });
    // Fact and audit follow.
    assert.equal(await admin.ok('rules.getFact', { key: `order:${s.order1.id}:status` }), 'cancelled');
    const audit = await admin.ok('store.where', { bucket: 'audit-logs', filter: { action: 'order_cancelled' } });
    assert.equal(audit.length, 1);
    assert.equal(audit[0].userId, 'admin-1');
    assert.equal(audit[0].details.orderId, s.order1.id);

    // Alice cancels her own paid 20-unit order herself: 20 back in stock, money back.
    const w2 = (await a2.ok('store.get', { bucket: 'wallets', key: 'user-alice:USD' })).balanceMinor;
    const own = await procOk(a2, 'cancelOrder', { orderId: s.bigOrder.id });
    assert.equal(own.status, 'cancelled');
    assert.equal(own.cancelledBy, 'user-alice');
    assert.equal((await a2.ok('store.get', { bucket: 'products', key: 'prod-1' })).stock, stockBefore + 1 + 20);
    assert.equal((await a2.ok('store.get', { bucket: 'wallets', key: 'user-alice:USD' })).balanceMinor, w2 + 20 * 7999);
    const ev2 = await eventPush(admin, 'order.cancelled', { subscriptionId: s.adminOrderSub, where: (d) => d.orderId === s.bigOrder.id });
    assert.equal(ev2.data.event.data.reason, null, 'reason is null when none was given');
    assert.equal(ev2.data.event.data.cancelledBy, 'user-alice');

    // Balances still equal the sum of the ledger, for every wallet.
    await assertLedgerInvariant(admin);
    // Alice's USD: seed − stand − keyboard×1 (small order) (orders 1 and big refunded).
    const finalUsd = (await getRecord(admin, 'wallets', 'user-alice:USD')).balanceMinor;
    assert.equal(finalUsd, ALICE_USD - 12000 - 7999);
  });
});

describe('seed walkthrough step 10: rate limiting (config copy with a small rateLimit)', () => {
  const MAX = 10;
  let srv;
  let cfg;
  const clients = [];

  before(async () => {
    const shipped = readShippedConfig();
    assert.deepEqual(shipped.rateLimit, { maxRequests: 100, windowMs: 60000 }, 'the shipped config keeps the seed\'s 100/min');
    cfg = writeConfigCopy((c) => {
      c.rateLimit = { maxRequests: MAX, windowMs: 60000 };
    });
    srv = await startShop(cfg.path);
  });

  after(async () => {
    await shutdown(srv, clients);
    cfg?.remove();
  });

  test(`after ${MAX} requests in the window Alice gets RATE_LIMITED with retryAfterMs; other users are unaffected`, T, async () => {
    const alice = await shopClient(srv, null);
    clients.push(alice);
    // auth.login is counted too (against the address, before the session exists).
    await alice.ok('auth.login', { token: 'customer-token-alice' });
    // Requests under Alice's user id: MAX allowed, the next one refused.
    for (let i = 0; i < MAX; i++) {
      const m = await alice.call('store.all', { bucket: 'products' });
      assert.equal(m.type, 'result', `request ${i + 1} of ${MAX} was refused: ${JSON.stringify(m).slice(0, 300)}`);
    }
    const limited = await alice.call('store.all', { bucket: 'products' });
    assertError(limited, 'RATE_LIMITED', /^Rate limit exceeded\. Retry after \d+ms$/);
    const retry = limited.details?.retryAfterMs;
    assert.ok(Number.isInteger(retry) && retry > 0 && retry <= 60000, `retryAfterMs ${retry}`);
    assert.equal(limited.message, `Rate limit exceeded. Retry after ${retry}ms`);
    // Procedures are requests too.
    assertError(await alice.call('procedures.call', { name: 'getCart', input: {} }), 'RATE_LIMITED');

    // The limit is per user, not per connection: a second Alice connection is limited too.
    const alice2 = await shopClient(srv, 'alice');
    clients.push(alice2);
    assertError(await alice2.call('store.all', { bucket: 'products' }), 'RATE_LIMITED');
    // Bob has his own budget.
    const bob = await shopClient(srv, 'bob');
    clients.push(bob);
    assert.equal((await bob.ok('store.all', { bucket: 'products' })).length, 8);
  });
});
