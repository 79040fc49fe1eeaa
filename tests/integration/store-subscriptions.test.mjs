// Named queries and reactive subscriptions (protocol §4.4) against the real binary:
// initial results for every query kind, pushes only when the result changes, `get`
// queries keyed by record, $params, unsubscribe and disconnect cleanup, shared
// evaluation across subscribers, and the /metrics counters that show it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { metricValue, scrape, sleep } from './helpers.mjs';
import {
  QUIET_MS,
  SEED_PRODUCTS,
  STARTUP_MS,
  T,
  assertError,
  metricsDelta,
  shopConfig,
  startStore,
  storeClient,
  subMetrics,
} from './store-helpers.mjs';

const SIMPLE = (extra = {}) => ({ key: 'id', schema: { id: { type: 'string' }, v: { type: 'number' }, tag: { type: 'string' } }, ...extra });

const QUERIES = {
  kitchen: { bucket: 'products', op: 'where', filter: { category: 'kitchen' } },
  'all-products': { bucket: 'products', op: 'all' },
  'product-count': { bucket: 'products', op: 'count' },
  'home-count': { bucket: 'products', op: 'count', filter: { category: 'home' } },
  'price-sum': { bucket: 'products', op: 'sum', field: 'price' },
  'price-avg': { bucket: 'products', op: 'avg', field: 'price', filter: { category: 'kitchen' } },
  'price-min': { bucket: 'products', op: 'min', field: 'price' },
  'price-max': { bucket: 'products', op: 'max', field: 'price', filter: { category: 'home' } },
  'first-two': { bucket: 'products', op: 'first', n: 2 },
  'last-two': { bucket: 'products', op: 'last', n: 2 },
  'first-page': { bucket: 'products', op: 'paginate', limit: 3 },
  'first-home': { bucket: 'products', op: 'findOne', filter: { category: 'home' } },
  'top-priced': { bucket: 'products', op: 'all', orderBy: [{ field: 'price', dir: 'desc' }], limit: 2 },
  'cheap-first': { bucket: 'products', op: 'where', filter: { active: true }, orderBy: [{ field: 'price', dir: 'asc' }] },
  'low-stock': { bucket: 'products', op: 'where', filter: { stock: { $lt: 5 } } },
  'by-category': { bucket: 'products', op: 'where', filter: { category: '$params.category' } },
  'under-price': { bucket: 'products', op: 'where', filter: { price: { $lt: '$params.max' } } },
  'product-p1': { bucket: 'products', op: 'get', key: 'p1' },
  'product-by-id': { bucket: 'products', op: 'get', key: '$params.id' },
  // one bucket per metrics-sensitive test, so earlier tests cannot disturb the counters
  'm-all': { bucket: 'mbucket', op: 'all' },
  'm-count': { bucket: 'mbucket', op: 'count' },
  'fan-all': { bucket: 'fan', op: 'all' },
  'gone-all': { bucket: 'gone', op: 'all' },
  'gone2-all': { bucket: 'gone2', op: 'all' },
  'keyed-get': { bucket: 'keyed', op: 'get', key: '$params.id' },
  'unsub-all': { bucket: 'unsub', op: 'all' },
  'other-all': { bucket: 'other', op: 'all' },
  'in-cats': { bucket: 'products', op: 'where', filter: { category: { $in: '$params.cats' } } },
  'first-n': { bucket: 'products', op: 'first', n: '$params.n' },
  'burst-all': { bucket: 'burst', op: 'all' },
  'burst-sum': { bucket: 'burst', op: 'sum', field: 'v' },
  'my-products': { bucket: 'products', op: 'where', filter: { title: '$session.userId' } },
};

let srv;
let c;
before(async () => {
  srv = await startStore(
    shopConfig({
      buckets: {
        burst: SIMPLE(), mbucket: SIMPLE(), fan: SIMPLE(), gone: SIMPLE(), gone2: SIMPLE(), keyed: SIMPLE(), unsub: SIMPLE(), other: SIMPLE(),
      },
      queries: QUERIES,
      seed: {
        products: SEED_PRODUCTS,
        mbucket: [{ id: 'm1', v: 1 }, { id: 'm2', v: 2 }],
        fan: [{ id: 'f1', v: 1 }],
        keyed: [{ id: 'k1', v: 1 }, { id: 'k2', v: 2 }],
        burst: [{ id: 'b0', v: 0 }, { id: 'b1', v: 0 }, { id: 'b2', v: 0 }, { id: 'b3', v: 0 }],
      },
    }),
  );
  c = await storeClient(srv);
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  c?.close();
  await srv?.stopAndCheck();
});

/* Opens n clients and closes them (waiting for the close) after fn. */
async function withClients(n, fn) {
  const cs = await Promise.all(Array.from({ length: n }, () => storeClient(srv)));
  try {
    return await fn(cs);
  } finally {
    await Promise.all(cs.map((x) => x.end()));
  }
}

async function gauge(name) {
  return metricValue(await scrape(srv.port), name);
}

/* Polls until the live-subscription gauge equals n (it may lag a close by a tick). */
async function waitSubscriptions(n, ms = 2000) {
  const deadline = Date.now() + ms;
  let v;
  for (;;) {
    v = await gauge('shopd_subscriptions');
    if (v === n || Date.now() > deadline) return v;
    await sleep(20);
  }
}

function assertPush(p, subscriptionId) {
  assert.deepEqual(Object.keys(p).sort(), ['channel', 'data', 'subscriptionId', 'type']);
  assert.equal(p.type, 'push');
  assert.equal(p.channel, 'subscription');
  assert.equal(p.subscriptionId, subscriptionId);
}

describe('subscribe: the initial result', () => {
  const DIRECT = {
    kitchen: ['store.where', { bucket: 'products', filter: { category: 'kitchen' } }],
    'all-products': ['store.all', { bucket: 'products' }],
    'product-count': ['store.count', { bucket: 'products' }],
    'home-count': ['store.count', { bucket: 'products', filter: { category: 'home' } }],
    'price-sum': ['store.sum', { bucket: 'products', field: 'price' }],
    'price-avg': ['store.avg', { bucket: 'products', field: 'price', filter: { category: 'kitchen' } }],
    'price-min': ['store.min', { bucket: 'products', field: 'price' }],
    'price-max': ['store.max', { bucket: 'products', field: 'price', filter: { category: 'home' } }],
    'first-two': ['store.first', { bucket: 'products', n: 2 }],
    'last-two': ['store.last', { bucket: 'products', n: 2 }],
    'first-page': ['store.paginate', { bucket: 'products', limit: 3 }],
    'first-home': ['store.findOne', { bucket: 'products', filter: { category: 'home' } }],
    'low-stock': ['store.where', { bucket: 'products', filter: { stock: { $lt: 5 } } }],
    'product-p1': ['store.get', { bucket: 'products', key: 'p1' }],
  };

  test('{"subscriptionId","data"} where data equals the same read made directly, for every query kind', T, async () => {
    await withClients(1, async ([s]) => {
      const ids = new Set();
      for (const [query, [type, fields]] of Object.entries(DIRECT)) {
        const r = await s.ok('store.subscribe', { query });
        assert.deepEqual(Object.keys(r).sort(), ['data', 'subscriptionId'], query);
        assert.equal(typeof r.subscriptionId, 'string');
        assert.ok(r.subscriptionId.length > 0);
        assert.equal(ids.has(r.subscriptionId), false, `duplicate id ${r.subscriptionId}`);
        ids.add(r.subscriptionId);
        assert.deepEqual(r.data, await c.ok(type, fields), query);
      }
    });
  });

  test('orderBy and limit shape array results', T, async () => {
    await withClients(1, async ([s]) => {
      const top = await s.ok('store.subscribe', { query: 'top-priced' });
      assert.deepEqual(top.data.map((r) => r.id), ['p4', 'p2']);
      const cheap = await s.ok('store.subscribe', { query: 'cheap-first' });
      assert.deepEqual(cheap.data.map((r) => r.id), ['p1', 'p3', 'p2']);
    });
  });

  test('subscription ids are unique per connection; another connection cannot unsubscribe them', T, async () => {
    await withClients(2, async ([a, b]) => {
      const a1 = await a.ok('store.subscribe', { query: 'product-count' });
      const a2 = await a.ok('store.subscribe', { query: 'product-count' });
      assert.notEqual(a1.subscriptionId, a2.subscriptionId);
      const idsB = new Set([a1.subscriptionId, a2.subscriptionId]);
      // b has no subscription of that id (ids are per connection).
      for (const id of idsB) {
        const m = await b.call('store.unsubscribe', { subscriptionId: id });
        assertError(m, 'NOT_FOUND');
      }
      assert.deepEqual(await a.ok('store.unsubscribe', { subscriptionId: a1.subscriptionId }), { unsubscribed: true });
    });
  });

  test('unknown query → QUERY_NOT_DEFINED; no subscription is left behind', T, async () => {
    await withClients(1, async ([s]) => {
      const before = await gauge('shopd_subscriptions');
      assertError(await s.err('store.subscribe', { query: 'nope' }), 'QUERY_NOT_DEFINED');
      assertError(await s.err('store.subscribe', { query: 'by-category' }), 'VALIDATION_ERROR');
      assert.equal(await gauge('shopd_subscriptions'), before);
    });
  });
});

describe('pushes', () => {
  test('a change that alters the result pushes the new full result', T, async () => {
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'kitchen' });
      await c.ok('store.insert', { bucket: 'products', data: { id: 'k9', title: 'Pot', price: 15, category: 'kitchen' } });
      const p = await s.push();
      assertPush(p, sub.subscriptionId);
      assert.deepEqual(p.data, await c.ok('store.where', { bucket: 'products', filter: { category: 'kitchen' } }));
      assert.deepEqual(p.data.map((r) => r.id), ['p1', 'p2', 'k9']);
      await c.ok('store.update', { bucket: 'products', key: 'k9', data: { category: 'garden' } });
      const p2 = await s.push();
      assert.deepEqual(p2.data.map((r) => r.id), ['p1', 'p2']);
      await c.ok('store.delete', { bucket: 'products', key: 'k9' });
      await s.noPush(QUIET_MS, 'deleting a record outside the result');
    });
  });

  test('no push when the result does not change (count, filtered where, sum, top-n)', T, async () => {
    await withClients(1, async ([s]) => {
      await s.ok('store.subscribe', { query: 'product-count' });
      await s.ok('store.subscribe', { query: 'kitchen' });
      await s.ok('store.subscribe', { query: 'price-sum' });
      await s.ok('store.subscribe', { query: 'home-count' });
      // p3 is home: changes no count, not the kitchen list, not the price sum.
      await c.ok('store.update', { bucket: 'products', key: 'p3', data: { stock: 11 } });
      await s.noPush(QUIET_MS);
    });
  });

  test('only the subscriptions whose result changed are pushed', T, async () => {
    await withClients(1, async ([s]) => {
      const count = await s.ok('store.subscribe', { query: 'product-count' });
      const sum = await s.ok('store.subscribe', { query: 'price-sum' });
      const top = await s.ok('store.subscribe', { query: 'top-priced' });
      await c.ok('store.update', { bucket: 'products', key: 'p1', data: { price: 11 } });
      const p = await s.push();
      assertPush(p, sum.subscriptionId);
      assert.equal(p.data, sum.data + 1);
      await s.noPush(QUIET_MS, `count ${count.subscriptionId} / top ${top.subscriptionId} unchanged`);
      await c.ok('store.update', { bucket: 'products', key: 'p1', data: { price: 10 } });
      assert.equal((await s.push()).data, sum.data);
    });
  });

  test('the writer gets its result before the push its write caused', T, async () => {
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'low-stock' });
      const w = s.ws;
      const mark = w.raw.length;
      await s.ok('store.update', { bucket: 'products', key: 'p3', data: { stock: 1 } });
      const p = await s.push();
      assertPush(p, sub.subscriptionId);
      const order = w.raw.slice(mark).map((x) => JSON.parse(x.text).type);
      assert.deepEqual(order.slice(0, 2), ['result', 'push']);
      await c.ok('store.update', { bucket: 'products', key: 'p3', data: { stock: 12 } });
      await s.push();
    });
  });

  test('one push per committed transaction, one evaluation per affected subscription group', T, async () => {
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'm-count' });
      const m0 = await subMetrics(srv);
      await c.ok('store.transaction', {
        operations: [
          { op: 'insert', bucket: 'mbucket', data: { id: 'm3', v: 3 } },
          { op: 'insert', bucket: 'mbucket', data: { id: 'm4', v: 4 } },
          { op: 'update', bucket: 'mbucket', key: 'm1', data: { v: 10 } },
        ],
      });
      const p = await s.push();
      assertPush(p, sub.subscriptionId);
      assert.equal(p.data, sub.data + 2);
      await s.noPush(QUIET_MS);
      const d = metricsDelta(m0, await subMetrics(srv));
      assert.deepEqual({ evaluations: d.evaluations, pushes: d.pushes }, { evaluations: 1, pushes: 1 });
    });
  });

  test('an unchanged result costs an evaluation but no push (metrics)', T, async () => {
    await withClients(1, async ([s]) => {
      await s.ok('store.subscribe', { query: 'm-count' });
      const m0 = await subMetrics(srv);
      await c.ok('store.update', { bucket: 'mbucket', key: 'm2', data: { v: 22 } });
      await s.noPush(QUIET_MS);
      const d = metricsDelta(m0, await subMetrics(srv));
      assert.deepEqual({ evaluations: d.evaluations, pushes: d.pushes }, { evaluations: 1, pushes: 0 });
    });
  });

  test('a change in another bucket is not evaluated; deleting a missing key changes nothing', T, async () => {
    await withClients(1, async ([s]) => {
      await s.ok('store.subscribe', { query: 'm-all' });
      const m0 = await subMetrics(srv);
      await c.ok('store.insert', { bucket: 'other', data: { id: 'o1' } });
      await c.ok('store.delete', { bucket: 'mbucket', key: 'never' });
      await s.noPush(QUIET_MS);
      assert.equal(metricsDelta(m0, await subMetrics(srv)).evaluations, 0);
    });
  });

  test('clear pushes the empty result once', T, async () => {
    await c.ok('store.insert', { bucket: 'other', data: { id: 'o2' } });
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'other-all' });
      assert.ok(sub.data.length >= 1);
      await c.ok('store.clear', { bucket: 'other' });
      const p = await s.push();
      assertPush(p, sub.subscriptionId);
      assert.deepEqual(p.data, []);
      await s.noPush(QUIET_MS);
    });
  });

  test('a failed write pushes nothing', T, async () => {
    await withClients(1, async ([s]) => {
      await s.ok('store.subscribe', { query: 'all-products' });
      await c.err('store.update', { bucket: 'products', key: 'p1', data: { price: -5 } });
      await c.err('store.insert', { bucket: 'products', data: { id: 'p1', title: 'dup', price: 1 } });
      await s.noPush(QUIET_MS);
    });
  });
});

describe('get queries are keyed by record', () => {
  test('a change of another key in the same bucket is not even evaluated; a change of the key is pushed', T, async () => {
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'keyed-get', params: { id: 'k1' } });
      assert.equal(sub.data.id, 'k1');
      const m0 = await subMetrics(srv);
      await c.ok('store.update', { bucket: 'keyed', key: 'k2', data: { v: 20 } });
      await c.ok('store.insert', { bucket: 'keyed', data: { id: 'k3', v: 3 } });
      await c.ok('store.delete', { bucket: 'keyed', key: 'k3' });
      await s.noPush(QUIET_MS, 'change of another key');
      assert.equal(metricsDelta(m0, await subMetrics(srv)).evaluations, 0);
      await c.ok('store.update', { bucket: 'keyed', key: 'k1', data: { v: 10 } });
      const p = await s.push();
      assertPush(p, sub.subscriptionId);
      assert.equal(p.data.v, 10);
      assert.equal(p.data._version, 2);
    });
  });

  test('delete pushes null, a re-insert pushes the new record; a missing key starts as null', T, async () => {
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'product-by-id', params: { id: 'gk1' } });
      assert.equal(sub.data, null);
      await c.ok('store.insert', { bucket: 'products', data: { id: 'gk1', title: 'G', price: 1 } });
      assert.equal((await s.push()).data.id, 'gk1');
      await c.ok('store.delete', { bucket: 'products', key: 'gk1' });
      assert.equal((await s.push()).data, null);
      await c.ok('store.delete', { bucket: 'products', key: 'gk1' });
      await s.noPush(QUIET_MS, 'deleting an absent record again');
    });
  });

  test('a fixed-key get query (key "p1") ignores p2 and follows p1', T, async () => {
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'product-p1' });
      await c.ok('store.update', { bucket: 'products', key: 'p2', data: { stock: 2 } });
      await s.noPush(QUIET_MS);
      await c.ok('store.update', { bucket: 'products', key: 'p1', data: { stock: 6 } });
      const p = await s.push();
      assertPush(p, sub.subscriptionId);
      assert.equal(p.data.stock, 6);
    });
  });
});

describe('$params', () => {
  test('parameters bind into the filter; each binding has its own result and pushes', T, async () => {
    await withClients(1, async ([s]) => {
      const k = await s.ok('store.subscribe', { query: 'by-category', params: { category: 'kitchen' } });
      const h = await s.ok('store.subscribe', { query: 'by-category', params: { category: 'home' } });
      assert.deepEqual(k.data.map((r) => r.id), ['p1', 'p2']);
      assert.deepEqual(h.data.map((r) => r.id), ['p3', 'p4']);
      const u = await s.ok('store.subscribe', { query: 'under-price', params: { max: 30 } });
      assert.deepEqual(u.data.map((r) => r.id), ['p1', 'p3']);
      await c.ok('store.insert', { bucket: 'products', data: { id: 'pp1', title: 'Vase', price: 50, category: 'home' } });
      const p = await s.push();
      assertPush(p, h.subscriptionId);
      assert.deepEqual(p.data.map((r) => r.id), ['p3', 'p4', 'pp1']);
      await s.noPush(QUIET_MS, 'kitchen and under-30 results unchanged');
      await c.ok('store.delete', { bucket: 'products', key: 'pp1' });
      assert.equal((await s.push()).subscriptionId, h.subscriptionId);
    });
  });

  test('a missing parameter → VALIDATION_ERROR; params must be an object; a mistyped parameter → VALIDATION_ERROR', T, async () => {
    for (const params of [undefined, {}, { other: 'x' }, { category: null }]) {
      const e = await c.err('store.subscribe', params === undefined ? { query: 'by-category' } : { query: 'by-category', params });
      assertError(e, 'VALIDATION_ERROR');
    }
    const missing = await c.err('store.subscribe', { query: 'by-category' });
    assert.match(missing.message, /category/);
    for (const params of [5, 'x', [1]]) {
      assertError(await c.err('store.subscribe', { query: 'by-category', params }), 'VALIDATION_ERROR');
    }
    assertError(await c.err('store.subscribe', { query: 'under-price', params: { max: 'thirty' } }), 'VALIDATION_ERROR');
    assertError(await c.err('store.subscribe', { query: 'product-by-id' }), 'VALIDATION_ERROR');
  });

  test('parameters can supply an $in array and the n of first', T, async () => {
    const a = await c.ok('store.subscribe', { query: 'in-cats', params: { cats: ['kitchen', 'home'] } });
    assert.deepEqual(a.data, await c.ok('store.where', { bucket: 'products', filter: { category: { $in: ['kitchen', 'home'] } } }));
    const b = await c.ok('store.subscribe', { query: 'first-n', params: { n: 2 } });
    assert.deepEqual(b.data, await c.ok('store.first', { bucket: 'products', n: 2 }));
    const e = await c.err('store.subscribe', { query: 'first-n', params: { n: 20000 } });
    assertError(e, 'VALIDATION_ERROR', /10000/);
    assertError(await c.err('store.subscribe', { query: 'first-n', params: { n: 0 } }), 'VALIDATION_ERROR');
    for (const x of [a, b]) await c.ok('store.unsubscribe', { subscriptionId: x.subscriptionId });
  });

  test('"$session.userId" without a session (auth not configured) is refused, never bound to null', T, async () => {
    const m = await c.call('store.subscribe', { query: 'my-products' });
    assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 300));
    assert.ok(['UNAUTHORIZED', 'VALIDATION_ERROR', 'FORBIDDEN'].includes(m.code), JSON.stringify(m));
  });

  test('SQL-looking parameter values are plain values', T, async () => {
    const r = await c.ok('store.subscribe', { query: 'by-category', params: { category: "x' OR '1'='1" } });
    assert.deepEqual(r.data, []);
    await c.ok('store.unsubscribe', { subscriptionId: r.subscriptionId });
  });
});

describe('unsubscribe and disconnect', () => {
  test('unsubscribe → {"unsubscribed":true}; no more pushes; a second unsubscribe → NOT_FOUND', T, async () => {
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'unsub-all' });
      await c.ok('store.insert', { bucket: 'unsub', data: { id: 'u1' } });
      assertPush(await s.push(), sub.subscriptionId);
      assert.deepEqual(await s.ok('store.unsubscribe', { subscriptionId: sub.subscriptionId }), { unsubscribed: true });
      const m0 = await subMetrics(srv);
      await c.ok('store.insert', { bucket: 'unsub', data: { id: 'u2' } });
      await s.noPush(QUIET_MS, 'after unsubscribe');
      assert.equal(metricsDelta(m0, await subMetrics(srv)).evaluations, 0, 'the group should be gone');
      const e = await s.err('store.unsubscribe', { subscriptionId: sub.subscriptionId });
      assertError(e, 'NOT_FOUND');
      assertError(await s.err('store.unsubscribe', { subscriptionId: 'sub-424242' }), 'NOT_FOUND');
    });
  });

  test('unsubscribing one of two subscriptions to the same query keeps the other', T, async () => {
    await withClients(1, async ([s]) => {
      const a = await s.ok('store.subscribe', { query: 'unsub-all' });
      const b = await s.ok('store.subscribe', { query: 'unsub-all' });
      await s.ok('store.unsubscribe', { subscriptionId: a.subscriptionId });
      await c.ok('store.insert', { bucket: 'unsub', data: { id: 'u3' } });
      const p = await s.push();
      assertPush(p, b.subscriptionId);
      await s.noPush(QUIET_MS);
    });
  });

  test('closing the connection ends its subscriptions (nothing is evaluated for it afterwards)', T, async () => {
    const base = await waitSubscriptions(await gauge('shopd_subscriptions'));
    const s = await storeClient(srv);
    await s.ok('store.subscribe', { query: 'gone-all' });
    await s.ok('store.subscribe', { query: 'gone-all' });
    assert.equal(await gauge('shopd_subscriptions'), base + 2);
    await s.end();
    assert.equal(await waitSubscriptions(base), base, 'live subscriptions after a close');
    const m0 = await subMetrics(srv);
    await c.ok('store.insert', { bucket: 'gone', data: { id: 'g1' } });
    await sleep(50);
    assert.equal(metricsDelta(m0, await subMetrics(srv)).evaluations, 0);
  });

  test('an abrupt disconnect (TCP reset) ends its subscriptions too', T, async () => {
    const base = await waitSubscriptions(await gauge('shopd_subscriptions'));
    const s = await storeClient(srv);
    await s.ok('store.subscribe', { query: 'gone2-all' });
    s.terminate();
    assert.equal(await waitSubscriptions(base), base, 'live subscriptions after a reset');
    const m0 = await subMetrics(srv);
    await c.ok('store.insert', { bucket: 'gone2', data: { id: 'g1' } });
    await sleep(50);
    assert.equal(metricsDelta(m0, await subMetrics(srv)).evaluations, 0);
  });
});

describe('shared evaluation', () => {
  test('two connections subscribed to the same query both get the push (one evaluation, one shared hit)', T, async () => {
    await withClients(2, async ([a, b]) => {
      const m0 = await subMetrics(srv);
      const sa = await a.ok('store.subscribe', { query: 'fan-all' });
      const sb = await b.ok('store.subscribe', { query: 'fan-all' });
      assert.deepEqual(sa.data, sb.data);
      const m1 = await subMetrics(srv);
      assert.equal(m1.shared - m0.shared, 1, 'the second subscription joins the first');
      await c.ok('store.update', { bucket: 'fan', key: 'f1', data: { v: 100 } });
      const [pa, pb] = await Promise.all([a.push(), b.push()]);
      assertPush(pa, sa.subscriptionId);
      assertPush(pb, sb.subscriptionId);
      assert.deepEqual(pa.data, pb.data);
      assert.equal(pa.data[0].v, 100);
      const d = metricsDelta(m1, await subMetrics(srv));
      assert.deepEqual(d, { evaluations: 1, pushes: 2, shared: 0 });
    });
  });

  test('50 subscribers to one query + one update → evaluations +1, pushes +50, shared hits +49', { timeout: 10000 }, async () => {
    await withClients(10, async (cs) => {
      const m0 = await subMetrics(srv);
      const subs = [];
      for (const cl of cs) {
        for (let i = 0; i < 5; i++) subs.push([cl, await cl.ok('store.subscribe', { query: 'fan-all' })]);
      }
      const m1 = await subMetrics(srv);
      assert.equal(m1.shared - m0.shared, 49);
      await c.ok('store.update', { bucket: 'fan', key: 'f1', data: { v: 101 } });
      for (const [cl, sub] of subs) {
        const p = await waitPushFor(cl, sub.subscriptionId);
        assert.equal(p.data[0].v, 101);
      }
      const d = metricsDelta(m1, await subMetrics(srv));
      assert.deepEqual(d, { evaluations: 1, pushes: 50, shared: 0 });
      for (const cl of cs) await cl.noPush(0);
    });
  });

  test('different params are different groups; same params share', T, async () => {
    await withClients(2, async ([a, b]) => {
      const m0 = await subMetrics(srv);
      await a.ok('store.subscribe', { query: 'keyed-get', params: { id: 'k2' } });
      await b.ok('store.subscribe', { query: 'keyed-get', params: { id: 'k2' } });
      await b.ok('store.subscribe', { query: 'keyed-get', params: { id: 'k1' } });
      assert.equal((await subMetrics(srv)).shared - m0.shared, 1);
    });
  });
});

/* Waits for (and removes) the push of one subscription on a client. */
async function waitPushFor(cl, id, ms = 2000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = cl.pushes.findIndex((x) => x.subscriptionId === id);
    if (i >= 0) return cl.pushes.splice(i, 1)[0];
    if (Date.now() > deadline) throw new Error(`no push for ${id} within ${ms} ms`);
    await sleep(10);
  }
}

describe('queries defined at run time', () => {
  test('defineQuery then subscribe: initial result and pushes', T, async () => {
    await c.ok('store.defineQuery', { name: 'rt-expensive', config: { bucket: 'products', op: 'where', filter: { price: { $gte: 40 } }, orderBy: [{ field: 'price', dir: 'desc' }] } });
    await withClients(1, async ([s]) => {
      const sub = await s.ok('store.subscribe', { query: 'rt-expensive' });
      assert.deepEqual(sub.data.map((r) => r.id), ['p4', 'p2']);
      await c.ok('store.update', { bucket: 'products', key: 'p3', data: { price: 45 } });
      const p = await s.push();
      assert.deepEqual(p.data.map((r) => r.id), ['p4', 'p3', 'p2']);
      await c.ok('store.update', { bucket: 'products', key: 'p3', data: { price: 25 } });
      assert.deepEqual((await s.push()).data.map((r) => r.id), ['p4', 'p2']);
    });
  });
});

describe('definitions changing under live subscriptions', () => {
  test('after dropBucket, a new subscription to a query over it → BUCKET_NOT_DEFINED, not the dropped records', T, async () => {
    await c.ok('store.defineBucket', { name: 'dropme', config: SIMPLE() });
    await c.ok('store.insert', { bucket: 'dropme', data: { id: 'ghost', v: 1 } });
    await c.ok('store.defineQuery', { name: 'dropme-all', config: { bucket: 'dropme', op: 'all' } });
    await withClients(2, async ([a, b]) => {
      await a.ok('store.subscribe', { query: 'dropme-all' });
      await c.ok('store.dropBucket', { name: 'dropme' });
      assertError(await c.err('store.all', { bucket: 'dropme' }), 'BUCKET_NOT_DEFINED');
      const m = await b.call('store.subscribe', { query: 'dropme-all' });
      assert.equal(m.type, 'error', `subscribe after the bucket was dropped answered ${JSON.stringify(m).slice(0, 300)}`);
      assertError(m, 'BUCKET_NOT_DEFINED');
    });
  });

  test('after undefineQuery + defineQuery with a new definition, a new subscriber gets the new query\'s result', T, async () => {
    await c.ok('store.defineQuery', { name: 'redef', config: { bucket: 'products', op: 'count' } });
    await withClients(2, async ([a, b]) => {
      const old = await a.ok('store.subscribe', { query: 'redef' });
      assert.equal(typeof old.data, 'number');
      await c.ok('store.undefineQuery', { name: 'redef' });
      assertError(await b.err('store.subscribe', { query: 'redef' }), 'QUERY_NOT_DEFINED');
      await c.ok('store.defineQuery', { name: 'redef', config: { bucket: 'products', op: 'first', n: 1 } });
      const fresh = await b.ok('store.subscribe', { query: 'redef' });
      assert.deepEqual(fresh.data, await c.ok('store.first', { bucket: 'products', n: 1 }), 'initial result of the redefined query');
    });
  });
});

describe('under concurrent writes', () => {
  test('4 writers × 50 updates: every subscriber ends on the final result; no push repeats the previous one', { timeout: 15000 }, async () => {
    await withClients(8, async (cs) => {
      const subscribers = cs.slice(0, 4);
      const writers = cs.slice(4);
      const subs = [];
      for (const s of subscribers) {
        subs.push([s, 'burst-all', await s.ok('store.subscribe', { query: 'burst-all' })]);
        subs.push([s, 'burst-sum', await s.ok('store.subscribe', { query: 'burst-sum' })]);
      }
      await Promise.all(
        writers.map(async (w, wi) => {
          for (let i = 1; i <= 50; i++) {
            if (i % 10 === 0) {
              await w.ok('store.transaction', { operations: [
                { op: 'update', bucket: 'burst', key: `b${wi}`, data: { v: i } },
                { op: 'update', bucket: 'burst', key: `b${(wi + 1) % 4}`, data: { tag: `w${wi}-${i}` } },
              ] });
            } else {
              await w.ok('store.update', { bucket: 'burst', key: `b${wi}`, data: { v: i } });
            }
          }
        }),
      );
      const finalAll = await c.ok('store.all', { bucket: 'burst' });
      const finalSum = await c.ok('store.sum', { bucket: 'burst', field: 'v' });
      assert.equal(finalSum, 200);
      await sleep(300);
      for (const [s, query, sub] of subs) {
        const mine = s.pushes.filter((p) => p.subscriptionId === sub.subscriptionId);
        const seq = [sub.data, ...mine.map((p) => p.data)];
        for (let i = 1; i < seq.length; i++) {
          assert.notDeepEqual(seq[i], seq[i - 1], `${query} ${sub.subscriptionId}: push ${i} repeats the previous result`);
        }
        assert.deepEqual(seq[seq.length - 1], query === 'burst-all' ? finalAll : finalSum, `${query}: last result is not the final state`);
      }
    });
  });
});
