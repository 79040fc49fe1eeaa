// The rules engine's event log keeps the newest eventLog.maxEvents events; ids go on
// counting across the pruning, across a restart and across migration 4 (the log of
// shopd 0.3.0 and before, with indexes on id and topic, loses them).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { makeTempDir } from './helpers.mjs';
import { STARTUP_MS, T, sqlite, startOnDataDir, startStore, storeClient } from './store-helpers.mjs';

let srv;
let c;

before(async () => {
  srv = await startStore({ eventLog: { maxEvents: 5 } });
  c = await storeClient(srv);
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  c?.close();
  await srv?.stopAndCheck();
});

test('the log is cut back to the configured size and ids keep counting', T, async () => {
  let last;
  for (let i = 0; i < 40; i++) last = await c.ok('rules.emit', { topic: 'audit.tick', data: { i } });
  assert.equal(last.id, 'evt-40');
  const db = path.join(srv.dataDir, 'shopd.db');
  const rows = Number((await sqlite(db, 'SELECT count(*) FROM _shopd_events')).trim());
  assert.ok(rows >= 5 && rows <= 10, `${rows} events kept, expected the newest 5 (pruned every 5)`);
  const newest = (await sqlite(db, 'SELECT id FROM _shopd_events ORDER BY seq DESC LIMIT 1')).trim();
  assert.equal(newest, 'evt-40');
  const stats = await c.ok('rules.stats');
  assert.equal(stats.eventsEmitted, 40);
});

test('a bad eventLog.maxEvents stops the start with its JSON path', T, async () => {
  await assert.rejects(startStore({ eventLog: { maxEvents: 0 } }), /\$\.eventLog\.maxEvents/);
});

test('a log made before migration 4 loses its indexes and keeps its ids counting', { timeout: 2 * STARTUP_MS + 10000 }, async () => {
  const dir = makeTempDir('shopd-eventlog-');
  const db = path.join(dir, 'shopd.db');
  try {
    let s = await startOnDataDir(dir, { eventLog: { maxEvents: 5 } });
    let cl = await storeClient(s);
    for (let i = 0; i < 3; i++) await cl.ok('rules.emit', { topic: 'audit.tick', data: { i } });
    cl.close();
    await s.stopAndCheck();
    // Put the layout of 0.3.0 back: unique id, an index on topic, migration 4 not applied,
    // and an AUTOINCREMENT counter ahead of the rows (the newest events were deleted).
    await sqlite(db, `BEGIN;
      CREATE TABLE old_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL, data TEXT NOT NULL, timestamp INTEGER NOT NULL,
        correlation_id TEXT, causation_id TEXT);
      INSERT INTO old_events SELECT * FROM _shopd_events;
      DROP TABLE _shopd_events;
      ALTER TABLE old_events RENAME TO _shopd_events;
      CREATE INDEX _shopd_events_topic ON _shopd_events(topic);
      UPDATE sqlite_sequence SET seq = 1000 WHERE name = '_shopd_events';
      DELETE FROM _shopd_migrations WHERE version = 4;
      COMMIT;`, { write: true });
    const indexes = async () =>
      (await sqlite(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = '_shopd_events'")).trim();
    assert.equal(await indexes(), '2', 'the old layout has its two indexes');
    s = await startOnDataDir(dir, { eventLog: { maxEvents: 5000 } }); /* nothing pruned */
    cl = await storeClient(s);
    try {
      assert.equal(await indexes(), '0');
      assert.equal((await sqlite(db, 'SELECT group_concat(id) FROM _shopd_events ORDER BY seq')).trim(), 'evt-1,evt-2,evt-3');
      assert.equal((await cl.ok('rules.emit', { topic: 'audit.tick', data: {} })).id, 'evt-1001');
    } finally {
      cl.close();
      await s.stopAndCheck();
    }
  } finally {
    if (!process.env.SHOPD_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  }
});
