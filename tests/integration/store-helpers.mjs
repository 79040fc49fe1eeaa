// Fixtures for the store integration tests (protocol §4): a request/response client
// on top of helpers.mjs's wsClient, a small e-commerce config, SQLite inspection.
//
// Builds on helpers.mjs (owned by the server-foundation tests) without changing it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { STARTUP_MS, SLACK_MS, metricValue, scrape, sleep, startServer, wsClient } from './helpers.mjs';

export { STARTUP_MS, SLACK_MS, sleep };

/* Per-test timeout for ordinary store tests. */
export const T = { timeout: 5000 + SLACK_MS };
/* Short window used to assert that no push arrives. */
export const QUIET_MS = 200;

/* A realtime client that pairs requests with answers by id and keeps pushes apart.
 *   await c.call('store.get', { bucket, key })       → the whole answer message
 *   await c.ok('store.get', {...})                    → data (throws on an error answer)
 *   await c.err('store.get', {...})                   → the error message (throws on a result)
 *   await c.push(ms)                                   → the next push
 *   await c.noPush(ms)                                 → asserts that no push arrives
 */
export async function storeClient(srv, opts = {}) {
  const w = await wsClient(srv.wsUrl(), opts);
  let nextId = 1;
  const pending = new Map();
  const pushes = [];
  const pushWaiters = new Set();
  const others = [];

  const pump = () => {
    while (w.queue.length) {
      const m = w.queue.shift();
      if (m.type === 'push') {
        pushes.push(m);
        for (const f of pushWaiters) f();
      } else if ((m.type === 'result' || m.type === 'error') && pending.has(m.id)) {
        const p = pending.get(m.id);
        pending.delete(m.id);
        p.resolve(m);
      } else {
        others.push(m);
      }
    }
    if (w.closeInfo) {
      for (const [, p] of pending) p.reject(new Error(`socket closed (${w.closeInfo.code}) before the answer`));
      pending.clear();
      for (const f of pushWaiters) f();
    }
  };
  w.waiters.add(pump);

  const c = {
    ws: w,
    pushes,
    others,
    welcome: w.welcome,
    /* Sends a request and resolves with the answer (result or error). */
    call(type, fields = {}, ms = 4000) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`no answer to ${type} #${id} within ${ms} ms`));
        }, ms);
        pending.set(id, {
          resolve: (m) => {
            clearTimeout(t);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(t);
            reject(e);
          },
        });
        w.send({ id, type, ...fields });
        pump();
      });
    },
    /* Sends a raw text frame; resolves with the next non-push message. */
    async raw(text, ms = 3000) {
      const deadline = Date.now() + ms;
      w.send(text);
      for (;;) {
        pump();
        if (others.length) return others.shift();
        if (Date.now() > deadline) throw new Error(`no answer to raw frame within ${ms} ms`);
        await sleep(5);
      }
    },
    async ok(type, fields = {}, ms) {
      const m = await c.call(type, fields, ms);
      if (m.type !== 'result') {
        throw new assert.AssertionError({
          message: `${type} ${JSON.stringify(fields).slice(0, 300)} answered an error: ${JSON.stringify(m).slice(0, 1000)}`,
          actual: m,
          expected: 'result',
        });
      }
      return m.data;
    },
    async err(type, fields = {}, ms) {
      const m = await c.call(type, fields, ms);
      if (m.type !== 'error') {
        throw new assert.AssertionError({
          message: `${type} ${JSON.stringify(fields).slice(0, 300)} should have failed but answered ${JSON.stringify(m).slice(0, 1000)}`,
          actual: m,
          expected: 'error',
        });
      }
      return m;
    },
    /* The next push (already received or within ms). */
    push(ms = 2000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pushes.length) {
            done();
            resolve(pushes.shift());
          } else if (w.closeInfo) {
            done();
            reject(new Error('socket closed while waiting for a push'));
          }
        };
        const t = setTimeout(() => {
          done();
          reject(new Error(`no push within ${ms} ms`));
        }, ms);
        const done = () => {
          clearTimeout(t);
          pushWaiters.delete(check);
        };
        pushWaiters.add(check);
        pump();
        check();
      });
    },
    /* Asserts that no push arrives within ms (and none is queued). */
    async noPush(ms = QUIET_MS, what = '') {
      await sleep(ms);
      pump();
      if (pushes.length) {
        const p = pushes.splice(0);
        assert.fail(`unexpected push${what ? ` (${what})` : ''}: ${JSON.stringify(p).slice(0, 800)}`);
      }
    },
    close() {
      w.waiters.delete(pump);
      w.close();
    },
    /* Closes and waits until the close handshake finished (the server has let go of the
     * connection and its subscriptions). */
    async end(ms = 2000) {
      w.waiters.delete(pump);
      w.close();
      await w.waitClose(ms);
    },
    terminate() {
      w.terminate();
    },
  };
  return c;
}

/* Asserts that m is an error answer with the code (and message, when given). */
export function assertError(m, code, message) {
  assert.equal(m.type, 'error', `expected an error, got ${JSON.stringify(m).slice(0, 500)}`);
  assert.equal(m.code, code, `code of ${JSON.stringify(m).slice(0, 500)}`);
  if (message instanceof RegExp) assert.match(m.message, message);
  else if (message !== undefined) assert.equal(m.message, message);
}

/* Metadata checks shared by every record assertion. */
export function assertMeta(rec, { version = 1, after = 0 } = {}) {
  assert.equal(rec._version, version, `_version of ${JSON.stringify(rec)}`);
  assert.ok(Number.isInteger(rec._createdAt), `_createdAt not an integer: ${JSON.stringify(rec)}`);
  assert.ok(Number.isInteger(rec._updatedAt), `_updatedAt not an integer: ${JSON.stringify(rec)}`);
  assert.ok(rec._createdAt >= after - 1000 && rec._createdAt <= Date.now() + 1000, `_createdAt ${rec._createdAt} not now`);
  assert.ok(rec._updatedAt >= rec._createdAt, '_updatedAt before _createdAt');
}

/* The record without metadata. */
export function strip(rec) {
  if (rec === null || rec === undefined) return rec;
  if (Array.isArray(rec)) return rec.map(strip);
  const { _version, _createdAt, _updatedAt, ...rest } = rec;
  return rest;
}

/* ---------------------------------------------------------------------------------- */
/* A small shop                                                                         */
/* ---------------------------------------------------------------------------------- */

export const PRODUCTS = {
  key: 'id',
  schema: {
    id: { type: 'string' },
    title: { type: 'string', required: true, minLength: 1, maxLength: 100 },
    price: { type: 'number', required: true, min: 0 },
    category: { type: 'string' },
    stock: { type: 'number', min: 0, default: 0 },
    active: { type: 'boolean', default: true },
  },
  indexes: ['category'],
};

export const SEED_PRODUCTS = [
  { id: 'p1', title: 'Mug', price: 10, category: 'kitchen', stock: 5 },
  { id: 'p2', title: 'Pan', price: 40, category: 'kitchen', stock: 0 },
  { id: 'p3', title: 'Lamp', price: 25, category: 'home', stock: 12 },
  { id: 'p4', title: 'Rug', price: 99.5, category: 'home', stock: 3, active: false },
];

export function shopConfig({ buckets = {}, queries = {}, seed, ...rest } = {}) {
  return {
    buckets: { products: PRODUCTS, ...buckets },
    queries,
    seed: seed === undefined ? { products: SEED_PRODUCTS } : seed,
    ...rest,
  };
}

/* Starts shopd with a store config (see shopConfig) and returns the server. */
export function startStore(config, opts = {}) {
  return startServer({ config, ...opts });
}

/* ---------------------------------------------------------------------------------- */
/* SQLite                                                                               */
/* ---------------------------------------------------------------------------------- */

/* Runs the sqlite3 CLI on a database (read-only unless `write`) and resolves with
 * stdout; rejects on a non-zero exit. */
export function sqlite(dbPath, sql, { json = false, timeout = 5000, write = false } = {}) {
  return new Promise((resolve, reject) => {
    const args = write ? ['-bail'] : ['-readonly', '-bail'];
    if (json) args.push('-json');
    args.push(dbPath, sql);
    const p = spawn('sqlite3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let errText = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (errText += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    p.on('close', (code) => {
      clearTimeout(t);
      if (code !== 0) reject(new Error(`sqlite3 exited ${code}: ${errText.trim()} (sql: ${sql})`));
      else resolve(out);
    });
  });
}

export async function sqliteJson(dbPath, sql) {
  const out = await sqlite(dbPath, sql, { json: true });
  return out.trim() ? JSON.parse(out) : [];
}

/* ---------------------------------------------------------------------------------- */
/* Restarts on one data directory                                                       */
/* ---------------------------------------------------------------------------------- */

/* Starts shopd on an existing data directory (kept across restarts; the caller removes
 * it). Each start gets its own temp dir for the config file, removed by stop(). */
export function startOnDataDir(dataDir, config, opts = {}) {
  return startServer({ config, dataDirArg: false, args: ['--data-dir', dataDir], ...opts });
}

/* ---------------------------------------------------------------------------------- */
/* Subscription metrics                                                                 */
/* ---------------------------------------------------------------------------------- */

const SUB_METRICS = {
  evaluations: 'shopd_subscription_evaluations_total',
  pushes: 'shopd_subscription_pushes_total',
  shared: 'shopd_subscription_shared_hits_total',
};

/* { evaluations, pushes, shared } from /metrics; a missing series fails the test. */
export async function subMetrics(srv) {
  const samples = await scrape(srv.port);
  const out = {};
  for (const [k, name] of Object.entries(SUB_METRICS)) {
    const v = metricValue(samples, name);
    assert.notEqual(v, undefined, `/metrics lacks ${name}`);
    out[k] = v;
  }
  return out;
}

export function metricsDelta(a, b) {
  return { evaluations: b.evaluations - a.evaluations, pushes: b.pushes - a.pushes, shared: b.shared - a.shared };
}
