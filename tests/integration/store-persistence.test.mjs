// Store persistence against the real binary: restarts after SIGTERM and after kill -9
// right after an acknowledged write, seed applied once, definitions made at run time
// surviving a restart, `shopd migrate`, and the SQLite file itself (one real table per
// bucket with typed columns and ordinary indexes).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { STARTUP_MS, makeTempDir, runCli } from './helpers.mjs';
import {
  PRODUCTS,
  SEED_PRODUCTS,
  assertError,
  shopConfig,
  sqlite,
  sqliteJson,
  startOnDataDir,
  startStore,
  storeClient,
} from './store-helpers.mjs';

/* Each test here starts and stops servers itself. */
const TT = { timeout: 4 * STARTUP_MS + 10000 };

const dirs = [];
function dataDir() {
  const d = makeTempDir('shopd-store-data-');
  dirs.push(d);
  return d;
}
after(() => {
  if (process.env.SHOPD_KEEP_TMP) return;
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const CONFIG = shopConfig({
  buckets: {
    orders: { key: 'no', schema: { no: { type: 'number', generated: 'autoincrement' }, total: { type: 'number' } } },
  },
  queries: { 'all-products': { bucket: 'products', op: 'all' } },
});

/* Runs fn(server, client) on a server over dir, then stops it with SIGTERM (clean exit). */
async function withServer(dir, config, fn) {
  const srv = await startOnDataDir(dir, config);
  const c = await storeClient(srv);
  try {
    return await fn(srv, c);
  } finally {
    c.close();
    await srv.stopAndCheck();
  }
}

/* Starts a server over dir, runs fn, then kills it with SIGKILL (no shutdown at all). */
async function withKilledServer(dir, config, fn) {
  const srv = await startOnDataDir(dir, config);
  const c = await storeClient(srv);
  try {
    return await fn(srv, c);
  } finally {
    srv.signal('SIGKILL');
    await srv.exited;
    c.terminate();
    await srv.stop();
    assert.equal(srv.exitInfo.signal, 'SIGKILL');
  }
}

const dump = async (c) => ({
  products: await c.ok('store.all', { bucket: 'products' }),
  orders: await c.ok('store.all', { bucket: 'orders' }),
});

describe('restart after SIGTERM', () => {
  test('records, metadata, insertion order and deletions survive; autoincrement continues', TT, async () => {
    const dir = dataDir();
    const before = await withServer(dir, CONFIG, async (srv, c) => {
      await c.ok('store.insert', { bucket: 'products', data: { id: 'r1', title: 'Restart', price: 5 } });
      await c.ok('store.update', { bucket: 'products', key: 'p1', data: { stock: 99 } });
      await c.ok('store.update', { bucket: 'products', key: 'p1', data: { price: 12 } });
      await c.ok('store.delete', { bucket: 'products', key: 'p2' });
      await c.ok('store.insert', { bucket: 'orders', data: { total: 1 } });
      await c.ok('store.insert', { bucket: 'orders', data: { total: 2 } });
      await c.ok('store.transaction', {
        operations: [
          { op: 'insert', bucket: 'orders', data: { total: 3 } },
          { op: 'update', bucket: 'products', key: 'p3', data: { stock: 0 } },
        ],
      });
      return dump(c);
    });
    assert.deepEqual(before.products.map((r) => r.id), ['p1', 'p3', 'p4', 'r1']);
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.deepEqual(await dump(c), before);
      const p1 = await c.ok('store.get', { bucket: 'products', key: 'p1' });
      assert.equal(p1._version, 3);
      assert.equal(await c.ok('store.get', { bucket: 'products', key: 'p2' }), null);
      const o = await c.ok('store.insert', { bucket: 'orders', data: { total: 4 } });
      assert.equal(o.no, 4, 'autoincrement must continue after a restart, not reuse numbers');
      assert.deepEqual((await c.ok('store.stats')).records, { products: 4, orders: 4 });
    });
  });
});

describe('kill -9 right after an acknowledged write', () => {
  test('an acknowledged insert is there after SIGKILL and restart', TT, async () => {
    const dir = dataDir();
    let rec;
    await withKilledServer(dir, CONFIG, async (srv, c) => {
      rec = await c.ok('store.insert', { bucket: 'products', data: { id: 'k9', title: 'Killed', price: 9 } });
    });
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'k9' }), rec);
    });
  });

  test('acknowledged update, delete and transaction survive SIGKILL too', TT, async () => {
    const dir = dataDir();
    let up;
    let txr;
    await withKilledServer(dir, CONFIG, async (srv, c) => {
      up = await c.ok('store.update', { bucket: 'products', key: 'p1', data: { stock: 1 } });
      await c.ok('store.delete', { bucket: 'products', key: 'p2' });
      txr = await c.ok('store.transaction', {
        operations: [
          { op: 'insert', bucket: 'orders', data: { total: 10 } },
          { op: 'update', bucket: 'products', key: 'p3', data: { title: 'Lamp 2' } },
        ],
      });
    });
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'p1' }), up);
      assert.equal(await c.ok('store.get', { bucket: 'products', key: 'p2' }), null);
      assert.deepEqual(await c.ok('store.get', { bucket: 'orders', key: txr.results[0].data.no }), txr.results[0].data);
      assert.deepEqual(await c.ok('store.get', { bucket: 'products', key: 'p3' }), txr.results[1].data);
    });
  });

  test('a pipelined burst of 200 acknowledged inserts survives SIGKILL', TT, async () => {
    const dir = dataDir();
    let recs;
    await withKilledServer(dir, CONFIG, async (srv, c) => {
      recs = await Promise.all(
        Array.from({ length: 200 }, (_, i) => c.ok('store.insert', { bucket: 'products', data: { id: `b${i}`, title: 'B', price: i } })),
      );
    });
    await withServer(dir, CONFIG, async (srv, c) => {
      const all = await c.ok('store.where', { bucket: 'products', filter: { title: 'B' } });
      assert.equal(all.length, 200);
      assert.deepEqual(all, recs);
    });
  });
});

describe('seed', () => {
  test('inserted once: a restart neither duplicates it nor overwrites changes made to seeded records', TT, async () => {
    const dir = dataDir();
    await withServer(dir, CONFIG, async (srv, c) => {
      const all = await c.ok('store.all', { bucket: 'products' });
      assert.deepEqual(all.map((r) => r.id), SEED_PRODUCTS.map((r) => r.id));
      assert.ok(all.every((r) => r._version === 1));
      await c.ok('store.update', { bucket: 'products', key: 'p1', data: { title: 'Changed' } });
      await c.ok('store.delete', { bucket: 'products', key: 'p4' });
    });
    for (let i = 0; i < 2; i++) {
      await withServer(dir, CONFIG, async (srv, c) => {
        const all = await c.ok('store.all', { bucket: 'products' });
        assert.deepEqual(all.map((r) => r.id), ['p1', 'p2', 'p3']);
        assert.equal(all[0].title, 'Changed');
        assert.equal(all[0]._version, 2);
      });
    }
  });

  test('inserted once: deleting every record and restarting does not bring the seed back', TT, async () => {
    const dir = dataDir();
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.equal(await c.ok('store.count', { bucket: 'products' }), SEED_PRODUCTS.length);
      await c.ok('store.clear', { bucket: 'products' });
    });
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.deepEqual(
        (await c.ok('store.all', { bucket: 'products' })).map((r) => r.id),
        [],
        'the seed was inserted a second time into a store whose records had all been deleted',
      );
    });
  });

  test('seed records get defaults and metadata like any insert', TT, async () => {
    const dir = dataDir();
    await withServer(dir, CONFIG, async (srv, c) => {
      const p1 = await c.ok('store.get', { bucket: 'products', key: 'p1' });
      assert.equal(p1.active, true);
      assert.equal(p1._version, 1);
      assert.ok(Number.isInteger(p1._createdAt));
    });
  });

  test('an invalid seed record stops the start (exit 2, no half-seeded store)', TT, async () => {
    const dir = dataDir();
    const bad = shopConfig({ seed: { products: [SEED_PRODUCTS[0], { id: 'bad', price: -1 }] } });
    const r = await startOnDataDir(dir, bad).then(
      async (srv) => {
        await srv.stop();
        return { started: true };
      },
      (e) => ({ started: false, error: e.message }),
    );
    assert.equal(r.started, false, 'shopd started with an invalid seed');
    assert.match(r.error, /code=2/);
    await withServer(dir, CONFIG, async (srv, c) => {
      // The good config seeds a store the failed start left empty.
      assert.equal(await c.ok('store.count', { bucket: 'products' }), SEED_PRODUCTS.length);
    });
  });
});

describe('definitions made at run time persist', () => {
  const DEF = {
    key: 'id',
    schema: { id: { type: 'string', generated: 'uuid' }, name: { type: 'string', required: true }, qty: { type: 'number', min: 0 } },
    indexes: ['name'],
  };

  test('defineBucket, updateBucket (field + index), defineQuery survive a restart with a config that lacks them', TT, async () => {
    const dir = dataDir();
    let schema;
    let rec;
    await withServer(dir, CONFIG, async (srv, c) => {
      await c.ok('store.defineBucket', { name: 'widgets', config: DEF });
      rec = await c.ok('store.insert', { bucket: 'widgets', data: { name: 'W', qty: 1 } });
      await c.ok('store.updateBucket', { name: 'widgets', updates: { fields: { color: { type: 'string', enum: ['red', 'blue'] } }, indexes: ['color'] } });
      schema = await c.ok('store.getBucketSchema', { name: 'widgets' });
      await c.ok('store.defineQuery', { name: 'red-widgets', config: { bucket: 'widgets', op: 'where', filter: { color: 'red' } } });
      await c.ok('store.defineQuery', { name: 'doomed', config: { bucket: 'products', op: 'count' } });
      await c.ok('store.undefineQuery', { name: 'doomed' });
      await c.ok('store.defineBucket', { name: 'dropped', config: { key: 'id', schema: { id: { type: 'string' } } } });
      await c.ok('store.insert', { bucket: 'dropped', data: { id: 'x' } });
      await c.ok('store.dropBucket', { name: 'dropped' });
    });
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.ok((await c.ok('store.buckets')).names.includes('widgets'));
      assert.equal((await c.ok('store.buckets')).names.includes('dropped'), false);
      assertError(await c.err('store.all', { bucket: 'dropped' }), 'BUCKET_NOT_DEFINED');
      assert.deepEqual(await c.ok('store.getBucketSchema', { name: 'widgets' }), schema);
      assert.deepEqual(await c.ok('store.get', { bucket: 'widgets', key: rec.id }), rec);
      // The schema is enforced, the added field validated.
      assertError(await c.err('store.insert', { bucket: 'widgets', data: { qty: 1 } }), 'VALIDATION_ERROR');
      assertError(await c.err('store.insert', { bucket: 'widgets', data: { name: 'X', color: 'green' } }), 'VALIDATION_ERROR');
      await c.ok('store.insert', { bucket: 'widgets', data: { name: 'R', color: 'red' } });
      const q = (await c.ok('store.listQueries')).queries;
      assert.ok(q.includes('red-widgets'), JSON.stringify(q));
      assert.ok(q.includes('all-products'));
      assert.equal(q.includes('doomed'), false);
      const sub = await c.ok('store.subscribe', { query: 'red-widgets' });
      assert.deepEqual(sub.data.map((r) => r.name), ['R']);
      const plan = await sqlite(path.join(dir, 'shopd.db'), 'EXPLAIN QUERY PLAN SELECT _doc FROM widgets WHERE color = ?');
      assert.match(plan, /USING (COVERING )?INDEX/, plan);
    });
  });

  test('a runtime definition survives kill -9 as well', TT, async () => {
    const dir = dataDir();
    await withKilledServer(dir, CONFIG, async (srv, c) => {
      await c.ok('store.defineBucket', { name: 'gadgets', config: DEF });
      await c.ok('store.defineQuery', { name: 'all-gadgets', config: { bucket: 'gadgets', op: 'all' } });
      await c.ok('store.insert', { bucket: 'gadgets', data: { id: 'g1', name: 'G' } });
    });
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.equal((await c.ok('store.get', { bucket: 'gadgets', key: 'g1' })).name, 'G');
      assert.equal((await c.ok('store.subscribe', { query: 'all-gadgets' })).data.length, 1);
    });
  });
});

describe('shopd migrate', () => {
  test('exits 0 on a fresh data directory, again with nothing to do, and the server then starts on it', TT, async () => {
    const dir = dataDir();
    const r1 = await runCli(['migrate', '--data-dir', dir]);
    assert.equal(r1.code, 0, `stderr: ${r1.stderr}`);
    assert.ok(fs.existsSync(path.join(dir, 'shopd.db')));
    const r2 = await runCli(['migrate', '--data-dir', dir]);
    assert.equal(r2.code, 0, `stderr: ${r2.stderr}`);
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.equal(await c.ok('store.count', { bucket: 'products' }), SEED_PRODUCTS.length);
    });
  });

  test('exits 0 on a data directory in use by earlier runs and leaves the data intact', TT, async () => {
    const dir = dataDir();
    let before;
    await withServer(dir, CONFIG, async (srv, c) => {
      await c.ok('store.insert', { bucket: 'products', data: { id: 'm1', title: 'M', price: 1 } });
      before = await dump(c);
    });
    const cfgDir = dataDir();
    const cfg = path.join(cfgDir, 'config.json');
    fs.writeFileSync(cfg, JSON.stringify(CONFIG));
    const r = await runCli(['migrate', '--config', cfg, '--data-dir', dir]);
    assert.equal(r.code, 0, `stderr: ${r.stderr}`);
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.deepEqual(await dump(c), before);
    });
  });
});

describe('the SQLite file', () => {
  const CFG = shopConfig({
    buckets: {
      users: {
        key: 'id',
        schema: {
          id: { type: 'string' },
          email: { type: 'string', unique: true },
          age: { type: 'number' },
          admin: { type: 'boolean' },
          tags: { type: 'array' },
        },
      },
    },
  });

  test('each bucket is a real table with typed columns holding the record fields', TT, async () => {
    const dir = dataDir();
    const db = path.join(dir, 'shopd.db');
    await withServer(dir, CFG, async (srv, c) => {
      await c.ok('store.insert', { bucket: 'users', data: { id: 'u1', email: 'u1@x.io', age: 30, admin: true, tags: ['a'] } });
      // readable while the server runs
      const rows = await sqliteJson(db, 'SELECT title, price FROM products ORDER BY _rowid');
      assert.deepEqual(rows, SEED_PRODUCTS.map((p) => ({ title: p.title, price: p.price })));
    });
    const tables = (await sqliteJson(db, "SELECT name FROM sqlite_schema WHERE type = 'table'")).map((r) => r.name);
    assert.ok(tables.includes('products') && tables.includes('users'), JSON.stringify(tables));
    const cols = Object.fromEntries((await sqliteJson(db, 'PRAGMA table_xinfo(products)')).map((r) => [r.name, r.type.toUpperCase()]));
    for (const f of Object.keys(PRODUCTS.schema)) assert.ok(f in cols, `products has no column ${f}: ${JSON.stringify(cols)}`);
    assert.equal(cols.title, 'TEXT');
    assert.equal(cols.category, 'TEXT');
    assert.ok(['REAL', 'NUMERIC', 'INTEGER'].includes(cols.price), `price column type ${cols.price}`);
    assert.ok(['INTEGER', 'BOOLEAN', 'NUMERIC'].includes(cols.active), `active column type ${cols.active}`);
    const typed = await sqliteJson(db, "SELECT typeof(title) t, typeof(price) p, price, stock, active FROM products WHERE id = 'p4'");
    assert.deepEqual(typed, [{ t: 'text', p: 'real', price: 99.5, stock: 3, active: 0 }]);
    const u = await sqliteJson(db, "SELECT email, age, admin, tags FROM users WHERE id = 'u1'");
    assert.deepEqual(u, [{ email: 'u1@x.io', age: 30, admin: 1, tags: '["a"]' }]);
    // Every column holds what json_extract reads from the document (arrays as JSON text).
    const off = await sqliteJson(db, "SELECT count(*) n FROM users WHERE tags IS NOT json_extract(_doc, '$.tags') OR email IS NOT json_extract(_doc, '$.email')");
    assert.deepEqual(off, [{ n: 0 }]);
  });

  test('EXPLAIN QUERY PLAN uses the declared index; the key and unique fields have unique indexes', TT, async () => {
    const dir = dataDir();
    const db = path.join(dir, 'shopd.db');
    await withServer(dir, CFG, async () => {});
    const plan = await sqlite(db, 'EXPLAIN QUERY PLAN SELECT _doc FROM products WHERE category = ?');
    assert.match(plan, /SEARCH products USING (COVERING )?INDEX \S+ \(category=\?\)/, plan);
    const keyPlan = await sqlite(db, 'EXPLAIN QUERY PLAN SELECT _doc FROM products WHERE id = ?');
    assert.match(keyPlan, /USING (COVERING )?INDEX \S+ \(id=\?\)/, keyPlan);
    const idx = await sqliteJson(db, 'PRAGMA index_list(users)');
    const uniqueCols = [];
    for (const i of idx.filter((x) => x.unique === 1)) {
      for (const col of await sqliteJson(db, `PRAGMA index_info("${i.name.replace(/"/g, '""')}")`)) uniqueCols.push(col.name);
    }
    assert.deepEqual(uniqueCols.sort(), ['email', 'id']);
    // A field without an index is scanned (the index above is not an accident).
    const scan = await sqlite(db, 'EXPLAIN QUERY PLAN SELECT _doc FROM products WHERE title = ?');
    assert.match(scan, /SCAN products/, scan);
  });
});

describe('a store made by shopd 0.2 (typed columns generated from _doc)', () => {
  /* Rebuilds the products table the way 0.2 laid it out: every typed column
   * GENERATED ALWAYS AS (json_extract(_doc, '$.<name>')) VIRTUAL, same indexes. */
  async function toGeneratedLayout(db) {
    const cols = (await sqliteJson(db, 'PRAGMA table_xinfo(products)')).filter((c) => !['_rowid', '_doc'].includes(c.name));
    const indexes = (await sqliteJson(db, "SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'products' AND sql IS NOT NULL")).map((r) => r.sql);
    const defs = cols.map((c) => `"${c.name}" ${c.type} GENERATED ALWAYS AS (json_extract(_doc, '$.${c.name}')) VIRTUAL`);
    await sqlite(
      db,
      'BEGIN;' +
        `CREATE TABLE old_products (_rowid INTEGER PRIMARY KEY, _doc TEXT NOT NULL, ${defs.join(', ')});` +
        'INSERT INTO old_products (_rowid, _doc) SELECT _rowid, _doc FROM products;' +
        'DROP TABLE products; ALTER TABLE old_products RENAME TO products;' +
        indexes.map((x) => x + ';').join('') +
        'COMMIT;',
      { write: true },
    );
  }
  const generatedCount = async (db) =>
    (await sqliteJson(db, 'SELECT count(*) AS n FROM pragma_table_xinfo(\'products\') WHERE hidden IN (2, 3)'))[0].n;

  test('is rebuilt with plain columns at start: records, order, indexes and filters as before', TT, async () => {
    const dir = dataDir();
    const db = path.join(dir, 'shopd.db');
    let before;
    await withServer(dir, CONFIG, async (srv, c) => {
      await c.ok('store.delete', { bucket: 'products', key: SEED_PRODUCTS[1].id });
      await c.ok('store.insert', { bucket: 'products', data: { id: 'z9', title: 'Zed', price: 2.5, category: 'misc' } });
      before = await dump(c);
    });
    await toGeneratedLayout(db);
    assert.ok((await generatedCount(db)) > 0, 'the old layout was not made');
    await withServer(dir, CONFIG, async (srv, c) => {
      assert.deepEqual(await dump(c), before);
      const misc = await c.ok('store.where', { bucket: 'products', filter: { category: 'misc' } });
      assert.deepEqual(misc.map((r) => r.id), ['z9']);
      const added = await c.ok('store.insert', { bucket: 'products', data: { id: 'z10', title: 'After', price: 1, category: 'misc' } });
      assert.equal(added.id, 'z10');
      const all = await c.ok('store.all', { bucket: 'products' });
      assert.deepEqual(all.map((r) => r.id), [...before.products.map((r) => r.id), 'z10']);
      assertError(
        await c.call('store.insert', { bucket: 'products', data: { id: 'z9', title: 'Dup', price: 1 } }),
        'ALREADY_EXISTS',
      );
    });
    assert.equal(await generatedCount(db), 0);
    const rows = await sqliteJson(db, "SELECT id, title, price, typeof(price) AS t FROM products WHERE category = 'misc' ORDER BY _rowid");
    assert.deepEqual(rows, [
      { id: 'z9', title: 'Zed', price: 2.5, t: 'real' },
      { id: 'z10', title: 'After', price: 1, t: 'real' },
    ]);
    const plan = await sqlite(db, 'EXPLAIN QUERY PLAN SELECT _doc FROM products WHERE id = ?');
    assert.match(plan, /USING (COVERING )?INDEX \S+ \(id=\?\)/, plan);
  });
});

describe('a fresh start with --data-dir on a new directory', () => {
  test('creates shopd.db there and starts with the seed', TT, async () => {
    const srv = await startStore(CONFIG);
    try {
      assert.ok(fs.existsSync(path.join(srv.dataDir, 'shopd.db')));
      const c = await storeClient(srv);
      assert.equal(await c.ok('store.count', { bucket: 'products' }), SEED_PRODUCTS.length);
      c.close();
    } finally {
      await srv.stopAndCheck();
    }
  });
});
