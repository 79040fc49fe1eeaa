// Realtime protocol §1, §2, §7 (heartbeat) over a real WebSocket client: welcome,
// frame validation in the specified order, UNKNOWN_OPERATION, ordering, heartbeat.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SLACK_MS, STARTUP_MS, sleep, startServer, wsClient } from './helpers.mjs';

const T = { timeout: 5000 + SLACK_MS };

let srv;
before(async () => {
  srv = await startServer();
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  await srv?.stopAndCheck();
});

const PARSE_ERROR = { id: 0, type: 'error', code: 'PARSE_ERROR', message: 'Invalid JSON' };

/* Sends one raw text frame and returns the next message. */
async function roundTrip(text) {
  const c = await wsClient(srv.wsUrl());
  try {
    c.send(text);
    return await c.next();
  } finally {
    c.close();
  }
}

describe('realtime: welcome', () => {
  test('first frame is the welcome with version 1.0.0, serverTime and requiresAuth false', T, async () => {
    const before = Date.now();
    const c = await wsClient(srv.wsUrl());
    const after = Date.now();
    try {
      const w = c.welcome;
      assert.deepEqual(Object.keys(w).sort(), ['requiresAuth', 'serverTime', 'type', 'version']);
      assert.equal(w.type, 'welcome');
      assert.equal(w.version, '1.0.0');
      assert.equal(w.requiresAuth, false);
      assert.ok(Number.isInteger(w.serverTime), `serverTime ${w.serverTime} is not an integer ms epoch`);
      assert.ok(w.serverTime >= before - 2000 && w.serverTime <= after + 2000, `serverTime ${w.serverTime} not near ${before}`);
      assert.equal(c.raw[0].isBinary, false, 'welcome must be a text frame');
    } finally {
      c.close();
    }
  });

  test('exactly one welcome, nothing else unprompted', T, async () => {
    const c = await wsClient(srv.wsUrl());
    try {
      assert.equal(await c.silentFor(300), true, `unexpected message: ${JSON.stringify(c.queue[0])}`);
    } finally {
      c.close();
    }
  });
});

describe('realtime: validation order (§2)', () => {
  for (const text of ['hello', '{', '{"id":1,', '{"id":1}}', "{'id':1}", '', ' ', '{"id":1,"type":"x",}', 'nul', '[1,']) {
    test(`non-JSON ${JSON.stringify(text)} → PARSE_ERROR id 0 "Invalid JSON"`, T, async () => {
      assert.deepEqual(await roundTrip(text), PARSE_ERROR);
    });
  }

  for (const text of ['[1,2]', '[]', 'null', '"str"', '42', 'true', '1.5e3']) {
    test(`JSON non-object ${text} → PARSE_ERROR id 0`, T, async () => {
      const m = await roundTrip(text);
      assert.equal(m.type, 'error');
      assert.equal(m.id, 0);
      assert.equal(m.code, 'PARSE_ERROR');
      assert.equal(typeof m.message, 'string');
    });
  }

  for (const obj of [{}, { id: 1 }, { id: 1, type: '' }, { id: 1, type: 5 }, { id: 1, type: null }, { id: 1, type: ['store.get'] }, { id: 1, type: { a: 1 } }]) {
    test(`type missing/empty/non-string ${JSON.stringify(obj)} → INVALID_REQUEST id 0`, T, async () => {
      const m = await roundTrip(JSON.stringify(obj));
      assert.equal(m.type, 'error');
      assert.equal(m.id, 0);
      assert.equal(m.code, 'INVALID_REQUEST');
      assert.equal(typeof m.message, 'string');
    });
  }

  test('pong with a finite timestamp → nothing sent back', T, async () => {
    const c = await wsClient(srv.wsUrl());
    try {
      c.send({ type: 'pong', timestamp: Date.now() });
      c.send({ type: 'pong', timestamp: 0 });
      c.send({ type: 'pong', timestamp: 1.5 });
      c.send({ id: 77, type: 'nope.op' });
      const m = await c.next();
      assert.equal(m.id, 77, `expected the reply to id 77 first, got ${JSON.stringify(m)}`);
      assert.equal(await c.silentFor(200), true);
    } finally {
      c.close();
    }
  });

  test('pong with an id is still a pong (no reply)', T, async () => {
    const c = await wsClient(srv.wsUrl());
    try {
      c.send({ id: 5, type: 'pong', timestamp: 123 });
      c.send({ id: 78, type: 'nope.op' });
      assert.equal((await c.next()).id, 78);
    } finally {
      c.close();
    }
  });

  for (const obj of [{ type: 'pong' }, { type: 'pong', timestamp: 'x' }, { type: 'pong', timestamp: null }, { type: 'pong', timestamp: [1] }, { type: 'pong', timestamp: true }]) {
    test(`pong without a finite timestamp ${JSON.stringify(obj)} → INVALID_REQUEST id 0`, T, async () => {
      const m = await roundTrip(JSON.stringify(obj));
      assert.equal(m.id, 0);
      assert.equal(m.type, 'error');
      assert.equal(m.code, 'INVALID_REQUEST');
    });
  }

  for (const obj of [{ type: 'nope.op' }, { id: '1', type: 'nope.op' }, { id: null, type: 'nope.op' }, { id: true, type: 'nope.op' }, { id: {}, type: 'nope.op' }, { id: [1], type: 'nope.op' }]) {
    test(`missing/non-numeric id ${JSON.stringify(obj)} → INVALID_REQUEST id 0`, T, async () => {
      const m = await roundTrip(JSON.stringify(obj));
      assert.equal(m.id, 0);
      assert.equal(m.type, 'error');
      assert.equal(m.code, 'INVALID_REQUEST');
    });
  }

  test('unknown operation → exact UNKNOWN_OPERATION error with the request id', T, async () => {
    assert.deepEqual(await roundTrip('{"id":1,"type":"nope.op"}'), {
      id: 1,
      type: 'error',
      code: 'UNKNOWN_OPERATION',
      message: 'Unknown operation "nope.op"',
    });
  });

  test('unknown operations in real namespaces are UNKNOWN_OPERATION too', T, async () => {
    const m = await roundTrip('{"id":2,"type":"server.nope"}');
    assert.equal(m.code, 'UNKNOWN_OPERATION');
    assert.equal(m.message, 'Unknown operation "server.nope"');
  });

  for (const id of [0, -3, 1.5, 1e15, 2 ** 53 - 1]) {
    test(`id ${id} is echoed unchanged`, T, async () => {
      const m = await roundTrip(JSON.stringify({ id, type: 'nope.op' }));
      assert.equal(m.id, id);
      assert.equal(m.code, 'UNKNOWN_OPERATION');
    });
  }

  test('a type with quotes, backslashes and control characters is escaped correctly in the message', T, async () => {
    const type = 'a"b\\c\n\u0001é';
    const c = await wsClient(srv.wsUrl());
    try {
      c.send(JSON.stringify({ id: 3, type }));
      const raw = await c.next();
      assert.ok(!raw.__unparsable, `reply is not valid JSON: ${raw.__unparsable}`);
      assert.equal(raw.message, `Unknown operation "${type}"`);
    } finally {
      c.close();
    }
  });

  test('JSON with a nested depth bomb is refused without crashing', T, async () => {
    const c = await wsClient(srv.wsUrl());
    try {
      c.send('['.repeat(100000) + ']'.repeat(100000));
      const m = await c.next();
      assert.equal(m.code, 'PARSE_ERROR');
      c.send({ id: 4, type: 'nope.op' });
      assert.equal((await c.next()).id, 4);
    } finally {
      c.close();
    }
  });

  test('duplicate keys and extra fields do not break validation', T, async () => {
    const m = await roundTrip('{"id":1,"id":6,"type":"nope.op","extra":{"x":[1,2,3]}}');
    assert.equal(m.code, 'UNKNOWN_OPERATION');
    assert.ok([1, 6].includes(m.id));
  });

  test('a validation error does not close the connection', T, async () => {
    const c = await wsClient(srv.wsUrl());
    try {
      c.send('garbage');
      assert.equal((await c.next()).code, 'PARSE_ERROR');
      c.send('{}');
      assert.equal((await c.next()).code, 'INVALID_REQUEST');
      c.send({ id: 9, type: 'nope.op' });
      assert.equal((await c.next()).id, 9);
      assert.equal(c.closeInfo, null);
    } finally {
      c.close();
    }
  });
});

describe('realtime: payload limit', () => {
  test('default maxPayloadBytes: a 1 MiB message is processed, 1 MiB + 1 closes with 1009', T, async () => {
    const c = await wsClient(srv.wsUrl());
    const base = JSON.stringify({ id: 5, type: 'nope.op', pad: '' });
    c.send(JSON.stringify({ id: 5, type: 'nope.op', pad: 'x'.repeat(1048576 - base.length) }));
    assert.equal((await c.next()).id, 5);
    c.send(JSON.stringify({ id: 6, type: 'nope.op', pad: 'x'.repeat(1048577 - base.length) }));
    const info = await c.waitClose(3000);
    assert.ok(info, 'not closed');
    assert.equal(info.code, 1009);
    assert.ok(!c.queue.some((m) => m.id === 6), 'the oversized message was processed');
  });
});

describe('realtime: ordering', () => {
  test('200 mixed requests are answered in request order', T, async () => {
    const c = await wsClient(srv.wsUrl());
    try {
      const expected = [];
      for (let i = 1; i <= 200; i++) {
        if (i % 7 === 0) {
          c.send('not json');
          expected.push([0, 'PARSE_ERROR']);
        } else if (i % 11 === 0) {
          c.send({ type: 'pong', timestamp: i });
        } else {
          c.send({ id: i, type: 'nope.op' });
          expected.push([i, 'UNKNOWN_OPERATION']);
        }
      }
      const got = [];
      for (let i = 0; i < expected.length; i++) {
        const m = await c.next();
        got.push([m.id, m.code]);
      }
      assert.deepEqual(got, expected);
    } finally {
      c.close();
    }
  });

  test('concurrent clients each get their own answers', T, async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => wsClient(srv.wsUrl())));
    try {
      clients.forEach((c, k) => {
        for (let i = 0; i < 10; i++) c.send({ id: k * 1000 + i, type: 'nope.op' });
      });
      for (const [k, c] of clients.entries()) {
        for (let i = 0; i < 10; i++) assert.equal((await c.next()).id, k * 1000 + i);
      }
    } finally {
      for (const c of clients) c.close();
    }
  });
});

describe('realtime: heartbeat', () => {
  let hb;
  before(async () => {
    hb = await startServer({ config: { heartbeat: { intervalMs: 200, timeoutMs: 100 } } });
  }, { timeout: STARTUP_MS + 2000 });
  after(async () => {
    await hb?.stopAndCheck();
  });

  test('server sends JSON pings; a client answering pongs stays connected', T, async () => {
    const c = await wsClient(hb.wsUrl());
    try {
      let pings = 0;
      const deadline = Date.now() + 1500;
      while (Date.now() < deadline) {
        let m;
        try {
          m = await c.next(Math.max(1, deadline - Date.now()));
        } catch {
          break;
        }
        if (m.type === 'ping') {
          pings++;
          assert.equal(typeof m.timestamp, 'number');
          assert.ok(Math.abs(m.timestamp - Date.now()) < 5000, `ping timestamp ${m.timestamp} not near now`);
          c.send({ type: 'pong', timestamp: m.timestamp });
        }
      }
      assert.ok(pings >= 3, `only ${pings} pings in 1.5 s at intervalMs 200`);
      assert.equal(c.closeInfo, null, `answering client was closed: ${JSON.stringify(c.closeInfo)}`);
    } finally {
      c.close();
    }
  });

  test('a client that never answers is closed with 4001 heartbeat_timeout', T, async () => {
    const c = await wsClient(hb.wsUrl());
    const start = Date.now();
    const info = await c.waitClose(2500 + SLACK_MS);
    assert.ok(info, 'silent client was not closed within 2.5 s');
    assert.equal(info.code, 4001);
    assert.equal(info.reason, 'heartbeat_timeout');
    assert.ok(info.at - start >= 150, `closed after only ${info.at - start} ms`);
    assert.ok(c.queue.some((m) => m.type === 'ping'), 'closed without having been pinged');
  });

  test('a client answering only WebSocket-level pongs (no JSON pong) is still closed', T, async () => {
    // `ws` answers WebSocket pings automatically; the heartbeat is the JSON ping.
    const c = await wsClient(hb.wsUrl());
    const info = await c.waitClose(2500 + SLACK_MS);
    assert.ok(info);
    assert.equal(info.code, 4001);
  });

  test('a client that stops answering is closed later, not earlier', T, async () => {
    const c = await wsClient(hb.wsUrl());
    let answered = 0;
    const start = Date.now();
    while (Date.now() - start < 800) {
      const m = await c.next(1000).catch(() => null);
      if (m?.type === 'ping') {
        c.send({ type: 'pong', timestamp: m.timestamp });
        answered++;
      }
    }
    assert.equal(c.closeInfo, null, 'closed while answering');
    assert.ok(answered >= 2);
    const info = await c.waitClose(2000 + SLACK_MS);
    assert.ok(info, 'not closed after it stopped answering');
    assert.equal(info.code, 4001);
  });

  test('the default heartbeat (30 s) does not ping within a second', T, async () => {
    const c = await wsClient(srv.wsUrl());
    try {
      await sleep(1000);
      assert.ok(!c.queue.some((m) => m.type === 'ping'));
      assert.equal(c.closeInfo, null);
    } finally {
      c.close();
    }
  });
});
