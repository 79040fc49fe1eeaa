// store.transaction (protocol §4.3) against the real binary: result shape, read-your-own
// writes, atomic rollback with the failing index, the exact shape messages, one change
// set per commit, and concurrent transactions on one record from 8 connections.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

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
  strip,
  subMetrics,
} from './store-helpers.mjs';

const OPS_LIST = ['get', 'insert', 'update', 'delete', 'where', 'findOne', 'count'];

let srv;
let c;
before(async () => {
  srv = await startStore(
    shopConfig({
      buckets: {
        users: {
          key: 'id',
          schema: { id: { type: 'string' }, email: { type: 'string', unique: true }, name: { type: 'string' } },
        },
        claims: { key: 'id', schema: { id: { type: 'string' } } },
        log: { key: 'n', schema: { n: { type: 'number', generated: 'autoincrement' }, msg: { type: 'string' } } },
      },
      queries: {
        'all-products': { bucket: 'products', op: 'all' },
        'user-count': { bucket: 'users', op: 'count' },
      },
      seed: { products: [...SEED_PRODUCTS, { id: 'hot', title: 'Hot', price: 1, stock: 10000 }, { id: 'hot2', title: 'Hot2', price: 1, stock: 10000 }] },
    }),
  );
  c = await storeClient(srv);
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  c?.close();
  await srv?.stopAndCheck();
});

const tx = (operations) => c.call('store.transaction', { operations });
const txOk = (operations) => c.ok('store.transaction', { operations });
const txErr = (operations) => c.err('store.transaction', { operations });

describe('transaction results', () => {
  test('{"results":[{"index":i,"data":…}]} for every op kind, in order', T, async () => {
    const r = await txOk([
      { op: 'get', bucket: 'products', key: 'p1' },
      { op: 'insert', bucket: 'users', data: { id: 'u1', email: 'u1@x.io', name: 'One' } },
      { op: 'update', bucket: 'users', key: 'u1', data: { name: 'Uno' } },
      { op: 'where', bucket: 'products', filter: { category: 'kitchen' } },
      { op: 'findOne', bucket: 'products', filter: { category: 'home' } },
      { op: 'count', bucket: 'products' },
      { op: 'count', bucket: 'products', filter: { category: 'home' } },
      { op: 'delete', bucket: 'users', key: 'u1' },
      { op: 'get', bucket: 'users', key: 'u1' },
    ]);
    assert.deepEqual(Object.keys(r), ['results']);
    assert.deepEqual(r.results.map((x) => Object.keys(x).sort()), r.results.map(() => ['data', 'index']));
    assert.deepEqual(r.results.map((x) => x.index), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const d = r.results.map((x) => x.data);
    assert.equal(d[0].id, 'p1');
    assert.deepEqual(strip(d[1]), { id: 'u1', email: 'u1@x.io', name: 'One' });
    assert.equal(d[1]._version, 1);
    assert.deepEqual(strip(d[2]), { id: 'u1', email: 'u1@x.io', name: 'Uno' });
    assert.equal(d[2]._version, 2);
    assert.deepEqual(d[3].map((x) => x.id), ['p1', 'p2']);
    assert.equal(d[4].id, 'p3');
    assert.equal(d[5], 6);
    assert.equal(d[6], 2);
    assert.deepEqual(d[7], { deleted: true });
    assert.equal(d[8], null);
    assert.equal(await c.ok('store.get', { bucket: 'users', key: 'u1' }), null);
  });

  test('a read-only transaction answers and changes nothing', T, async () => {
    const before = await c.ok('store.all', { bucket: 'products' });
    const r = await txOk([{ op: 'get', bucket: 'products', key: 'missing' }, { op: 'count', bucket: 'products' }]);
    assert.deepEqual(r, { results: [{ index: 0, data: null }, { index: 1, data: before.length }] });
    assert.deepEqual(await c.ok('store.all', { bucket: 'products' }), before);
  });
});

describe('read-your-own-writes', () => {
  test('insert then get / where / findOne / count in the same transaction see the new record', T, async () => {
    const r = await txOk([
      { op: 'insert', bucket: 'products', data: { id: 'ryw1', title: 'R', price: 3, category: 'ryw' } },
      { op: 'get', bucket: 'products', key: 'ryw1' },
      { op: 'where', bucket: 'products', filter: { category: 'ryw' } },
      { op: 'findOne', bucket: 'products', filter: { category: 'ryw' } },
      { op: 'count', bucket: 'products', filter: { category: 'ryw' } },
    ]);
    const [ins, got, where, found, count] = r.results.map((x) => x.data);
    assert.deepEqual(got, ins);
    assert.deepEqual(where, [ins]);
    assert.deepEqual(found, ins);
    assert.equal(count, 1);
    assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'ryw1' }), ins);
  });

  test('insert, update, update of one record: versions 1, 2, 3; a later get sees the last', T, async () => {
    const r = await txOk([
      { op: 'insert', bucket: 'products', data: { id: 'ryw2', title: 'R', price: 1 } },
      { op: 'update', bucket: 'products', key: 'ryw2', data: { price: 2 } },
      { op: 'update', bucket: 'products', key: 'ryw2', data: { stock: 9 } },
      { op: 'get', bucket: 'products', key: 'ryw2' },
    ]);
    const d = r.results.map((x) => x.data);
    assert.deepEqual(d.map((x) => x._version), [1, 2, 3, 3]);
    assert.equal(d[3].price, 2);
    assert.equal(d[3].stock, 9);
    assert.deepEqual(d[3], d[2]);
  });

  test('delete then get → null, count drops, and the key can be inserted again in the same transaction', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'ryw3', title: 'Old', price: 1, category: 'ryw3' } });
    const r = await txOk([
      { op: 'delete', bucket: 'products', key: 'ryw3' },
      { op: 'get', bucket: 'products', key: 'ryw3' },
      { op: 'count', bucket: 'products', filter: { category: 'ryw3' } },
      { op: 'insert', bucket: 'products', data: { id: 'ryw3', title: 'New', price: 2, category: 'ryw3' } },
      { op: 'findOne', bucket: 'products', filter: { category: 'ryw3' } },
    ]);
    const d = r.results.map((x) => x.data);
    assert.deepEqual(d[0], { deleted: true });
    assert.equal(d[1], null);
    assert.equal(d[2], 0);
    assert.equal(d[3]._version, 1);
    assert.equal(d[4].title, 'New');
    assert.equal((await c.ok('store.get', { bucket: 'products', key: 'ryw3' })).title, 'New');
  });

  test('a unique value freed earlier in the transaction can be taken later in it', T, async () => {
    await c.ok('store.insert', { bucket: 'users', data: { id: 'ua', email: 'swap@x.io' } });
    const r = await txOk([
      { op: 'update', bucket: 'users', key: 'ua', data: { email: 'other@x.io' } },
      { op: 'insert', bucket: 'users', data: { id: 'ub', email: 'swap@x.io' } },
    ]);
    assert.equal(r.results[1].data.email, 'swap@x.io');
  });
});

describe('atomicity: a failing operation rolls back the whole transaction', () => {
  async function snapshot() {
    return {
      products: await c.ok('store.all', { bucket: 'products' }),
      users: await c.ok('store.all', { bucket: 'users' }),
    };
  }

  const cases = [
    {
      name: 'update of a missing key → NOT_FOUND',
      bad: { op: 'update', bucket: 'products', key: 'ghost', data: { price: 1 } },
      code: 'NOT_FOUND',
    },
    {
      name: 'invalid record → VALIDATION_ERROR',
      bad: { op: 'insert', bucket: 'products', data: { id: 'bad', price: -1 } },
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'duplicate key → ALREADY_EXISTS',
      bad: { op: 'insert', bucket: 'products', data: { id: 'p2', title: 'Dup', price: 1 } },
      code: 'ALREADY_EXISTS',
    },
    {
      name: 'unknown bucket → BUCKET_NOT_DEFINED',
      bad: { op: 'get', bucket: 'ghosts', key: 'x' },
      code: 'BUCKET_NOT_DEFINED',
    },
    {
      name: 'unknown field in a filter → VALIDATION_ERROR',
      bad: { op: 'where', bucket: 'products', filter: { colour: 'red' } },
      code: 'VALIDATION_ERROR',
    },
  ];

  for (const { name, bad, code } of cases) {
    test(`${name} at index 3: earlier insert/update/delete undone, details.index = 3`, T, async () => {
      await c.ok('store.insert', { bucket: 'users', data: { id: 'atom-del', email: `atom-del-${code}@x.io` } });
      const before = await snapshot();
      const e = await txErr([
        { op: 'insert', bucket: 'products', data: { id: 'atom-new', title: 'N', price: 1 } },
        { op: 'update', bucket: 'products', key: 'p1', data: { stock: 777 } },
        { op: 'delete', bucket: 'users', key: 'atom-del' },
        bad,
        { op: 'insert', bucket: 'products', data: { id: 'atom-after', title: 'A', price: 1 } },
      ]);
      assertError(e, code);
      assert.equal(typeof e.details, 'object', `details missing: ${JSON.stringify(e)}`);
      assert.equal(e.details.index, 3, JSON.stringify(e));
      assert.deepEqual(await snapshot(), before);
      assert.equal(await c.ok('store.get', { bucket: 'products', key: 'atom-new' }), null);
      assert.notEqual(await c.ok('store.get', { bucket: 'users', key: 'atom-del' }), null);
      await c.ok('store.delete', { bucket: 'users', key: 'atom-del' });
    });
  }

  test('the failing operation\'s error is the answer: its message and violations survive', T, async () => {
    const e = await txErr([
      { op: 'get', bucket: 'products', key: 'p1' },
      { op: 'insert', bucket: 'products', data: { id: 'v', price: -1 } },
    ]);
    assertError(e, 'VALIDATION_ERROR');
    assert.equal(e.details.index, 1);
    assert.match(e.message, /products/);
    const text = JSON.stringify(e.details);
    assert.ok(text.includes('title') && text.includes('required'), `violations lost: ${text}`);
    assert.ok(text.includes('price') && text.includes('min'), `violations lost: ${text}`);
  });

  test('a duplicate key within one transaction → ALREADY_EXISTS at index 1, neither record stored', T, async () => {
    const e = await txErr([
      { op: 'insert', bucket: 'products', data: { id: 'twice', title: 'A', price: 1 } },
      { op: 'insert', bucket: 'products', data: { id: 'twice', title: 'B', price: 1 } },
    ]);
    assertError(e, 'ALREADY_EXISTS');
    assert.equal(e.details.index, 1);
    assert.equal(await c.ok('store.get', { bucket: 'products', key: 'twice' }), null);
  });

  test('an autoincrement counter used by a rolled-back transaction does not leave a record behind', T, async () => {
    const e = await txErr([
      { op: 'insert', bucket: 'log', data: { msg: 'a' } },
      { op: 'update', bucket: 'log', key: 424242, data: { msg: 'x' } },
    ]);
    assertError(e, 'NOT_FOUND');
    assert.equal(await c.ok('store.count', { bucket: 'log' }), 0);
    const r = await c.ok('store.insert', { bucket: 'log', data: { msg: 'b' } });
    assert.equal(r.n, 1, 'the counter increment of the rolled-back insert should be rolled back too');
  });
});

describe('error paths release their memory (meaningful under the ASan build)', () => {
  test('transactions failing with violations, NOT_FOUND and ALREADY_EXISTS; the server then exits cleanly', T, async () => {
    const s2 = await startStore(shopConfig({}));
    const c2 = await storeClient(s2);
    try {
      for (let i = 0; i < 3; i++) {
        await c2.err('store.transaction', { operations: [{ op: 'insert', bucket: 'products', data: { id: `v${i}`, price: -1 } }] });
        await c2.err('store.transaction', { operations: [{ op: 'get', bucket: 'products', key: 'p1' }, { op: 'update', bucket: 'products', key: 'ghost', data: {} }] });
        await c2.err('store.transaction', { operations: [{ op: 'insert', bucket: 'products', data: { id: 'p1', title: 'x', price: 1 } }] });
        await c2.err('store.transaction', { operations: [{ op: 'get', bucket: 'products' }] });
      }
    } finally {
      c2.close();
      await s2.stopAndCheck();
    }
  });
});

describe('shape errors (§4.3 messages)', () => {
  const cases = [
    [undefined, 'Missing or invalid "operations": expected array'],
    [null, 'Missing or invalid "operations": expected array'],
    [{}, 'Missing or invalid "operations": expected array'],
    ['get', 'Missing or invalid "operations": expected array'],
    [5, 'Missing or invalid "operations": expected array'],
    [[], '"operations" must contain at least one operation'],
    [[5], 'operations[0]: expected object'],
    [[null], 'operations[0]: expected object'],
    [[['get']], 'operations[0]: expected object'],
    [[{ op: 'get', bucket: 'products', key: 'p1' }, 'x'], 'operations[1]: expected object'],
    [[{ op: 'get' }], 'operations[0]: missing or invalid "bucket"'],
    [[{ op: 'get', bucket: '' }], 'operations[0]: missing or invalid "bucket"'],
    [[{ op: 'get', bucket: 7, key: 'x' }], 'operations[0]: missing or invalid "bucket"'],
    [[{ op: 'get', bucket: 'products' }], 'operations[0]: "get" requires "key"'],
    [[{ op: 'get', bucket: 'products', key: null }], 'operations[0]: "get" requires "key"'],
    [[{ op: 'update', bucket: 'products', data: {} }], 'operations[0]: "update" requires "key"'],
    [[{ op: 'delete', bucket: 'products' }], 'operations[0]: "delete" requires "key"'],
    [[{ op: 'insert', bucket: 'products' }], 'operations[0]: "insert" requires "data" object'],
    [[{ op: 'insert', bucket: 'products', data: [1] }], 'operations[0]: "insert" requires "data" object'],
    [[{ op: 'update', bucket: 'products', key: 'p1' }], 'operations[0]: "update" requires "data" object'],
    [[{ op: 'update', bucket: 'products', key: 'p1', data: 'x' }], 'operations[0]: "update" requires "data" object'],
    [[{ op: 'where', bucket: 'products' }], 'operations[0]: "where" requires "filter" object'],
    [[{ op: 'findOne', bucket: 'products', filter: 3 }], 'operations[0]: "findOne" requires "filter" object'],
    [[{ op: 'count', bucket: 'products' }, { op: 'get', bucket: 'products', key: 'p1' }, { op: 'where', bucket: 'products', filter: null }], 'operations[2]: "where" requires "filter" object'],
  ];

  for (const [operations, message] of cases) {
    test(`${JSON.stringify(operations) ?? 'missing'} → ${message}`, T, async () => {
      const e = await c.err('store.transaction', operations === undefined ? {} : { operations });
      assertError(e, 'VALIDATION_ERROR', message);
    });
  }

  test('invalid "op" → `operations[i]: invalid "op" — expected one of: …` naming the seven ops', T, async () => {
    for (const [i, bad] of [[0, { bucket: 'products' }], [0, { op: 'all', bucket: 'products' }], [0, { op: 'GET', bucket: 'products', key: 'p1' }], [0, { op: 5, bucket: 'products' }], [1, { op: 'clear', bucket: 'products' }]]) {
      const ops = i === 0 ? [bad] : [{ op: 'count', bucket: 'products' }, bad];
      const e = await txErr(ops);
      assertError(e, 'VALIDATION_ERROR');
      const prefix = `operations[${i}]: invalid "op" — expected one of: `;
      assert.ok(e.message.startsWith(prefix), `message ${JSON.stringify(e.message)} does not start with ${JSON.stringify(prefix)}`);
      const listed = e.message.slice(prefix.length).split(/,\s*/).map((s) => s.trim());
      assert.deepEqual([...listed].sort(), [...OPS_LIST].sort());
    }
  });

  test('shape errors name the index in details and are found before anything runs', T, async () => {
    const e = await txErr([
      { op: 'insert', bucket: 'products', data: { id: 'shape-first', title: 'S', price: 1 } },
      { op: 'get', bucket: 'products' },
    ]);
    assertError(e, 'VALIDATION_ERROR', 'operations[1]: "get" requires "key"');
    assert.equal(e.details?.index, 1);
    assert.equal(await c.ok('store.get', { bucket: 'products', key: 'shape-first' }), null);
  });

  test('more than 1000 operations are refused; 1000 are fine', T, async () => {
    const many = (n) => Array.from({ length: n }, () => ({ op: 'get', bucket: 'products', key: 'p1' }));
    assertError(await txErr(many(1001)), 'VALIDATION_ERROR');
    const r = await txOk(many(1000));
    assert.equal(r.results.length, 1000);
  });
});

describe('one change set per committed transaction', () => {
  test('a subscriber gets exactly one push for a 3-operation transaction, with the final state', T, async () => {
    const s = await storeClient(srv);
    try {
      const sub = await s.ok('store.subscribe', { query: 'all-products' });
      const m0 = await subMetrics(srv);
      await txOk([
        { op: 'insert', bucket: 'products', data: { id: 'cs1', title: 'CS', price: 1 } },
        { op: 'update', bucket: 'products', key: 'p1', data: { stock: 4 } },
        { op: 'delete', bucket: 'products', key: 'p2' },
      ]);
      const p = await s.push();
      assert.deepEqual(Object.keys(p).sort(), ['channel', 'data', 'subscriptionId', 'type']);
      assert.equal(p.channel, 'subscription');
      assert.equal(p.subscriptionId, sub.subscriptionId);
      assert.deepEqual(p.data, await c.ok('store.all', { bucket: 'products' }));
      assert.ok(p.data.some((r) => r.id === 'cs1'));
      assert.equal(p.data.find((r) => r.id === 'p1').stock, 4);
      assert.equal(p.data.some((r) => r.id === 'p2'), false);
      await s.noPush(QUIET_MS, 'second push for one transaction');
      const d = metricsDelta(m0, await subMetrics(srv));
      assert.equal(d.evaluations, 1, `evaluations ${JSON.stringify(d)}`);
      assert.equal(d.pushes, 1);
    } finally {
      s.close();
    }
  });

  test('a transaction over two buckets: each affected subscription is evaluated once', T, async () => {
    const s = await storeClient(srv);
    try {
      await s.ok('store.subscribe', { query: 'all-products' });
      const uc = await s.ok('store.subscribe', { query: 'user-count' });
      const m0 = await subMetrics(srv);
      await txOk([
        { op: 'insert', bucket: 'users', data: { id: 'two1', email: 'two1@x.io' } },
        { op: 'insert', bucket: 'users', data: { id: 'two2', email: 'two2@x.io' } },
        { op: 'update', bucket: 'products', key: 'p3', data: { stock: 1 } },
        { op: 'update', bucket: 'products', key: 'p3', data: { stock: 2 } },
      ]);
      const got = [await s.push(), await s.push()];
      await s.noPush();
      const bySub = Object.fromEntries(got.map((p) => [p.subscriptionId, p.data]));
      assert.equal(bySub[uc.subscriptionId], uc.data + 2);
      const d = metricsDelta(m0, await subMetrics(srv));
      assert.equal(d.evaluations, 2, JSON.stringify(d));
      assert.equal(d.pushes, 2);
    } finally {
      s.close();
    }
  });

  test('a failed transaction pushes nothing; a read-only one pushes nothing', T, async () => {
    const s = await storeClient(srv);
    try {
      await s.ok('store.subscribe', { query: 'all-products' });
      const m0 = await subMetrics(srv);
      await txErr([
        { op: 'update', bucket: 'products', key: 'p1', data: { stock: 1234 } },
        { op: 'update', bucket: 'products', key: 'ghost', data: { stock: 1 } },
      ]);
      await txOk([{ op: 'get', bucket: 'products', key: 'p1' }, { op: 'count', bucket: 'products' }]);
      await s.noPush(QUIET_MS);
      const d = metricsDelta(m0, await subMetrics(srv));
      assert.equal(d.evaluations, 0, JSON.stringify(d));
    } finally {
      s.close();
    }
  });
});

describe('concurrency: 8 connections × 50 transactions on one record', () => {
  const CONNS = 8;
  const PER = 50;

  test('read then [get, update stock-1] transactions: every answer is a result or CONFLICT; versions chain without gaps', { timeout: 20000 }, async (t) => {
    const clients = await Promise.all(Array.from({ length: CONNS }, () => storeClient(srv)));
    const initial = await c.ok('store.get', { bucket: 'products', key: 'hot' });
    let successes = 0;
    let conflicts = 0;
    let lost = 0;
    const readVersions = [];
    const unexpected = [];
    try {
      await Promise.all(
        clients.map(async (cl) => {
          for (let i = 0; i < PER; i++) {
            const cur = await cl.ok('store.get', { bucket: 'products', key: 'hot' });
            const m = await cl.call('store.transaction', {
              operations: [
                { op: 'get', bucket: 'products', key: 'hot' },
                { op: 'update', bucket: 'products', key: 'hot', data: { stock: cur.stock - 1 } },
              ],
            }, 8000);
            if (m.type === 'result') {
              successes++;
              const [g, u] = m.data.results.map((x) => x.data);
              readVersions.push(g._version);
              if (u._version !== g._version + 1) unexpected.push({ g, u });
              if (g._version !== cur._version) lost++;
            } else if (m.code === 'CONFLICT') {
              conflicts++;
            } else {
              unexpected.push(m);
            }
          }
        }),
      );
    } finally {
      for (const cl of clients) cl.close();
    }
    assert.deepEqual(unexpected, []);
    assert.equal(successes + conflicts, CONNS * PER);
    const final = await c.ok('store.get', { bucket: 'products', key: 'hot' });
    assert.equal(final._version, initial._version + successes, 'final _version = 1 + successful updates');
    // Each committed transaction read a distinct version: they ran one after another.
    assert.equal(new Set(readVersions).size, readVersions.length);
    t.diagnostic(`successes=${successes} conflicts=${conflicts} stale-read updates (client read outside the tx)=${lost}`);
  });

  test('optimistic guard inside the transaction (claim "<key>@<version>"): stock accounts for every success', { timeout: 20000 }, async (t) => {
    /* The protocol's transactions are static lists, so a client computes stock-1 from a
     * read made before the transaction. A claim record keyed by the version it read makes
     * the transaction fail (ALREADY_EXISTS at index 0) when another one already updated
     * from that version; a server CONFLICT is accepted too. Atomicity then makes stock
     * exact. */
    const clients = await Promise.all(Array.from({ length: CONNS }, () => storeClient(srv)));
    const initial = await c.ok('store.get', { bucket: 'products', key: 'hot2' });
    let successes = 0;
    let refused = 0;
    const unexpected = [];
    try {
      await Promise.all(
        clients.map(async (cl) => {
          for (let i = 0; i < PER; i++) {
            const cur = await cl.ok('store.get', { bucket: 'products', key: 'hot2' });
            const m = await cl.call('store.transaction', {
              operations: [
                { op: 'insert', bucket: 'claims', data: { id: `hot2@${cur._version}` } },
                { op: 'get', bucket: 'products', key: 'hot2' },
                { op: 'update', bucket: 'products', key: 'hot2', data: { stock: cur.stock - 1 } },
              ],
            }, 8000);
            if (m.type === 'result') {
              successes++;
              const g = m.data.results[1].data;
              if (g._version !== cur._version) unexpected.push({ note: 'guard passed on a stale read', g, cur });
            } else if (m.code === 'CONFLICT' || (m.code === 'ALREADY_EXISTS' && m.details?.index === 0)) {
              refused++;
            } else {
              unexpected.push(m);
            }
          }
        }),
      );
    } finally {
      for (const cl of clients) cl.close();
    }
    assert.deepEqual(unexpected, []);
    assert.equal(successes + refused, CONNS * PER);
    assert.ok(successes >= PER, `at least one client's worth of successes expected, got ${successes}`);
    const final = await c.ok('store.get', { bucket: 'products', key: 'hot2' });
    assert.equal(final._version, initial._version + successes);
    assert.equal(final.stock, initial.stock - successes, 'stock must account for every successful transaction');
    assert.equal(await c.ok('store.count', { bucket: 'claims' }), successes, 'one claim per success; refused transactions left none');
    t.diagnostic(`successes=${successes} refused=${refused}`);
  });
});
