// Fixtures for the rules, auth, permission, rate-limit and connection-lifecycle
// integration tests (protocol §5–§7): JWT signing with node's crypto (HS256, ES256,
// EdDSA), JWKS files and a tiny JWKS HTTP server, a logged-in realtime client, RSS
// readings, and a raw WebSocket reader that can stop reading.
//
// Builds on helpers.mjs and store-helpers.mjs (owned by others) without changing them.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { SLACK_MS, STARTUP_MS, sleep, startServer, wsRawWelcomed } from './helpers.mjs';
import { assertError, storeClient } from './store-helpers.mjs';

export { SLACK_MS, STARTUP_MS, sleep, assertError, storeClient };

/* Per-test timeout for ordinary tests in these files. */
export const T = { timeout: 6000 + SLACK_MS };
/* Before/after hooks that start or stop a server. */
export const H = { timeout: STARTUP_MS + 3000 };

/* ---------------------------------------------------------------------------------- */
/* Servers                                                                              */
/* ---------------------------------------------------------------------------------- */

/* Runs fn(srv) against a fresh server and always stops it (checking a clean exit). */
export async function withServer(config, fn, opts = {}) {
  const srv = await startServer({ config, ...opts });
  let failed = false;
  try {
    return await fn(srv);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    if (failed) await srv.stop();
    else await srv.stopAndCheck();
  }
}

/* A storeClient (request/response pairing, pushes apart) that logged in with token
 * (when given) and checked the login succeeded. */
export async function client(srv, token) {
  const c = await storeClient(srv);
  if (token !== undefined) {
    const m = await c.call('auth.login', { token });
    assert.equal(m.type, 'result', `login with ${String(token).slice(0, 40)} failed: ${JSON.stringify(m)}`);
    c.identity = m.data;
  }
  return c;
}

/* Closes every client given, ignoring ones already gone. */
export function closeAll(...clients) {
  for (const c of clients.flat()) {
    try {
      c?.close();
    } catch {
      /* gone */
    }
  }
}

/* Asserts m is an error with exactly this code and message. */
export function assertErr(m, code, message) {
  assertError(m, code, message);
}

export function assertForbidden(m, type, resource) {
  assertError(m, 'FORBIDDEN', `No permission for ${type} on ${resource}`);
}

/* Polls fn() until it returns a truthy value; returns it or throws after ms. */
export async function eventually(fn, ms = 2000, what = 'condition') {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${ms} ms (last: ${JSON.stringify(last)})`);
    await sleep(20);
  }
}

/* ---------------------------------------------------------------------------------- */
/* JWT                                                                                  */
/* ---------------------------------------------------------------------------------- */

export const b64url = (buf) => Buffer.from(buf).toString('base64url');
export const b64json = (obj) => b64url(JSON.stringify(obj));
export const nowSec = () => Math.floor(Date.now() / 1000);

/* A 48-byte HS256 secret (printable). */
export function makeSecret() {
  return crypto.randomBytes(36).toString('base64');
}

/* Signs header.payload with HMAC-SHA256 over `secret` (string or Buffer). */
export function signHS256(payload, secret, header = {}) {
  const h = { alg: 'HS256', typ: 'JWT', ...header };
  const input = `${b64json(h)}.${b64json(payload)}`;
  const sig = crypto.createHmac('sha256', secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

/* An EC P-256 key pair with its public JWK (kid, alg, use set). */
export function makeEcKey(kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
  return { kid, privateKey, publicKey, jwk, pem: publicKey.export({ format: 'pem', type: 'spki' }) };
}

/* An Ed25519 key pair with its public JWK. */
export function makeEdKey(kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' };
  return { kid, privateKey, publicKey, jwk, pem: publicKey.export({ format: 'pem', type: 'spki' }) };
}

/* ES256 JWS (raw r||s signature, as JWS requires). header.kid defaults to key.kid. */
export function signES256(payload, key, header = {}) {
  const h = { alg: 'ES256', typ: 'JWT', ...(key.kid ? { kid: key.kid } : {}), ...header };
  const input = `${b64json(h)}.${b64json(payload)}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(sig)}`;
}

export function signEdDSA(payload, key, header = {}) {
  const h = { alg: 'EdDSA', typ: 'JWT', ...(key.kid ? { kid: key.kid } : {}), ...header };
  const input = `${b64json(h)}.${b64json(payload)}`;
  const sig = crypto.sign(null, Buffer.from(input), key.privateKey);
  return `${input}.${b64url(sig)}`;
}

/* Unsigned token (alg none) with an empty or given signature part. */
export function unsignedToken(payload, header = { alg: 'none', typ: 'JWT' }, sig = '') {
  return `${b64json(header)}.${b64json(payload)}.${sig}`;
}

/* Writes {keys:[…]} as a JWKS file into dir and returns its path. */
export function writeJwks(dir, name, keys) {
  const p = path.join(dir, name);
  fs.writeFileSync(p, JSON.stringify({ keys }));
  return p;
}

/* A tiny JWKS server on 127.0.0.1: `jwks` is the document served (replace it to
 * rotate); `hits` counts GETs. */
export async function startJwksServer(initialKeys = []) {
  const s = {
    jwks: { keys: initialKeys },
    hits: 0,
    server: null,
    url: null,
    async close() {
      s.server.closeAllConnections?.();
      await new Promise((r) => s.server.close(() => r()));
    },
  };
  s.server = http.createServer((req, res) => {
    s.hits++;
    const body = JSON.stringify(s.jwks);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
    res.end(body);
  });
  await new Promise((r) => s.server.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${s.server.address().port}/.well-known/jwks.json`;
  return s;
}

/* ---------------------------------------------------------------------------------- */
/* Process and raw sockets                                                              */
/* ---------------------------------------------------------------------------------- */

/* VmRSS of a process in bytes (Linux). */
export function rssBytes(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = text.match(/^VmRSS:\s+(\d+)\s+kB/m);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/* A raw WebSocket (helpers.wsRawWelcomed) whose reading can be stopped and resumed:
 * while paused the kernel buffers fill and the server's writes stall. */
export async function stallableClient(port) {
  const sock = await wsRawWelcomed(port);
  let nextId = 1;
  const r = {
    sock,
    welcome: sock.welcome,
    send(type, fields = {}, id = nextId++) {
      sock.sendJson({ id, type, ...fields });
      return id;
    },
    pause() {
      sock.sock.pause();
    },
    resume() {
      sock.sock.resume();
    },
    /* Reads text frames until pred(msg, all) is true; returns every message read. */
    async readUntil(pred, ms = 5000) {
      const out = [];
      const deadline = Date.now() + ms;
      for (;;) {
        const f = await sock.readFrame(Math.max(1, deadline - Date.now()));
        if (f.opcode === 0x8) throw new Error(`closed while reading: ${f.payload.toString('latin1')}`);
        if (f.opcode !== 0x1) continue;
        const m = JSON.parse(f.payload.toString('utf8'));
        out.push(m);
        if (pred(m, out)) return out;
      }
    },
    destroy() {
      sock.destroy();
    },
  };
  return r;
}

