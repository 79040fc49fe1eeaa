// HTTP/1.1 over raw sockets: keep-alive, pipelining, bodies, limits (413/414/431),
// malformed and ambiguous requests (400), 404/405, HEAD, Date, Connection: close, the
// header and idle timeouts and the connection cap.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { RawSocket, SLACK_MS, STARTUP_MS, buildRequest, get, request, sleep, startServer } from './helpers.mjs';

const T = { timeout: 5000 + SLACK_MS };
const MAX_BODY = 1024;

let srv;
before(async () => {
  srv = await startServer({ config: { http: { maxBodyBytes: MAX_BODY } } });
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  await srv?.stopAndCheck();
});

const GET_HEALTHZ = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';

/* Sends raw bytes on a fresh connection and reads one response. */
async function rawOnce(bytes, { timeout = 3000 } = {}) {
  const s = await RawSocket.connect(srv.port);
  try {
    s.write(bytes);
    const res = await s.readResponse({ timeout });
    res.closedAfter = await s.waitClose(1000);
    return res;
  } finally {
    s.destroy();
  }
}

function assertDate(res) {
  assert.ok(res.headers.date, `response ${res.status} has no Date header`);
  const d = Date.parse(res.headers.date);
  assert.ok(!Number.isNaN(d), `unparsable Date: ${res.headers.date}`);
  assert.match(res.headers.date, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/, 'IMF-fixdate');
  assert.ok(Math.abs(d - Date.now()) < 5000, `Date is off: ${res.headers.date}`);
}

describe('http: basics', () => {
  test('GET /healthz answers 200 JSON with Content-Length and Date', T, async () => {
    const res = await get(srv.port, '/healthz');
    assert.equal(res.status, 200);
    assert.equal(res.httpVersion, '1.1');
    assert.match(res.headers['content-type'], /^application\/json/);
    assert.equal(Number(res.headers['content-length']), res.body.length);
    assert.deepEqual(res.json(), { status: 'ok' });
    assertDate(res);
  });

  test('keep-alive: several requests on one connection, which stays open', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      for (let i = 0; i < 5; i++) {
        s.write(GET_HEALTHZ);
        const res = await s.readResponse();
        assert.equal(res.status, 200, `request ${i}`);
        assert.notEqual((res.headers.connection || '').toLowerCase(), 'close');
      }
      assert.equal(await s.waitClose(300), false, 'connection closed although keep-alive');
    } finally {
      s.destroy();
    }
  });

  test('pipelining: responses come back in request order', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(
        GET_HEALTHZ +
          'GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n' +
          'GET /no-such-thing HTTP/1.1\r\nHost: x\r\n\r\n' +
          'HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n' +
          'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n' +
          GET_HEALTHZ,
      );
      const r1 = await s.readResponse();
      const r2 = await s.readResponse();
      const r3 = await s.readResponse();
      const r4 = await s.readResponse({ head: true });
      const r5 = await s.readResponse();
      const r6 = await s.readResponse();
      assert.deepEqual([r1.status, r2.status, r3.status, r4.status, r5.status, r6.status], [200, 200, 404, 200, 200, 200]);
      assert.deepEqual(r1.json(), { status: 'ok' });
      assert.deepEqual(r2.json(), { status: 'ready' });
      assert.equal(r3.json().error.code, 'NOT_FOUND');
      assert.match(r5.headers['content-type'], /^text\/plain/);
      assert.deepEqual(r6.json(), { status: 'ok' });
      assert.equal(s.buf.length, 0, 'extra bytes after the last response');
    } finally {
      s.destroy();
    }
  });

  test('pipelining: 100 requests in one write, split at odd byte boundaries', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      const all = Buffer.from(GET_HEALTHZ.repeat(100));
      for (let off = 0; off < all.length; off += 97) s.write(all.subarray(off, off + 97));
      for (let i = 0; i < 100; i++) {
        const r = await s.readResponse();
        assert.equal(r.status, 200, `response ${i}`);
      }
    } finally {
      s.destroy();
    }
  });

  test('a request delivered one byte at a time is answered', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      for (const ch of GET_HEALTHZ) {
        s.write(ch);
        await sleep(2);
      }
      const r = await s.readResponse();
      assert.equal(r.status, 200);
    } finally {
      s.destroy();
    }
  });

  test('HTTP/1.0 without Host is served and then closed', T, async () => {
    const res = await rawOnce('GET /healthz HTTP/1.0\r\n\r\n');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { status: 'ok' });
    assert.equal(res.closedAfter, true, 'HTTP/1.0 without keep-alive must be closed after the response');
  });

  test('Connection: close gets the response, then the connection closes', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      const r = await s.readResponse();
      assert.equal(r.status, 200);
      assert.match(r.headers.connection || '', /close/i, 'response should say Connection: close');
      assert.equal(await s.waitClose(1000), true, 'connection not closed');
    } finally {
      s.destroy();
    }
  });

  test('Connection: close in a pipeline: later requests are not answered', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' + GET_HEALTHZ);
      const r = await s.readResponse();
      assert.equal(r.status, 200);
      assert.equal(await s.waitClose(1000), true);
      assert.equal(s.buf.length, 0, `nothing may follow: ${s.buf.toString('latin1').slice(0, 100)}`);
    } finally {
      s.destroy();
    }
  });

  test('unknown path gives 404 JSON NOT_FOUND', T, async () => {
    const res = await get(srv.port, '/definitely/not/here');
    assert.equal(res.status, 404);
    assert.match(res.headers['content-type'], /^application\/json/);
    const body = res.json();
    assert.equal(body.error.code, 'NOT_FOUND');
    assert.equal(typeof body.error.message, 'string');
    assertDate(res);
  });

  for (const p of ['/healthz', '/readyz', '/metrics']) {
    test(`POST ${p} gives 405 with Allow: GET, HEAD`, T, async () => {
      const res = await request(srv.port, { method: 'POST', path: p, body: '{}' });
      assert.equal(res.status, 405);
      const allow = (res.headers.allow || '').split(',').map((x) => x.trim());
      assert.ok(allow.includes('GET'), `Allow: ${res.headers.allow}`);
      assert.ok(allow.includes('HEAD'), `Allow: ${res.headers.allow}`);
      assertDate(res);
    });
  }

  test('DELETE /healthz gives 405 too, keep-alive connection still usable', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n' + GET_HEALTHZ);
      assert.equal((await s.readResponse()).status, 405);
      assert.equal((await s.readResponse()).status, 200);
    } finally {
      s.destroy();
    }
  });

  test('HEAD has the GET headers and Content-Length but no body', T, async () => {
    const g = await get(srv.port, '/healthz');
    const s = await RawSocket.connect(srv.port);
    try {
      // If HEAD carried a body, the GET behind it would be mis-framed.
      s.write('HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n' + GET_HEALTHZ);
      const h = await s.readResponse({ head: true });
      assert.equal(h.status, 200);
      assert.equal(h.headers['content-length'], String(g.body.length));
      assert.equal(h.headers['content-type'], g.headers['content-type']);
      assertDate(h);
      const g2 = await s.readResponse();
      assert.equal(g2.status, 200, 'the response after HEAD is mis-framed (HEAD sent a body?)');
      assert.deepEqual(g2.json(), { status: 'ok' });
    } finally {
      s.destroy();
    }
  });

  test('HEAD of an unknown path: 404 headers, no body', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n' + GET_HEALTHZ);
      const h = await s.readResponse({ head: true });
      assert.equal(h.status, 404);
      assert.ok(Number(h.headers['content-length']) > 0);
      assert.equal((await s.readResponse()).status, 200);
    } finally {
      s.destroy();
    }
  });

  test('query strings do not change routing', T, async () => {
    const res = await get(srv.port, '/healthz?x=1&y=%20');
    assert.equal(res.status, 200);
  });
});

describe('http: bodies', () => {
  test('Content-Length body is consumed; the next pipelined request is parsed correctly', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      const body = 'x'.repeat(500) + '\r\n\r\nGET /evil HTTP/1.1\r\n\r\n';
      s.write(buildRequest({ method: 'POST', path: '/nope', body }));
      s.write(GET_HEALTHZ);
      const r1 = await s.readResponse();
      assert.ok([404, 405].includes(r1.status), `got ${r1.status}`);
      const r2 = await s.readResponse();
      assert.equal(r2.status, 200, 'the request after the body was not parsed as the next request');
      assert.equal(s.buf.length, 0);
    } finally {
      s.destroy();
    }
  });

  test('chunked body is consumed; the next pipelined request is parsed correctly', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(
        'POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
          '5\r\nhello\r\n' +
          '1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n' +
          '0\r\nX-Trailer: t\r\n\r\n' +
          GET_HEALTHZ,
      );
      const r1 = await s.readResponse();
      assert.ok([404, 405].includes(r1.status), `got ${r1.status}`);
      const r2 = await s.readResponse();
      assert.equal(r2.status, 200, 'the request after the chunked body was not parsed as the next request');
    } finally {
      s.destroy();
    }
  });

  test('body larger than http.maxBodyBytes (Content-Length) gives 413', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(`POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`);
      s.write('y'.repeat(MAX_BODY + 1));
      const r = await s.readResponse();
      assert.equal(r.status, 413);
      assertDate(r);
    } finally {
      s.destroy();
    }
  });

  test('413 is decided from Content-Length before the body arrives', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n');
      const r = await s.readResponse();
      assert.equal(r.status, 413);
    } finally {
      s.destroy();
    }
  });

  test('chunked body over http.maxBodyBytes gives 413', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
      for (let i = 0; i < 4; i++) s.write(`190\r\n${'z'.repeat(400)}\r\n`);
      s.write('0\r\n\r\n');
      const r = await s.readResponse();
      assert.equal(r.status, 413);
    } finally {
      s.destroy();
    }
  });

  test('a body of exactly http.maxBodyBytes is accepted', T, async () => {
    const r = await request(srv.port, { method: 'POST', path: '/nope', body: 'q'.repeat(MAX_BODY) });
    assert.ok([404, 405].includes(r.status), `expected the route's answer (404/405), got ${r.status}`);
  });
});

describe('http: limits and malformed requests', () => {
  test('default http.maxBodyBytes is 1 MiB', { timeout: STARTUP_MS + 5000 }, async () => {
    const d = await startServer();
    try {
      const over = await request(d.port, { method: 'POST', path: '/nope', body: Buffer.alloc(1048577, 0x61) });
      assert.equal(over.status, 413, '1 MiB + 1 byte body');
      const exact = await request(d.port, { method: 'POST', path: '/nope', body: Buffer.alloc(1048576, 0x61) });
      assert.ok([404, 405].includes(exact.status), `a 1 MiB body got ${exact.status}`);
    } finally {
      await d.stopAndCheck();
    }
  });

  test('request target over 8 KiB gives 414', T, async () => {
    const res = await rawOnce(`GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(res.status, 414);
    assertDate(res);
  });

  test('request target just under 8 KiB is not 414', T, async () => {
    const res = await rawOnce(`GET /${'a'.repeat(8000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(res.status, 404);
  });

  test('header block over 16 KiB gives 431', T, async () => {
    let h = '';
    for (let i = 0; i < 20; i++) h += `X-Fill-${i}: ${'v'.repeat(1000)}\r\n`;
    const res = await rawOnce(`GET /healthz HTTP/1.1\r\nHost: x\r\n${h}\r\n`);
    assert.equal(res.status, 431);
    assertDate(res);
  });

  test('one huge header value gives 431', T, async () => {
    const res = await rawOnce(`GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: ${'c'.repeat(20000)}\r\n\r\n`);
    assert.equal(res.status, 431);
  });

  test('header block under the limit is fine', T, async () => {
    let h = '';
    for (let i = 0; i < 10; i++) h += `X-Fill-${i}: ${'v'.repeat(1000)}\r\n`;
    const res = await rawOnce(`GET /healthz HTTP/1.1\r\nHost: x\r\n${h}\r\n`);
    assert.equal(res.status, 200);
  });

  const bad = [
    ['garbage request line', 'THIS IS NOT HTTP\r\n\r\n'],
    ['header without colon', 'GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n'],
    ['HTTP/1.1 without Host', 'GET /healthz HTTP/1.1\r\nAccept: */*\r\n\r\n'],
    ['Content-Length twice with different values', 'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde'],
    ['Content-Length together with Transfer-Encoding', 'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['bad chunk size', 'POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
    ['negative Content-Length', 'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'],
    ['non-numeric Content-Length', 'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
  ];
  for (const [name, bytes] of bad) {
    test(`400 for ${name}, then the connection closes`, T, async () => {
      const res = await rawOnce(bytes);
      assert.equal(res.status, 400);
      assertDate(res);
      assert.equal(res.closedAfter, true, 'connection must close after a 400');
    });
  }

  test('unparsable HTTP version gives 400 (or 505)', T, async () => {
    const res = await rawOnce('GET /healthz HTTP/9\r\nHost: x\r\n\r\n');
    assert.ok([400, 505].includes(res.status), `got ${res.status}`);
  });

  test('a 400 in a pipeline: earlier requests answered, nothing after', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(GET_HEALTHZ + 'BROKEN\r\n\r\n' + GET_HEALTHZ);
      assert.equal((await s.readResponse()).status, 200);
      assert.equal((await s.readResponse()).status, 400);
      assert.equal(await s.waitClose(1000), true);
      assert.equal(s.buf.length, 0);
    } finally {
      s.destroy();
    }
  });

  test('NUL byte in the request target is rejected (400 or 404), server survives', T, async () => {
    const res = await rawOnce('GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok([400, 404].includes(res.status), `got ${res.status}`);
    assert.equal((await get(srv.port, '/healthz')).status, 200);
  });

  test('percent-encoded NUL in the path is not 200 and does not crash', T, async () => {
    const res = await rawOnce('GET /healthz%00 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok([400, 404].includes(res.status), `got ${res.status}`);
    assert.equal((await get(srv.port, '/healthz')).status, 200);
  });

  test('client closing mid-request does not disturb the server', T, async () => {
    for (let i = 0; i < 20; i++) {
      const s = await RawSocket.connect(srv.port);
      s.write('POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc');
      s.destroy();
    }
    assert.equal((await get(srv.port, '/healthz')).status, 200);
  });
});

describe('http: timeouts and connection cap', () => {
  test('a client that stalls inside the request head is disconnected after headerTimeoutMs', { timeout: STARTUP_MS + 6000 }, async () => {
    const t = await startServer({ config: { http: { headerTimeoutMs: 300, idleTimeoutMs: 60000 } } });
    try {
      const s = await RawSocket.connect(t.port);
      const start = Date.now();
      s.write('GET /healthz HTTP/1.1\r\nHo');
      const closed = await s.waitClose(2000 + SLACK_MS);
      const took = Date.now() - start;
      s.destroy();
      assert.equal(closed, true, 'stalled connection was not closed within 2 s');
      assert.ok(took >= 250, `closed too early (${took} ms)`);
      // A complete request still works on a new connection.
      assert.equal((await get(t.port, '/healthz')).status, 200);
    } finally {
      await t.stopAndCheck();
    }
  });

  test('slow trickle of header bytes is still cut at headerTimeoutMs (slowloris)', { timeout: STARTUP_MS + 6000 }, async () => {
    const t = await startServer({ config: { http: { headerTimeoutMs: 300, idleTimeoutMs: 60000 } } });
    try {
      const s = await RawSocket.connect(t.port);
      const start = Date.now();
      s.write('GET /healthz HTTP/1.1\r\n');
      let closed = false;
      for (let i = 0; i < 30 && !closed; i++) {
        await sleep(100);
        s.write(`X-${i}: y\r\n`);
        closed = s.closed;
      }
      closed = closed || (await s.waitClose(200));
      const took = Date.now() - start;
      s.destroy();
      assert.equal(closed, true, 'a header block trickled over 3 s was never cut off');
      assert.ok(took < 2000 + SLACK_MS, `cut only after ${took} ms`);
    } finally {
      await t.stopAndCheck();
    }
  });

  test('an idle keep-alive connection is closed after idleTimeoutMs, not before', { timeout: STARTUP_MS + 6000 }, async () => {
    const t = await startServer({ config: { http: { headerTimeoutMs: 5000, idleTimeoutMs: 400 } } });
    try {
      const s = await RawSocket.connect(t.port);
      s.write(GET_HEALTHZ);
      assert.equal((await s.readResponse()).status, 200);
      const start = Date.now();
      // Still usable shortly after the response.
      await sleep(150);
      s.write(GET_HEALTHZ);
      assert.equal((await s.readResponse()).status, 200, 'connection unusable well inside idleTimeoutMs');
      const closed = await s.waitClose(2500 + SLACK_MS);
      const took = Date.now() - start;
      s.destroy();
      assert.equal(closed, true, 'idle keep-alive connection not closed');
      assert.ok(took >= 350, `closed after ${took} ms, before idleTimeoutMs`);
    } finally {
      await t.stopAndCheck();
    }
  });

  test('connections beyond http.maxConnections are refused; existing ones keep working', { timeout: STARTUP_MS + 6000 }, async () => {
    const t = await startServer({ config: { http: { maxConnections: 3 } } });
    const socks = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = await RawSocket.connect(t.port);
        socks.push(s);
        s.write(GET_HEALTHZ);
        assert.equal((await s.readResponse()).status, 200, `connection ${i} within the cap`);
      }
      // The fourth: closed right away, or 503.
      const extra = await RawSocket.connect(t.port);
      socks.push(extra);
      extra.write(GET_HEALTHZ);
      let outcome;
      try {
        const r = await extra.readResponse({ timeout: 1500 });
        outcome = r.status;
      } catch {
        outcome = extra.closed ? 'closed' : 'hung';
      }
      assert.ok(outcome === 503 || outcome === 'closed', `connection over the cap got ${outcome} (want 503 or closed)`);
      if (outcome === 503) assert.equal(await extra.waitClose(1000), true, '503 over the cap should close');
      // Existing connections still served.
      for (let i = 0; i < 3; i++) {
        socks[i].write(GET_HEALTHZ);
        assert.equal((await socks[i].readResponse()).status, 200, `existing connection ${i} after refusal`);
      }
      // Freeing a slot lets a new client in.
      socks[0].destroy();
      await sleep(200);
      let ok = false;
      for (let i = 0; i < 10 && !ok; i++) {
        try {
          ok = (await get(t.port, '/healthz')).status === 200;
        } catch {
          await sleep(100);
        }
      }
      assert.ok(ok, 'a new connection is refused after one of the three closed');
    } finally {
      for (const s of socks) s.destroy();
      await t.stopAndCheck();
    }
  });
});
