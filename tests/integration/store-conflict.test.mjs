// Optimistic concurrency (extension): "expectedVersion" on update and delete, alone and
// inside transactions, and racing clients that use it to lose no update.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { metricValue, scrape } from './helpers.mjs';
import { STARTUP_MS, T, assertError, shopConfig, startStore, storeClient } from './store-helpers.mjs';

let srv;
let c;

before(async () => {
  srv = await startStore(shopConfig({ seed: { products: [{ id: 'hot', title: 'Hot', price: 1, stock: 400 }] } }));
  c = await storeClient(srv);
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  c?.close();
  await srv?.stopAndCheck();
});

describe('expectedVersion', () => {
  test('an update of the version read applies; a stale one is CONFLICT and changes nothing', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'v1', title: 'V', price: 1, stock: 1 } });
    const r = await c.ok('store.update', { bucket: 'products', key: 'v1', data: { stock: 2 }, expectedVersion: 1 });
    assert.equal(r._version, 2);
    const e = await c.err('store.update', { bucket: 'products', key: 'v1', data: { stock: 3 }, expectedVersion: 1 });
    assertError(e, 'CONFLICT', /expected version 1, found 2/);
    assert.deepEqual(e.details, { expectedVersion: 1, actualVersion: 2 });
    const now = await c.ok('store.get', { bucket: 'products', key: 'v1' });
    assert.equal(now.stock, 2);
  });

  test('/metrics counts store writes, transactions and conflicts', T, async () => {
    const before = await scrape(srv.port);
    await c.ok('store.insert', { bucket: 'products', data: { id: 'm1', title: 'M', price: 1 } });
    await c.ok('store.transaction', { operations: [{ op: 'update', bucket: 'products', key: 'm1', data: { stock: 1 } }] });
    await c.err('store.update', { bucket: 'products', key: 'm1', data: { stock: 2 }, expectedVersion: 1 });
    await c.ok('store.get', { bucket: 'products', key: 'm1' });
    const after = await scrape(srv.port);
    const delta = (name, labels) => metricValue(after, name, labels) - metricValue(before, name, labels);
    assert.equal(delta('shopd_store_operations_total', { kind: 'write' }), 2);
    assert.equal(delta('shopd_store_transactions_total'), 1);
    assert.equal(delta('shopd_store_conflicts_total'), 1);
    assert.ok(delta('shopd_store_operations_total', { kind: 'read' }) >= 1);
  });

  test('a stale delete is CONFLICT; a bad expectedVersion is VALIDATION_ERROR', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'v2', title: 'V', price: 1 } });
    assertError(await c.err('store.delete', { bucket: 'products', key: 'v2', expectedVersion: 7 }), 'CONFLICT');
    assert.ok(await c.ok('store.get', { bucket: 'products', key: 'v2' }));
    assertError(await c.err('store.delete', { bucket: 'products', key: 'v2', expectedVersion: 'x' }), 'VALIDATION_ERROR',
      /expectedVersion/);
    assert.deepEqual(await c.ok('store.delete', { bucket: 'products', key: 'v2', expectedVersion: 1 }), { deleted: true });
  });

  test('inside a transaction a stale operation rolls back the whole transaction', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'v3', title: 'V', price: 1, stock: 5 } });
    const e = await c.err('store.transaction', {
      operations: [
        { op: 'insert', bucket: 'products', data: { id: 'v4', title: 'W', price: 1 } },
        { op: 'update', bucket: 'products', key: 'v3', data: { stock: 4 }, expectedVersion: 9 },
      ],
    });
    assertError(e, 'CONFLICT', /^operations\[1\]: /);
    assert.equal(e.details.index, 1);
    assert.equal(await c.ok('store.get', { bucket: 'products', key: 'v4' }), null);
  });

  test('8 racing clients × 50 read-modify-write updates lose no update', { timeout: 30000 }, async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => storeClient(srv)));
    let successes = 0;
    let conflicts = 0;
    await Promise.all(
      clients.map(async (cl) => {
        for (let done = 0; done < 50; ) {
          const rec = await cl.ok('store.get', { bucket: 'products', key: 'hot' });
          const m = await cl.call('store.update', {
            bucket: 'products', key: 'hot', data: { stock: rec.stock - 1 }, expectedVersion: rec._version,
          });
          if (m.type === 'result') {
            successes++;
            done++;
          } else {
            assert.equal(m.code, 'CONFLICT');
            conflicts++;
          }
        }
      }),
    );
    for (const cl of clients) cl.close();
    const end = await c.ok('store.get', { bucket: 'products', key: 'hot' });
    assert.equal(successes, 400);
    assert.equal(end.stock, 0, 'every successful update is accounted for in stock');
    assert.equal(end._version, 401, 'every update bumped the version exactly once');
  });
});
