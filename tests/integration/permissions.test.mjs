// Permission policy (§2 resource rules, §6): ordered allow rules, operation patterns,
// bucket and topic restrictions, default allow / deny, `match` against the session,
// and row ownership (`owner`) for reads, writes, inserts, transactions and
// subscriptions.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { H, T, assertErr, assertForbidden, client, closeAll, withServer } from './auth-helpers.mjs';
import { startServer } from './helpers.mjs';
import { PRODUCTS, SEED_PRODUCTS, strip } from './store-helpers.mjs';

const ORDERS = {
  key: 'id',
  schema: {
    id: { type: 'string', generated: 'uuid' },
    userId: { type: 'string' },
    total: { type: 'number', min: 0 },
    status: { type: 'string', default: 'new' },
  },
  indexes: ['userId'],
};
const SECRETS = { key: 'id', schema: { id: { type: 'string' }, v: { type: 'string' } } };

const SEED_ORDERS = [
  { id: 'o-a1', userId: 'user-alice', total: 10, status: 'new' },
  { id: 'o-a2', userId: 'user-alice', total: 20, status: 'paid' },
  { id: 'o-b1', userId: 'user-bob', total: 30, status: 'new' },
  { id: 'o-e1', userId: 'user-eve', total: 5, status: 'new' },
];

const TOKENS = {
  alice: { userId: 'user-alice', roles: ['customer'] },
  bob: { userId: 'user-bob', roles: ['customer'] },
  admin: { userId: 'user-admin', roles: ['admin'] },
  eve: { userId: 'user-eve', roles: ['customer', 'auditor'] },
  sam: { userId: 'user-sam', roles: ['support'] },
  lim: { userId: 'user-lim', roles: ['limited'] },
  vic: { userId: 'user-vic', roles: ['viewer'] },
  nobody: { userId: 'user-nobody', roles: [] },
};

const POLICY = {
  default: 'deny',
  rules: [
    { role: 'admin', allow: '*' },
    // Before the customer ownership rule: an auditor's store.all sees every order.
    { role: 'auditor', allow: 'store.all', buckets: ['orders'] },
    { role: 'customer', allow: ['store.get', 'store.all', 'store.where', 'store.count', 'store.findOne'], buckets: ['products'] },
    { role: 'customer', allow: 'store.*', buckets: ['orders'], owner: 'userId' },
    { role: 'customer', allow: 'store.transaction' },
    { role: 'customer', allow: 'store.subscribe', match: { 'params.userId': '$session.userId' } },
    { role: 'customer', allow: 'store.subscribe', buckets: ['all-orders', 'order-count'], owner: 'userId' },
    { role: 'customer', allow: 'store.subscribe', buckets: ['catalog'] },
    { role: 'customer', allow: 'store.unsubscribe' },
    { role: 'customer', allow: ['rules.emit', 'rules.subscribe'], topics: ['cart.*'] },
    { role: 'customer', allow: ['rules.getFact', 'rules.setFact', 'rules.queryFacts'], topics: ['user:*'] },
    { role: 'support', allow: 'store.*', buckets: ['products'] },
    { role: 'limited', allow: 'store.subscribe' },
    { role: 'viewer', allow: 'server.stats' },
  ],
};

const CONFIG = {
  buckets: { products: PRODUCTS, orders: ORDERS, secrets: SECRETS },
  queries: {
    'user-orders': { bucket: 'orders', op: 'where', filter: { userId: '$params.userId' } },
    'all-orders': { bucket: 'orders', op: 'all' },
    'order-count': { bucket: 'orders', op: 'count' },
    catalog: { bucket: 'products', op: 'where', filter: { active: true } },
    'secret-query': { bucket: 'secrets', op: 'all' },
  },
  seed: { products: SEED_PRODUCTS, orders: SEED_ORDERS, secrets: [{ id: 's1', v: 'classified' }] },
  auth: { required: true, tokens: Object.fromEntries(Object.entries(TOKENS).map(([k, v]) => [`tok-${k}`, v])), permissions: POLICY },
};

const ids = (recs) => recs.map((r) => r.id).sort();

/* A fresh server per describe block that writes; read-only blocks share one. */
function serverHooks() {
  const ctx = {};
  before(async () => {
    ctx.srv = await startServer({ config: CONFIG });
  }, H);
  after(async () => {
    await ctx.srv?.stopAndCheck();
  });
  ctx.as = (who) => client(ctx.srv, `tok-${who}`);
  return ctx;
}

describe('operation patterns, resources and defaults', () => {
  const ctx = serverHooks();

  test("'*' allows every operation (admin)", T, async () => {
    const a = await ctx.as('admin');
    try {
      await a.ok('server.stats');
      await a.ok('server.connections');
      await a.ok('store.all', { bucket: 'secrets' });
      await a.ok('store.buckets');
      await a.ok('rules.emit', { topic: 'admin.reset' });
      await a.ok('rules.getAllFacts');
      await a.ok('rules.getRules');
      await a.ok('store.subscribe', { query: 'secret-query' });
    } finally {
      a.close();
    }
  });

  test('exact patterns: listed reads on products pass, other operations on products are FORBIDDEN', T, async () => {
    const c = await ctx.as('alice');
    try {
      assert.equal((await c.ok('store.get', { bucket: 'products', key: 'p1' })).id, 'p1');
      assert.equal((await c.ok('store.all', { bucket: 'products' })).length, 4);
      assert.equal(await c.ok('store.count', { bucket: 'products' }), 4);
      assertForbidden(await c.err('store.insert', { bucket: 'products', data: { id: 'px', title: 'X', price: 1 } }), 'store.insert', 'products');
      assertForbidden(await c.err('store.update', { bucket: 'products', key: 'p1', data: { price: 0 } }), 'store.update', 'products');
      assertForbidden(await c.err('store.delete', { bucket: 'products', key: 'p1' }), 'store.delete', 'products');
      assertForbidden(await c.err('store.sum', { bucket: 'products', field: 'price' }), 'store.sum', 'products');
      assertForbidden(await c.err('store.clear', { bucket: 'products' }), 'store.clear', 'products');
      const a = await ctx.as('admin');
      assert.equal((await a.ok('store.get', { bucket: 'products', key: 'p1' })).price, 10, 'a refused write changed the record');
      assert.equal(await a.ok('store.get', { bucket: 'products', key: 'px' }), null);
      a.close();
    } finally {
      c.close();
    }
  });

  test('bucket restriction: other buckets, and requests without a bucket (resource "*"), are FORBIDDEN', T, async () => {
    const c = await ctx.as('alice');
    try {
      assertForbidden(await c.err('store.all', { bucket: 'secrets' }), 'store.all', 'secrets');
      assertForbidden(await c.err('store.get', { bucket: 'secrets', key: 's1' }), 'store.get', 'secrets');
      assertForbidden(await c.err('store.all', {}), 'store.all', '*');
      assertForbidden(await c.err('store.all', { bucket: '' }), 'store.all', '*');
      assertForbidden(await c.err('store.all', { bucket: 5 }), 'store.all', '*');
      assertForbidden(await c.err('store.get', { bucket: 'nosuch', key: 'x' }), 'store.get', 'nosuch');
      assertForbidden(await c.err('store.buckets'), 'store.buckets', '*');
      assertForbidden(await c.err('store.stats'), 'store.stats', '*');
    } finally {
      c.close();
    }
  });

  test("'store.*' with buckets allows every store operation on those buckets and nothing else", T, async () => {
    const s = await ctx.as('sam');
    try {
      await s.ok('store.insert', { bucket: 'products', data: { id: 'p-sam', title: 'Sam', price: 3 } });
      await s.ok('store.update', { bucket: 'products', key: 'p-sam', data: { price: 4 } });
      await s.ok('store.sum', { bucket: 'products', field: 'price' });
      await s.ok('store.delete', { bucket: 'products', key: 'p-sam' });
      assertForbidden(await s.err('store.all', { bucket: 'orders' }), 'store.all', 'orders');
      // A bucket-restricted rule is not a licence outside store.*.
      assertForbidden(await s.err('rules.emit', { topic: 'products' }), 'rules.emit', 'products');
      assertForbidden(await s.err('server.stats'), 'server.stats', '*');
      assertForbidden(await s.err('store.transaction', { operations: [{ op: 'get', bucket: 'products', key: 'p1' }] }), 'store.transaction', '*');
    } finally {
      s.close();
    }
  });

  test('default deny: an operation no rule allows → "No permission for <type> on <resource>"', T, async () => {
    const c = await ctx.as('alice');
    const n = await ctx.as('nobody');
    try {
      assertForbidden(await c.err('server.stats'), 'server.stats', '*');
      assertForbidden(await c.err('server.connections'), 'server.connections', '*');
      assertForbidden(await c.err('rules.stats'), 'rules.stats', '*');
      assertForbidden(await c.err('rules.getAllFacts'), 'rules.getAllFacts', '*');
      assertForbidden(await c.err('rules.registerRule', { rule: { name: 'x' } }), 'rules.registerRule', '*');
      assertForbidden(await c.err('store.defineBucket', { name: 'evil', config: { key: 'id', schema: {} } }), 'store.defineBucket', '*');
      assertForbidden(await c.err('nosuch.op'), 'nosuch.op', '*');
      // A session without roles is denied everything but auth.*.
      assertForbidden(await n.err('store.get', { bucket: 'products', key: 'p1' }), 'store.get', 'products');
      assert.equal((await n.ok('auth.whoami')).userId, 'user-nobody');
      // An exact pattern for another role.
      const v = await ctx.as('vic');
      await v.ok('server.stats');
      assertForbidden(await v.err('server.connections'), 'server.connections', '*');
      v.close();
    } finally {
      closeAll(c, n);
    }
  });

  test('topics: rules.* resource is topic, else key, else pattern; "*" is one segment', T, async () => {
    const c = await ctx.as('alice');
    try {
      await c.ok('rules.emit', { topic: 'cart.add' });
      assertForbidden(await c.err('rules.emit', { topic: 'admin.reset' }), 'rules.emit', 'admin.reset');
      assertForbidden(await c.err('rules.emit', { topic: 'cart.add.eu' }), 'rules.emit', 'cart.add.eu');
      assertForbidden(await c.err('rules.emit', { topic: 'cart' }), 'rules.emit', 'cart');
      await c.ok('rules.subscribe', { pattern: 'cart.*' });
      await c.ok('rules.subscribe', { pattern: 'cart.add' });
      assertForbidden(await c.err('rules.subscribe', { pattern: '*.*' }), 'rules.subscribe', '*.*');
      assertForbidden(await c.err('rules.subscribe', { pattern: 'orders.*' }), 'rules.subscribe', 'orders.*');
      // Facts: the key is the resource.
      await c.ok('rules.setFact', { key: 'user:alice', value: 1 });
      assert.equal(await c.ok('rules.getFact', { key: 'user:alice' }), 1);
      assertForbidden(await c.err('rules.getFact', { key: 'admin:x' }), 'rules.getFact', 'admin:x');
      assertForbidden(await c.err('rules.setFact', { key: 'user:alice:deep', value: 2 }), 'rules.setFact', 'user:alice:deep');
      await c.ok('rules.queryFacts', { pattern: 'user:*' });
      assertForbidden(await c.err('rules.queryFacts', { pattern: '*:*' }), 'rules.queryFacts', '*:*');
      // The first present of topic, key, pattern is the resource.
      assertForbidden(await c.err('rules.setFact', { topic: 'admin.x', key: 'user:alice', value: 3 }), 'rules.setFact', 'admin.x');
      assert.equal(await c.ok('rules.getFact', { key: 'user:alice' }), 1, 'a refused setFact changed the fact');
      // rules.* operations without those fields: resource "*".
      assertForbidden(await c.err('rules.emit', {}), 'rules.emit', '*');
    } finally {
      c.close();
    }
  });

  test('store.subscribe: the resource is the query name (checked before the query exists)', T, async () => {
    const c = await ctx.as('alice');
    try {
      const sub = await c.ok('store.subscribe', { query: 'catalog' });
      assert.equal(sub.data.length, 3);
      assertForbidden(await c.err('store.subscribe', { query: 'secret-query' }), 'store.subscribe', 'secret-query');
      assertForbidden(await c.err('store.subscribe', { query: 'no-such-query' }), 'store.subscribe', 'no-such-query');
      assertForbidden(await c.err('store.subscribe', {}), 'store.subscribe', '*');
      assert.deepEqual(await c.ok('store.unsubscribe', { subscriptionId: sub.subscriptionId }), { unsubscribed: true });
    } finally {
      c.close();
    }
  });

  test('store.unsubscribe: the resource is the subscriptionId', T, async () => {
    const l = await ctx.as('lim');
    try {
      const { subscriptionId } = await l.ok('store.subscribe', { query: 'catalog' });
      assertForbidden(await l.err('store.unsubscribe', { subscriptionId }), 'store.unsubscribe', subscriptionId);
      assertForbidden(await l.err('store.unsubscribe', {}), 'store.unsubscribe', '*');
    } finally {
      l.close();
    }
  });

  test('match "$session.userId": Bob subscribing to user-orders with Alice\'s id → FORBIDDEN', T, async () => {
    const a = await ctx.as('alice');
    const b = await ctx.as('bob');
    try {
      const mine = await a.ok('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } });
      assert.deepEqual(ids(mine.data), ['o-a1', 'o-a2']);
      assertForbidden(await b.err('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } }), 'store.subscribe', 'user-orders');
      assertForbidden(await b.err('store.subscribe', { query: 'user-orders' }), 'store.subscribe', 'user-orders');
      assertForbidden(await b.err('store.subscribe', { query: 'user-orders', params: { userId: ['user-bob'] } }), 'store.subscribe', 'user-orders');
      const his = await b.ok('store.subscribe', { query: 'user-orders', params: { userId: 'user-bob' } });
      assert.deepEqual(ids(his.data), ['o-b1']);
    } finally {
      closeAll(a, b);
    }
  });

  test('a session repeating one operation is decided afresh when the request or the identity changes', T, async () => {
    const b = await ctx.as('bob');
    try {
      // The same operation and query, allowed then refused: the match rule reads params.
      await b.ok('store.subscribe', { query: 'user-orders', params: { userId: 'user-bob' } });
      assertForbidden(await b.err('store.subscribe', { query: 'user-orders', params: { userId: 'user-alice' } }), 'store.subscribe', 'user-orders');
      await b.ok('store.subscribe', { query: 'user-orders', params: { userId: 'user-bob' } });
      // Repeated decisions without `match` stay right: products yes, secrets no.
      for (let i = 0; i < 3; i++) {
        assert.equal((await b.ok('store.get', { bucket: 'products', key: 'p1' })).id, 'p1');
        assertForbidden(await b.err('store.get', { bucket: 'secrets', key: 's1' }), 'store.get', 'secrets');
      }
      // A new identity on the same connection: admin may read secrets, and back as Bob
      // the refusal returns.
      assert.equal((await b.call('auth.login', { token: 'tok-admin' })).type, 'result');
      assert.equal((await b.ok('store.get', { bucket: 'secrets', key: 's1' })).v, 'classified');
      assert.equal((await b.call('auth.login', { token: 'tok-bob' })).type, 'result');
      assertForbidden(await b.err('store.get', { bucket: 'secrets', key: 's1' }), 'store.get', 'secrets');
    } finally {
      closeAll(b);
    }
  });

  test('rules are ordered: the first matching rule decides (auditor store.all sees every order, where stays owned)', T, async () => {
    const e = await ctx.as('eve');
    try {
      assert.deepEqual(ids(await e.ok('store.all', { bucket: 'orders' })), ['o-a1', 'o-a2', 'o-b1', 'o-e1']);
      assert.deepEqual(ids(await e.ok('store.where', { bucket: 'orders', filter: {} })), ['o-e1']);
      assert.equal(await e.ok('store.count', { bucket: 'orders' }), 1);
    } finally {
      e.close();
    }
  });
});

describe('default allow', () => {
  test('with default "allow", operations no rule mentions pass; without "default" the policy denies', T, async () => {
    const tokens = { 'tok-c': { userId: 'u-c', roles: ['customer'] } };
    await withServer(
      { buckets: { products: PRODUCTS }, seed: { products: SEED_PRODUCTS }, auth: { required: true, tokens, permissions: { default: 'allow', rules: [{ role: 'admin', allow: '*' }] } } },
      async (srv) => {
        const c = await client(srv, 'tok-c');
        await c.ok('store.insert', { bucket: 'products', data: { id: 'pz', title: 'Z', price: 1 } });
        await c.ok('server.stats');
        await c.ok('rules.emit', { topic: 'any.thing' });
        c.close();
      },
    );
    await withServer(
      { buckets: { products: PRODUCTS }, seed: { products: SEED_PRODUCTS }, auth: { required: true, tokens, permissions: { rules: [{ role: 'admin', allow: '*' }] } } },
      async (srv) => {
        const c = await client(srv, 'tok-c');
        assertForbidden(await c.err('store.all', { bucket: 'products' }), 'store.all', 'products');
        c.close();
      },
    );
  });
});

describe('ownership: reads', () => {
  const ctx = serverHooks();

  test("all / where / count / get / findOne / sum / first / paginate never show another user's orders", T, async () => {
    const a = await ctx.as('alice');
    try {
      assert.deepEqual(ids(await a.ok('store.all', { bucket: 'orders' })), ['o-a1', 'o-a2']);
      assert.deepEqual(ids(await a.ok('store.where', { bucket: 'orders', filter: { status: 'new' } })), ['o-a1']);
      assert.deepEqual(await a.ok('store.where', { bucket: 'orders', filter: { userId: 'user-bob' } }), []);
      assert.equal(await a.ok('store.count', { bucket: 'orders' }), 2);
      assert.equal(await a.ok('store.count', { bucket: 'orders', filter: { status: 'new' } }), 1);
      assert.equal(await a.ok('store.get', { bucket: 'orders', key: 'o-b1' }), null);
      assert.equal((await a.ok('store.get', { bucket: 'orders', key: 'o-a1' })).total, 10);
      assert.equal(await a.ok('store.findOne', { bucket: 'orders', filter: { id: 'o-b1' } }), null);
      assert.equal(await a.ok('store.findOne', { bucket: 'orders', filter: { total: 30 } }), null);
      assert.equal(await a.ok('store.sum', { bucket: 'orders', field: 'total' }), 30);
      assert.equal(await a.ok('store.max', { bucket: 'orders', field: 'total' }), 20);
      assert.deepEqual(ids(await a.ok('store.first', { bucket: 'orders', n: 10 })), ['o-a1', 'o-a2']);
      assert.deepEqual(ids(await a.ok('store.last', { bucket: 'orders', n: 10 })), ['o-a1', 'o-a2']);
      const page = await a.ok('store.paginate', { bucket: 'orders', limit: 10 });
      assert.deepEqual(ids(page.records), ['o-a1', 'o-a2']);
      assert.equal(page.hasMore, false);
      const b = await ctx.as('bob');
      assert.deepEqual(ids(await b.ok('store.all', { bucket: 'orders' })), ['o-b1']);
      assert.equal(await b.ok('store.get', { bucket: 'orders', key: 'o-a1' }), null);
      b.close();
    } finally {
      a.close();
    }
  });
});

describe('ownership: writes', () => {
  const ctx = serverHooks();

  test("updating or deleting another user's record → FORBIDDEN and nothing changes", T, async () => {
    const a = await ctx.as('alice');
    const adm = await ctx.as('admin');
    try {
      const before = await adm.ok('store.get', { bucket: 'orders', key: 'o-b1' });
      const up = await a.err('store.update', { bucket: 'orders', key: 'o-b1', data: { total: 0 } });
      assertErr(up, 'FORBIDDEN');
      const del = await a.err('store.delete', { bucket: 'orders', key: 'o-b1' });
      assertErr(del, 'FORBIDDEN');
      assertErr(await a.err('store.clear', { bucket: 'orders' }), 'FORBIDDEN');
      assert.deepEqual(await adm.ok('store.get', { bucket: 'orders', key: 'o-b1' }), before);
      assert.equal(await adm.ok('store.count', { bucket: 'orders' }), 4);
    } finally {
      closeAll(a, adm);
    }
  });

  test('own records can be updated and deleted; the owner field cannot be handed to someone else', T, async () => {
    const a = await ctx.as('alice');
    const adm = await ctx.as('admin');
    try {
      const up = await a.ok('store.update', { bucket: 'orders', key: 'o-a1', data: { status: 'paid' } });
      assert.equal(up.status, 'paid');
      assert.equal(up.userId, 'user-alice');
      assertErr(await a.err('store.update', { bucket: 'orders', key: 'o-a1', data: { userId: 'user-bob' } }), 'FORBIDDEN');
      assert.equal((await adm.ok('store.get', { bucket: 'orders', key: 'o-a1' })).userId, 'user-alice');
      await a.ok('store.insert', { bucket: 'orders', data: { id: 'o-a-tmp', total: 1 } });
      assert.deepEqual(await a.ok('store.delete', { bucket: 'orders', key: 'o-a-tmp' }), { deleted: true });
      assert.equal(await adm.ok('store.get', { bucket: 'orders', key: 'o-a-tmp' }), null);
    } finally {
      closeAll(a, adm);
    }
  });

  test("insert sets the owner field to the caller; inserting for someone else → FORBIDDEN", T, async () => {
    const a = await ctx.as('alice');
    const adm = await ctx.as('admin');
    try {
      const rec = await a.ok('store.insert', { bucket: 'orders', data: { total: 7 } });
      assert.equal(rec.userId, 'user-alice');
      assert.equal(typeof rec.id, 'string');
      const explicit = await a.ok('store.insert', { bucket: 'orders', data: { id: 'o-a-own', userId: 'user-alice', total: 8 } });
      assert.equal(explicit.userId, 'user-alice');
      const count = await adm.ok('store.count', { bucket: 'orders' });
      const m = await a.err('store.insert', { bucket: 'orders', data: { id: 'o-forged', userId: 'user-bob', total: 9 } });
      assertErr(m, 'FORBIDDEN');
      assert.equal(await adm.ok('store.get', { bucket: 'orders', key: 'o-forged' }), null);
      assert.equal(await adm.ok('store.count', { bucket: 'orders' }), count);
      // Bob does not see Alice's new orders.
      const b = await ctx.as('bob');
      assert.deepEqual(ids(await b.ok('store.all', { bucket: 'orders' })), ['o-b1']);
      b.close();
    } finally {
      closeAll(a, adm);
    }
  });
});

describe('ownership and permissions inside store.transaction', () => {
  const ctx = serverHooks();

  test('a transaction mixing an allowed and a forbidden operation → FORBIDDEN naming the op; nothing applied', T, async () => {
    const a = await ctx.as('alice');
    const adm = await ctx.as('admin');
    try {
      const m = await a.err('store.transaction', {
        operations: [
          { op: 'insert', bucket: 'orders', data: { id: 'tx-a1', total: 1 } },
          { op: 'update', bucket: 'orders', key: 'o-b1', data: { total: 0 } },
        ],
      });
      assertErr(m, 'FORBIDDEN', /No permission for store\.update on orders/);
      assert.equal(m.details?.index, 1, `details must name the failing index: ${JSON.stringify(m)}`);
      assert.equal(await adm.ok('store.get', { bucket: 'orders', key: 'tx-a1' }), null, 'the allowed insert was applied');
      assert.equal((await adm.ok('store.get', { bucket: 'orders', key: 'o-b1' })).total, 30);

      const m2 = await a.err('store.transaction', {
        operations: [
          { op: 'insert', bucket: 'orders', data: { id: 'tx-a2', total: 1 } },
          { op: 'insert', bucket: 'products', data: { id: 'tx-p', title: 'T', price: 1 } },
        ],
      });
      assertErr(m2, 'FORBIDDEN', /No permission for store\.insert on products/);
      assert.equal(m2.details?.index, 1, `details must name the failing index: ${JSON.stringify(m2)}`);
      assert.equal(await adm.ok('store.get', { bucket: 'orders', key: 'tx-a2' }), null);
      assert.equal(await adm.ok('store.get', { bucket: 'products', key: 'tx-p' }), null);

      const m3 = await a.err('store.transaction', {
        operations: [
          { op: 'delete', bucket: 'orders', key: 'o-a2' },
          { op: 'get', bucket: 'secrets', key: 's1' },
        ],
      });
      assertErr(m3, 'FORBIDDEN', /No permission for store\.get on secrets/);
      assert.notEqual(await adm.ok('store.get', { bucket: 'orders', key: 'o-a2' }), null, 'the delete was applied');

      const m4 = await a.err('store.transaction', {
        operations: [{ op: 'insert', bucket: 'orders', data: { id: 'tx-forged', userId: 'user-bob', total: 1 } }],
      });
      assertErr(m4, 'FORBIDDEN');
      assert.equal(await adm.ok('store.get', { bucket: 'orders', key: 'tx-forged' }), null);
    } finally {
      closeAll(a, adm);
    }
  });

  test('an allowed transaction applies, sets the owner and reads only own records', T, async () => {
    const a = await ctx.as('alice');
    const adm = await ctx.as('admin');
    try {
      const r = await a.ok('store.transaction', {
        operations: [
          { op: 'insert', bucket: 'orders', data: { id: 'tx-ok', total: 3 } },
          { op: 'update', bucket: 'orders', key: 'o-a1', data: { status: 'shipped' } },
          { op: 'get', bucket: 'orders', key: 'o-b1' },
          { op: 'where', bucket: 'orders', filter: {} },
          { op: 'count', bucket: 'orders' },
          { op: 'get', bucket: 'products', key: 'p1' },
        ],
      });
      assert.equal(r.results.length, 6);
      assert.equal(r.results[0].data.userId, 'user-alice');
      assert.equal(r.results[2].data, null, "another user's record is invisible inside a transaction too");
      assert.deepEqual(ids(r.results[3].data), ['o-a1', 'o-a2', 'tx-ok']);
      assert.equal(r.results[4].data, 3);
      assert.equal(r.results[5].data.id, 'p1');
      assert.equal((await adm.ok('store.get', { bucket: 'orders', key: 'tx-ok' })).userId, 'user-alice');
      assert.equal((await adm.ok('store.get', { bucket: 'orders', key: 'o-a1' })).status, 'shipped');
    } finally {
      closeAll(a, adm);
    }
  });
});

describe('ownership and subscriptions', () => {
  const ctx = serverHooks();

  test('Alice and Bob subscribed to the same query see only their own records, and pushes follow', T, async () => {
    const a = await ctx.as('alice');
    const b = await ctx.as('bob');
    const adm = await ctx.as('admin');
    try {
      const sa = await a.ok('store.subscribe', { query: 'all-orders' });
      const sb = await b.ok('store.subscribe', { query: 'all-orders' });
      assert.deepEqual(ids(sa.data), ['o-a1', 'o-a2']);
      assert.deepEqual(ids(sb.data), ['o-b1']);
      const ca = await a.ok('store.subscribe', { query: 'order-count' });
      const cb = await b.ok('store.subscribe', { query: 'order-count' });
      assert.equal(ca.data, 2);
      assert.equal(cb.data, 1);

      // A new order for Alice: only Alice's subscriptions change.
      await adm.ok('store.insert', { bucket: 'orders', data: { id: 'o-a3', userId: 'user-alice', total: 1 } });
      const pushesA = [await a.push(), await a.push()];
      const listA = pushesA.find((p) => p.subscriptionId === sa.subscriptionId);
      const countA = pushesA.find((p) => p.subscriptionId === ca.subscriptionId);
      assert.ok(listA && countA, JSON.stringify(pushesA));
      assert.deepEqual(ids(listA.data), ['o-a1', 'o-a2', 'o-a3']);
      assert.equal(countA.data, 3);
      await b.noPush(250, "Bob's results did not change");

      // Bob's order changes: only Bob hears about it.
      await adm.ok('store.update', { bucket: 'orders', key: 'o-b1', data: { total: 31 } });
      const pb = await b.push();
      assert.equal(pb.subscriptionId, sb.subscriptionId);
      assert.deepEqual(strip(pb.data).map((r) => [r.id, r.total]), [['o-b1', 31]]);
      await a.noPush(250, "Alice's results did not change");

      // Alice's own insert reaches her, not Bob.
      await a.ok('store.insert', { bucket: 'orders', data: { id: 'o-a4', total: 2 } });
      const again = [await a.push(), await a.push()];
      assert.deepEqual(ids(again.find((p) => p.subscriptionId === sa.subscriptionId).data), ['o-a1', 'o-a2', 'o-a3', 'o-a4']);
      await b.noPush(250);
      for (const p of [...pushesA, ...again, pb]) {
        const list = Array.isArray(p.data) ? p.data : [];
        for (const r of list) assert.equal(r.userId, p === pb ? 'user-bob' : 'user-alice', `foreign record pushed: ${JSON.stringify(r)}`);
      }
    } finally {
      closeAll(a, b, adm);
    }
  });
});

describe('identity changes and existing subscriptions', () => {
  const ctx = serverHooks();

  test("after logout or login as someone else, owner-filtered subscriptions no longer deliver the previous user's records", T, async () => {
    const c = await ctx.as('alice');
    const adm = await ctx.as('admin');
    try {
      const sub = await c.ok('store.subscribe', { query: 'all-orders' });
      assert.deepEqual(ids(sub.data), ['o-a1', 'o-a2']);
      // The same connection now belongs to Bob.
      await c.ok('auth.login', { token: 'tok-bob' });
      await adm.ok('store.insert', { bucket: 'orders', data: { id: 'o-a5', userId: 'user-alice', total: 1 } });
      const deadline = Date.now() + 300;
      while (Date.now() < deadline) {
        const p = await c.push(Math.max(1, deadline - Date.now())).catch(() => null);
        if (!p) break;
        const foreign = (Array.isArray(p.data) ? p.data : []).filter((r) => r.userId !== 'user-bob');
        assert.deepEqual(foreign.map((r) => r.id), [], "Alice's records pushed to a connection now logged in as Bob");
      }
      // Logged out: nobody's private records may arrive any more.
      await c.ok('auth.logout');
      await adm.ok('store.insert', { bucket: 'orders', data: { id: 'o-a6', userId: 'user-alice', total: 1 } });
      const end = Date.now() + 300;
      while (Date.now() < end) {
        const p = await c.push(Math.max(1, end - Date.now())).catch(() => null);
        if (!p) break;
        const leaked = (Array.isArray(p.data) ? p.data : []).map((r) => r.id);
        assert.deepEqual(leaked, [], 'private records pushed to a logged-out connection');
      }
    } finally {
      closeAll(c, adm);
    }
  });
});
