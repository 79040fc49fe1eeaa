// Graceful shutdown (protocol §7): SIGTERM/SIGINT notify WebSocket clients, wait up to
// the grace period, close the rest with 1000, refuse upgrades with 1001, report
// not-ready, finish in-flight HTTP responses and exit 0.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, describe, test } from 'node:test';

import { RawSocket, SLACK_MS, STARTUP_MS, buildRequest, get, sleep, startServer, wsClient } from './helpers.mjs';

const T = { timeout: STARTUP_MS + 6000 + SLACK_MS };
const servers = [];
after(async () => {
  // Whatever a failing test left running.
  await Promise.all(servers.map((s) => s.stop()));
});

async function start(gracePeriodMs, extra = {}) {
  const s = await startServer({ config: { shutdown: { gracePeriodMs }, ...extra.config }, files: extra.files });
  servers.push(s);
  return s;
}

/* Asserts a clean exit within ms. */
async function assertExit(srv, ms, what) {
  const info = await srv.waitExit(ms);
  assert.ok(info, `${what}: shopd still running ${ms} ms after the signal`);
  assert.equal(info.code, 0, `${what}: exit code ${info.code} signal ${info.signal}; stderr tail:\n${srv.stderr.slice(-1500)}`);
  assert.doesNotMatch(srv.stderr, /AddressSanitizer|LeakSanitizer|runtime error:/);
}

/* Ways for a request to reach the server during the grace period, prepared before the
 * signal: a keep-alive connection (used once) and a connection holding all of the
 * request except its final CRLF. Whether the listener stays open, idle keep-alive
 * connections survive, or only connections in the middle of a request are kept, one
 * of them delivers the request. */
async function prepare(port, bytes) {
  const keepAlive = await RawSocket.connect(port);
  keepAlive.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal((await keepAlive.readResponse()).status, 200);
  const partial = await RawSocket.connect(port);
  partial.write(bytes.subarray(0, bytes.length - 2));
  await sleep(50);
  return { keepAlive, partial, bytes };
}

/* Sends the prepared request during shutdown. Returns { sock, via }. */
async function sendDuringShutdown(port, prep) {
  let s;
  try {
    s = await RawSocket.connect(port, '127.0.0.1', 500);
  } catch {
    s = null;
  }
  if (s) {
    s.write(prep.bytes);
    try {
      await s.waitFor(() => (s.buf.length ? true : undefined), 1000, 'a reply');
      return { sock: s, via: 'new connection' };
    } catch {
      s.destroy();
    }
  }
  if (!prep.keepAlive.closed) {
    prep.keepAlive.write(prep.bytes);
    return { sock: prep.keepAlive, via: 'keep-alive connection' };
  }
  assert.equal(prep.partial.closed, false, 'no way for a request to arrive during the grace period: listener closed, idle keep-alive closed, and a connection in the middle of a request closed too');
  prep.partial.write(prep.bytes.subarray(prep.bytes.length - 2));
  return { sock: prep.partial, via: 'connection that was mid-request' };
}

function closeAll(prep) {
  prep.keepAlive.destroy();
  prep.partial.destroy();
}

function upgradeRequest() {
  return buildRequest({
    path: '/',
    headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '13' },
  });
}

describe('lifecycle: graceful shutdown', () => {
  test('SIGTERM: clients get the shutdown notice, are closed with 1000 after the grace period, exit 0', T, async () => {
    const srv = await start(300);
    const clients = [await wsClient(srv.wsUrl()), await wsClient(srv.wsUrl())];
    const t0 = Date.now();
    srv.signal('SIGTERM');
    for (const c of clients) {
      const m = await c.next(2000);
      assert.deepEqual(m, { type: 'system', event: 'shutdown', gracePeriodMs: 300 });
    }
    const infos = await Promise.all(clients.map((c) => c.waitClose(3000 + SLACK_MS)));
    for (const info of infos) {
      assert.ok(info, 'client not closed after the grace period');
      assert.equal(info.code, 1000, `close code ${info.code} reason ${info.reason}`);
      assert.ok(info.at - t0 >= 250, `closed ${info.at - t0} ms after SIGTERM, before the 300 ms grace period`);
    }
    await assertExit(srv, 3000 + SLACK_MS, 'SIGTERM with clients');
  });

  test('SIGINT behaves like SIGTERM', T, async () => {
    const srv = await start(300);
    const c = await wsClient(srv.wsUrl());
    srv.signal('SIGINT');
    assert.deepEqual(await c.next(2000), { type: 'system', event: 'shutdown', gracePeriodMs: 300 });
    const info = await c.waitClose(3000);
    assert.equal(info?.code, 1000);
    await assertExit(srv, 3000 + SLACK_MS, 'SIGINT');
  });

  test('no clients: SIGTERM exits promptly instead of waiting out a long grace period', T, async () => {
    const srv = await start(4000);
    await get(srv.port, '/healthz');
    const t0 = Date.now();
    srv.signal('SIGTERM');
    await assertExit(srv, 1500 + SLACK_MS, 'no clients, grace 4000');
    assert.ok(Date.now() - t0 < 1500 + SLACK_MS);
  });

  test('clients that leave on the notice let the server exit before the grace period ends', T, async () => {
    const srv = await start(4000);
    const clients = [await wsClient(srv.wsUrl()), await wsClient(srv.wsUrl()), await wsClient(srv.wsUrl())];
    const t0 = Date.now();
    srv.signal('SIGTERM');
    for (const c of clients) {
      const m = await c.next(2000);
      assert.equal(m.type, 'system');
      assert.equal(m.gracePeriodMs, 4000);
      c.close(1000, 'bye');
    }
    await assertExit(srv, 2000 + SLACK_MS, 'clients left, grace 4000');
    assert.ok(Date.now() - t0 < 2000 + SLACK_MS, `took ${Date.now() - t0} ms`);
  });

  test('the default grace period (5000 ms) is announced when none is configured', T, async () => {
    const srv = await startServer();
    servers.push(srv);
    const c = await wsClient(srv.wsUrl());
    srv.signal('SIGTERM');
    const m = await c.next(2000);
    assert.deepEqual(m, { type: 'system', event: 'shutdown', gracePeriodMs: 5000 });
    c.close();
    await assertExit(srv, 2000 + SLACK_MS, 'default grace, client left');
  });

  test('during the grace period /readyz answers 503 shutting_down', T, async () => {
    const srv = await start(1500);
    const prep = await prepare(srv.port, Buffer.from('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n'));
    const c = await wsClient(srv.wsUrl());
    assert.deepEqual((await get(srv.port, '/readyz')).json(), { status: 'ready' });
    srv.signal('SIGTERM');
    await c.next(2000); // the notice: we are inside the grace period now
    const { sock: s, via } = await sendDuringShutdown(srv.port, prep);
    const r = await s.readResponse().catch((e) => assert.fail(`/readyz sent during the grace period via the ${via}: ${e.message}`));
    assert.equal(r.status, 503, `via ${via}`);
    assert.deepEqual(r.json(), { status: 'shutting_down' });
    closeAll(prep);
    s.destroy();
    c.close();
    await assertExit(srv, 3000 + SLACK_MS, 'readyz during shutdown');
  });

  test('a WebSocket upgrade during the grace period is closed with 1001 server_shutting_down', T, async () => {
    const srv = await start(1500);
    const prep = await prepare(srv.port, upgradeRequest());
    const c = await wsClient(srv.wsUrl());
    srv.signal('SIGTERM');
    await c.next(2000);
    const { sock: s, via } = await sendDuringShutdown(srv.port, prep);
    const r = await s.readResponse().catch((e) => assert.fail(`upgrade sent during the grace period via the ${via}: ${e.message}`));
    assert.equal(r.status, 101, `upgrade during shutdown (via ${via}) answered ${r.status}`);
    const close = await s.readUntilClose(2000);
    assert.equal(close.code, 1001);
    assert.equal(close.reason, 'server_shutting_down');
    assert.ok(
      !close.frames.some((f) => f.opcode === 1 && JSON.parse(f.text).type === 'welcome'),
      'a refused connection should not be welcomed',
    );
    closeAll(prep);
    s.destroy();
    c.close();
    await assertExit(srv, 3000 + SLACK_MS, 'upgrade during shutdown');
  });

  test('an in-flight HTTP response is finished before exit', T, async () => {
    const big = crypto.randomBytes(12 * 1024 * 1024);
    const srv = await start(1000, { files: { 'big.bin': big } });
    const s = await RawSocket.connect(srv.port);
    s.sock.pause();
    s.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(300); // the server has written what the socket buffers take and waits
    srv.signal('SIGTERM');
    await sleep(200);
    s.sock.resume();
    const r = await s.readResponse({ timeout: 4000 });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, big.length, `got ${r.body.length} of ${big.length} bytes`);
    assert.ok(r.body.equals(big), 'body corrupted');
    s.destroy();
    await assertExit(srv, 3000 + SLACK_MS, 'in-flight response');
  });

  test('after shutdown the port no longer accepts connections', T, async () => {
    const srv = await start(300);
    const port = srv.port;
    srv.signal('SIGTERM');
    await assertExit(srv, 2000 + SLACK_MS, 'plain SIGTERM');
    await assert.rejects(RawSocket.connect(port, '127.0.0.1', 500));
  });
});
