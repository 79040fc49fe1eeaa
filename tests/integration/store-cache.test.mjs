// The record cache seen from clients: repeated gets are answered from it (counted in
// /metrics), and no write path — update, delete, clear, a transaction, a rolled-back
// transaction, writes in the same batch as the read, a redefined bucket — ever leaves a
// get answering an older version than the database holds.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { encodeFrame, metricValue, scrape, wsRawWelcomed } from './helpers.mjs';
import { STARTUP_MS, T, assertError, shopConfig, startStore, storeClient } from './store-helpers.mjs';

let srv;
let c;

before(async () => {
  srv = await startStore(shopConfig());
  c = await storeClient(srv);
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  c?.close();
  await srv?.stopAndCheck();
});

async function cacheCounts() {
  const samples = await scrape(srv.port);
  const hit = metricValue(samples, 'shopd_store_cache_total', { result: 'hit' });
  const miss = metricValue(samples, 'shopd_store_cache_total', { result: 'miss' });
  assert.notEqual(hit, undefined, '/metrics lacks shopd_store_cache_total{result="hit"}');
  assert.notEqual(miss, undefined, '/metrics lacks shopd_store_cache_total{result="miss"}');
  return { hit, miss };
}

const get = (key) => c.ok('store.get', { bucket: 'products', key });

describe('record cache', () => {
  test('a repeated get is a hit; the first is a miss', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'rc1', title: 'A', price: 1 } });
    const before = await cacheCounts();
    const a = await get('rc1');
    const b = await get('rc1');
    const d = await get('rc1');
    assert.deepEqual(b, a);
    assert.deepEqual(d, a);
    const now = await cacheCounts();
    assert.equal(now.miss - before.miss, 1);
    assert.equal(now.hit - before.hit, 2);
  });

  test('update, delete and clear are seen by the next get', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'rc2', title: 'A', price: 1 } });
    assert.equal((await get('rc2')).price, 1);
    await get('rc2'); // cached
    await c.ok('store.update', { bucket: 'products', key: 'rc2', data: { price: 2 } });
    const after = await get('rc2');
    assert.equal(after.price, 2);
    assert.equal(after._version, 2);
    assert.equal((await get('rc2')).price, 2);
    await c.ok('store.delete', { bucket: 'products', key: 'rc2' });
    assert.equal(await get('rc2'), null);
    await c.ok('store.insert', { bucket: 'products', data: { id: 'rc2', title: 'Again', price: 3 } });
    assert.equal((await get('rc2')).title, 'Again');
    // The cache now holds the new row; updates and deletes find their row through it.
    await c.ok('store.update', { bucket: 'products', key: 'rc2', data: { price: 4 } });
    const rows = await c.ok('store.where', { bucket: 'products', filter: { id: 'rc2' } });
    assert.deepEqual(rows.map((r) => [r.title, r.price, r._version]), [['Again', 4, 2]]);
    assert.equal((await get('rc2')).price, 4); // cached again, so the delete finds its row there
    await c.ok('store.delete', { bucket: 'products', key: 'rc2' });
    assert.equal(await c.ok('store.count', { bucket: 'products', filter: { id: 'rc2' } }), 0);
  });

  test('a committed transaction is seen; a failed one leaves the cached record as it was', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'rc3', title: 'T', price: 1 } });
    await get('rc3');
    await get('rc3');
    await c.ok('store.transaction', { operations: [{ op: 'update', bucket: 'products', key: 'rc3', data: { price: 5 } }] });
    assert.equal((await get('rc3')).price, 5);
    // Update, read it back inside the transaction, then fail: everything rolls back.
    const r = await c.call('store.transaction', {
      operations: [
        { op: 'update', bucket: 'products', key: 'rc3', data: { price: 9 } },
        { op: 'get', bucket: 'products', key: 'rc3' },
        { op: 'update', bucket: 'products', key: 'missing-record', data: { price: 1 } },
      ],
    });
    assertError(r, 'NOT_FOUND');
    const now = await get('rc3');
    assert.equal(now.price, 5);
    assert.equal(now._version, 2);
    assert.equal((await get('rc3')).price, 5);
  });

  test('a get in the same read as the writes before it answers what they wrote', T, async () => {
    await c.ok('store.insert', { bucket: 'products', data: { id: 'rc4', title: 'B', price: 1 } });
    await get('rc4');
    const frame = (msg) => encodeFrame({ payload: Buffer.from(JSON.stringify(msg)) });
    const sock = await wsRawWelcomed(srv.port);
    try {
      sock.write(
        Buffer.concat([
          frame({ id: 1, type: 'store.get', bucket: 'products', key: 'rc4' }),
          frame({ id: 2, type: 'store.update', bucket: 'products', key: 'rc4', data: { price: 2 } }),
          frame({ id: 3, type: 'store.get', bucket: 'products', key: 'rc4' }),
          frame({ id: 4, type: 'store.update', bucket: 'products', key: 'rc4', data: { price: 3 } }),
          frame({ id: 5, type: 'store.get', bucket: 'products', key: 'rc4' }),
        ]),
      );
      const got = [];
      while (got.length < 5) got.push(await sock.readJson(3000));
      assert.deepEqual(got.map((m) => m.id), [1, 2, 3, 4, 5]);
      assert.deepEqual([got[0], got[2], got[4]].map((m) => m.data.price), [1, 2, 3]);
    } finally {
      sock.destroy();
    }
    assert.equal((await get('rc4')).price, 3);
  });

  test('clear and a redefined bucket leave nothing stale behind', T, async () => {
    await c.ok('store.defineBucket', { name: 'rcnotes', config: { key: 'id', schema: { id: { type: 'string' }, text: { type: 'string' } } } });
    await c.ok('store.insert', { bucket: 'rcnotes', data: { id: 'n1', text: 'one' } });
    await c.ok('store.get', { bucket: 'rcnotes', key: 'n1' });
    await c.ok('store.clear', { bucket: 'rcnotes' });
    assert.equal(await c.ok('store.get', { bucket: 'rcnotes', key: 'n1' }), null);
    await c.ok('store.insert', { bucket: 'rcnotes', data: { id: 'n1', text: 'two' } });
    assert.equal((await c.ok('store.get', { bucket: 'rcnotes', key: 'n1' })).text, 'two');
    await c.ok('store.dropBucket', { name: 'rcnotes' });
    await c.ok('store.defineBucket', { name: 'rcnotes', config: { key: 'id', schema: { id: { type: 'string' } } } });
    assert.equal(await c.ok('store.get', { bucket: 'rcnotes', key: 'n1' }), null);
  });

  test('numeric keys: 7 and 7.0 are one record for the cache, and a write through either is seen', T, async () => {
    await c.ok('store.defineBucket', { name: 'rcnum', config: { key: 'n', schema: { n: { type: 'number' }, v: { type: 'string' } } } });
    await c.ok('store.insert', { bucket: 'rcnum', data: { n: 7, v: 'seven' } });
    // JSON.stringify writes 7.0 as 7, so the real-number key goes out as raw text.
    const raw = (id, type, rest) => encodeFrame({ payload: Buffer.from(`{"id":${id},"type":"${type}","bucket":"rcnum","key":7.0${rest}}`) });
    const sock = await wsRawWelcomed(srv.port);
    try {
      const before = await cacheCounts();
      assert.equal((await c.ok('store.get', { bucket: 'rcnum', key: 7 })).v, 'seven'); // fills the cache
      sock.write(raw(1, 'store.get', ''));
      assert.equal((await sock.readJson(3000)).data.v, 'seven');
      const mid = await cacheCounts();
      assert.equal(mid.miss - before.miss, 1, 'the get by 7 misses');
      assert.equal(mid.hit - before.hit, 1, 'the get by 7.0 hits the same entry');
      sock.write(raw(2, 'store.update', ',"data":{"v":"SEVEN"}'));
      assert.equal((await sock.readJson(3000)).type, 'result');
      assert.equal((await c.ok('store.get', { bucket: 'rcnum', key: 7 })).v, 'SEVEN');
    } finally {
      sock.destroy();
    }
    assertError(await c.call('store.get', { bucket: 'rcnum', key: '7' }), 'VALIDATION_ERROR');
  });
});
