// Store protocol §4.1–§4.2 against the real binary: every read and write operation with
// exact result shapes, schemas and their violations, the admin operations, the error
// codes and field-shape messages, filter operators (extension) and hostile input.
// Transactions: store-tx.test.mjs; subscriptions: store-subscriptions.test.mjs;
// restarts and the SQLite file: store-persistence.test.mjs.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  PRODUCTS,
  SEED_PRODUCTS,
  STARTUP_MS,
  T,
  assertError,
  assertMeta,
  shopConfig,
  startStore,
  storeClient,
  strip,
} from './store-helpers.mjs';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const CUID = /^c[0-9a-z]{24}$/;

const BUCKETS = {
  gens: {
    key: 'id',
    schema: {
      id: { type: 'string', generated: 'uuid' },
      ref: { type: 'string', generated: 'cuid' },
      seq: { type: 'number', generated: 'autoincrement' },
      at: { type: 'number', generated: 'timestamp' },
      label: { type: 'string', generated: 'cuid', default: 'from-default' },
      role: { type: 'string', enum: ['customer', 'admin'], default: 'customer' },
      qty: { type: 'number', default: 7 },
      on: { type: 'boolean', default: true },
      tags: { type: 'array', default: ['new'] },
      note: { type: 'string', default: 'n/a' },
    },
  },
  users: {
    key: 'id',
    schema: {
      id: { type: 'string', generated: 'uuid' },
      email: { type: 'string', required: true, format: 'email', unique: true },
      nick: { type: 'string', unique: true },
      name: { type: 'string' },
    },
  },
  checked: {
    key: 'id',
    schema: {
      id: { type: 'string' },
      name: { type: 'string', required: true, minLength: 2, maxLength: 5 },
      qty: { type: 'number', min: 1, max: 10 },
      kind: { type: 'string', enum: ['a', 'b'] },
      code: { type: 'string', pattern: '^[A-Z]{3}$' },
      loose: { type: 'string', pattern: 'ab' },
      email: { type: 'string', format: 'email' },
      site: { type: 'string', format: 'url' },
      day: { type: 'string', format: 'iso-date' },
      flag: { type: 'boolean' },
      meta: { type: 'object' },
      list: { type: 'array', maxLength: 3 },
      when: { type: 'date' },
      count: { type: 'number' },
    },
  },
  notes: { key: 'id', schema: { id: { type: 'string' }, body: { type: 'string', required: true } } },
  pages: { key: 'n', schema: { n: { type: 'number' }, grp: { type: 'number' } } },
  nums: { key: 'id', schema: { id: { type: 'string' }, price: { type: 'number' }, cat: { type: 'string' } } },
  empty: { key: 'id', schema: { id: { type: 'string' }, price: { type: 'number' } } },
  scratch: { key: 'id', schema: { id: { type: 'string' }, v: { type: 'number' } } },
  orders: { key: 'no', schema: { no: { type: 'number', generated: 'autoincrement' }, total: { type: 'number' } } },
  tickets: { key: 'no', schema: { no: { type: 'number', generated: 'autoincrement' } } },
};

const PAGES = Array.from({ length: 25 }, (_, i) => ({ n: i + 1, grp: (i + 1) % 3 }));
const NUMS = [
  { id: 'a', price: 10, cat: 'x' },
  { id: 'b', price: 20, cat: 'x' },
  { id: 'c', price: 30.5, cat: 'y' },
  { id: 'd', cat: 'y' },
];

const QUERIES = { 'all-products': { bucket: 'products', op: 'all' } };

let srv;
let c;
before(async () => {
  srv = await startStore(
    shopConfig({
      buckets: BUCKETS,
      queries: QUERIES,
      seed: { products: SEED_PRODUCTS, pages: PAGES, nums: NUMS, scratch: [{ id: 's1', v: 1 }, { id: 's2', v: 2 }] },
    }),
  );
  c = await storeClient(srv);
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  c?.close();
  await srv?.stopAndCheck();
});

/* ---------------------------------------------------------------------------------- */

describe('store.insert', () => {
  test('fills generated uuid, cuid, autoincrement and timestamp fields, defaults and metadata', T, async () => {
    const t0 = Date.now();
    const r = await c.ok('store.insert', { bucket: 'gens', data: {} });
    assert.deepEqual(
      Object.keys(r).sort(),
      ['_createdAt', '_updatedAt', '_version', 'at', 'id', 'label', 'on', 'qty', 'ref', 'role', 'seq', 'tags', 'note'].sort(),
    );
    assert.match(r.id, UUID_V4);
    assert.match(r.ref, CUID);
    assert.ok(Number.isInteger(r.seq) && r.seq >= 1, `seq ${r.seq}`);
    assert.ok(Number.isInteger(r.at) && Math.abs(r.at - t0) < 5000, `timestamp ${r.at} not near ${t0}`);
    assert.equal(r.role, 'customer');
    assert.equal(r.qty, 7);
    assert.equal(r.on, true);
    assert.deepEqual(r.tags, ['new']);
    assert.equal(r.note, 'n/a');
    assertMeta(r, { version: 1, after: t0 });
    assert.equal(r._createdAt, r._updatedAt);
  });

  test('generated values differ between records; autoincrement counts up by one', T, async () => {
    const a = await c.ok('store.insert', { bucket: 'gens', data: {} });
    const b = await c.ok('store.insert', { bucket: 'gens', data: {} });
    const d = await c.ok('store.insert', { bucket: 'gens', data: {} });
    assert.notEqual(a.id, b.id);
    assert.notEqual(a.ref, b.ref);
    assert.equal(b.seq, a.seq + 1);
    assert.equal(d.seq, b.seq + 1);
  });

  test('autoincrement key: 1, 2, 3 … and get by the numeric key', T, async () => {
    const o1 = await c.ok('store.insert', { bucket: 'orders', data: { total: 5 } });
    const o2 = await c.ok('store.insert', { bucket: 'orders', data: { total: 6 } });
    assert.equal(o1.no, 1);
    assert.equal(o2.no, 2);
    assert.deepEqual(await c.ok('store.get', { bucket: 'orders', key: 2 }), o2);
  });

  test('an explicit autoincrement key does not make later generated keys collide with it', T, async () => {
    await c.ok('store.insert', { bucket: 'tickets', data: { no: 1 } });
    await c.ok('store.insert', { bucket: 'tickets', data: { no: 3 } });
    const got = [];
    for (let i = 0; i < 3; i++) {
      const m = await c.call('store.insert', { bucket: 'tickets', data: {} });
      got.push(m.type === 'result' ? m.data.no : `${m.code}: ${m.message}`);
    }
    const keys = got.filter((x) => typeof x === 'number');
    assert.equal(keys.length, 3, `generated inserts failed: ${JSON.stringify(got)}`);
    assert.equal(new Set([1, 3, ...keys]).size, 5, `duplicate keys: ${JSON.stringify(got)}`);
  });

  test('priority: explicit value > generated > default', T, async () => {
    const explicit = await c.ok('store.insert', {
      bucket: 'gens',
      data: { id: 'my-id', ref: 'my-ref', seq: 999, at: 5, label: 'mine', role: 'admin', qty: 1, tags: [], note: 'x' },
    });
    assert.deepEqual(strip(explicit), {
      id: 'my-id', ref: 'my-ref', seq: 999, at: 5, label: 'mine', role: 'admin', qty: 1, on: true, tags: [], note: 'x',
    });
    // A field with both `generated` and `default`: the generated value wins over the default.
    const gen = await c.ok('store.insert', { bucket: 'gens', data: {} });
    assert.notEqual(gen.label, 'from-default');
    assert.match(gen.label, CUID);
  });

  test('falsy explicit values (0, false, "", []) are kept, not replaced by defaults', T, async () => {
    const r = await c.ok('store.insert', { bucket: 'gens', data: { qty: 0, on: false, note: '', tags: [] } });
    assert.equal(r.qty, 0);
    assert.equal(r.on, false);
    assert.equal(r.note, '');
    assert.deepEqual(r.tags, []);
  });

  test('metadata given in data is ignored: _version 1 and fresh timestamps', T, async () => {
    const t0 = Date.now();
    const r = await c.ok('store.insert', {
      bucket: 'products',
      data: { id: 'meta-1', title: 'M', price: 1, _version: 42, _createdAt: 5, _updatedAt: 6 },
    });
    assertMeta(r, { version: 1, after: t0 });
  });

  test('the stored record equals the insert result; undeclared fields pass through unvalidated', T, async () => {
    const data = { id: 'pass-1', title: 'Pass', price: 2, extra: { deep: [1, { a: null }] }, n: 'anything' };
    const r = await c.ok('store.insert', { bucket: 'products', data });
    assert.deepEqual(strip(r), { ...data, stock: 0, active: true });
    assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'pass-1' }), r);
  });

  test('duplicate key → ALREADY_EXISTS; the existing record is unchanged', T, async () => {
    const before = await c.ok('store.get', { bucket: 'products', key: 'p1' });
    const e = await c.err('store.insert', { bucket: 'products', data: { id: 'p1', title: 'Other', price: 1 } });
    assertError(e, 'ALREADY_EXISTS');
    assert.match(e.message, /p1/);
    assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'p1' }), before);
  });

  test('unique field violation → ALREADY_EXISTS; null values of a unique field are not indexed', T, async () => {
    await c.ok('store.insert', { bucket: 'users', data: { email: 'ann@example.com', nick: 'ann' } });
    const e1 = await c.err('store.insert', { bucket: 'users', data: { email: 'ann@example.com' } });
    assertError(e1, 'ALREADY_EXISTS');
    assert.match(e1.message, /email/);
    const e2 = await c.err('store.insert', { bucket: 'users', data: { email: 'bob@example.com', nick: 'ann' } });
    assertError(e2, 'ALREADY_EXISTS');
    assert.match(e2.message, /nick/);
    // Several records without a nick (missing or null) coexist.
    await c.ok('store.insert', { bucket: 'users', data: { email: 'c1@example.com' } });
    await c.ok('store.insert', { bucket: 'users', data: { email: 'c2@example.com' } });
    await c.ok('store.insert', { bucket: 'users', data: { email: 'c3@example.com', nick: null } });
    await c.ok('store.insert', { bucket: 'users', data: { email: 'c4@example.com', nick: null } });
    assert.equal(await c.ok('store.count', { bucket: 'users', filter: { email: 'bob@example.com' } }), 0);
  });
});

describe('schema validation (VALIDATION_ERROR with details)', () => {
  const pairs = (e) => e.details.map((d) => `${d.field}:${d.rule}`).sort();

  function assertDetails(e, expected) {
    assertError(e, 'VALIDATION_ERROR');
    assert.ok(Array.isArray(e.details), `details must list the violations: ${JSON.stringify(e)}`);
    for (const d of e.details) {
      assert.equal(typeof d.field, 'string');
      assert.equal(typeof d.rule, 'string');
      assert.equal(typeof d.message, 'string');
      assert.ok(d.message.includes(d.field), `message ${JSON.stringify(d.message)} should name ${d.field}`);
    }
    assert.deepEqual(pairs(e), [...expected].sort());
  }

  test('every violation of one record is listed (type, enum, min, minLength, pattern, formats)', T, async () => {
    const e = await c.err('store.insert', {
      bucket: 'checked',
      data: {
        id: 'v1', name: 'x', qty: 0, kind: 'c', code: 'abc', loose: 'xyz', email: 'no-at', site: 'not a url',
        day: '2024-13-45', flag: 'yes', meta: [], list: {}, when: 'not a date', count: '5',
      },
    });
    assertDetails(e, [
      'name:minLength', 'qty:min', 'kind:enum', 'code:pattern', 'loose:pattern', 'email:format', 'site:format',
      'day:format', 'flag:type', 'meta:type', 'list:type', 'when:type', 'count:type',
    ]);
    assert.equal(await c.ok('store.get', { bucket: 'checked', key: 'v1' }), null);
  });

  test('required (missing and null), max, maxLength (strings and arrays)', T, async () => {
    assertDetails(await c.err('store.insert', { bucket: 'checked', data: { id: 'v2', qty: 11 } }), ['name:required', 'qty:max']);
    assertDetails(await c.err('store.insert', { bucket: 'checked', data: { id: 'v3', name: null } }), ['name:required']);
    assertDetails(
      await c.err('store.insert', { bucket: 'checked', data: { id: 'v4', name: 'toolong', list: [1, 2, 3, 4] } }),
      ['name:maxLength', 'list:maxLength'],
    );
  });

  test('"" counts as present for required', T, async () => {
    const r = await c.ok('store.insert', { bucket: 'notes', data: { id: 'n1', body: '' } });
    assert.equal(r.body, '');
    assertDetails(await c.err('store.insert', { bucket: 'notes', data: { id: 'n2' } }), ['body:required']);
  });

  test('boundaries are inclusive; lengths count characters; valid formats pass', T, async () => {
    const ok = [
      { id: 'ok1', name: 'ab', qty: 1, kind: 'a', code: 'ABC', loose: 'xaby', email: 'a.b+c@ex-ample.org', site: 'https://example.com/x?y=1', day: '2024-02-29', flag: false, meta: {}, list: [], when: 1700000000000, count: 0 },
      { id: 'ok2', name: 'abcde', qty: 10, kind: 'b', day: '2024-02-29T10:00:00Z', when: '2024-02-29T10:00:00.123+02:00', list: [1, 2, 3] },
      { id: 'ok3', name: 'éééé', site: 'http://localhost:8080' },
    ];
    for (const data of ok) {
      const r = await c.ok('store.insert', { bucket: 'checked', data });
      assert.deepEqual(strip(r), data);
    }
  });

  test('invalid emails, URLs and ISO dates are each refused with rule "format"', T, async () => {
    const cases = [
      ['email', ['a@', '@b.co', 'a b@c.d', 'plain']],
      ['site', ['example.com', 'not a url', 'http://']],
      ['day', ['2023-02-29', '2024-13-01', 'yesterday', '2024-1-1']],
    ];
    let i = 0;
    for (const [field, values] of cases) {
      for (const v of values) {
        const e = await c.err('store.insert', { bucket: 'checked', data: { id: `f${i++}`, name: 'ok', [field]: v } });
        assertDetails(e, [`${field}:format`]);
      }
    }
  });

  test('the error message summarises the violations', T, async () => {
    const e = await c.err('store.insert', { bucket: 'checked', data: { id: 'v5', qty: 0 } });
    assertError(e, 'VALIDATION_ERROR');
    assert.match(e.message, /checked/);
    assert.ok(e.message.length > 0 && e.message.length < 1000);
  });
});

describe('store.get / store.update / store.delete', () => {
  test('get: the record, or null for a missing key', T, async () => {
    const r = await c.ok('store.get', { bucket: 'products', key: 'p3' });
    assert.deepEqual(strip(r), { id: 'p3', title: 'Lamp', price: 25, category: 'home', stock: 12, active: true });
    assertMeta(r);
    assert.equal(await c.ok('store.get', { bucket: 'products', key: 'nope' }), null);
  });

  test('update merges into the stored record, _version + 1, _createdAt kept, _updatedAt moves', T, async () => {
    const ins = await c.ok('store.insert', { bucket: 'products', data: { id: 'u1', title: 'U', price: 3, category: 'c' } });
    await new Promise((r) => setTimeout(r, 5));
    const up = await c.ok('store.update', { bucket: 'products', key: 'u1', data: { price: 4 } });
    assert.deepEqual(strip(up), { id: 'u1', title: 'U', price: 4, category: 'c', stock: 0, active: true });
    assert.equal(up._version, 2);
    assert.equal(up._createdAt, ins._createdAt);
    assert.ok(up._updatedAt >= ins._updatedAt);
    const up2 = await c.ok('store.update', { bucket: 'products', key: 'u1', data: { title: 'V', extra: 1 } });
    assert.equal(up2._version, 3);
    assert.equal(up2.price, 4);
    assert.equal(up2.extra, 1);
    assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'u1' }), up2);
  });

  test('update: metadata in the payload is ignored', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'u2', title: 'U', price: 3 } });
    const up = await c.ok('store.update', { bucket: 'products', key: 'u2', data: { _version: 99, _createdAt: 1, price: 5 } });
    assert.equal(up._version, 2);
    assert.notEqual(up._createdAt, 1);
  });

  test('update strips generated fields from the payload (cuid, autoincrement, timestamp)', T, async () => {
    const ins = await c.ok('store.insert', { bucket: 'gens', data: {} });
    const up = await c.ok('store.update', { bucket: 'gens', key: ins.id, data: { ref: 'x', seq: -5, at: 1, note: 'changed' } });
    assert.equal(up.ref, ins.ref);
    assert.equal(up.seq, ins.seq);
    assert.equal(up.at, ins.at);
    assert.equal(up.note, 'changed');
    assert.equal(up._version, 2);
  });

  test('update strips a generated key field from the payload (spec §4.1: generated fields are stripped from update payloads)', T, async () => {
    const ins = await c.ok('store.insert', { bucket: 'gens', data: {} });
    const m = await c.call('store.update', { bucket: 'gens', key: ins.id, data: { id: 'another-id', note: 'k' } });
    assert.equal(m.type, 'result', `expected the generated "id" to be stripped, got ${JSON.stringify(m)}`);
    assert.equal(m.data.id, ins.id);
    assert.equal(m.data.note, 'k');
    assert.equal(await c.ok('store.get', { bucket: 'gens', key: 'another-id' }), null);
  });

  test('update of a missing key → NOT_FOUND; nothing is created', T, async () => {
    const e = await c.err('store.update', { bucket: 'products', key: 'ghost', data: { price: 1 } });
    assertError(e, 'NOT_FOUND');
    assert.match(e.message, /ghost/);
    assert.equal(await c.ok('store.get', { bucket: 'products', key: 'ghost' }), null);
  });

  test('update validates the merged record; a refused update leaves the record unchanged', T, async () => {
    const ins = await c.ok('store.insert', { bucket: 'products', data: { id: 'u3', title: 'U', price: 3 } });
    const e1 = await c.err('store.update', { bucket: 'products', key: 'u3', data: { price: -1 } });
    assertError(e1, 'VALIDATION_ERROR');
    assert.deepEqual(e1.details.map((d) => [d.field, d.rule]), [['price', 'min']]);
    const e2 = await c.err('store.update', { bucket: 'products', key: 'u3', data: { title: null, price: 'x' } });
    assertError(e2, 'VALIDATION_ERROR');
    assert.deepEqual(e2.details.map((d) => `${d.field}:${d.rule}`).sort(), ['price:type', 'title:required']);
    assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'u3' }), ins);
  });

  test('update to a value a unique field already has → ALREADY_EXISTS', T, async () => {
    await c.ok('store.insert', { bucket: 'users', data: { id: 'uu1', email: 'uu1@example.com' } });
    await c.ok('store.insert', { bucket: 'users', data: { id: 'uu2', email: 'uu2@example.com' } });
    assertError(await c.err('store.update', { bucket: 'users', key: 'uu2', data: { email: 'uu1@example.com' } }), 'ALREADY_EXISTS');
    assert.equal((await c.ok('store.get', { bucket: 'users', key: 'uu2' })).email, 'uu2@example.com');
  });

  test('updates keep the unique and field indexes true, whether or not they change an indexed field', T, async () => {
    await c.ok('store.insert', { bucket: 'users', data: { id: 'ix1', email: 'ix1@example.com', nick: 'ix-one' } });
    // An update that leaves every indexed field as it was.
    await c.ok('store.update', { bucket: 'users', key: 'ix1', data: { name: 'Ix' } });
    const byEmail = async (email) => (await c.ok('store.where', { bucket: 'users', filter: { email } })).map((r) => r.id);
    assert.deepEqual(await byEmail('ix1@example.com'), ['ix1']);
    // One that changes a unique field: the old value is free again, the new one taken.
    await c.ok('store.update', { bucket: 'users', key: 'ix1', data: { email: 'ix1b@example.com' } });
    assert.deepEqual(await byEmail('ix1@example.com'), []);
    assert.deepEqual(await byEmail('ix1b@example.com'), ['ix1']);
    await c.ok('store.insert', { bucket: 'users', data: { id: 'ix2', email: 'ix1@example.com' } });
    assertError(await c.err('store.insert', { bucket: 'users', data: { id: 'ix3', email: 'ix1b@example.com' } }), 'ALREADY_EXISTS');
    // The same value written again (an update that sets it unchanged) is no conflict.
    await c.ok('store.update', { bucket: 'users', key: 'ix1', data: { email: 'ix1b@example.com', nick: 'ix-one' } });
    assert.deepEqual(await byEmail('ix1b@example.com'), ['ix1']);
    // A field index (products.category) follows a change too.
    await c.ok('store.insert', { bucket: 'products', data: { id: 'ixp', title: 'I', price: 1, category: 'ix-a' } });
    await c.ok('store.update', { bucket: 'products', key: 'ixp', data: { price: 2 } });
    await c.ok('store.update', { bucket: 'products', key: 'ixp', data: { category: 'ix-b' } });
    const inCat = async (category) => (await c.ok('store.where', { bucket: 'products', filter: { category } })).map((r) => r.id);
    assert.deepEqual(await inCat('ix-a'), []);
    assert.deepEqual(await inCat('ix-b'), ['ixp']);
  });

  test('delete → {"deleted":true} whether or not the record existed', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'd1', title: 'D', price: 1 } });
    assert.deepEqual(await c.ok('store.delete', { bucket: 'products', key: 'd1' }), { deleted: true });
    assert.equal(await c.ok('store.get', { bucket: 'products', key: 'd1' }), null);
    assert.deepEqual(await c.ok('store.delete', { bucket: 'products', key: 'd1' }), { deleted: true });
    assert.deepEqual(await c.ok('store.delete', { bucket: 'products', key: 'never-was' }), { deleted: true });
  });

  test('a deleted key can be inserted again (fresh _version 1)', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'd2', title: 'D', price: 1 } });
    await c.ok('store.update', { bucket: 'products', key: 'd2', data: { price: 2 } });
    await c.ok('store.delete', { bucket: 'products', key: 'd2' });
    const again = await c.ok('store.insert', { bucket: 'products', data: { id: 'd2', title: 'D2', price: 3 } });
    assert.equal(again._version, 1);
    assert.equal(again.title, 'D2');
  });
});

describe('store.all / where / findOne / count', () => {
  test('all: every record in insertion order (an update does not move a record)', T, async () => {
    await c.ok('store.update', { bucket: 'scratch', key: 's1', data: { v: 10 } });
    await c.ok('store.insert', { bucket: 'scratch', data: { id: 'a0', v: 3 } });
    const all = await c.ok('store.all', { bucket: 'scratch' });
    assert.deepEqual(strip(all), [{ id: 's1', v: 10 }, { id: 's2', v: 2 }, { id: 'a0', v: 3 }]);
    assert.deepEqual(all.map((r) => r._version), [2, 1, 1]);
  });

  test('where: records whose fields equal every filter value, in insertion order', T, async () => {
    const k = await c.ok('store.where', { bucket: 'products', filter: { category: 'kitchen' } });
    assert.deepEqual(k.map((r) => r.id), ['p1', 'p2']);
    const both = await c.ok('store.where', { bucket: 'products', filter: { category: 'home', active: true } });
    assert.deepEqual(both.map((r) => r.id), ['p3']);
    const none = await c.ok('store.where', { bucket: 'products', filter: { category: 'home', price: 10 } });
    assert.deepEqual(none, []);
    const byNum = await c.ok('store.where', { bucket: 'products', filter: { price: 99.5 } });
    assert.deepEqual(byNum.map((r) => r.id), ['p4']);
    const byFalse = await c.ok('store.where', { bucket: 'products', filter: { active: false } });
    assert.deepEqual(byFalse.map((r) => r.id), ['p4']);
  });

  test('where with an empty filter returns every record', T, async () => {
    const all = await c.ok('store.all', { bucket: 'pages' });
    assert.deepEqual(await c.ok('store.where', { bucket: 'pages', filter: {} }), all);
  });

  test('where can filter on metadata (_version)', T, async () => {
    const r = await c.ok('store.where', { bucket: 'scratch', filter: { _version: 2 } });
    assert.deepEqual(r.map((x) => x.id), ['s1']);
  });

  test('findOne: the first match in insertion order, or null', T, async () => {
    const r = await c.ok('store.findOne', { bucket: 'products', filter: { category: 'home' } });
    assert.equal(r.id, 'p3');
    assertMeta(r);
    assert.equal(await c.ok('store.findOne', { bucket: 'products', filter: { category: 'garden' } }), null);
  });

  test('count with and without a filter', T, async () => {
    assert.equal(await c.ok('store.count', { bucket: 'pages' }), 25);
    assert.equal(await c.ok('store.count', { bucket: 'pages', filter: { grp: 0 } }), 8);
    assert.equal(await c.ok('store.count', { bucket: 'pages', filter: { grp: 7 } }), 0);
    assert.equal(await c.ok('store.count', { bucket: 'empty' }), 0);
  });
});

describe('store.first / last / paginate', () => {
  const ns = (recs) => recs.map((r) => r.n);

  test('first n and last n by insertion order (last keeps insertion order)', T, async () => {
    assert.deepEqual(ns(await c.ok('store.first', { bucket: 'pages', n: 3 })), [1, 2, 3]);
    assert.deepEqual(ns(await c.ok('store.last', { bucket: 'pages', n: 3 })), [23, 24, 25]);
    assert.deepEqual(ns(await c.ok('store.first', { bucket: 'pages', n: 1 })), [1]);
    assert.deepEqual(ns(await c.ok('store.last', { bucket: 'pages', n: 1 })), [25]);
  });

  test('n larger than the bucket returns everything; an empty bucket gives []', T, async () => {
    const all = ns(await c.ok('store.all', { bucket: 'pages' }));
    assert.deepEqual(ns(await c.ok('store.first', { bucket: 'pages', n: 100 })), all);
    assert.deepEqual(ns(await c.ok('store.last', { bucket: 'pages', n: 100 })), all);
    assert.deepEqual(await c.ok('store.first', { bucket: 'empty', n: 5 }), []);
    assert.deepEqual(await c.ok('store.last', { bucket: 'empty', n: 5 }), []);
    assert.equal((await c.ok('store.first', { bucket: 'pages', n: 10000 })).length, 25);
  });

  test('n must be a positive integer', T, async () => {
    for (const op of ['store.first', 'store.last']) {
      for (const n of [0, -1, 1.5, '3', null, true, [2]]) {
        assertError(await c.err(op, { bucket: 'pages', n }), 'VALIDATION_ERROR', 'Missing or invalid "n": expected positive integer');
      }
      assertError(await c.err(op, { bucket: 'pages' }), 'VALIDATION_ERROR', 'Missing or invalid "n": expected positive integer');
    }
  });

  test('n above 10000 is refused with a message', T, async () => {
    for (const op of ['store.first', 'store.last']) {
      for (const n of [10001, 1e9, 2 ** 53]) {
        const e = await c.err(op, { bucket: 'pages', n });
        assertError(e, 'VALIDATION_ERROR');
        assert.match(e.message, /10000/);
      }
    }
  });

  test('paginate: {records, hasMore, nextCursor}; nextCursor absent on the last page', T, async () => {
    const p1 = await c.ok('store.paginate', { bucket: 'pages', limit: 10 });
    assert.deepEqual(Object.keys(p1).sort(), ['hasMore', 'nextCursor', 'records']);
    assert.deepEqual(ns(p1.records), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(p1.hasMore, true);
    assert.equal(p1.nextCursor, 10);
    const p3 = await c.ok('store.paginate', { bucket: 'pages', limit: 10, after: 20 });
    assert.deepEqual(Object.keys(p3).sort(), ['hasMore', 'records']);
    assert.deepEqual(ns(p3.records), [21, 22, 23, 24, 25]);
    assert.equal(p3.hasMore, false);
  });

  test('paginate: walking every page visits each record once, in insertion order', T, async () => {
    for (const limit of [1, 4, 5, 7, 25, 26]) {
      const seen = [];
      let after;
      for (let guard = 0; guard < 40; guard++) {
        const page = await c.ok('store.paginate', after === undefined ? { bucket: 'pages', limit } : { bucket: 'pages', limit, after });
        assert.ok(page.records.length <= limit);
        seen.push(...ns(page.records));
        if (!page.hasMore) {
          assert.equal('nextCursor' in page, false, `nextCursor present on the last page (limit ${limit})`);
          break;
        }
        assert.equal(page.records.length, limit);
        assert.equal(page.nextCursor, page.records[page.records.length - 1].n);
        after = page.nextCursor;
      }
      assert.deepEqual(seen, PAGES.map((p) => p.n), `limit ${limit}`);
    }
  });

  test('paginate: exactly limit records left → hasMore false; empty bucket → no records', T, async () => {
    const last = await c.ok('store.paginate', { bucket: 'pages', limit: 5, after: 20 });
    assert.deepEqual(ns(last.records), [21, 22, 23, 24, 25]);
    assert.equal(last.hasMore, false);
    assert.equal('nextCursor' in last, false);
    assert.deepEqual(await c.ok('store.paginate', { bucket: 'empty', limit: 5 }), { records: [], hasMore: false });
  });

  test('paginate: limit must be a positive integer at most 10000', T, async () => {
    for (const limit of [0, -3, 2.5, 'x']) {
      assertError(await c.err('store.paginate', { bucket: 'pages', limit }), 'VALIDATION_ERROR', 'Missing or invalid "limit": expected positive integer');
    }
    assertError(await c.err('store.paginate', { bucket: 'pages' }), 'VALIDATION_ERROR', 'Missing or invalid "limit": expected positive integer');
    const e = await c.err('store.paginate', { bucket: 'pages', limit: 10001 });
    assertError(e, 'VALIDATION_ERROR');
    assert.match(e.message, /10000/);
  });

  test('paginate: a cursor that is not a key of the bucket is refused', T, async () => {
    const e = await c.err('store.paginate', { bucket: 'pages', limit: 2, after: 999 });
    assert.ok(['NOT_FOUND', 'VALIDATION_ERROR'].includes(e.code), JSON.stringify(e));
  });
});

describe('store.sum / avg / min / max', () => {
  test('over every record and with a filter (records lacking the field are skipped)', T, async () => {
    assert.equal(await c.ok('store.sum', { bucket: 'nums', field: 'price' }), 60.5);
    assert.equal(await c.ok('store.avg', { bucket: 'nums', field: 'price' }), 60.5 / 3);
    assert.equal(await c.ok('store.min', { bucket: 'nums', field: 'price' }), 10);
    assert.equal(await c.ok('store.max', { bucket: 'nums', field: 'price' }), 30.5);
    assert.equal(await c.ok('store.sum', { bucket: 'nums', field: 'price', filter: { cat: 'x' } }), 30);
    assert.equal(await c.ok('store.avg', { bucket: 'nums', field: 'price', filter: { cat: 'x' } }), 15);
    assert.equal(await c.ok('store.min', { bucket: 'nums', field: 'price', filter: { cat: 'y' } }), 30.5);
    assert.equal(await c.ok('store.max', { bucket: 'nums', field: 'price', filter: { cat: 'x' } }), 20);
  });

  test('nothing matches: sum and avg 0, min and max null', T, async () => {
    for (const args of [{ bucket: 'nums', filter: { cat: 'none' } }, { bucket: 'empty' }]) {
      assert.equal(await c.ok('store.sum', { ...args, field: 'price' }), 0);
      assert.equal(await c.ok('store.avg', { ...args, field: 'price' }), 0);
      assert.equal(await c.ok('store.min', { ...args, field: 'price' }), null);
      assert.equal(await c.ok('store.max', { ...args, field: 'price' }), null);
    }
  });

  test('field is required; unknown and non-numeric fields are refused', T, async () => {
    for (const op of ['store.sum', 'store.avg', 'store.min', 'store.max']) {
      assertError(await c.err(op, { bucket: 'nums' }), 'VALIDATION_ERROR', 'Missing or invalid "field": expected non-empty string');
      assertError(await c.err(op, { bucket: 'nums', field: '' }), 'VALIDATION_ERROR', 'Missing or invalid "field": expected non-empty string');
      assertError(await c.err(op, { bucket: 'nums', field: 'nope' }), 'VALIDATION_ERROR');
      assertError(await c.err(op, { bucket: 'nums', field: 'cat' }), 'VALIDATION_ERROR');
    }
  });
});

describe('store.clear / store.buckets / store.stats', () => {
  test('clear → {"cleared":true}; the bucket is empty and usable, others untouched', T, async () => {
    await c.ok('store.defineBucket', { name: 'toclear', config: { key: 'id', schema: { id: { type: 'string' } } } });
    for (const id of ['a', 'b', 'c']) await c.ok('store.insert', { bucket: 'toclear', data: { id } });
    const productsBefore = await c.ok('store.count', { bucket: 'products' });
    assert.deepEqual(await c.ok('store.clear', { bucket: 'toclear' }), { cleared: true });
    assert.deepEqual(await c.ok('store.all', { bucket: 'toclear' }), []);
    assert.equal(await c.ok('store.count', { bucket: 'toclear' }), 0);
    assert.equal(await c.ok('store.count', { bucket: 'products' }), productsBefore);
    assert.deepEqual(await c.ok('store.clear', { bucket: 'toclear' }), { cleared: true });
    assert.equal((await c.ok('store.insert', { bucket: 'toclear', data: { id: 'a' } }))._version, 1);
  });

  test('buckets → {"count","names"} and stats → {"buckets":{…},"records":{…}} (own server)', T, async () => {
    const s2 = await startStore({
      buckets: {
        products: PRODUCTS,
        orders: { key: 'id', schema: { id: { type: 'string' } } },
      },
      seed: { products: SEED_PRODUCTS.slice(0, 2) },
    });
    const c2 = await storeClient(s2);
    try {
      const b = await c2.ok('store.buckets');
      assert.deepEqual(Object.keys(b).sort(), ['count', 'names']);
      assert.equal(b.count, 2);
      assert.deepEqual([...b.names].sort(), ['orders', 'products']);
      const st = await c2.ok('store.stats');
      assert.deepEqual(Object.keys(st).sort(), ['buckets', 'records']);
      assert.equal(st.buckets.count, 2);
      assert.deepEqual([...st.buckets.names].sort(), ['orders', 'products']);
      assert.deepEqual(st.records, { products: 2, orders: 0 });

      await c2.ok('store.defineBucket', { name: 'extra', config: { key: 'id', schema: { id: { type: 'string' } } } });
      await c2.ok('store.insert', { bucket: 'extra', data: { id: 'x' } });
      await c2.ok('store.insert', { bucket: 'orders', data: { id: 'o' } });
      const st2 = await c2.ok('store.stats');
      assert.equal(st2.buckets.count, 3);
      assert.deepEqual([...st2.buckets.names].sort(), ['extra', 'orders', 'products']);
      assert.deepEqual(st2.records, { products: 2, orders: 1, extra: 1 });
      await c2.ok('store.dropBucket', { name: 'extra' });
      const b3 = await c2.ok('store.buckets');
      assert.equal(b3.count, 2);
      assert.deepEqual([...b3.names].sort(), ['orders', 'products']);
      assert.deepEqual((await c2.ok('store.stats')).records, { products: 2, orders: 1 });
    } finally {
      c2.close();
      await s2.stopAndCheck();
    }
  });
});

describe('admin: defineBucket / dropBucket / updateBucket / getBucketSchema', () => {
  const DEF = {
    key: 'sku',
    schema: { sku: { type: 'string' }, name: { type: 'string', required: true }, price: { type: 'number', min: 0 } },
    indexes: ['name'],
  };

  test('defineBucket → {"name","defined":true}; usable at once; getBucketSchema returns the definition', T, async () => {
    assert.deepEqual(await c.ok('store.defineBucket', { name: 'items', config: DEF }), { name: 'items', defined: true });
    const r = await c.ok('store.insert', { bucket: 'items', data: { sku: 'i1', name: 'One', price: 1 } });
    assert.equal(r.sku, 'i1');
    assertError(await c.err('store.insert', { bucket: 'items', data: { sku: 'i2', price: -1 } }), 'VALIDATION_ERROR');
    const schema = await c.ok('store.getBucketSchema', { name: 'items' });
    assert.equal(schema.key, 'sku');
    assert.deepEqual(schema.schema, DEF.schema);
    assert.deepEqual(schema.indexes, ['name']);
  });

  test('defineBucket of an existing name → ALREADY_EXISTS (records untouched)', T, async () => {
    assertError(await c.err('store.defineBucket', { name: 'items', config: DEF }), 'ALREADY_EXISTS');
    assertError(await c.err('store.defineBucket', { name: 'products', config: { key: 'id', schema: {} } }), 'ALREADY_EXISTS');
    assert.equal((await c.ok('store.get', { bucket: 'items', key: 'i1' })).name, 'One');
  });

  test('updateBucket adds a field and an index; the field is validated and filterable, records kept', T, async () => {
    const r = await c.ok('store.updateBucket', {
      name: 'items',
      updates: { fields: { color: { type: 'string', enum: ['red', 'blue'] } }, indexes: ['color'] },
    });
    assert.equal(r.name, 'items');
    const schema = await c.ok('store.getBucketSchema', { name: 'items' });
    assert.deepEqual(schema.schema.color, { type: 'string', enum: ['red', 'blue'] });
    assert.deepEqual([...schema.indexes].sort(), ['color', 'name']);
    assert.equal((await c.ok('store.get', { bucket: 'items', key: 'i1' })).name, 'One');
    await c.ok('store.insert', { bucket: 'items', data: { sku: 'i3', name: 'Three', color: 'red' } });
    assertError(await c.err('store.insert', { bucket: 'items', data: { sku: 'i4', name: 'Four', color: 'green' } }), 'VALIDATION_ERROR');
    const red = await c.ok('store.where', { bucket: 'items', filter: { color: 'red' } });
    assert.deepEqual(red.map((x) => x.sku), ['i3']);
  });

  test('updateBucket only adds: an existing field → VALIDATION_ERROR; unknown bucket → BUCKET_NOT_DEFINED', T, async () => {
    assertError(await c.err('store.updateBucket', { name: 'items', updates: { fields: { price: { type: 'string' } } } }), 'VALIDATION_ERROR');
    assertError(await c.err('store.updateBucket', { name: 'nope', updates: { fields: { a: { type: 'string' } } } }), 'BUCKET_NOT_DEFINED');
    assertError(await c.err('store.updateBucket', { name: 'items' }), 'VALIDATION_ERROR', 'Missing or invalid "updates": expected object');
    assertError(await c.err('store.updateBucket', { name: 'items', updates: { indexes: ['nofield'] } }), 'VALIDATION_ERROR');
    assert.equal((await c.ok('store.getBucketSchema', { name: 'items' })).schema.price.type, 'number');
  });

  test('dropBucket removes the bucket and its records; unknown → BUCKET_NOT_DEFINED', T, async () => {
    const r = await c.ok('store.dropBucket', { name: 'items' });
    assert.equal(r.name, 'items');
    assertError(await c.err('store.get', { bucket: 'items', key: 'i1' }), 'BUCKET_NOT_DEFINED');
    assertError(await c.err('store.getBucketSchema', { name: 'items' }), 'BUCKET_NOT_DEFINED');
    assertError(await c.err('store.dropBucket', { name: 'items' }), 'BUCKET_NOT_DEFINED');
    assert.equal((await c.ok('store.buckets')).names.includes('items'), false);
    // Defining it again starts empty.
    await c.ok('store.defineBucket', { name: 'items', config: DEF });
    assert.deepEqual(await c.ok('store.all', { bucket: 'items' }), []);
  });

  test('name and config are required', T, async () => {
    for (const type of ['store.defineBucket', 'store.dropBucket', 'store.getBucketSchema', 'store.updateBucket', 'store.defineQuery', 'store.undefineQuery']) {
      assertError(await c.err(type, { config: DEF }), 'VALIDATION_ERROR', 'Missing or invalid "name": expected non-empty string');
      assertError(await c.err(type, { name: '', config: DEF }), 'VALIDATION_ERROR', 'Missing or invalid "name": expected non-empty string');
    }
    assertError(await c.err('store.defineBucket', { name: 'cfgless' }), 'VALIDATION_ERROR', 'Missing or invalid "config": expected object');
    assertError(await c.err('store.defineQuery', { name: 'cfgless', config: 'x' }), 'VALIDATION_ERROR', 'Missing or invalid "config": expected object');
  });

  test('invalid definitions are refused with VALIDATION_ERROR (unknown type, index on unknown field)', T, async () => {
    assertError(await c.err('store.defineBucket', { name: 'bad1', config: { key: 'id', schema: { a: { type: 'strong' } } } }), 'VALIDATION_ERROR');
    assertError(await c.err('store.defineBucket', { name: 'bad2', config: { key: 'id', schema: { id: { type: 'string' } }, indexes: ['zz'] } }), 'VALIDATION_ERROR');
    assertError(await c.err('store.defineBucket', { name: 'bad3', config: { key: 'id', schema: { code: { type: 'string', pattern: '([' } } } }), 'VALIDATION_ERROR');
    assert.equal((await c.ok('store.buckets')).names.some((n) => /^bad\d$/.test(n)), false);
  });
});

describe('admin: defineQuery / undefineQuery / listQueries', () => {
  test('listQueries lists the configured queries; defineQuery → {"name","defined":true}; undefineQuery', T, async () => {
    const l0 = await c.ok('store.listQueries');
    assert.deepEqual(Object.keys(l0), ['queries']);
    assert.ok(l0.queries.includes('all-products'), JSON.stringify(l0));
    assert.deepEqual(
      await c.ok('store.defineQuery', { name: 'cheap', config: { bucket: 'products', op: 'where', filter: { price: { $lt: 20 } } } }),
      { name: 'cheap', defined: true },
    );
    assert.ok((await c.ok('store.listQueries')).queries.includes('cheap'));
    const sub = await c.ok('store.subscribe', { query: 'cheap' });
    assert.ok(sub.data.every((r) => r.price < 20));
    await c.ok('store.unsubscribe', { subscriptionId: sub.subscriptionId });
    assert.deepEqual(await c.ok('store.undefineQuery', { name: 'cheap' }), { name: 'cheap', undefined: true });
    assert.equal((await c.ok('store.listQueries')).queries.includes('cheap'), false);
    assertError(await c.err('store.undefineQuery', { name: 'cheap' }), 'QUERY_NOT_DEFINED');
    assertError(await c.err('store.subscribe', { query: 'cheap' }), 'QUERY_NOT_DEFINED');
  });

  test('defineQuery: an existing name → ALREADY_EXISTS, an unknown bucket → BUCKET_NOT_DEFINED, a write op → VALIDATION_ERROR', T, async () => {
    assertError(await c.err('store.defineQuery', { name: 'all-products', config: { bucket: 'products', op: 'count' } }), 'ALREADY_EXISTS');
    assertError(await c.err('store.defineQuery', { name: 'q-nob', config: { bucket: 'nope', op: 'all' } }), 'BUCKET_NOT_DEFINED');
    assertError(await c.err('store.defineQuery', { name: 'q-ins', config: { bucket: 'products', op: 'insert' } }), 'VALIDATION_ERROR');
    assertError(await c.err('store.defineQuery', { name: 'bad name!', config: { bucket: 'products', op: 'all' } }), 'VALIDATION_ERROR');
  });

  test('a query whose limit or n exceeds 10000 cannot be used', T, async () => {
    for (const [name, config] of [
      ['q-biglimit', { bucket: 'products', op: 'all', limit: 20000 }],
      ['q-bign', { bucket: 'products', op: 'first', n: 20000 }],
    ]) {
      const d = await c.call('store.defineQuery', { name, config });
      if (d.type === 'error') {
        assertError(d, 'VALIDATION_ERROR', /10000/);
        continue;
      }
      const e = await c.err('store.subscribe', { query: name });
      assertError(e, 'VALIDATION_ERROR', /10000/);
    }
  });
});

describe('errors', () => {
  const OPS = [
    ['store.insert', { data: { id: 'x' } }],
    ['store.get', { key: 'x' }],
    ['store.update', { key: 'x', data: {} }],
    ['store.delete', { key: 'x' }],
    ['store.all', {}],
    ['store.where', { filter: {} }],
    ['store.findOne', { filter: {} }],
    ['store.count', {}],
    ['store.first', { n: 1 }],
    ['store.last', { n: 1 }],
    ['store.paginate', { limit: 1 }],
    ['store.sum', { field: 'price' }],
    ['store.avg', { field: 'price' }],
    ['store.min', { field: 'price' }],
    ['store.max', { field: 'price' }],
    ['store.clear', {}],
  ];

  test('every operation on an unknown bucket → BUCKET_NOT_DEFINED naming the bucket', T, async () => {
    for (const [type, fields] of OPS) {
      const e = await c.err(type, { bucket: 'ghosts', ...fields });
      assertError(e, 'BUCKET_NOT_DEFINED');
      assert.match(e.message, /ghosts/, `${type}: ${e.message}`);
    }
  });

  test('a missing or invalid "bucket" → `Missing or invalid "bucket": expected non-empty string`', T, async () => {
    for (const [type, fields] of OPS) {
      for (const bucket of [undefined, '', 5, null, ['products'], { a: 1 }]) {
        const e = await c.err(type, bucket === undefined ? fields : { ...fields, bucket });
        assertError(e, 'VALIDATION_ERROR', 'Missing or invalid "bucket": expected non-empty string');
      }
    }
  });

  test('a missing or null "key" → `Missing "key": expected non-null value`', T, async () => {
    for (const [type, extra] of [['store.get', {}], ['store.update', { data: { price: 1 } }], ['store.delete', {}]]) {
      assertError(await c.err(type, { bucket: 'products', ...extra }), 'VALIDATION_ERROR', 'Missing "key": expected non-null value');
      assertError(await c.err(type, { bucket: 'products', key: null, ...extra }), 'VALIDATION_ERROR', 'Missing "key": expected non-null value');
    }
  });

  test('a key of the wrong type for the key field → VALIDATION_ERROR', T, async () => {
    assertError(await c.err('store.get', { bucket: 'products', key: { id: 'p1' } }), 'VALIDATION_ERROR');
    assertError(await c.err('store.get', { bucket: 'products', key: ['p1'] }), 'VALIDATION_ERROR');
    assertError(await c.err('store.get', { bucket: 'pages', key: '1' }), 'VALIDATION_ERROR');
  });

  test('a missing or invalid "data" → `Missing or invalid "data": expected object`', T, async () => {
    for (const data of [undefined, null, [], 'x', 5, true]) {
      const f = data === undefined ? {} : { data };
      assertError(await c.err('store.insert', { bucket: 'products', ...f }), 'VALIDATION_ERROR', 'Missing or invalid "data": expected object');
      assertError(await c.err('store.update', { bucket: 'products', key: 'p1', ...f }), 'VALIDATION_ERROR', 'Missing or invalid "data": expected object');
    }
  });

  test('a missing or invalid "filter" → `Missing or invalid "filter": expected object`', T, async () => {
    for (const filter of [undefined, 5, 'x', [], true]) {
      const f = filter === undefined ? {} : { filter };
      for (const type of ['store.where', 'store.findOne']) {
        assertError(await c.err(type, { bucket: 'products', ...f }), 'VALIDATION_ERROR', 'Missing or invalid "filter": expected object');
      }
      if (filter !== undefined) {
        assertError(await c.err('store.count', { bucket: 'products', filter }), 'VALIDATION_ERROR', 'Missing or invalid "filter": expected object');
      }
    }
  });

  test('subscribe / unsubscribe field messages, unknown query → QUERY_NOT_DEFINED, unknown id → NOT_FOUND', T, async () => {
    assertError(await c.err('store.subscribe', {}), 'VALIDATION_ERROR', 'Missing or invalid "query": expected non-empty string');
    assertError(await c.err('store.subscribe', { query: 7 }), 'VALIDATION_ERROR', 'Missing or invalid "query": expected non-empty string');
    const q = await c.err('store.subscribe', { query: 'no-such-query' });
    assertError(q, 'QUERY_NOT_DEFINED');
    assert.match(q.message, /no-such-query/);
    assertError(await c.err('store.unsubscribe', {}), 'VALIDATION_ERROR', 'Missing or invalid "subscriptionId": expected non-empty string');
    assertError(await c.err('store.unsubscribe', { subscriptionId: 'sub-999' }), 'NOT_FOUND');
  });

  test('an unknown store operation → UNKNOWN_OPERATION `Unknown operation "store.upsert"`', T, async () => {
    assertError(await c.err('store.upsert', { bucket: 'products' }), 'UNKNOWN_OPERATION', 'Unknown operation "store.upsert"');
  });

  test('error answers carry the request id', T, async () => {
    const m = await c.call('store.get', { bucket: 'ghosts', key: 'x' });
    assert.equal(m.type, 'error');
    assert.ok(Number.isInteger(m.id) && m.id > 0);
  });
});

describe('filters: extension operators and validation', () => {
  const ids = (recs) => recs.map((r) => r.id);

  test('$lt, $lte, $gt, $gte on numbers', T, async () => {
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { price: { $lt: 20 } } })), ['a']);
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { price: { $lte: 20 } } })), ['a', 'b']);
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { price: { $gt: 20 } } })), ['c']);
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { price: { $gte: 20 } } })), ['b', 'c']);
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { price: { $gt: 10, $lt: 30.5 } } })), ['b']);
  });

  test('$ne and $in (strings and numbers), combined with equality', T, async () => {
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { cat: { $ne: 'x' } } })), ['c', 'd']);
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { price: { $in: [10, 30.5, 99] } } })), ['a', 'c']);
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'nums', filter: { cat: { $in: ['y'] }, price: { $gte: 0 } } })), ['c']);
    assert.deepEqual(ids(await c.ok('store.where', { bucket: 'products', filter: { category: { $in: ['home', 'garden'] }, active: true } })), ['p3']);
  });

  test('operators work in count, findOne and the aggregations', T, async () => {
    assert.equal(await c.ok('store.count', { bucket: 'pages', filter: { n: { $gt: 20 } } }), 5);
    assert.equal((await c.ok('store.findOne', { bucket: 'pages', filter: { n: { $gte: 7 }, grp: 0 } })).n, 9);
    assert.equal(await c.ok('store.sum', { bucket: 'pages', field: 'n', filter: { n: { $lte: 4 } } }), 10);
    assert.equal(await c.ok('store.max', { bucket: 'pages', field: 'n', filter: { n: { $lt: 13 } } }), 12);
  });

  test('an unknown field in a filter → VALIDATION_ERROR naming it', T, async () => {
    for (const type of ['store.where', 'store.findOne', 'store.count']) {
      const e = await c.err(type, { bucket: 'products', filter: { colour: 'red' } });
      assertError(e, 'VALIDATION_ERROR');
      assert.match(e.message, /colour/);
    }
  });

  test('a value of the wrong type → VALIDATION_ERROR', T, async () => {
    const bad = [
      { price: 'cheap' },
      { price: [1] },
      { active: 'yes' },
      { title: 5 },
      { price: { $lt: 'x' } },
      { price: { $lt: true } },
      { price: { $in: [10, 'x'] } },
      { price: { $in: 10 } },
      { price: { $in: [] } },
      { category: { $ne: 3 } },
      { price: { $regex: '.*' } },
      { price: {} },
    ];
    for (const filter of bad) {
      assertError(await c.err('store.where', { bucket: 'products', filter }), 'VALIDATION_ERROR', undefined);
    }
  });

  test('$in with more than 1000 values is refused', T, async () => {
    const values = Array.from({ length: 1001 }, (_, i) => `c${i}`);
    assertError(await c.err('store.where', { bucket: 'products', filter: { category: { $in: values } } }), 'VALIDATION_ERROR');
  });
});

describe('hostile input', () => {
  const SQLISH = ["x' OR '1'='1", "'; DROP TABLE products; --", '"; DROP TABLE products; --', "p1' --", '1 OR 1=1', "\\'; DELETE FROM products; --"];

  test('SQL-looking filter values and keys are plain values: no match, table intact', T, async () => {
    const before = await c.ok('store.count', { bucket: 'products' });
    for (const s of SQLISH) {
      assert.deepEqual(await c.ok('store.where', { bucket: 'products', filter: { title: s } }), []);
      assert.deepEqual(await c.ok('store.where', { bucket: 'products', filter: { id: s } }), []);
      assert.equal(await c.ok('store.findOne', { bucket: 'products', filter: { category: { $in: [s] } } }), null);
      assert.equal(await c.ok('store.get', { bucket: 'products', key: s }), null);
      assert.deepEqual(await c.ok('store.delete', { bucket: 'products', key: s }), { deleted: true });
      assertError(await c.err('store.update', { bucket: 'products', key: s, data: { price: 0 } }), 'NOT_FOUND');
    }
    assert.equal(await c.ok('store.count', { bucket: 'products' }), before);
    assert.equal((await c.ok('store.get', { bucket: 'products', key: 'p1' })).id, 'p1');
  });

  test('SQL-looking strings are stored and read back verbatim', T, async () => {
    for (const [i, s] of SQLISH.entries()) {
      const id = `sql-${i}-${s}`;
      const r = await c.ok('store.insert', { bucket: 'products', data: { id, title: s, price: 1, category: s } });
      assert.equal(r.title, s);
      assert.equal((await c.ok('store.get', { bucket: 'products', key: id })).category, s);
      assert.deepEqual((await c.ok('store.where', { bucket: 'products', filter: { title: s } })).map((x) => x.id), [id]);
    }
  });

  test('SQL-looking field names and bucket names are refused, not executed', T, async () => {
    for (const s of SQLISH) {
      assertError(await c.err('store.where', { bucket: 'products', filter: { [s]: 1 } }), 'VALIDATION_ERROR');
      assertError(await c.err('store.sum', { bucket: 'products', field: s }), 'VALIDATION_ERROR');
      assertError(await c.err('store.all', { bucket: s }), 'BUCKET_NOT_DEFINED');
    }
    assert.ok((await c.ok('store.count', { bucket: 'products' })) >= 4);
  });

  test('bucket names that are not identifiers are refused at defineBucket', T, async () => {
    const cfg = { key: 'id', schema: { id: { type: 'string' } } };
    const bad = ['bad name', '1abc', 'a.b', 'x"y', "x'y", 'a;b', 'sqlite_master', 'sqlite_x', '-a', '_a', 'a'.repeat(64), 'é', 'a b', 'a/b', 'x"; DROP TABLE products; --'];
    for (const name of bad) {
      const e = await c.err('store.defineBucket', { name, config: cfg });
      assertError(e, 'VALIDATION_ERROR');
    }
    assert.deepEqual(
      (await c.ok('store.buckets')).names.filter((n) => bad.includes(n)),
      [],
    );
    // Identifier-like names are fine (letters, digits, _ and -).
    for (const name of ['A1', 'order_items', 'order-items', 'a'.repeat(63)]) {
      assert.deepEqual(await c.ok('store.defineBucket', { name, config: cfg }), { name, defined: true });
    }
    await c.ok('store.insert', { bucket: 'order-items', data: { id: 'x' } });
    assert.equal(await c.ok('store.count', { bucket: 'order-items' }), 1);
  });

  test('field names that are not identifiers are refused at defineBucket (schema, key, indexes)', T, async () => {
    const badFields = ['bad field', '1x', 'a-b', 'a.b', 'x"y', "a'b", '_hidden', '_version', 'a;b', 'é', 'a'.repeat(64)];
    for (const [i, f] of badFields.entries()) {
      const e = await c.err('store.defineBucket', { name: `bf${i}`, config: { key: 'id', schema: { id: { type: 'string' }, [f]: { type: 'string' } } } });
      assertError(e, 'VALIDATION_ERROR');
    }
    assertError(await c.err('store.defineBucket', { name: 'bfk', config: { key: 'a"b', schema: {} } }), 'VALIDATION_ERROR');
    assertError(await c.err('store.updateBucket', { name: 'scratch', updates: { fields: { 'x y': { type: 'string' } } } }), 'VALIDATION_ERROR');
    assert.equal((await c.ok('store.buckets')).names.some((n) => /^bf/.test(n)), false);
  });

  test('a large record (500 KB string, 2000 fields) is stored and read back intact', T, async () => {
    const big = 'x'.repeat(500 * 1024);
    const many = {};
    for (let i = 0; i < 2000; i++) many[`f${i}`] = i;
    const r = await c.ok('store.insert', { bucket: 'products', data: { id: 'huge', title: 'H', price: 1, big, many } });
    assert.equal(r.big.length, big.length);
    const g = await c.ok('store.get', { bucket: 'products', key: 'huge' });
    assert.equal(g.big, big);
    assert.deepEqual(g.many, many);
    await c.ok('store.delete', { bucket: 'products', key: 'huge' });
  });

  test('nested data within the depth limit is stored; nesting deeper than 64 → PARSE_ERROR id 0', T, async () => {
    /* depth: the number of nested containers, the request object being level 1. */
    const nest = (k) => '['.repeat(k) + ']'.repeat(k);
    const frame = (id, k) => `{"id":${id},"type":"store.insert","bucket":"products","data":{"id":"deep-${k}","title":"t","price":1,"x":${nest(k)}}}`;
    // 2 (request, data) + 62 = 64 levels: accepted.
    const ok = await c.raw(frame(9001, 62));
    assert.equal(ok.type, 'result', JSON.stringify(ok).slice(0, 300));
    assert.deepEqual(ok.data.x, JSON.parse(nest(62)));
    for (const k of [64, 100, 1000]) {
      const m = await c.raw(frame(9002 + k, k));
      assert.deepEqual({ id: m.id, type: m.type, code: m.code }, { id: 0, type: 'error', code: 'PARSE_ERROR' }, `depth ${k + 2}`);
    }
    assert.equal(await c.ok('store.get', { bucket: 'products', key: 'deep-64' }), null);
    // The connection still works.
    assert.equal((await c.ok('store.get', { bucket: 'products', key: 'p1' })).id, 'p1');
  });

  test('exactly 65 levels of nesting is already "deeper than 64" → PARSE_ERROR', T, async () => {
    const nest = (k) => '['.repeat(k) + ']'.repeat(k);
    const m = await c.raw(`{"id":9100,"type":"store.insert","bucket":"products","data":{"id":"deep-65","title":"t","price":1,"x":${nest(63)}}}`);
    assert.deepEqual({ id: m.id, type: m.type, code: m.code }, { id: 0, type: 'error', code: 'PARSE_ERROR' }, `65 levels accepted: ${JSON.stringify(m).slice(0, 200)}`);
  });
});
