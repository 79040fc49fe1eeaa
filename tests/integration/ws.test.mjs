// WebSocket framing with hand-made frames: handshake, path, version, control frames,
// fragmentation, UTF-8, size limit and every protocol violation with its close code.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import {
  RawSocket,
  SLACK_MS,
  STARTUP_MS,
  buildRequest,
  closePayload,
  encodeFrame,
  get,
  sleep,
  startServer,
  wsRaw,
  wsRawWelcomed,
} from './helpers.mjs';

const T = { timeout: 5000 + SLACK_MS };
const MAX = 128 * 1024;
const INDEX = '<!doctype html><h1>index for ws tests</h1>\n';

let srv;
let rt; // a server whose realtime path is /rt
before(async () => {
  [srv, rt] = await Promise.all([
    startServer({ config: { maxPayloadBytes: MAX }, files: { 'index.html': INDEX } }),
    startServer({ config: { path: '/rt' }, files: { 'index.html': INDEX } }),
  ]);
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  await Promise.all([srv?.stopAndCheck(), rt?.stopAndCheck()]);
});

/* Reads frames until a close frame, checks its code, and that TCP closes after it. */
async function expectClose(s, code, what) {
  const c = await s.readUntilClose(3000);
  assert.equal(c.code, code, `${what}: close code ${c.code} (reason ${JSON.stringify(c.reason)}), expected ${code}`);
  assert.equal(c.frame.masked, false, 'server frames must not be masked');
  assert.equal(await s.waitClose(2000), true, `${what}: TCP connection not closed after the close frame`);
  s.destroy();
  return c;
}

const req = (id, extra = {}) => JSON.stringify({ id, type: 'nope.op', ...extra });

describe('ws: handshake', () => {
  test('upgrade gives 101 with a correct Sec-WebSocket-Accept, then a welcome text frame', T, async () => {
    const s = await wsRaw(srv.port);
    try {
      assert.match(s.handshake.headers.upgrade || '', /^websocket$/i);
      assert.match(s.handshake.headers.connection || '', /upgrade/i);
      const f = await s.readFrame();
      assert.equal(f.opcode, 0x1);
      assert.equal(f.fin, true);
      assert.equal(f.masked, false, 'server frames must not be masked');
      assert.equal(f.rsv, 0);
      assert.equal(JSON.parse(f.text).type, 'welcome');
    } finally {
      s.destroy();
    }
  });

  test('header names and the Upgrade token are case-insensitive', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      const key = crypto.randomBytes(16).toString('base64');
      s.write(`GET / HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n\r\n`);
      const r = await s.readResponse();
      assert.equal(r.status, 101);
    } finally {
      s.destroy();
    }
  });

  test('plain GET of the WebSocket path without upgrade headers is ordinary HTTP (index.html)', T, async () => {
    const r = await get(srv.port, '/');
    assert.equal(r.status, 200);
    assert.equal(r.text, INDEX);
  });

  test('Sec-WebSocket-Version other than 13 gives 426 with Sec-WebSocket-Version: 13', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(
        buildRequest({
          path: '/',
          headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '8' },
        }),
      );
      const r = await s.readResponse();
      assert.equal(r.status, 426);
      assert.equal(r.headers['sec-websocket-version'], '13');
    } finally {
      s.destroy();
    }
  });

  test('upgrade without Sec-WebSocket-Key gives 400', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(buildRequest({ path: '/', headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13' } }));
      const r = await s.readResponse();
      assert.equal(r.status, 400);
    } finally {
      s.destroy();
    }
  });

  test('upgrade with a malformed Sec-WebSocket-Key gives 400', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(buildRequest({ path: '/', headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'short', 'Sec-WebSocket-Version': '13' } }));
      const r = await s.readResponse();
      assert.equal(r.status, 400);
    } finally {
      s.destroy();
    }
  });

  test('POST with upgrade headers is not upgraded', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(
        buildRequest({
          method: 'POST',
          path: '/',
          headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '13' },
          body: '',
        }),
      );
      const r = await s.readResponse();
      assert.notEqual(r.status, 101);
    } finally {
      s.destroy();
    }
  });

  test('permessage-deflate offered by the client is not accepted', T, async () => {
    const s = await wsRaw(srv.port, { headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' } });
    try {
      assert.equal(s.handshake.headers['sec-websocket-extensions'], undefined);
      assert.equal(JSON.parse((await s.readFrame()).text).type, 'welcome');
    } finally {
      s.destroy();
    }
  });

  test('frames sent in the same write as the upgrade request are processed', T, async () => {
    const extra = encodeFrame({ payload: req(42) });
    const s = await wsRaw(srv.port, { extra });
    try {
      const welcome = await s.readJson();
      assert.equal(welcome.type, 'welcome');
      const e = await s.readJson();
      assert.equal(e.id, 42);
      assert.equal(e.code, 'UNKNOWN_OPERATION');
    } finally {
      s.destroy();
    }
  });

  test('configured path /rt: upgrade there works, plain GET /rt is HTTP 404, upgrade at / is refused', T, async () => {
    const s = await wsRawWelcomed(rt.port, { path: '/rt' });
    s.destroy();
    const plain = await get(rt.port, '/rt');
    assert.equal(plain.status, 404);
    assert.equal(plain.json().error.code, 'NOT_FOUND');
    await assert.rejects(wsRaw(rt.port, { path: '/' }), /expected 101/);
    // and / is still the static index there
    assert.equal((await get(rt.port, '/')).text, INDEX);
  });

  test('configured path /rt with a query string still upgrades', T, async () => {
    const s = await wsRawWelcomed(rt.port, { path: '/rt?token=abc' });
    s.destroy();
  });
});

describe('ws: frames that work', () => {
  test('ping gets a pong with the same payload (125 bytes)', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      const payload = crypto.randomBytes(125);
      s.sendFrame({ opcode: 0x9, payload });
      const f = await s.readFrame();
      assert.equal(f.opcode, 0xa);
      assert.ok(f.payload.equals(payload), 'pong payload differs');
    } finally {
      s.destroy();
    }
  });

  test('empty ping gets an empty pong', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      s.sendFrame({ opcode: 0x9 });
      const f = await s.readFrame();
      assert.equal(f.opcode, 0xa);
      assert.equal(f.payload.length, 0);
    } finally {
      s.destroy();
    }
  });

  test('unsolicited pong is ignored', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      s.sendFrame({ opcode: 0xa, payload: 'x' });
      s.sendText(req(3));
      const e = await s.readJson();
      assert.equal(e.id, 3);
    } finally {
      s.destroy();
    }
  });

  test('fragmented message with pings between fragments', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      const msg = Buffer.from(req(7, { pad: 'p'.repeat(300) }));
      s.sendFrame({ fin: false, opcode: 0x1, payload: msg.subarray(0, 10) });
      s.sendFrame({ opcode: 0x9, payload: 'one' });
      s.sendFrame({ fin: false, opcode: 0x0, payload: msg.subarray(10, 200) });
      s.sendFrame({ opcode: 0x9, payload: 'two' });
      s.sendFrame({ fin: true, opcode: 0x0, payload: msg.subarray(200) });
      const p1 = await s.readFrame();
      const p2 = await s.readFrame();
      assert.deepEqual([p1.opcode, p1.text, p2.opcode, p2.text], [0xa, 'one', 0xa, 'two']);
      const e = await s.readJson();
      assert.equal(e.id, 7);
      assert.equal(e.code, 'UNKNOWN_OPERATION');
    } finally {
      s.destroy();
    }
  });

  test('a multi-byte UTF-8 character split across fragments is valid', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      const msg = Buffer.from(JSON.stringify({ id: 8, type: 'é€😀.op' }));
      const cut = msg.indexOf(Buffer.from('€')) + 1; // inside the 3-byte sequence
      const cut2 = msg.indexOf(Buffer.from('😀')) + 2; // inside the 4-byte sequence
      s.sendFrame({ fin: false, opcode: 0x1, payload: msg.subarray(0, cut) });
      s.sendFrame({ fin: false, opcode: 0x0, payload: msg.subarray(cut, cut2) });
      s.sendFrame({ fin: true, opcode: 0x0, payload: msg.subarray(cut2) });
      const e = await s.readJson();
      assert.equal(e.id, 8);
      assert.equal(e.message, 'Unknown operation "é€😀.op"');
    } finally {
      s.destroy();
    }
  });

  test('a frame delivered one byte at a time is processed', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      const f = encodeFrame({ payload: req(9) });
      for (const b of f) {
        s.write(Buffer.from([b]));
        await sleep(1);
      }
      assert.equal((await s.readJson()).id, 9);
    } finally {
      s.destroy();
    }
  });

  test('many frames in one write are answered in order', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      const frames = [];
      for (let i = 1; i <= 50; i++) frames.push(encodeFrame({ payload: req(i) }));
      s.write(Buffer.concat(frames));
      for (let i = 1; i <= 50; i++) assert.equal((await s.readJson()).id, i);
    } finally {
      s.destroy();
    }
  });

  test('16-bit and 64-bit length frames are processed', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      s.sendText(req(10, { pad: 'a'.repeat(1000) })); // 126 + 16-bit length
      s.sendText(req(11, { pad: 'b'.repeat(70000) })); // 127 + 64-bit length
      assert.equal((await s.readJson()).id, 10);
      assert.equal((await s.readJson()).id, 11);
    } finally {
      s.destroy();
    }
  });

  test('a message of exactly maxPayloadBytes is accepted', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    try {
      const base = req(12, { pad: '' });
      const msg = req(12, { pad: 'c'.repeat(MAX - Buffer.byteLength(base)) });
      assert.equal(Buffer.byteLength(msg), MAX);
      s.sendText(msg);
      assert.equal((await s.readJson()).id, 12);
    } finally {
      s.destroy();
    }
  });

  test('close handshake: client close 1000 is echoed with 1000, then TCP closes', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x8, payload: closePayload(1000, 'bye') });
    await expectClose(s, 1000, 'client close');
  });

  test('close with code 1001 from the client is answered with a close', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x8, payload: closePayload(1001) });
    const c = await s.readUntilClose(3000);
    assert.ok([1000, 1001].includes(c.code), `got ${c.code}`);
    assert.equal(await s.waitClose(2000), true);
    s.destroy();
  });

  test('empty close frame is answered with a close and TCP closes', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x8 });
    const c = await s.readUntilClose(3000);
    assert.ok(c.code === null || c.code === 1000, `got ${c.code}`);
    assert.equal(await s.waitClose(2000), true);
    s.destroy();
  });
});

describe('ws: protocol violations close the connection with the right code', () => {
  test('binary frame → 1003', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x2, payload: Buffer.from([1, 2, 3]) });
    await expectClose(s, 1003, 'binary');
  });

  test('fragmented binary message → 1003', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ fin: false, opcode: 0x2, payload: Buffer.from([1]) });
    s.sendFrame({ fin: true, opcode: 0x0, payload: Buffer.from([2]) });
    await expectClose(s, 1003, 'fragmented binary');
  });

  test('unmasked client frame → 1002', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ mask: false, payload: req(1) });
    await expectClose(s, 1002, 'unmasked');
  });

  for (const rsv of [4, 2, 1]) {
    test(`RSV bits ${rsv.toString(2).padStart(3, '0')} → 1002`, T, async () => {
      const s = await wsRawWelcomed(srv.port);
      s.sendFrame({ rsv, payload: req(1) });
      await expectClose(s, 1002, `rsv ${rsv}`);
    });
  }

  for (const opcode of [0x3, 0x7, 0xb, 0xf]) {
    test(`reserved opcode 0x${opcode.toString(16)} → 1002`, T, async () => {
      const s = await wsRawWelcomed(srv.port);
      s.sendFrame({ opcode, payload: 'x' });
      await expectClose(s, 1002, `opcode ${opcode}`);
    });
  }

  test('continuation frame without a message → 1002', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x0, payload: req(1) });
    await expectClose(s, 1002, 'orphan continuation');
  });

  test('new text frame inside a fragmented message → 1002', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ fin: false, opcode: 0x1, payload: '{"id":1,' });
    s.sendFrame({ fin: true, opcode: 0x1, payload: req(2) });
    await expectClose(s, 1002, 'text inside fragmented message');
  });

  test('control frame over 125 bytes → 1002', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x9, payload: Buffer.alloc(126, 1) });
    await expectClose(s, 1002, 'ping of 126 bytes');
  });

  test('fragmented control frame → 1002', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ fin: false, opcode: 0x9, payload: 'x' });
    await expectClose(s, 1002, 'ping with FIN=0');
  });

  test('close frame with a 1-byte payload → 1002', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x8, payload: Buffer.from([3]) });
    await expectClose(s, 1002, 'close with 1 byte');
  });

  for (const code of [999, 1005, 1006, 1015, 2000]) {
    test(`close frame with illegal code ${code} → 1002`, T, async () => {
      const s = await wsRawWelcomed(srv.port);
      s.sendFrame({ opcode: 0x8, payload: closePayload(code) });
      await expectClose(s, 1002, `close code ${code}`);
    });
  }

  test('invalid UTF-8 in a text frame → 1007', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ payload: Buffer.concat([Buffer.from('{"id":1,"type":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]) });
    await expectClose(s, 1007, 'invalid UTF-8');
  });

  for (const [name, bytes] of [
    ['overlong encoding', [0xc0, 0xaf]],
    ['UTF-16 surrogate', [0xed, 0xa0, 0x80]],
    ['code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['truncated sequence at the end', [0xe2, 0x82]],
  ]) {
    test(`invalid UTF-8 (${name}) → 1007`, T, async () => {
      const s = await wsRawWelcomed(srv.port);
      s.sendFrame({ payload: Buffer.concat([Buffer.from('{"id":1,"x":"'), Buffer.from(bytes)]) });
      await expectClose(s, 1007, name);
    });
  }

  test('invalid UTF-8 in the first fragment → 1007 before the message ends', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ fin: false, opcode: 0x1, payload: Buffer.from([0x7b, 0xff, 0xff]) });
    // No further fragment is sent: the server must decide now.
    await expectClose(s, 1007, 'bad first fragment');
  });

  test('invalid UTF-8 in a close reason → 1007 (or 1002)', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ opcode: 0x8, payload: Buffer.concat([closePayload(1000), Buffer.from([0xff])]) });
    const c = await s.readUntilClose(3000);
    assert.ok([1007, 1002].includes(c.code), `got ${c.code}`);
    s.destroy();
  });

  test('message over maxPayloadBytes → 1009 (single frame)', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendText(req(1, { pad: 'x'.repeat(MAX) }));
    await expectClose(s, 1009, 'too big');
  });

  test('oversized frame is refused from its header, before the payload arrives → 1009', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.sendFrame({ payload: Buffer.alloc(0), lengthOverride: 512 * 1024 * 1024 });
    await expectClose(s, 1009, 'announced 512 MiB');
  });

  test('fragmented message growing over maxPayloadBytes → 1009', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    const chunk = 'y'.repeat(48 * 1024);
    s.sendFrame({ fin: false, opcode: 0x1, payload: '{"id":1,"pad":"' + chunk });
    s.sendFrame({ fin: false, opcode: 0x0, payload: chunk });
    s.sendFrame({ fin: false, opcode: 0x0, payload: chunk });
    await expectClose(s, 1009, 'fragments over the limit');
  });

  test('64-bit length with the top bit set → 1002 or 1009', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    const h = Buffer.from([0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
    s.write(h);
    const c = await s.readUntilClose(3000);
    assert.ok([1002, 1009].includes(c.code), `got ${c.code}`);
    s.destroy();
  });

  test('requests before a violation are answered; nothing after it is processed', T, async () => {
    const s = await wsRawWelcomed(srv.port);
    s.write(Buffer.concat([encodeFrame({ payload: req(1) }), encodeFrame({ opcode: 0x2, payload: 'b' }), encodeFrame({ payload: req(2) })]));
    const c = await s.readUntilClose(3000);
    assert.equal(c.code, 1003);
    const ids = c.frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.text).id);
    assert.deepEqual(ids, [1]);
    s.destroy();
  });

  test('server still healthy after all violations', T, async () => {
    assert.equal((await get(srv.port, '/healthz')).status, 200);
    const s = await wsRawWelcomed(srv.port);
    s.sendText(req(99));
    assert.equal((await s.readJson()).id, 99);
    s.destroy();
  });
});
