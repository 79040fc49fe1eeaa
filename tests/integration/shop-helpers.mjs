// Fixtures for the e-commerce integration tests (docs/ecommerce.md): start shopd on the
// shipped config/ecommerce.json (or a modified copy), log clients in with the
// development tokens, call procedures, wait for specific pushes.
//
// Builds on helpers.mjs and store-helpers.mjs (owned by others) without changing them.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { ROOT, SLACK_MS, makeTempDir, sleep, startServer } from './helpers.mjs';
import { storeClient } from './store-helpers.mjs';

export { sleep, SLACK_MS };

/* The shipped application config (what `make run` starts). */
export const SHIPPED_CONFIG = path.join(ROOT, 'config/ecommerce.json');

export const TOKENS = {
  alice: 'customer-token-alice',
  bob: 'customer-token-bob',
  admin: 'admin-token',
};
export const USERS = { alice: 'user-alice', bob: 'user-bob', admin: 'admin-1' };

export function readShippedConfig() {
  return JSON.parse(fs.readFileSync(SHIPPED_CONFIG, 'utf8'));
}

/* Writes a modified copy of the shipped config to a temp file; returns
 * { path, dir, remove() }. `modify(cfg)` edits the parsed object in place. */
export function writeConfigCopy(modify) {
  const cfg = readShippedConfig();
  modify(cfg);
  const dir = makeTempDir('shopd-ecom-cfg-');
  const p = path.join(dir, 'ecommerce.json');
  fs.writeFileSync(p, JSON.stringify(cfg, null, 2));
  return { path: p, dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/* Starts shopd serve --config <configPath> --host 127.0.0.1 --port 0 --data-dir <fresh
 * temp dir>. The config file is passed as is (startServer's own config.json is not
 * used), so the shipped file runs unchanged except for host/port/dataDir. */
export function startShop(configPath = SHIPPED_CONFIG, opts = {}) {
  return startServer({ configArg: false, args: ['--config', configPath], ...opts });
}

/* A storeClient logged in with a token (or not logged in when token is null). */
export async function shopClient(srv, who) {
  const c = await storeClient(srv);
  if (who) {
    const token = TOKENS[who] || who;
    c.login = await c.ok('auth.login', { token });
  }
  return c;
}

/* procedures.call → the whole answer message. */
export function proc(c, name, input, ms) {
  const fields = { name };
  if (input !== undefined) fields.input = input;
  return c.call('procedures.call', fields, ms);
}

/* procedures.call → data; throws with the error message on an error answer. */
export async function procOk(c, name, input, ms) {
  const m = await proc(c, name, input, ms);
  if (m.type !== 'result') {
    throw new assert.AssertionError({
      message: `procedure ${name} ${JSON.stringify(input)} answered an error: ${JSON.stringify(m).slice(0, 1000)}`,
      actual: m,
      expected: 'result',
    });
  }
  return m.data;
}

/* procedures.call → the error message; throws on a result. */
export async function procErr(c, name, input, ms) {
  const m = await proc(c, name, input, ms);
  if (m.type !== 'error') {
    throw new assert.AssertionError({
      message: `procedure ${name} ${JSON.stringify(input)} should have failed but answered ${JSON.stringify(m).slice(0, 1000)}`,
      actual: m,
      expected: 'error',
    });
  }
  return m;
}

/* Asserts a CONFLICT with details.reason (and the other details given). */
export function assertConflict(m, reason, details = {}) {
  assert.equal(m.type, 'error', `expected an error, got ${JSON.stringify(m).slice(0, 500)}`);
  assert.equal(m.code, 'CONFLICT', `code of ${JSON.stringify(m).slice(0, 500)}`);
  assert.ok(m.details && typeof m.details === 'object', `CONFLICT without details: ${JSON.stringify(m)}`);
  assert.equal(m.details.reason, reason, `details.reason of ${JSON.stringify(m)}`);
  for (const [k, v] of Object.entries(details)) assert.deepEqual(m.details[k], v, `details.${k} of ${JSON.stringify(m)}`);
}

/* Takes the first push (already received or arriving within ms) for which pred(push)
 * is true out of c.pushes, leaving the others queued. */
export async function pushWhere(c, pred, ms = 2000 + SLACK_MS, what = 'a matching push') {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = c.pushes.findIndex((p) => {
      try {
        return pred(p);
      } catch {
        return false;
      }
    });
    if (i >= 0) return c.pushes.splice(i, 1)[0];
    if (Date.now() > deadline) {
      assert.fail(`no ${what} within ${ms} ms; queued pushes: ${JSON.stringify(c.pushes).slice(0, 1500)}`);
    }
    await sleep(5);
  }
}

/* The next event push on a rules subscription with this topic. */
export function eventPush(c, topic, { subscriptionId, ms, where } = {}) {
  return pushWhere(
    c,
    (p) =>
      p.channel === 'event' &&
      p.data.topic === topic &&
      (!subscriptionId || p.subscriptionId === subscriptionId) &&
      (!where || where(p.data.event.data)),
    ms,
    `event push ${topic}`,
  );
}

/* Pushes on a subscription: removes and returns all those queued now. */
export function drainPushes(c, subscriptionId) {
  const out = [];
  for (let i = 0; i < c.pushes.length; ) {
    if (!subscriptionId || c.pushes[i].subscriptionId === subscriptionId) out.push(...c.pushes.splice(i, 1));
    else i++;
  }
  return out;
}

/* Admin reads. */
export const getRecord = (admin, bucket, key) => admin.ok('store.get', { bucket, key });
export const whereRecords = (admin, bucket, filter) => admin.ok('store.where', { bucket, filter });

/* Asserts that every wallet's balance equals the sum of its ledger entries (read as an
 * admin) and that no balance or balanceAfter is negative; returns { wallets, ledger }. */
export async function assertLedgerInvariant(admin) {
  const wallets = await admin.ok('store.all', { bucket: 'wallets' });
  const ledger = await admin.ok('store.all', { bucket: 'ledger' });
  for (const w of wallets) {
    const entries = ledger.filter((e) => e.walletId === w.id);
    const sum = entries.reduce((s, e) => s + e.amountMinor, 0);
    assert.equal(w.balanceMinor, sum, `wallet ${w.id}: balance ${w.balanceMinor} != ledger sum ${sum} (${entries.length} entries)`);
    assert.ok(w.balanceMinor >= 0, `wallet ${w.id} negative: ${w.balanceMinor}`);
    for (const e of entries) assert.ok(e.balanceAfterMinor >= 0, `ledger entry ${e.id} balanceAfterMinor < 0`);
  }
  return { wallets, ledger };
}

/* Closes clients (waiting for the close handshakes, so the server's graceful shutdown
 * has nobody to wait for) and stops the server, failing on an unclean exit. */
export async function shutdown(srv, ...clients) {
  await Promise.all(
    clients
      .flat()
      .filter(Boolean)
      .map((c) => c.end(1000).catch(() => c.terminate())),
  );
  if (srv) await srv.stopAndCheck();
}
