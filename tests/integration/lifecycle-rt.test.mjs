// Connection lifecycle of the realtime layer (§7) with auth and rules on: heartbeat,
// subscription limit (store and rules together), backpressure against a client that
// stops reading, server.stats / server.connections, and graceful shutdown.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { H, SLACK_MS, T, assertErr, client, closeAll, eventually, rssBytes, sleep, stallableClient } from './auth-helpers.mjs';
import { IS_ASAN, startServer } from './helpers.mjs';
import { PRODUCTS, SEED_PRODUCTS } from './store-helpers.mjs';

const TOKENS = {
  'tok-alice': { userId: 'user-alice', roles: ['customer'] },
  'tok-admin': { userId: 'user-admin', roles: ['admin'] },
};

const BASE = {
  buckets: { products: PRODUCTS },
  queries: { catalog: { bucket: 'products', op: 'where', filter: { active: true } }, 'all-products': { bucket: 'products', op: 'all' } },
  seed: { products: SEED_PRODUCTS },
};

/* ---------------------------------------------------------------------------------- */

describe('heartbeat (intervalMs 200, timeoutMs 100) with auth required', () => {
  let srv;
  before(async () => {
    srv = await startServer({ config: { ...BASE, heartbeat: { intervalMs: 200, timeoutMs: 100 }, auth: { required: true, tokens: TOKENS } } });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  test('pings are {"type":"ping","timestamp":n}; a client answering pongs stays open over many intervals, logged in or not', T, async () => {
    const anon = await client(srv);
    const alice = await client(srv, 'tok-alice');
    try {
      const pings = { anon: 0, alice: 0 };
      const bad = [];
      // Answer each ping as soon as it arrives (storeClient files pings under `others`).
      const answer = (c, who) => {
        c.ws.waiters.add(() => {
          for (let i = c.others.length - 1; i >= 0; i--) {
            const m = c.others[i];
            if (m.type !== 'ping') continue;
            const keys = Object.keys(m).sort().join(',');
            if (keys !== 'timestamp,type' || !Number.isFinite(m.timestamp) || Math.abs(m.timestamp - Date.now()) > 5000) bad.push(m);
            c.ws.send({ type: 'pong', timestamp: m.timestamp });
            pings[who]++;
            c.others.splice(i, 1);
          }
        });
      };
      answer(anon, 'anon');
      answer(alice, 'alice');
      await sleep(1400);
      assert.deepEqual(bad, [], 'pings must be exactly {"type":"ping","timestamp":<ms now>}');
      assert.ok(pings.anon >= 4, `anonymous client got ${pings.anon} pings in 1.4 s`);
      assert.ok(pings.alice >= 4, `logged-in client got ${pings.alice} pings in 1.4 s`);
      assert.equal(anon.ws.closeInfo, null, `answering anonymous client closed: ${JSON.stringify(anon.ws.closeInfo)}`);
      assert.equal(alice.ws.closeInfo, null, `answering client closed: ${JSON.stringify(alice.ws.closeInfo)}`);
      const errors = [...anon.others, ...alice.others].filter((m) => m.type === 'error');
      assert.deepEqual(errors, [], 'pongs must not be answered (no UNAUTHORIZED for an anonymous pong)');
      assert.equal((await alice.ok('store.count', { bucket: 'products' })), 4, 'the session survived');
    } finally {
      closeAll(anon, alice);
    }
  });

  test('a client that does not answer is closed with 4001 heartbeat_timeout and its subscriptions are released', T, async () => {
    const watcher = await client(srv, 'tok-admin');
    const silent = await client(srv, 'tok-alice');
    // watcher must answer pings to survive this test.
    const keepAlive = setInterval(() => {
      for (let i = watcher.others.length - 1; i >= 0; i--) {
        if (watcher.others[i].type === 'ping') {
          watcher.ws.send({ type: 'pong', timestamp: watcher.others[i].timestamp });
          watcher.others.splice(i, 1);
        }
      }
    }, 10);
    try {
      const start = Date.now();
      await silent.ok('store.subscribe', { query: 'catalog' });
      await silent.ok('rules.subscribe', { pattern: 'x.*' });
      const info = await silent.ws.waitClose(2500 + SLACK_MS);
      assert.ok(info, 'silent client was not closed');
      assert.equal(info.code, 4001);
      assert.equal(info.reason, 'heartbeat_timeout');
      assert.ok(info.at - start >= 150, `closed after ${info.at - start} ms, before any timeout could pass`);
      assert.ok(silent.others.some((m) => m.type === 'ping'), 'closed without having been pinged');
      await eventually(async () => {
        const st = await watcher.ok('server.stats');
        return st.connections.totalStoreSubscriptions === 0 && st.connections.totalRulesSubscriptions === 0 && st.connections.authenticated === 1;
      }, 1500, 'subscriptions and session of the closed client released');
    } finally {
      clearInterval(keepAlive);
      closeAll(watcher, silent);
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('global subscription limit (maxSubscriptionsTotal 4)', () => {
  let srv;
  before(async () => {
    srv = await startServer({ config: { ...BASE, connectionLimits: { maxSubscriptionsPerConnection: 3, maxSubscriptionsTotal: 4 } } });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  test('subscriptions of all connections count against the total; a disconnect frees its share', T, async () => {
    const a = await client(srv);
    const b = await client(srv);
    try {
      for (let i = 0; i < 3; i++) await a.ok('rules.subscribe', { pattern: `a${i}.*` });
      await b.ok('store.subscribe', { query: 'catalog' });
      assertErr(await b.err('rules.subscribe', { pattern: 'b.*' }), 'RATE_LIMITED', 'Subscription limit reached (max 4 in total)');
      a.close();
      await eventually(async () => (await b.ok('server.stats')).connections.totalRulesSubscriptions === 0);
      await b.ok('rules.subscribe', { pattern: 'b.*' });
    } finally {
      a.close();
      b.close();
    }
  });
});

describe('subscription limit (maxSubscriptionsPerConnection 3)', () => {
  let srv;
  before(async () => {
    srv = await startServer({ config: { ...BASE, connectionLimits: { maxSubscriptionsPerConnection: 3 } } });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  const LIMIT_MSG = 'Subscription limit reached (max 3 per connection)';

  test('store and rules subscriptions count together; beyond the limit → RATE_LIMITED with the standard message', T, async () => {
    const c = await client(srv);
    try {
      const s1 = await c.ok('store.subscribe', { query: 'catalog' });
      await c.ok('store.subscribe', { query: 'all-products' });
      const r1 = await c.ok('rules.subscribe', { pattern: 'a.*' });
      assertErr(await c.err('store.subscribe', { query: 'catalog' }), 'RATE_LIMITED', LIMIT_MSG);
      assertErr(await c.err('rules.subscribe', { pattern: 'b.*' }), 'RATE_LIMITED', LIMIT_MSG);
      // Freeing one slot of either kind makes room for either kind.
      await c.ok('store.unsubscribe', { subscriptionId: s1.subscriptionId });
      const r2 = await c.ok('rules.subscribe', { pattern: 'b.*' });
      assertErr(await c.err('store.subscribe', { query: 'catalog' }), 'RATE_LIMITED', LIMIT_MSG);
      await c.ok('rules.unsubscribe', { subscriptionId: r1.subscriptionId });
      await c.ok('store.subscribe', { query: 'catalog' });
      assertErr(await c.err('rules.subscribe', { pattern: 'c.*' }), 'RATE_LIMITED', LIMIT_MSG);
      // The refused subscriptions do not exist: an emit reaches only b.*.
      await c.ok('rules.emit', { topic: 'c.x' });
      await c.ok('rules.emit', { topic: 'b.x' });
      const p = await c.push();
      assert.equal(p.subscriptionId, r2.subscriptionId);
      await c.noPush(150);
      const conns = await c.ok('server.connections');
      assert.equal(conns.length, 1);
      assert.equal(conns[0].storeSubscriptionCount, 2);
      assert.equal(conns[0].rulesSubscriptionCount, 1);
    } finally {
      c.close();
    }
  });

  test('the limit is per connection, and failed subscribes do not use it up', T, async () => {
    const a = await client(srv);
    const b = await client(srv);
    try {
      for (let i = 0; i < 4; i++) {
        assertErr(await a.err('store.subscribe', { query: 'no-such-query' }), 'QUERY_NOT_DEFINED');
        assertErr(await a.err('rules.subscribe', { pattern: 'bad..pattern' }), 'VALIDATION_ERROR');
      }
      for (let i = 0; i < 3; i++) await a.ok('store.subscribe', { query: 'catalog' });
      assertErr(await a.err('store.subscribe', { query: 'catalog' }), 'RATE_LIMITED', LIMIT_MSG);
      for (let i = 0; i < 3; i++) await b.ok('rules.subscribe', { pattern: `p${i}.*` });
      assertErr(await b.err('rules.subscribe', { pattern: 'p9.*' }), 'RATE_LIMITED', LIMIT_MSG);
      const st = await b.ok('server.stats');
      assert.equal(st.connections.totalStoreSubscriptions, 3);
      assert.equal(st.connections.totalRulesSubscriptions, 3);
    } finally {
      closeAll(a, b);
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('backpressure', () => {
  const BLOB = 'x'.repeat(5000);
  const N = 40; // records → a ~200 KB query result per push
  const UPDATES = 600; // ≈ 120 MB of pushes if nothing were dropped

  test('a client that stops reading: server memory stays bounded, others stay fast, results are not dropped', { timeout: 30000 }, async (t) => {
    const config = {
      buckets: { blobs: { key: 'id', schema: { id: { type: 'string' }, n: { type: 'number' }, body: { type: 'string' } } } },
      queries: { 'all-blobs': { bucket: 'blobs', op: 'all' } },
      seed: { blobs: Array.from({ length: N }, (_, i) => ({ id: `b${i}`, n: 0, body: BLOB })) },
    };
    const srv = await startServer({ config });
    let ok = false;
    let stalled;
    const others = [];
    try {
      stalled = await stallableClient(srv.port);
      const writer = await client(srv);
      const probe = await client(srv);
      others.push(writer, probe);
      stalled.send('store.subscribe', { query: 'all-blobs' }, 1);
      const first = await stalled.readUntil((m) => m.id === 1);
      const sub = first.find((m) => m.id === 1);
      assert.equal(sub.type, 'result', JSON.stringify(sub).slice(0, 300));
      assert.equal(sub.data.data.length, N);

      stalled.pause();
      await sleep(50);
      const rss0 = rssBytes(srv.pid);
      let maxLatency = 0;
      let probeError = null;
      let probing = true;
      const probeLoop = (async () => {
        while (probing) {
          const t = Date.now();
          try {
            await probe.ok('store.count', { bucket: 'blobs' }, 2000);
          } catch (e) {
            probeError = e;
            return;
          }
          maxLatency = Math.max(maxLatency, Date.now() - t);
          await sleep(25);
        }
      })();
      let maxRss = rss0;
      try {
        for (let i = 0; i < UPDATES; i += 20) {
          await Promise.all(
            Array.from({ length: 20 }, (_, k) => writer.ok('store.update', { bucket: 'blobs', key: `b${(i + k) % N}`, data: { n: i + k + 1 } }, 3000)),
          );
          maxRss = Math.max(maxRss, rssBytes(srv.pid));
          if (i === 200) {
            // Requests from the stalled client while its output is blocked.
            stalled.send('store.count', { bucket: 'blobs' }, 1001);
            stalled.send('store.get', { bucket: 'nosuch', key: 'x' }, 1002);
            stalled.send('rules.emit', { topic: 'still.here' }, 1003);
          }
        }
      } catch (e) {
        probing = false;
        await probeLoop;
        assert.fail(`the server stopped answering other clients while one client did not read: ${e.message}; probe: ${probeError?.message ?? `max ${maxLatency} ms`}`);
      }
      probing = false;
      await probeLoop;
      assert.equal(probeError, null, `probe client: ${probeError?.message}`);
      await sleep(100);
      maxRss = Math.max(maxRss, rssBytes(srv.pid));
      const growth = maxRss - rss0;
      // ASan's quarantine keeps freed memory resident: the bound means nothing there.
      if (!IS_ASAN) assert.ok(growth < 64 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB while a client did not read`);
      assert.ok(maxLatency < 500, `another client waited ${maxLatency} ms for an answer`);

      // Resume: every answer arrives, in order; pushes may have been dropped.
      stalled.resume();
      const seen = await stalled.readUntil((m, all) => [1001, 1002, 1003].every((id) => all.some((x) => x.id === id)), 15000);
      const answers = seen.filter((m) => m.type === 'result' || m.type === 'error');
      assert.deepEqual(answers.map((m) => m.id), [1001, 1002, 1003]);
      assert.deepEqual(answers[0], { id: 1001, type: 'result', data: N });
      assert.equal(answers[1].type, 'error');
      assert.equal(answers[1].code, 'BUCKET_NOT_DEFINED');
      assert.equal(answers[2].type, 'result');
      assert.equal(answers[2].data.topic, 'still.here');
      // Drain what is left of the backlog, then one more change brings the current state.
      let pushes = seen.filter((m) => m.type === 'push').length;
      for (;;) {
        const more = await stalled.readUntil(() => true, 500).catch(() => null);
        if (!more) break;
        pushes += more.filter((m) => m.type === 'push').length;
      }
      t.diagnostic(`RSS growth ${(growth / 1048576).toFixed(1)} MiB, max latency ${maxLatency} ms, ${pushes} of ${UPDATES} pushes delivered`);
      assert.ok(pushes < UPDATES, `all ${UPDATES} pushes were delivered: nothing was dropped`);
      await writer.ok('store.update', { bucket: 'blobs', key: 'b0', data: { n: 99999 } });
      const last = await stalled.readUntil((m) => m.type === 'push' && m.data.find((r) => r.id === 'b0')?.n === 99999, 5000);
      const final = last[last.length - 1];
      assert.equal(final.subscriptionId, sub.data.subscriptionId);
      assert.equal(final.data.length, N);
      const expected = new Map(Array.from({ length: N }, (_, i) => [`b${i}`, 0]));
      for (let u = 1; u <= UPDATES; u++) expected.set(`b${(u - 1) % N}`, u);
      expected.set('b0', 99999);
      for (const r of final.data) assert.equal(r.n, expected.get(r.id), `stale record ${r.id} in the push after resume`);
      ok = true;
    } finally {
      closeAll(others);
      stalled?.destroy();
      // A wedged server does not answer SIGTERM: do not wait long for it then.
      if (ok) await srv.stopAndCheck();
      else await srv.stop(2000);
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('server.stats and server.connections', () => {
  let srv;
  before(async () => {
    srv = await startServer({ config: { ...BASE, name: 'rt-lifecycle', auth: { required: true, tokens: TOKENS } } });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  test('server.stats has exactly the fields of §7 and counts connections, sessions and subscriptions', T, async () => {
    const t0 = Date.now();
    const admin = await client(srv, 'tok-admin');
    const alice = await client(srv, 'tok-alice');
    const anon = await client(srv);
    try {
      await alice.ok('store.subscribe', { query: 'catalog' });
      await alice.ok('store.subscribe', { query: 'all-products' });
      await admin.ok('rules.subscribe', { pattern: 'a.*' });
      const st = await admin.ok('server.stats');
      assert.deepEqual(Object.keys(st).sort(), ['authEnabled', 'connectionCount', 'connections', 'name', 'rateLimitEnabled', 'rules', 'rulesEnabled', 'store', 'uptimeMs'].sort());
      assert.deepEqual(Object.keys(st.connections).sort(), ['active', 'authenticated', 'totalRulesSubscriptions', 'totalStoreSubscriptions']);
      assert.equal(st.name, 'rt-lifecycle');
      assert.equal(st.connectionCount, 3);
      assert.equal(st.connections.active, 3);
      assert.equal(st.connections.authenticated, 2);
      assert.equal(st.connections.totalStoreSubscriptions, 2);
      assert.equal(st.connections.totalRulesSubscriptions, 1);
      assert.equal(st.authEnabled, true);
      assert.equal(st.rateLimitEnabled, false);
      assert.equal(st.rulesEnabled, true);
      assert.ok(Number.isInteger(st.uptimeMs) && st.uptimeMs >= 0, `uptimeMs ${st.uptimeMs}`);
      assert.deepEqual(st.store, await admin.ok('store.stats'), 'server.stats.store is the store.stats result');
      assert.ok(st.rules && typeof st.rules === 'object');
      for (const k of ['rulesCount', 'factsCount', 'eventsProcessed']) assert.ok(Number.isInteger(st.rules[k]), `rules.${k}`);

      await sleep(30);
      alice.close();
      await alice.ws.waitClose(2000);
      const st2 = await eventually(async () => {
        const s = await admin.ok('server.stats');
        return s.connectionCount === 2 ? s : null;
      }, 2000, 'connection count after close');
      assert.equal(st2.connections.authenticated, 1);
      assert.equal(st2.connections.totalStoreSubscriptions, 0);
      assert.equal(st2.connections.totalRulesSubscriptions, 1);
      assert.ok(st2.uptimeMs >= st.uptimeMs + 20, `uptimeMs did not advance (${st.uptimeMs} → ${st2.uptimeMs})`);
      assert.ok(st2.uptimeMs <= Date.now() - t0 + 60_000);
    } finally {
      closeAll(admin, alice, anon);
    }
  });

  test('server.connections lists each connection with exactly the §7 fields', T, async () => {
    const t0 = Date.now();
    const admin = await client(srv, 'tok-admin');
    const alice = await client(srv, 'tok-alice');
    const anon = await client(srv);
    try {
      await alice.ok('store.subscribe', { query: 'catalog' });
      await alice.ok('rules.subscribe', { pattern: 'x.*' });
      await alice.ok('rules.subscribe', { pattern: 'y.*' });
      const list = await admin.ok('server.connections');
      assert.ok(Array.isArray(list));
      assert.equal(list.length, 3);
      const FIELDS = ['authenticated', 'connectedAt', 'connectionId', 'remoteAddress', 'rulesSubscriptionCount', 'storeSubscriptionCount', 'userId'];
      for (const e of list) {
        assert.deepEqual(Object.keys(e).sort(), FIELDS);
        assert.equal(typeof e.connectionId, 'string');
        assert.ok(e.connectionId.length > 0);
        assert.match(e.remoteAddress, /^(::ffff:)?127\.0\.0\.1(:\d+)?$/);
        assert.ok(Number.isInteger(e.connectedAt) && e.connectedAt >= t0 - 1000 && e.connectedAt <= Date.now() + 1000, `connectedAt ${e.connectedAt}`);
      }
      assert.equal(new Set(list.map((e) => e.connectionId)).size, 3, 'connection ids are unique');
      const byUser = Object.fromEntries(list.map((e) => [e.userId ?? 'anon', e]));
      assert.deepEqual(
        { a: byUser['user-alice'].authenticated, s: byUser['user-alice'].storeSubscriptionCount, r: byUser['user-alice'].rulesSubscriptionCount },
        { a: true, s: 1, r: 2 },
      );
      assert.equal(byUser['user-admin'].authenticated, true);
      assert.equal(byUser['user-admin'].storeSubscriptionCount, 0);
      assert.equal(byUser.anon.authenticated, false);
      assert.equal(byUser.anon.userId, null);
      // Logging out shows at once.
      await alice.ok('auth.logout');
      const after = await admin.ok('server.connections');
      assert.equal(after.filter((e) => e.authenticated).length, 1);
      anon.close();
      await anon.ws.waitClose(2000);
      await eventually(async () => (await admin.ok('server.connections')).length === 2, 2000, 'closed connection removed');
    } finally {
      closeAll(admin, alice, anon);
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('graceful shutdown with auth on', () => {
  test('every client, logged in or not, gets the system shutdown frame; the rest are closed with 1000; exit 0', { timeout: 10000 + SLACK_MS }, async () => {
    const srv = await startServer({
      config: { ...BASE, shutdown: { gracePeriodMs: 800 }, auth: { required: true, tokens: TOKENS } },
    });
    let clients = [];
    try {
      const anon = await client(srv);
      const alice = await client(srv, 'tok-alice');
      const admin = await client(srv, 'tok-admin');
      clients = [anon, alice, admin];
      await alice.ok('store.subscribe', { query: 'catalog' });
      await admin.ok('rules.subscribe', { pattern: 'shop.*' });
      const t0 = Date.now();
      srv.signal('SIGTERM');
      for (const c of clients) {
        const m = await eventually(() => c.others.find((x) => x.type === 'system'), 2000, 'shutdown notice');
        assert.deepEqual(m, { type: 'system', event: 'shutdown', gracePeriodMs: 800 });
      }
      // The anonymous client leaves on the notice; the others wait to be closed.
      anon.close();
      for (const c of [alice, admin]) {
        const info = await c.ws.waitClose(3000);
        assert.ok(info, 'client not closed after the grace period');
        assert.equal(info.code, 1000);
        assert.ok(info.at - t0 >= 600, `closed after ${info.at - t0} ms, before the grace period`);
      }
      const exit = await srv.waitExit(5000);
      assert.ok(exit, 'server did not exit');
      assert.equal(exit.code, 0);
    } finally {
      closeAll(clients);
      await srv.stop();
    }
  });
});
