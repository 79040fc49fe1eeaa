// Operations endpoints and logs: /healthz, /readyz, /metrics (Prometheus text, counters
// that move with traffic), and per-request / per-connection log lines in text and JSON.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { RawSocket, SLACK_MS, STARTUP_MS, get, metricValue, parseMetrics, scrape, sleep, startServer, wsClient } from './helpers.mjs';

const T = { timeout: 5000 + SLACK_MS };

let srv;
before(async () => {
  srv = await startServer();
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  await srv?.stopAndCheck();
});

/* Polls /metrics until check(samples) is true (the gauges may lag a close by a tick). */
async function eventually(check, ms = 2000) {
  const deadline = Date.now() + ms;
  let samples;
  for (;;) {
    samples = await scrape(srv.port);
    if (check(samples)) return samples;
    if (Date.now() > deadline) return samples;
    await sleep(50);
  }
}

describe('ops: health', () => {
  test('GET /healthz → 200 {"status":"ok"} application/json', T, async () => {
    const r = await get(srv.port, '/healthz');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.deepEqual(r.json(), { status: 'ok' });
  });

  test('GET /readyz → 200 {"status":"ready"} application/json', T, async () => {
    const r = await get(srv.port, '/readyz');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.deepEqual(r.json(), { status: 'ready' });
  });
});

describe('ops: metrics', () => {
  test('GET /metrics is Prometheus text 0.0.4 that parses line by line', T, async () => {
    const r = await get(srv.port, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/plain; ?version=0\.0\.4/);
    const samples = parseMetrics(r.text);
    assert.ok(samples.length > 0);
    assert.ok(r.text.endsWith('\n'), 'exposition must end with a newline');
    for (const name of new Set(samples.map((s) => s.name))) {
      const base = name.replace(/_(bucket|sum|count)$/, '');
      assert.ok(r.text.includes(`# TYPE ${name} `) || r.text.includes(`# TYPE ${base} `), `no # TYPE line for ${name}`);
    }
  });

  test('required series are present', T, async () => {
    await get(srv.port, '/healthz');
    const s = await scrape(srv.port);
    const required = [
      ['shopd_connections_active', { kind: 'http' }],
      ['shopd_connections_active', { kind: 'websocket' }],
      ['shopd_connections_total', {}],
      ['shopd_http_requests_total', { status: '200' }],
      ['shopd_ws_messages_total', { direction: 'in' }],
      ['shopd_ws_messages_total', { direction: 'out' }],
      ['shopd_bytes_total', { direction: 'in' }],
      ['shopd_bytes_total', { direction: 'out' }],
      ['shopd_uptime_seconds', {}],
    ];
    const missing = required.filter(([n, l]) => metricValue(s, n, l) === undefined).map(([n, l]) => `${n}${JSON.stringify(l)}`);
    assert.deepEqual(missing, []);
  });

  test('TYPE lines: *_total are counters, connections_active and uptime are gauges (or counter for uptime)', T, async () => {
    const text = (await get(srv.port, '/metrics')).text;
    for (const n of ['shopd_connections_total', 'shopd_http_requests_total', 'shopd_ws_messages_total', 'shopd_bytes_total']) {
      assert.match(text, new RegExp(`^# TYPE ${n} counter$`, 'm'), `${n} should be a counter`);
    }
    assert.match(text, /^# TYPE shopd_connections_active gauge$/m);
    assert.match(text, /^# TYPE shopd_uptime_seconds (gauge|counter)$/m);
  });

  test('http_requests_total counts per status; a 404 creates its own series', T, async () => {
    const a = await scrape(srv.port);
    const ok0 = metricValue(a, 'shopd_http_requests_total', { status: '200' });
    const nf0 = metricValue(a, 'shopd_http_requests_total', { status: '404' }) ?? 0;
    for (let i = 0; i < 3; i++) await get(srv.port, '/healthz');
    await get(srv.port, '/nope-404');
    await get(srv.port, '/nope-404-again');
    const b = await scrape(srv.port);
    // +3 healthz, +1 for the first scrape (counted once done) — at least 3.
    assert.ok(metricValue(b, 'shopd_http_requests_total', { status: '200' }) >= ok0 + 3, 'status="200" did not grow by 3');
    assert.equal(metricValue(b, 'shopd_http_requests_total', { status: '404' }), nf0 + 2, 'status="404" should grow by exactly 2');
  });

  test('a 405 and a 400 are counted under their status', T, async () => {
    const s = await RawSocket.connect(srv.port);
    s.write('POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
    assert.equal((await s.readResponse()).status, 405);
    s.destroy();
    const b = await RawSocket.connect(srv.port);
    b.write('BROKEN REQUEST\r\n\r\n');
    assert.equal((await b.readResponse()).status, 400);
    b.destroy();
    const m = await scrape(srv.port);
    assert.ok(metricValue(m, 'shopd_http_requests_total', { status: '405' }) >= 1, 'no status="405" series');
    assert.ok(metricValue(m, 'shopd_http_requests_total', { status: '400' }) >= 1, 'no status="400" series');
  });

  test('connections_total grows with each new connection', T, async () => {
    const a = metricValue(await scrape(srv.port), 'shopd_connections_total');
    for (let i = 0; i < 4; i++) await get(srv.port, '/healthz');
    const b = metricValue(await scrape(srv.port), 'shopd_connections_total');
    // 4 connections + the scrape's own connection.
    assert.ok(b >= a + 4, `connections_total ${a} → ${b}`);
  });

  test('connections_active{kind="http"} counts open HTTP connections', T, async () => {
    const socks = [];
    try {
      const base = metricValue(await scrape(srv.port), 'shopd_connections_active', { kind: 'http' });
      for (let i = 0; i < 5; i++) {
        const s = await RawSocket.connect(srv.port);
        s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        await s.readResponse();
        socks.push(s);
      }
      const during = await eventually((m) => metricValue(m, 'shopd_connections_active', { kind: 'http' }) >= base + 5);
      assert.ok(metricValue(during, 'shopd_connections_active', { kind: 'http' }) >= base + 5);
      for (const s of socks) s.destroy();
      const afterClose = await eventually((m) => metricValue(m, 'shopd_connections_active', { kind: 'http' }) <= base);
      assert.ok(metricValue(afterClose, 'shopd_connections_active', { kind: 'http' }) <= base, 'http gauge did not go back down');
    } finally {
      for (const s of socks) s.destroy();
    }
  });

  test('connections_active{kind="websocket"} follows WebSocket clients; messages and bytes count', T, async () => {
    const m0 = await eventually((m) => metricValue(m, 'shopd_connections_active', { kind: 'websocket' }) === 0);
    assert.equal(metricValue(m0, 'shopd_connections_active', { kind: 'websocket' }), 0);
    const in0 = metricValue(m0, 'shopd_ws_messages_total', { direction: 'in' });
    const out0 = metricValue(m0, 'shopd_ws_messages_total', { direction: 'out' });
    const bin0 = metricValue(m0, 'shopd_bytes_total', { direction: 'in' });
    const bout0 = metricValue(m0, 'shopd_bytes_total', { direction: 'out' });

    const clients = [await wsClient(srv.wsUrl()), await wsClient(srv.wsUrl())];
    try {
      for (const c of clients) {
        for (let i = 1; i <= 3; i++) c.send({ id: i, type: 'nope.op', pad: 'x'.repeat(1000) });
        for (let i = 1; i <= 3; i++) await c.next();
      }
      const m1 = await scrape(srv.port);
      assert.equal(metricValue(m1, 'shopd_connections_active', { kind: 'websocket' }), 2);
      assert.ok(metricValue(m1, 'shopd_ws_messages_total', { direction: 'in' }) >= in0 + 6, 'ws in did not grow by 6');
      // 2 welcomes + 6 errors
      assert.ok(metricValue(m1, 'shopd_ws_messages_total', { direction: 'out' }) >= out0 + 8, 'ws out did not grow by 8');
      assert.ok(metricValue(m1, 'shopd_bytes_total', { direction: 'in' }) >= bin0 + 6000, 'bytes in did not grow by the 6 KB sent');
      assert.ok(metricValue(m1, 'shopd_bytes_total', { direction: 'out' }) > bout0, 'bytes out did not grow');
    } finally {
      for (const c of clients) c.close();
    }
    await Promise.all(clients.map((c) => c.waitClose(2000)));
    const m2 = await eventually((m) => metricValue(m, 'shopd_connections_active', { kind: 'websocket' }) === 0);
    assert.equal(metricValue(m2, 'shopd_connections_active', { kind: 'websocket' }), 0, 'websocket gauge did not return to 0');
  });

  test('an upgraded connection moves from the http gauge to the websocket gauge', T, async () => {
    const base = await eventually((m) => metricValue(m, 'shopd_connections_active', { kind: 'websocket' }) === 0);
    const httpBase = metricValue(base, 'shopd_connections_active', { kind: 'http' });
    const c = await wsClient(srv.wsUrl());
    try {
      const m = await scrape(srv.port);
      assert.equal(metricValue(m, 'shopd_connections_active', { kind: 'websocket' }), 1);
      assert.ok(metricValue(m, 'shopd_connections_active', { kind: 'http' }) <= httpBase, 'the upgraded connection is still counted as http');
    } finally {
      c.close();
    }
  });

  test('uptime_seconds grows', T, async () => {
    const a = metricValue(await scrape(srv.port), 'shopd_uptime_seconds');
    await sleep(1100);
    const b = metricValue(await scrape(srv.port), 'shopd_uptime_seconds');
    assert.equal(typeof a, 'number', 'the series is exported');
    assert.ok(b > a, `uptime ${a} → ${b}`);
  });

  test('HEAD /metrics gives headers only', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      const h = await s.readResponse({ head: true });
      assert.equal(h.status, 200);
      assert.ok(Number(h.headers['content-length']) > 0);
      assert.equal((await s.readResponse()).status, 200);
    } finally {
      s.destroy();
    }
  });
});

describe('ops: logs', () => {
  test('text logs: a line per request with conn= and req=, and connection events with conn=', T, async () => {
    const marker = `/log-marker-${Date.now()}`;
    await get(srv.port, marker);
    await srv.waitForStderr(new RegExp(marker.replace(/[-/]/g, '\\$&')), 2000).catch(() => null);
    const lines = srv.stderrLines;
    const reqLines = lines.filter((l) => /\breq=\S+/.test(l));
    assert.ok(reqLines.length > 0, `no request lines with req=; stderr:\n${srv.stderr.slice(-1500)}`);
    for (const l of reqLines) assert.match(l, /\bconn=\S+/, `request line without conn=: ${l}`);
    assert.ok(
      lines.some((l) => /\bconn=\S+/.test(l) && !/\breq=/.test(l)),
      'no connection event line (conn= without req=)',
    );
    assert.ok(lines.some((l) => l.includes(marker) && /404/.test(l)), `no request line naming the path ${marker} and its status 404`);
  });

  test('request ids differ within a connection; conn ids differ between connections', T, async () => {
    const before = srv.stderrLines.length;
    await get(srv.port, '/healthz');
    await get(srv.port, '/healthz');
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
      await s.readResponse();
      await s.readResponse();
    } finally {
      s.destroy();
    }
    await sleep(100);
    const lines = srv.stderrLines.slice(before).filter((l) => /\breq=/.test(l));
    const pairs = lines.map((l) => `${l.match(/\bconn=(\S+)/)?.[1]}/${l.match(/\breq=(\S+)/)[1]}`);
    assert.ok(lines.length >= 4, `expected 4 request lines, got:\n${lines.join('\n')}`);
    assert.equal(new Set(pairs).size, pairs.length, `(conn, req) pairs repeat: ${pairs}`);
    const conns = new Set(pairs.map((p) => p.split('/')[0]));
    assert.ok(conns.size >= 3, `conn ids not distinct across 3 connections: ${[...conns]}`);
  });

  test('--log-format json: every stderr line is a JSON object with ts, level, event, conn', { timeout: STARTUP_MS + 5000 }, async () => {
    const j = await startServer({ args: ['--log-format', 'json'] });
    try {
      await get(j.port, '/healthz');
      await get(j.port, '/nope');
      const c = await wsClient(j.wsUrl());
      c.send({ id: 1, type: 'nope.op' });
      await c.next();
      c.close();
      await c.waitClose(2000);
      await sleep(200);
    } finally {
      await j.stopAndCheck();
    }
    const lines = j.stderrLines;
    assert.ok(lines.length >= 3, `too few log lines: ${j.stderr}`);
    const objs = lines.map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        assert.fail(`log line is not JSON: ${l}`);
      }
    });
    for (const o of objs) {
      assert.equal(typeof o, 'object');
      assert.ok('ts' in o && 'level' in o && 'event' in o, `missing ts/level/event: ${JSON.stringify(o)}`);
    }
    const withConn = objs.filter((o) => 'conn' in o);
    assert.ok(withConn.length > 0, 'no JSON line with conn');
    assert.ok(objs.some((o) => 'conn' in o && 'req' in o), 'no request line with conn and req');
  });
});
