// Authentication (§2 auth check, §6): auth absent, static tokens, login / logout /
// whoami, session expiry, JWT HS256 / ES256 / EdDSA (secret, JWKS file, JWKS URL with
// key rotation), hostile tokens, auth configured but not required.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  H,
  T,
  assertErr,
  assertForbidden,
  b64json,
  b64url,
  client,
  closeAll,
  makeEcKey,
  makeEdKey,
  makeSecret,
  nowSec,
  signES256,
  signEdDSA,
  signHS256,
  sleep,
  startJwksServer,
  unsignedToken,
  withServer,
  writeJwks,
} from './auth-helpers.mjs';
import { makeTempDir, runCli, startServer } from './helpers.mjs';
import { PRODUCTS, SEED_PRODUCTS } from './store-helpers.mjs';

const ISS = 'https://issuer.shopd.test';
const AUD = 'shopd-tests';
const STORE = { buckets: { products: PRODUCTS }, seed: { products: SEED_PRODUCTS } };

const FUTURE_MS = Date.now() + 3600_000;
const TOKENS = {
  'tok-alice': { userId: 'user-alice', roles: ['customer'] },
  'tok-admin': { userId: 'user-admin', roles: ['admin', 'staff'] },
  'tok-expired': { userId: 'user-old', roles: ['customer'], expiresAt: Date.now() - 60_000 },
  'tok-future': { userId: 'user-future', roles: [], expiresAt: FUTURE_MS },
};

const UNAUTH = (m) => assertErr(m, 'UNAUTHORIZED', 'Authentication required');
const INVALID = (m) => assertErr(m, 'UNAUTHORIZED', 'Invalid token');
const EXPIRED = (m) => assertErr(m, 'UNAUTHORIZED', 'Token has expired');

/* ---------------------------------------------------------------------------------- */

describe('auth absent', () => {
  let srv;
  before(async () => {
    srv = await startServer({ config: STORE });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  test('welcome says requiresAuth false; auth.* → UNKNOWN_OPERATION; everything else works anonymously', T, async () => {
    const c = await client(srv);
    try {
      assert.equal(c.welcome.requiresAuth, false);
      for (const type of ['auth.login', 'auth.logout', 'auth.whoami']) {
        const m = await c.call(type, type === 'auth.login' ? { token: 'tok-alice' } : {});
        assert.equal(m.type, 'error');
        assert.equal(m.code, 'UNKNOWN_OPERATION');
        assert.equal(m.message, `Unknown operation "${type}"`);
      }
      assert.equal((await c.ok('store.all', { bucket: 'products' })).length, 4);
      await c.ok('rules.emit', { topic: 'anon.ok' });
      const st = await c.ok('server.stats');
      assert.equal(st.authEnabled, false);
      assert.equal(st.connections.authenticated, 0);
    } finally {
      c.close();
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('auth required: static tokens, login, logout, whoami', () => {
  let srv;
  before(async () => {
    srv = await startServer({ config: { ...STORE, auth: { required: true, tokens: TOKENS } } });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  test('welcome says requiresAuth true', T, async () => {
    const c = await client(srv);
    try {
      assert.deepEqual(Object.keys(c.welcome).sort(), ['requiresAuth', 'serverTime', 'type', 'version']);
      assert.equal(c.welcome.requiresAuth, true);
    } finally {
      c.close();
    }
  });

  test('requests before login → UNAUTHORIZED "Authentication required" (id echoed, connection stays open)', T, async () => {
    const c = await client(srv);
    try {
      for (const [type, f] of [
        ['store.all', { bucket: 'products' }],
        ['store.insert', { bucket: 'products', data: { id: 'x', title: 'X', price: 1 } }],
        ['store.subscribe', { query: 'nope' }],
        ['rules.emit', { topic: 'a.b' }],
        ['rules.getAllFacts', {}],
        ['server.stats', {}],
        ['server.connections', {}],
        ['nosuch.op', {}],
      ]) {
        const m = await c.call(type, f);
        UNAUTH(m);
        assert.ok(Number.isInteger(m.id) && m.id > 0, `error id ${m.id}`);
      }
      assert.equal(c.ws.closeInfo, null);
      // Nothing was written.
      const a = await client(srv, 'tok-admin');
      assert.equal(await a.ok('store.get', { bucket: 'products', key: 'x' }), null);
      a.close();
    } finally {
      c.close();
    }
  });

  test('auth.whoami and auth.logout work before login', T, async () => {
    const c = await client(srv);
    try {
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
      assert.deepEqual(await c.ok('auth.logout'), { loggedOut: true });
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
    } finally {
      c.close();
    }
  });

  test('auth.login with a static token → {userId, roles, expiresAt:null}; then requests pass', T, async () => {
    const c = await client(srv);
    try {
      const r = await c.ok('auth.login', { token: 'tok-alice' });
      assert.deepEqual(r, { userId: 'user-alice', roles: ['customer'], expiresAt: null });
      assert.deepEqual(Object.keys(r), ['userId', 'roles', 'expiresAt']);
      assert.equal((await c.ok('store.all', { bucket: 'products' })).length, 4);
      const w = await c.ok('auth.whoami');
      assert.deepEqual(w, { authenticated: true, userId: 'user-alice', roles: ['customer'], expiresAt: null });
      assert.deepEqual(Object.keys(w).sort(), ['authenticated', 'expiresAt', 'roles', 'userId']);
    } finally {
      c.close();
    }
  });

  test('a static token with a future expiresAt reports it', T, async () => {
    const c = await client(srv);
    try {
      assert.deepEqual(await c.ok('auth.login', { token: 'tok-future' }), { userId: 'user-future', roles: [], expiresAt: FUTURE_MS });
      assert.equal((await c.ok('auth.whoami')).expiresAt, FUTURE_MS);
    } finally {
      c.close();
    }
  });

  test('an unknown token → UNAUTHORIZED "Invalid token" and the connection stays unauthenticated', T, async () => {
    const c = await client(srv);
    try {
      for (const token of ['nope', 'tok-alice ', 'TOK-ALICE', 'tok-alic', 'x'.repeat(300)]) INVALID(await c.err('auth.login', { token }));
      UNAUTH(await c.err('store.all', { bucket: 'products' }));
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
    } finally {
      c.close();
    }
  });

  test('token missing, empty or not a string → VALIDATION_ERROR with the standard message', T, async () => {
    const c = await client(srv);
    try {
      for (const f of [{}, { token: '' }, { token: 5 }, { token: null }, { token: ['tok-alice'] }, { token: { t: 'tok-alice' } }]) {
        assertErr(await c.err('auth.login', f), 'VALIDATION_ERROR', 'Missing or invalid "token": expected non-empty string');
      }
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
    } finally {
      c.close();
    }
  });

  test('a static token whose expiresAt has passed → UNAUTHORIZED "Token has expired"', T, async () => {
    const c = await client(srv);
    try {
      EXPIRED(await c.err('auth.login', { token: 'tok-expired' }));
      UNAUTH(await c.err('store.all', { bucket: 'products' }));
    } finally {
      c.close();
    }
  });

  test('logging in again replaces the session', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('auth.login', { token: 'tok-alice' });
      const r = await c.ok('auth.login', { token: 'tok-admin' });
      assert.deepEqual(r, { userId: 'user-admin', roles: ['admin', 'staff'], expiresAt: null });
      assert.equal((await c.ok('auth.whoami')).userId, 'user-admin');
      const conns = await c.ok('server.connections');
      const mine = conns.filter((x) => x.userId === 'user-admin');
      assert.equal(mine.length, 1);
      assert.equal(conns.filter((x) => x.userId === 'user-alice').length, 0, 'the old identity lingers');
    } finally {
      c.close();
    }
  });

  test('a failed login keeps the existing session (as the reference server does)', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('auth.login', { token: 'tok-alice' });
      INVALID(await c.err('auth.login', { token: 'bogus' }));
      assert.equal((await c.ok('auth.whoami')).userId, 'user-alice');
      await c.ok('store.all', { bucket: 'products' });
    } finally {
      c.close();
    }
  });

  test('auth.logout → {loggedOut:true}; afterwards requests need login again', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('auth.login', { token: 'tok-alice' });
      assert.deepEqual(await c.ok('auth.logout'), { loggedOut: true });
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
      UNAUTH(await c.err('store.all', { bucket: 'products' }));
      assert.deepEqual(await c.ok('auth.logout'), { loggedOut: true });
      await c.ok('auth.login', { token: 'tok-alice' });
      await c.ok('store.all', { bucket: 'products' });
    } finally {
      c.close();
    }
  });

  test('sessions are per connection', T, async () => {
    const a = await client(srv, 'tok-alice');
    const b = await client(srv);
    try {
      UNAUTH(await b.err('store.all', { bucket: 'products' }));
      await a.ok('store.all', { bucket: 'products' });
      const st = await a.ok('server.stats');
      assert.equal(st.authEnabled, true);
      assert.ok(st.connections.authenticated >= 1);
      assert.ok(st.connections.authenticated < st.connections.active);
    } finally {
      closeAll(a, b);
    }
  });
});

describe('auth without "required"', () => {
  test('auth configured without "required" requires login (the default is true)', T, async () => {
    await withServer({ ...STORE, auth: { tokens: TOKENS } }, async (srv) => {
      const c = await client(srv);
      assert.equal(c.welcome.requiresAuth, true);
      UNAUTH(await c.err('store.count', { bucket: 'products' }));
      await c.ok('auth.login', { token: 'tok-alice' });
      assert.equal(await c.ok('store.count', { bucket: 'products' }), 4);
      c.close();
    });
  });
});

/* ---------------------------------------------------------------------------------- */

describe('JWT HS256 (secret)', () => {
  const SECRET = makeSecret();
  let srv;
  before(async () => {
    srv = await startServer({
      config: {
        ...STORE,
        auth: {
          required: true,
          tokens: { 'tok-static': { userId: 'user-static', roles: ['x'] } },
          jwt: { secret: SECRET, issuer: ISS, audience: AUD, algorithms: ['HS256'], rolesClaim: 'groups', clockSkewSec: 0 },
        },
      },
    });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  const claims = (extra = {}) => ({ sub: 'user-jwt', iss: ISS, aud: AUD, iat: nowSec() - 10, exp: nowSec() + 3600, groups: ['customer', 'beta'], ...extra });

  async function login(token) {
    const c = await client(srv);
    try {
      return await c.call('auth.login', { token });
    } finally {
      c.close();
    }
  }

  test('a valid token logs in: userId = sub, roles from rolesClaim, expiresAt = exp in ms', T, async () => {
    const exp = nowSec() + 3600;
    const c = await client(srv);
    try {
      const r = await c.ok('auth.login', { token: signHS256(claims({ exp }), SECRET) });
      assert.deepEqual(r, { userId: 'user-jwt', roles: ['customer', 'beta'], expiresAt: exp * 1000 });
      await c.ok('store.all', { bucket: 'products' });
      // Static tokens still work next to JWT.
      assert.equal((await c.ok('auth.login', { token: 'tok-static' })).userId, 'user-static');
    } finally {
      c.close();
    }
  });

  test('roles: a space-separated string claim, a missing claim (no roles), the default "roles" claim is not read', T, async () => {
    const r1 = await login(signHS256(claims({ groups: 'a b  c' }), SECRET));
    assert.deepEqual(r1.data.roles, ['a', 'b', 'c']);
    const { groups, ...noGroups } = claims();
    const r2 = await login(signHS256({ ...noGroups, roles: ['admin'] }, SECRET));
    assert.equal(r2.type, 'result', JSON.stringify(r2));
    assert.deepEqual(r2.data.roles, [], 'roles must come from rolesClaim "groups" only');
  });

  test('no exp → expiresAt null', T, async () => {
    const { exp, ...rest } = claims();
    const r = await login(signHS256(rest, SECRET));
    assert.equal(r.type, 'result', JSON.stringify(r));
    assert.equal(r.data.expiresAt, null);
  });

  test('a kid on an HS256 token signed with the secret is accepted', T, async () => {
    const r = await login(signHS256(claims(), SECRET, { kid: 'whatever' }));
    assert.equal(r.type, 'result', JSON.stringify(r));
  });

  test('wrong signature, tampered claims, truncated signature → Invalid token', T, async () => {
    INVALID(await login(signHS256(claims(), makeSecret())));
    INVALID(await login(signHS256(claims(), SECRET.slice(0, 40))));
    const good = signHS256(claims(), SECRET);
    const [h, , s] = good.split('.');
    INVALID(await login(`${h}.${b64json(claims({ sub: 'user-admin', groups: ['admin'] }))}.${s}`));
    INVALID(await login(good.slice(0, -4)));
    INVALID(await login(`${good.split('.').slice(0, 2).join('.')}.${b64url(crypto.randomBytes(32))}`));
  });

  test('expired → "Token has expired"; nbf in the future → Invalid token; nbf in the past is fine', T, async () => {
    EXPIRED(await login(signHS256(claims({ exp: nowSec() - 60 }), SECRET)));
    INVALID(await login(signHS256(claims({ nbf: nowSec() + 120 }), SECRET)));
    const ok = await login(signHS256(claims({ nbf: nowSec() - 5 }), SECRET));
    assert.equal(ok.type, 'result', JSON.stringify(ok));
  });

  test('iat in the future → Invalid token', T, async () => {
    INVALID(await login(signHS256(claims({ iat: nowSec() + 120 }), SECRET)));
  });

  test('wrong or missing iss, wrong or missing aud → Invalid token; aud as an array containing ours is fine', T, async () => {
    INVALID(await login(signHS256(claims({ iss: 'https://evil.test' }), SECRET)));
    const { iss, ...noIss } = claims();
    INVALID(await login(signHS256(noIss, SECRET)));
    INVALID(await login(signHS256(claims({ aud: 'other-app' }), SECRET)));
    INVALID(await login(signHS256(claims({ aud: ['other-app', 'x'] }), SECRET)));
    const { aud, ...noAud } = claims();
    INVALID(await login(signHS256(noAud, SECRET)));
    const ok = await login(signHS256(claims({ aud: ['other-app', AUD] }), SECRET));
    assert.equal(ok.type, 'result', JSON.stringify(ok));
  });

  test('no sub or an empty sub → Invalid token', T, async () => {
    const { sub, ...noSub } = claims();
    INVALID(await login(signHS256(noSub, SECRET)));
    INVALID(await login(signHS256(claims({ sub: '' }), SECRET)));
    INVALID(await login(signHS256(claims({ sub: 42 }), SECRET)));
  });

  test('alg none (and other algorithms outside the list) → Invalid token', T, async () => {
    INVALID(await login(unsignedToken(claims())));
    INVALID(await login(unsignedToken(claims(), { alg: 'none' }, b64url(crypto.randomBytes(32)))));
    INVALID(await login(unsignedToken(claims(), { alg: 'NONE', typ: 'JWT' })));
    // Correct HMAC but announced as HS512 / HS384.
    for (const alg of ['HS512', 'HS384', 'ES256', 'RS256']) INVALID(await login(signHS256(claims(), SECRET, { alg })));
  });

  test('a signed token larger than 8 KiB is refused; one just under the limit is accepted', T, async () => {
    const pad = (n) => signHS256(claims({ pad: 'p'.repeat(n) }), SECRET);
    // The largest padding whose token still fits in 8192 bytes.
    let lo = 0;
    let hi = 8192;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (pad(mid).length <= 8192) lo = mid;
      else hi = mid - 1;
    }
    const small = pad(lo);
    assert.ok(small.length <= 8192 && small.length > 8150, `token length ${small.length}`);
    const okRes = await login(small);
    assert.equal(okRes.type, 'result', `a ${small.length}-byte token was refused: ${JSON.stringify(okRes)}`);
    const big = pad(9000);
    assert.ok(big.length > 8192);
    INVALID(await login(big));
    const huge = pad(200_000);
    INVALID(await login(huge));
  });

  test('malformed tokens → Invalid token; the connection and the server stay fine', T, async () => {
    const c = await client(srv);
    try {
      const good = signHS256(claims(), SECRET);
      const [h, p, s] = good.split('.');
      const shapes = [
        'abc',
        'a.b',
        'a.b.c',
        'a.b.c.d',
        '..',
        '...',
        `${h}.${p}`,
        `${h}.${p}.`,
        `.${p}.${s}`,
        `${h}..${s}`,
        `${h}.${p}.${s}.${s}`,
        `${h}.${p}.${s}=`,
        `${h}.${p}.!!!`,
        `${b64url('not json')}.${p}.${s}`,
        `${b64url('[1,2]')}.${p}.${s}`,
        `${h}.${b64url('not json')}.${s}`,
        `${h}.${b64url('"a string"')}.${s}`,
        `${b64json({ typ: 'JWT' })}.${p}.${s}`,
        `${b64json({ alg: 5 })}.${p}.${s}`,
        `${b64json({ alg: 'HS256', crit: ['exp'] })}.${p}.${s}`,
        `${h}.${p}.${s}`.replace(/[A-Za-z]/, '\u00e9'),
        'Bearer ' + good,
        good + ' ',
      ];
      for (const token of shapes) INVALID(await c.err('auth.login', { token }));
      assert.equal(c.ws.closeInfo, null);
      assert.equal((await c.ok('auth.login', { token: good })).userId, 'user-jwt');
    } finally {
      c.close();
    }
  });

  test('non-numeric or absurd time claims → Invalid token', T, async () => {
    INVALID(await login(signHS256(claims({ exp: 'tomorrow' }), SECRET)));
    INVALID(await login(signHS256(claims({ nbf: 'now' }), SECRET)));
    INVALID(await login(signHS256(claims({ exp: -5 }), SECRET)));
    INVALID(await login(signHS256(claims({ exp: 1e300 }), SECRET)));
  });

  test('a session expires mid-session: "Session expired" once, then "Authentication required"', T, async () => {
    const c = await client(srv);
    try {
      const exp = nowSec() + 2;
      const r = await c.ok('auth.login', { token: signHS256(claims({ exp }), SECRET) });
      assert.equal(r.expiresAt, exp * 1000);
      await c.ok('store.count', { bucket: 'products' });
      const wait = r.expiresAt - Date.now() + 50;
      assert.ok(wait < 2500, `wait ${wait}`);
      await sleep(Math.max(0, wait));
      assertErr(await c.err('store.count', { bucket: 'products' }), 'UNAUTHORIZED', 'Session expired');
      UNAUTH(await c.err('store.count', { bucket: 'products' }));
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
      // Logging in again works.
      await c.ok('auth.login', { token: 'tok-static' });
      await c.ok('store.count', { bucket: 'products' });
    } finally {
      c.close();
    }
  });

  test('an expired session is no longer counted as authenticated (server.stats, server.connections)', T, async () => {
    const watcher = await client(srv, 'tok-static');
    const c = await client(srv);
    try {
      const r = await c.ok('auth.login', { token: signHS256(claims({ sub: 'user-short', exp: nowSec() + 1 }), SECRET) });
      const before = await watcher.ok('server.stats');
      assert.equal((await watcher.ok('server.connections')).filter((x) => x.userId === 'user-short').length, 1);
      await sleep(Math.max(0, r.expiresAt - Date.now() + 50));
      // The expired connection sends nothing; the server must still not report it as logged in.
      const conns = await watcher.ok('server.connections');
      const stale = conns.filter((x) => x.userId === 'user-short' || (x.authenticated && x.userId !== 'user-static'));
      assert.deepEqual(stale, [], 'an expired session is reported as authenticated');
      const after = await watcher.ok('server.stats');
      assert.equal(after.connections.authenticated, before.connections.authenticated - 1);
    } finally {
      closeAll(watcher, c);
    }
  });

  test('whoami after expiry answers {authenticated:false} (the session is cleared first)', T, async () => {
    const c = await client(srv);
    try {
      const r = await c.ok('auth.login', { token: signHS256(claims({ exp: nowSec() + 1 }), SECRET) });
      await sleep(Math.max(0, r.expiresAt - Date.now() + 50));
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
      UNAUTH(await c.err('store.count', { bucket: 'products' }));
      const st = await client(srv, 'tok-static');
      const conns = await st.ok('server.connections');
      assert.equal(conns.filter((x) => x.userId === 'user-jwt').length, 0);
      st.close();
    } finally {
      c.close();
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('JWT clock skew (default clockSkewSec 30)', () => {
  const SECRET = makeSecret();
  let srv;
  before(async () => {
    srv = await startServer({ config: { ...STORE, auth: { required: true, jwt: { secret: SECRET } } } });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  test('exp a little in the past (within the skew): the token is accepted and the session is usable', T, async () => {
    const c = await client(srv);
    try {
      const m = await c.call('auth.login', { token: signHS256({ sub: 'user-skew', exp: nowSec() - 10 }, SECRET) });
      assert.equal(m.type, 'result', `refused within the skew: ${JSON.stringify(m)}`);
      const next = await c.call('store.count', { bucket: 'products' });
      assert.equal(next.type, 'result', `login succeeded but the very next request failed: ${JSON.stringify(next)} (login answered ${JSON.stringify(m.data)})`);
    } finally {
      c.close();
    }
  });

  test('nbf a little ahead is accepted; exp beyond the skew → "Token has expired"', T, async () => {
    const c = await client(srv);
    try {
      assert.equal((await c.ok('auth.login', { token: signHS256({ sub: 'user-nbf', nbf: nowSec() + 10 }, SECRET) })).userId, 'user-nbf');
      await c.ok('store.count', { bucket: 'products' });
      EXPIRED(await c.err('auth.login', { token: signHS256({ sub: 'user-old', exp: nowSec() - 120 }, SECRET) }));
      INVALID(await c.err('auth.login', { token: signHS256({ sub: 'user-late', nbf: nowSec() + 120 }, SECRET) }));
    } finally {
      c.close();
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('JWT ES256 / EdDSA from a JWKS file', () => {
  const SECRET = makeSecret();
  const ec1 = makeEcKey('ec-1');
  const ec2 = makeEcKey('ec-2');
  const ed1 = makeEdKey('ed-1');
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const rsaJwk = { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' };
  let srv;
  let dir;
  before(async () => {
    dir = makeTempDir('shopd-jwks-');
    const jwksFile = writeJwks(dir, 'jwks.json', [ec1.jwk, ec2.jwk, ed1.jwk, rsaJwk]);
    srv = await startServer({
      config: {
        ...STORE,
        auth: {
          required: true,
          jwt: { secret: SECRET, jwksFile, issuer: ISS, audience: AUD, algorithms: ['ES256', 'EdDSA', 'HS256'], clockSkewSec: 0 },
        },
      },
    });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const claims = (extra = {}) => ({ sub: 'user-ec', iss: ISS, aud: AUD, exp: nowSec() + 600, roles: ['customer'], ...extra });

  async function login(token) {
    const c = await client(srv);
    try {
      return await c.call('auth.login', { token });
    } finally {
      c.close();
    }
  }

  test('ES256 tokens signed by either JWKS key log in (roles from the default "roles" claim)', T, async () => {
    for (const k of [ec1, ec2]) {
      const r = await login(signES256(claims({ sub: `user-${k.kid}` }), k));
      assert.equal(r.type, 'result', JSON.stringify(r));
      assert.equal(r.data.userId, `user-${k.kid}`);
      assert.deepEqual(r.data.roles, ['customer']);
    }
  });

  test('ES256 without a kid is verified against the file keys', T, async () => {
    const r = await login(signES256(claims(), { ...ec2, kid: undefined }));
    assert.equal(r.type, 'result', JSON.stringify(r));
  });

  test('EdDSA (Ed25519) tokens log in', T, async () => {
    const r = await login(signEdDSA(claims({ sub: 'user-ed' }), ed1));
    assert.equal(r.type, 'result', JSON.stringify(r));
    assert.equal(r.data.userId, 'user-ed');
  });

  test('a token signed by another key under a known kid → Invalid token', T, async () => {
    const rogue = makeEcKey('ec-1');
    INVALID(await login(signES256(claims(), rogue)));
    INVALID(await login(signES256(claims(), { ...rogue, kid: undefined })));
    const rogueEd = makeEdKey('ed-1');
    INVALID(await login(signEdDSA(claims(), rogueEd)));
  });

  test('an unknown kid → Invalid token', T, async () => {
    INVALID(await login(signES256(claims(), makeEcKey('ec-404'))));
    INVALID(await login(signES256(claims(), ec1, { kid: 'ec-404' })));
  });

  test('a kid naming a key of another type → Invalid token (ES256 header, Ed25519 kid)', T, async () => {
    INVALID(await login(signES256(claims(), ec1, { kid: 'ed-1' })));
  });

  test('algorithm confusion: HS256 tokens MACed with the public key text are refused', T, async () => {
    for (const k of [ec1, ed1]) {
      const pem = k.pem;
      const jwkText = JSON.stringify(k.jwk);
      for (const secret of [pem, jwkText, Buffer.from(k.jwk.x, 'base64url')]) {
        INVALID(await login(signHS256(claims(), secret)));
        INVALID(await login(signHS256(claims(), secret, { kid: k.kid })));
      }
    }
    // The configured secret itself still works for HS256.
    assert.equal((await login(signHS256(claims(), SECRET))).type, 'result');
  });

  test('an RS256 token signed by a JWKS key is refused when RS256 is not in "algorithms"', T, async () => {
    const input = `${b64json({ alg: 'RS256', typ: 'JWT', kid: 'rsa-1' })}.${b64json(claims())}`;
    const sig = crypto.sign('sha256', Buffer.from(input), rsa.privateKey);
    INVALID(await login(`${input}.${b64url(sig)}`));
  });

  test('ES256: expired → "Token has expired"; wrong audience → Invalid token; nbf ahead → Invalid token', T, async () => {
    EXPIRED(await login(signES256(claims({ exp: nowSec() - 30 }), ec1)));
    INVALID(await login(signES256(claims({ aud: 'nope' }), ec1)));
    INVALID(await login(signES256(claims({ nbf: nowSec() + 60 }), ec1)));
  });

  test('ES256 signature in DER form (not the JWS r||s form) → Invalid token', T, async () => {
    const input = `${b64json({ alg: 'ES256', kid: 'ec-1' })}.${b64json(claims())}`;
    const der = crypto.sign('sha256', Buffer.from(input), ec1.privateKey);
    INVALID(await login(`${input}.${b64url(der)}`));
  });
});

/* ---------------------------------------------------------------------------------- */

describe('JWT from a JWKS URL', () => {
  const k1 = makeEcKey('url-k1');
  const k2 = makeEcKey('url-k2');
  let jwks;
  let srv;
  before(async () => {
    jwks = await startJwksServer([k1.jwk]);
    srv = await startServer({
      config: { ...STORE, auth: { required: true, jwt: { jwksUrl: jwks.url, algorithms: ['ES256'], audience: AUD, clockSkewSec: 0, jwksRefreshMinMs: 1000 } } },
    });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
    await jwks?.close();
  });

  const claims = (extra = {}) => ({ sub: 'user-url', aud: AUD, exp: nowSec() + 600, roles: ['customer'], ...extra });

  async function login(token) {
    const c = await client(srv);
    try {
      return await c.call('auth.login', { token }, 8000);
    } finally {
      c.close();
    }
  }

  test('a token signed by a key served at jwksUrl logs in; the key set is cached', T, async () => {
    const r = await login(signES256(claims(), k1));
    assert.equal(r.type, 'result', JSON.stringify(r));
    assert.equal(r.data.userId, 'user-url');
    assert.ok(jwks.hits >= 1, 'the JWKS URL was never fetched');
    const hits = jwks.hits;
    for (let i = 0; i < 3; i++) assert.equal((await login(signES256(claims({ sub: `u${i}` }), k1))).type, 'result');
    assert.equal(jwks.hits, hits, 'a known kid must not refetch the JWKS');
  });

  test('key rotation: a token with a new kid makes the server refetch the JWKS and is accepted', T, async () => {
    jwks.jwks = { keys: [k1.jwk, k2.jwk] };
    // Fair to a short refetch cool-down: the last fetch is over a second old.
    await sleep(1100);
    const before = jwks.hits;
    const r = await login(signES256(claims({ sub: 'user-rotated' }), k2));
    assert.ok(jwks.hits > before, `no refetch for the new kid (hits ${before} → ${jwks.hits})`);
    assert.equal(r.type, 'result', `token with the rotated-in kid refused: ${JSON.stringify(r)}`);
    assert.equal(r.data.userId, 'user-rotated');
  });

  test('tokens with random unknown kids do not hammer the JWKS endpoint and are refused', T, async () => {
    const before = jwks.hits;
    for (let i = 0; i < 12; i++) INVALID(await login(signES256(claims(), makeEcKey(`rand-${i}-${crypto.randomUUID()}`))));
    assert.ok(jwks.hits - before <= 4, `${jwks.hits - before} JWKS fetches for 12 unknown kids`);
    // Known keys keep working.
    assert.equal((await login(signES256(claims(), k1))).type, 'result');
  });
});

/* ---------------------------------------------------------------------------------- */

describe('auth configured but not required', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      config: {
        ...STORE,
        auth: {
          required: false,
          tokens: TOKENS,
          permissions: { default: 'deny', rules: [{ role: 'customer', allow: ['store.all', 'store.get'], buckets: ['products'] }] },
        },
      },
    });
  }, H);
  after(async () => {
    await srv?.stopAndCheck();
  });

  test('welcome says requiresAuth false; anonymous clients may use every operation', T, async () => {
    const c = await client(srv);
    try {
      assert.equal(c.welcome.requiresAuth, false);
      assert.equal((await c.ok('store.all', { bucket: 'products' })).length, 4);
      await c.ok('store.insert', { bucket: 'products', data: { id: 'anon-1', title: 'Anon', price: 1 } });
      await c.ok('rules.emit', { topic: 'anon.event' });
      await c.ok('rules.setFact', { key: 'anon:1', value: 1 });
      const st = await c.ok('server.stats');
      assert.equal(st.authEnabled, true);
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
    } finally {
      c.close();
    }
  });

  test('with a session the permission policy applies; after logout the client is anonymous again', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('auth.login', { token: 'tok-alice' });
      await c.ok('store.all', { bucket: 'products' });
      assertForbidden(await c.err('store.insert', { bucket: 'products', data: { id: 'al-1', title: 'A', price: 1 } }), 'store.insert', 'products');
      assertForbidden(await c.err('rules.emit', { topic: 'anon.event' }), 'rules.emit', 'anon.event');
      assertForbidden(await c.err('server.stats'), 'server.stats', '*');
      await c.ok('auth.logout');
      await c.ok('store.insert', { bucket: 'products', data: { id: 'al-2', title: 'A', price: 1 } });
      await c.ok('server.stats');
    } finally {
      c.close();
    }
  });

  test('invalid and expired tokens are still refused; the client stays anonymous', T, async () => {
    const c = await client(srv);
    try {
      INVALID(await c.err('auth.login', { token: 'bogus' }));
      EXPIRED(await c.err('auth.login', { token: 'tok-expired' }));
      assert.deepEqual(await c.ok('auth.whoami'), { authenticated: false });
      await c.ok('store.count', { bucket: 'products' });
    } finally {
      c.close();
    }
  });
});

/* ---------------------------------------------------------------------------------- */

describe('auth and rate-limit configuration is checked at start', () => {
  const T1 = { 'tok-a': { userId: 'u-a', roles: ['a'] } };
  const CASES = [
    [{ auth: { jwt: { secret: 'too-short' } } }, /\$\.auth\.jwt\.secret/],
    [{ auth: { jwt: { secret: 'x'.repeat(40), algorithms: ['HS256', 'none'] } } }, /\$\.auth\.jwt\.algorithms\[1\]/],
    [{ auth: { jwt: { secret: 'x'.repeat(40), algorithms: ['ES256'] } } }, /\$\.auth\.jwt\.algorithms\[0\]/],
    [{ auth: { tokens: T1, permissions: { rules: [{ role: 'a', allow: 'store' }] } } }, /\$\.auth\.permissions\.rules\[0\]\.allow/],
    [{ auth: { tokens: T1, permissions: { default: 'maybe' } } }, /\$\.auth\.permissions\.default/],
    [{ auth: { tokens: T1, permissions: { rules: [{ role: 'a', allow: '*', topics: ['a..b'] }] } } }, /\$\.auth\.permissions\.rules\[0\]\.topics\[0\]/],
    [{ auth: { tokens: T1, permissions: { rules: [{ role: 'a', allow: '*', owner: '' }] } } }, /\$\.auth\.permissions\.rules\[0\]\.owner/],
    [{ auth: { tokens: T1, permissions: { rules: [{ role: 'a', allow: '*', match: { 'params.userId': '$session.email' } }] } } }, /\$\.auth\.permissions\.rules\[0\]\.match/],
    [{ auth: { tokens: T1, requird: true } }, /\$\.auth\.requird/],
    [{ auth: { tokens: { t: { roles: ['a'] } } } }, /\$\.auth\.tokens\.t\.userId/],
    [{ rateLimit: { maxRequests: 0, windowMs: 1000 } }, /\$\.rateLimit\.maxRequests/],
    [{ rateLimit: { maxRequests: 5 } }, /\$\.rateLimit\.windowMs/],
  ];

  test('bad auth / permissions / rateLimit sections: exit status 2 with one line naming the JSON path', { timeout: 20000 }, async () => {
    const dir = makeTempDir('shopd-auth-cfg-');
    try {
      for (const [i, [cfg, re]] of CASES.entries()) {
        const cfgPath = path.join(dir, `c${i}.json`);
        fs.writeFileSync(cfgPath, JSON.stringify({ buckets: {}, ...cfg }));
        const r = await runCli(['serve', '--config', cfgPath, '--port', '0', '--host', '127.0.0.1', '--data-dir', path.join(dir, `d${i}`)]);
        assert.equal(r.code, 2, `${JSON.stringify(cfg)}: exit ${r.code} ${r.signal ?? ''}; stderr: ${r.stderr.slice(-400)}`);
        assert.match(r.stderr, re, `${JSON.stringify(cfg)}: stderr does not name the field: ${r.stderr.slice(-400)}`);
        assert.doesNotMatch(r.stdout, /listening on/);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
