// The rules engine's event log keeps the newest eventLog.maxEvents events; ids go on
// counting across the pruning and across a restart.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { STARTUP_MS, T, sqlite, startStore, storeClient } from './store-helpers.mjs';

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
