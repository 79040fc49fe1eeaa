// Group commit seen from a client: requests that arrive in one read share one database
// commit, and every answer comes back — also when a bucket definition in the same read
// commits the batch early.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { encodeFrame, wsRawWelcomed } from './helpers.mjs';
import { STARTUP_MS, T, shopConfig, startStore } from './store-helpers.mjs';

let srv;

before(async () => {
  srv = await startStore(shopConfig());
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  await srv?.stopAndCheck();
});

const frame = (msg) => encodeFrame({ payload: Buffer.from(JSON.stringify(msg)) });

async function answers(sock, n) {
  const got = [];
  while (got.length < n) got.push(await sock.readJson(3000));
  return got;
}

test('writes and a bucket definition sent in one packet are all answered, in order', T, async () => {
  const sock = await wsRawWelcomed(srv.port);
  try {
    const batch = Buffer.concat([
      frame({ id: 1, type: 'store.insert', bucket: 'products', data: { id: 'g1', title: 'G1', price: 1 } }),
      frame({ id: 2, type: 'store.update', bucket: 'products', key: 'p1', data: { stock: 7 } }),
      frame({ id: 3, type: 'store.defineBucket', name: 'notes', config: { key: 'id', schema: { id: { type: 'string' } } } }),
      frame({ id: 4, type: 'store.insert', bucket: 'notes', data: { id: 'n1' } }),
      frame({ id: 5, type: 'store.update', bucket: 'products', key: 'nope', data: { stock: 1 } }),
      frame({ id: 6, type: 'store.get', bucket: 'products', key: 'g1' }),
    ]);
    sock.write(batch);
    const got = await answers(sock, 6);
    assert.deepEqual(got.map((m) => m.id), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(got.map((m) => m.type), ['result', 'result', 'result', 'result', 'error', 'result']);
    assert.equal(got[4].code, 'NOT_FOUND');
    assert.equal(got[5].data.id, 'g1', 'a read after a write in the same batch sees it');
  } finally {
    sock.destroy();
  }
});

test('what a batch acknowledged is stored: a second connection reads every write', T, async () => {
  const sock = await wsRawWelcomed(srv.port);
  try {
    const writes = [];
    for (let i = 0; i < 50; i++) {
      writes.push(frame({ id: i + 1, type: 'store.insert', bucket: 'products', data: { id: `b${i}`, title: 'B', price: i } }));
    }
    sock.write(Buffer.concat(writes));
    const got = await answers(sock, 50);
    assert.ok(got.every((m) => m.type === 'result'));
    const other = await wsRawWelcomed(srv.port);
    try {
      other.write(frame({ id: 1, type: 'store.count', bucket: 'products', filter: { title: 'B' } }));
      const c = await other.readJson(3000);
      assert.equal(c.data, 50);
    } finally {
      other.destroy();
    }
  } finally {
    sock.destroy();
  }
});
