// Durability of checkouts on the shipped config: 128 checkouts sent at once, so that the
// turns taking them in hold 32 writes or more, which the database's writer thread
// commits (docs/internals/db.md), then kill -9 as soon as the last answer has arrived. After a
// restart on the same data directory every acknowledged order is there, paid, with its
// ledger entry and audit entry; stock went down by exactly the units ordered; every
// wallet balance still equals the sum of its ledger entries.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { STARTUP_MS, makeTempDir, startServer } from './helpers.mjs';
import { assertLedgerInvariant, getRecord, proc, shopClient, shutdown, writeConfigCopy } from './shop-helpers.mjs';

const TT = { timeout: 4 * STARTUP_MS + 20000 };
const STOCK = 1000;
const PER_CONN = { alice: 20, bob: 12 }; // 4 connections each: 128 checkouts of 4 500 USD

const cfg = writeConfigCopy((c) => {
  delete c.rateLimit; // the burst is far above the shipped per-minute limit
  c.seed.products.find((p) => p.id === 'prod-2').stock = STOCK;
});
const dataDir = makeTempDir('shopd-durability-');
after(() => {
  cfg.remove();
  if (!process.env.SHOPD_KEEP_TMP) fs.rmSync(dataDir, { recursive: true, force: true });
});

const start = () =>
  startServer({ configArg: false, dataDirArg: false, args: ['--config', cfg.path, '--data-dir', path.join(dataDir, 'data')] });

describe('kill -9 right after a burst of acknowledged checkouts', () => {
  test('every acknowledged checkout is there after a restart, with its money and stock', TT, async () => {
    const acknowledged = [];
    let srv = await start();
    const clients = [];
    try {
      for (const who of ['alice', 'bob']) for (let i = 0; i < 4; i++) clients.push({ who, c: await shopClient(srv, who) });
      const answers = await Promise.all(
        clients.flatMap(({ who, c }) =>
          Array.from({ length: PER_CONN[who] }, () =>
            proc(c, 'checkout', { walletCurrency: 'USD', items: [{ productId: 'prod-2', quantity: 1 }] }, 10000),
          ),
        ),
      );
      srv.signal('SIGKILL'); // at once: no shutdown, no checkpoint
      for (const m of answers) {
        assert.equal(m.type, 'result', `a checkout failed: ${JSON.stringify(m).slice(0, 500)}`);
        acknowledged.push(m.data);
      }
    } finally {
      srv.signal('SIGKILL');
      await srv.exited;
      for (const { c } of clients) c.terminate();
      await srv.stop();
    }
    assert.equal(srv.exitInfo.signal, 'SIGKILL');
    assert.equal(acknowledged.length, 4 * (PER_CONN.alice + PER_CONN.bob));

    srv = await start();
    const admin = await shopClient(srv, 'admin');
    try {
      for (const o of acknowledged) {
        const stored = await getRecord(admin, 'orders', o.id);
        assert.ok(stored, `acknowledged order ${o.id} is missing after the restart`);
        assert.equal(stored.status, 'paid');
        assert.equal(stored.totalMinor, o.totalMinor);
      }
      const ledger = (await assertLedgerInvariant(admin)).ledger;
      const audit = await admin.ok('store.all', { bucket: 'audit-logs' });
      for (const o of acknowledged) {
        assert.equal(ledger.filter((e) => e.orderId === o.id && e.kind === 'payment').length, 1, `payment of ${o.id}`);
        assert.equal(audit.filter((e) => e.action === 'order_placed' && e.details.orderId === o.id).length, 1, `audit of ${o.id}`);
      }
      const orders = await admin.ok('store.all', { bucket: 'orders' });
      const units = orders.reduce((n, o) => n + o.items.reduce((m, l) => m + (l.productId === 'prod-2' ? l.quantity : 0), 0), 0);
      assert.equal(units, acknowledged.length, 'no order beyond the acknowledged ones was left half-written');
      assert.equal((await getRecord(admin, 'products', 'prod-2')).stock, STOCK - units);
    } finally {
      await shutdown(srv, admin);
    }
  });
});
