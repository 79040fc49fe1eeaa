// Rate limiting (§2, §7): `rateLimit {maxRequests, windowMs}`, a sliding window per
// key; the key is the remote address before login and the user id after it; every
// request counts, auth.login included.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { T, assertErr, client, closeAll, sleep, withServer } from './auth-helpers.mjs';
import { PRODUCTS, SEED_PRODUCTS } from './store-helpers.mjs';

const TOKENS = {
  'tok-alice': { userId: 'user-alice', roles: ['customer'] },
  'tok-bob': { userId: 'user-bob', roles: ['customer'] },
};

function cfg({ maxRequests = 5, windowMs = 1000, auth = true } = {}) {
  return {
    buckets: { products: PRODUCTS },
    seed: { products: SEED_PRODUCTS },
    ...(auth ? { auth: { required: false, tokens: TOKENS } } : {}),
    ...(maxRequests ? { rateLimit: { maxRequests, windowMs } } : {}),
  };
}

const RE = /^Rate limit exceeded\. Retry after (\d+)ms$/;

/* Asserts a RATE_LIMITED answer and returns retryAfterMs. */
function limited(m, windowMs) {
  assertErr(m, 'RATE_LIMITED', RE);
  const n = Number(m.message.match(RE)[1]);
  assert.deepEqual(m.details, { retryAfterMs: n }, `details of ${JSON.stringify(m)}`);
  assert.ok(Number.isInteger(n) && n >= 1 && n <= windowMs, `retryAfterMs ${n} outside 1..${windowMs}`);
  return n;
}

const count = (c) => c.call('store.count', { bucket: 'products' });

async function okN(c, n) {
  for (let i = 0; i < n; i++) {
    const m = await count(c);
    assert.equal(m.type, 'result', `request ${i + 1} of ${n} refused: ${JSON.stringify(m)}`);
  }
}

describe('rate limit', () => {
  test('maxRequests pass, the next → RATE_LIMITED "Rate limit exceeded. Retry after <n>ms" with details.retryAfterMs', T, async () => {
    await withServer(cfg(), async (srv) => {
      const c = await client(srv);
      await okN(c, 5);
      const m = await count(c);
      assert.equal(m.id, 6, 'the error carries the request id');
      limited(m, 1000);
      limited(await c.call('store.get', { bucket: 'products', key: 'p1' }), 1000);
      assert.equal(c.ws.closeInfo, null, 'a rate-limited client is not disconnected');
      c.close();
    });
  });

  test('after retryAfterMs a request is allowed again', T, async () => {
    await withServer(cfg({ windowMs: 600 }), async (srv) => {
      const c = await client(srv);
      await okN(c, 5);
      const n = limited(await count(c), 600);
      await sleep(n + 40);
      assert.equal((await count(c)).type, 'result');
      c.close();
    });
  });

  test('the window slides: requests leave it one by one, not all at once', T, async () => {
    await withServer(cfg({ windowMs: 1000 }), async (srv) => {
      const c = await client(srv);
      const t0 = Date.now();
      await okN(c, 3);
      await sleep(Math.max(0, t0 + 500 - Date.now()));
      await okN(c, 2);
      // At t0+1100 the first three have left the window, the last two have not.
      await sleep(Math.max(0, t0 + 1100 - Date.now()));
      await okN(c, 3);
      const n = limited(await count(c), 1000);
      assert.ok(n <= 450, `retryAfterMs ${n}: the next slot frees when the t0+500 requests leave`);
      c.close();
    });
  });

  test('every request counts: unknown operations and failing requests too; pongs do not', T, async () => {
    await withServer(cfg(), async (srv) => {
      const c = await client(srv);
      for (let i = 0; i < 20; i++) c.ws.send({ type: 'pong', timestamp: Date.now() });
      assertErr(await c.call('nosuch.op'), 'UNKNOWN_OPERATION');
      assertErr(await c.call('store.get', { bucket: 'nope', key: 1 }), 'BUCKET_NOT_DEFINED');
      assertErr(await c.call('store.insert', { bucket: 'products', data: {} }), 'VALIDATION_ERROR');
      await okN(c, 2);
      limited(await c.call('nosuch.op'), 1000);
      c.close();
    });
  });

  test('before login the budget is per remote address: connections from one address share it', T, async () => {
    await withServer(cfg(), async (srv) => {
      const c1 = await client(srv);
      const c2 = await client(srv);
      await okN(c1, 3);
      await okN(c2, 2);
      limited(await count(c2), 1000);
      limited(await count(c1), 1000);
      const c3 = await client(srv);
      limited(await count(c3), 1000);
      closeAll(c1, c2, c3);
    });
  });

  test('auth.login counts (failed logins included)', T, async () => {
    await withServer(cfg(), async (srv) => {
      const c = await client(srv);
      for (let i = 0; i < 5; i++) assertErr(await c.call('auth.login', { token: `bad-${i}` }), 'UNAUTHORIZED', 'Invalid token');
      limited(await c.call('auth.login', { token: 'tok-alice' }), 1000);
      limited(await c.call('auth.whoami'), 1000);
      c.close();
    });
  });

  test('the key switches at login: two connections of one user share a budget, separate from the address', T, async () => {
    await withServer(cfg(), async (srv) => {
      const c1 = await client(srv);
      const c2 = await client(srv);
      const c3 = await client(srv);
      await c1.ok('auth.login', { token: 'tok-alice' }); // address: 1
      await okN(c1, 3); // alice: 3
      await c2.ok('auth.login', { token: 'tok-alice' }); // address: 2
      await okN(c2, 2); // alice: 5
      limited(await count(c2), 1000);
      limited(await count(c1), 1000);
      // The address budget was not used by Alice's requests.
      await okN(c3, 2); // address: 4
      await c3.ok('auth.login', { token: 'tok-bob' }); // address: 5
      await okN(c3, 5); // bob: 5 — his own budget
      limited(await count(c3), 1000);
      closeAll(c1, c2, c3);
    });
  });

  test('one user exhausting the budget does not affect another user', T, async () => {
    await withServer(cfg(), async (srv) => {
      const a = await client(srv, 'tok-alice');
      await okN(a, 5);
      limited(await count(a), 1000);
      const b = await client(srv, 'tok-bob');
      await okN(b, 5);
      closeAll(a, b);
    });
  });

  test('server.stats reports rateLimitEnabled; without rateLimit many requests pass', T, async () => {
    await withServer(cfg({ maxRequests: 50 }), async (srv) => {
      const c = await client(srv);
      assert.equal((await c.ok('server.stats')).rateLimitEnabled, true);
      c.close();
    });
    await withServer(cfg({ maxRequests: 0 }), async (srv) => {
      const c = await client(srv);
      assert.equal((await c.ok('server.stats')).rateLimitEnabled, false);
      const answers = await Promise.all(Array.from({ length: 200 }, () => count(c)));
      assert.ok(answers.every((m) => m.type === 'result'));
      c.close();
    });
  });
});
