// Shared fixtures for the black-box integration tests: start the real binary on a free
// loopback port with its own temp directory and config file, talk to it over raw
// sockets (hostile HTTP, hand-made WebSocket frames) or the `ws` client, and stop it.
//
// Every server started here is registered; `stopAndCheck()` sends SIGTERM, waits for the
// exit (SIGKILL after a timeout) and fails when the exit was not clean or a sanitizer
// reported something. An exit hook kills whatever is still running, so a crashed test
// file never leaves a server behind.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.SHOPD_BIN
  ? path.resolve(process.env.SHOPD_BIN)
  : path.join(ROOT, 'build/shopd');
export const IS_ASAN = /asan|tsan|sanitiz/i.test(BIN) || process.env.SHOPD_ASAN === '1';
/* Startup of a sanitizer build is several times slower; the listening line still has
 * to come, just later. */
export const STARTUP_MS = Number(process.env.SHOPD_STARTUP_MS) || (IS_ASAN ? 20000 : 5000);
/* Slack added to timing assertions (a sanitizer build is slower at everything). */
export const SLACK_MS = IS_ASAN ? 1500 : 500;
export const VERSION = fs.readFileSync(path.join(ROOT, 'VERSION'), 'utf8').trim();

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ------------------------------------------------------------------------------------ */
/* Processes                                                                             */
/* ------------------------------------------------------------------------------------ */

const live = new Set();
function killAll() {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAll();
    process.exit(128 + os.constants.signals[sig]);
  });
}

/* The environment a child gets: ours without any SHOPD_* variable (so a developer's
 * shell cannot change what a test sees), plus `extra`. */
export function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SHOPD_')) env[k] = v;
  return { ...env, ...extra };
}

export function makeTempDir(prefix = 'shopd-it-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/* Writes a tree of files: { "a.txt": "text", "sub/b.bin": Buffer }. */
export function writeFiles(root, files) {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
}

/* Runs the binary to completion (for CLI tests). Resolves with code, signal, stdout and
 * stderr; kills it after `timeout`. */
export function runCli(args, { env = {}, cwd, timeout = STARTUP_MS } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, {
      cwd: cwd || os.tmpdir(),
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout);
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/* Deep merge of plain objects (b wins). */
function merge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b || {})) {
    if (v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object') {
      out[k] = merge(a[k], v);
    } else {
      out[k] = v;
    }
  }
  return out;
}

const LISTEN_RE = /^listening on http:\/\/(\[[^\]]+\]|[^:\s/]+):(\d+)\s*$/;

export class Server {
  constructor(child, dir) {
    this.child = child;
    this.dir = dir;
    this.stdout = '';
    this.stderr = '';
    this.port = null;
    this.host = null;
    this.exitInfo = null;
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        live.delete(child);
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
    child.stdout.on('data', (d) => (this.stdout += d));
    child.stderr.on('data', (d) => (this.stderr += d));
  }

  get pid() {
    return this.child.pid;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  wsUrl(p = '/') {
    return `ws://127.0.0.1:${this.port}${p}`;
  }

  get stdoutLines() {
    return this.stdout.split('\n').filter((l) => l.length > 0);
  }

  get stderrLines() {
    return this.stderr.split('\n').filter((l) => l.length > 0);
  }

  signal(sig) {
    if (!this.exitInfo) this.child.kill(sig);
  }

  /* Resolves with the exit info, or null when the process is still running after ms. */
  async waitExit(ms) {
    if (this.exitInfo) return this.exitInfo;
    let t;
    const r = await Promise.race([this.exited, new Promise((res) => (t = setTimeout(() => res(null), ms)))]);
    clearTimeout(t);
    return r;
  }

  /* Waits until stderr matches re; returns the match or throws after ms. */
  async waitForStderr(re, ms = 2000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.stderr.match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`stderr did not match ${re} within ${ms} ms; stderr:\n${this.stderr.slice(-2000)}`);
      await sleep(20);
    }
  }

  /* SIGTERM, wait (SIGKILL after timeout); returns { code, signal, killed }. */
  async stop(timeout = 8000 + (IS_ASAN ? 10000 : 0)) {
    if (!this.exitInfo) {
      this.child.kill('SIGTERM');
      const r = await this.waitExit(timeout);
      if (!r) {
        this.child.kill('SIGKILL');
        const info = await this.exited;
        this.removeDir();
        return { ...info, killed: true };
      }
    }
    this.removeDir();
    return { ...this.exitInfo, killed: false };
  }

  /* stop() and fail unless the server exited 0 by itself without sanitizer reports. */
  async stopAndCheck(timeout) {
    const r = await this.stop(timeout);
    const tail = this.stderr.slice(-3000);
    if (r.killed) throw new Error(`shopd did not exit after SIGTERM (killed with SIGKILL); stderr tail:\n${tail}`);
    if (SANITIZER_RE.test(this.stderr)) throw new Error(`sanitizer report in stderr:\n${tail}`);
    if (r.code !== 0) throw new Error(`shopd exited with code=${r.code} signal=${r.signal} after SIGTERM; stderr tail:\n${tail}`);
    return r;
  }

  removeDir() {
    if (this.dir && !process.env.SHOPD_KEEP_TMP) {
      fs.rmSync(this.dir, { recursive: true, force: true });
      this.dir = null;
    }
  }
}

/* Starts `shopd serve` with a fresh temp directory holding data/, public/ and
 * config.json, and resolves once it listens.
 *
 * Options:
 *   config     object merged over { http: { publicDir } } and written as config.json
 *   files      files for public/ ({ "index.html": "…" })
 *   args       extra arguments after the defaults
 *   env        extra environment
 *   configArg  pass --config (default true)
 *   hostArg    value for --host (default "127.0.0.1"; null omits the flag)
 *   portArg    value for --port (default "0"; null omits the flag)
 *   dataDirArg pass --data-dir (default true)
 *   probePorts ports to poll with TCP connects when no listening line is expected
 */
export async function startServer(opts = {}) {
  const {
    config = {},
    files = {},
    args = [],
    env = {},
    configArg = true,
    hostArg = '127.0.0.1',
    portArg = '0',
    dataDirArg = true,
    probePorts = [],
    timeout = STARTUP_MS,
    setup,
  } = opts;
  const dir = makeTempDir();
  const dataDir = path.join(dir, 'data');
  const publicDir = path.join(dir, 'public');
  fs.mkdirSync(dataDir);
  fs.mkdirSync(publicDir);
  writeFiles(publicDir, files);
  if (setup) setup({ dir, dataDir, publicDir });
  const fullConfig = merge({ http: { publicDir } }, config);
  const configPath = path.join(dir, 'config.json');
  fs.writeFileSync(configPath, JSON.stringify(fullConfig, null, 2));

  const argv = ['serve'];
  if (configArg) argv.push('--config', configPath);
  if (hostArg !== null) argv.push('--host', hostArg);
  if (portArg !== null) argv.push('--port', String(portArg));
  if (dataDirArg) argv.push('--data-dir', dataDir);
  argv.push(...args);

  const child = spawn(BIN, argv, { cwd: dir, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const srv = new Server(child, dir);
  srv.configPath = configPath;
  srv.dataDir = dataDir;
  srv.publicDir = publicDir;
  srv.argv = argv;
  try {
    await new Promise((resolve, reject) => {
      let done = false;
      const finish = (err) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(probe);
        err ? reject(err) : resolve();
      };
      const timer = setTimeout(
        () => finish(new Error(`no listening line within ${timeout} ms; argv=${argv.join(' ')}\nstdout:\n${srv.stdout}\nstderr:\n${srv.stderr.slice(-3000)}`)),
        timeout,
      );
      child.on('error', (e) => finish(new Error(`cannot start ${BIN}: ${e.message}`)));
      srv.exited.then((info) =>
        finish(new Error(`shopd exited before listening (code=${info.code} signal=${info.signal}); argv=${argv.join(' ')}\nstderr:\n${srv.stderr.slice(-3000)}`)),
      );
      child.stdout.on('data', () => {
        for (const line of srv.stdout.split('\n')) {
          const m = line.match(LISTEN_RE);
          if (m) {
            srv.host = m[1];
            srv.port = Number(m[2]);
            srv.listenLine = line;
            finish();
            return;
          }
        }
      });
      let probing = false;
      const probe = setInterval(async () => {
        if (!probePorts.length || probing || done) return;
        probing = true;
        for (const p of probePorts) {
          if (await canConnect(p)) {
            srv.port = p;
            srv.host = '127.0.0.1';
            finish();
            break;
          }
        }
        probing = false;
      }, 50);
    });
  } catch (e) {
    await srv.stop(2000);
    throw e;
  }
  return srv;
}

export function canConnect(port, host = '127.0.0.1', ms = 300) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, ms);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/* A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/* ------------------------------------------------------------------------------------ */
/* Raw sockets                                                                           */
/* ------------------------------------------------------------------------------------ */

/* A TCP connection that accumulates what it receives; readers take from the front. */
export class RawSocket {
  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.length = 0; /* bytes buffered, without joining the chunks */
    this.need = 0; /* a reader needs at least this many bytes before it looks again */
    this.closed = false;
    this.error = null;
    this.waiters = new Set();
    sock.on('data', (d) => {
      this.chunks.push(d);
      this.length += d.length;
      if (this.length >= this.need || this.closed) this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.closedAt = Date.now();
      this.wake();
    });
    sock.on('error', (e) => {
      this.error = e;
    });
  }

  static connect(port, host = '127.0.0.1', ms = 3000) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host });
      s.setNoDelay(true);
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, ms);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(new RawSocket(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  /* What has arrived and not been taken yet, as one Buffer. */
  get buf() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] || Buffer.alloc(0);
  }

  set buf(b) {
    this.chunks = b.length ? [b] : [];
    this.length = b.length;
  }

  wake() {
    for (const w of this.waiters) w();
  }

  write(data) {
    if (!this.sock.destroyed) this.sock.write(data);
  }

  destroy() {
    this.sock.destroy();
  }

  end() {
    this.sock.end();
  }

  /* Calls fn() whenever bytes arrive or the socket closes until it returns something
   * other than undefined; throws after ms. */
  waitFor(fn, ms, what = 'data') {
    return new Promise((resolve, reject) => {
      let t;
      const check = () => {
        let r;
        try {
          r = fn();
        } catch (e) {
          cleanup();
          reject(e);
          return;
        }
        if (r !== undefined) {
          cleanup();
          resolve(r);
        }
      };
      const cleanup = () => {
        clearTimeout(t);
        this.waiters.delete(check);
        this.need = 0;
      };
      t = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; closed=${this.closed}; buffered=${JSON.stringify(this.buf.subarray(0, 300).toString('latin1'))}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  /* Reads one HTTP response. head: the request was HEAD (no body follows). */
  readResponse({ head = false, timeout = 3000 } = {}) {
    return this.waitFor(
      () => {
        if (this.length < this.need && !this.closed) return undefined;
        const r = parseResponse(this.buf, { head, closed: this.closed });
        if (r && r.need) {
          this.need = r.need;
          if (!this.closed) return undefined;
        } else if (r) {
          this.need = 0;
          this.buf = this.buf.subarray(r.used);
          return r.res;
        }
        if (this.closed) throw new Error(`connection closed before a complete response; got ${JSON.stringify(this.buf.subarray(0, 300).toString('latin1'))}`);
        return undefined;
      },
      timeout,
      'an HTTP response',
    );
  }

  /* Resolves true once the peer closed the connection, false after ms. */
  async waitClose(ms = 2000) {
    try {
      await this.waitFor(() => (this.closed ? true : undefined), ms, 'close');
      return true;
    } catch {
      return false;
    }
  }

  /* Reads one WebSocket frame (server → client). */
  readFrame(timeout = 3000) {
    return this.waitFor(
      () => {
        const r = parseFrame(this.buf);
        if (r) {
          this.buf = this.buf.subarray(r.used);
          return r.frame;
        }
        if (this.closed) throw new Error(`connection closed while waiting for a frame; ${this.buf.length} bytes buffered`);
        return undefined;
      },
      timeout,
      'a WebSocket frame',
    );
  }

  /* Reads frames until a close frame; returns { code, reason, frames } (frames: those
   * before the close). */
  async readUntilClose(timeout = 3000) {
    const deadline = Date.now() + timeout;
    const frames = [];
    for (;;) {
      const f = await this.readFrame(Math.max(1, deadline - Date.now()));
      if (f.opcode === 0x8) {
        const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null;
        const reason = f.payload.length > 2 ? f.payload.subarray(2).toString('utf8') : '';
        return { code, reason, frames, frame: f };
      }
      frames.push(f);
    }
  }

  /* Sends a masked frame. */
  sendFrame(opts) {
    this.write(encodeFrame(opts));
  }

  sendText(text, opts = {}) {
    this.sendFrame({ opcode: 0x1, payload: Buffer.from(text), ...opts });
  }

  sendJson(obj) {
    this.sendText(JSON.stringify(obj));
  }

  /* Reads the next text frame and parses it as JSON (skipping pongs when asked). */
  async readJson(timeout = 3000) {
    const f = await this.readFrame(timeout);
    if (f.opcode !== 0x1) throw new Error(`expected a text frame, got opcode ${f.opcode} payload ${JSON.stringify(f.payload.toString('latin1'))}`);
    return JSON.parse(f.payload.toString('utf8'));
  }
}

/* Parses one HTTP/1.x response at the front of buf: { res, used }, or null when
 * incomplete, or { need } when the head is complete and the body needs `need` bytes in
 * all. */
export function parseResponse(buf, { head = false, closed = false } = {}) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const headText = buf.subarray(0, end).toString('latin1');
  const [statusLine, ...lines] = headText.split('\r\n');
  const m = statusLine.match(/^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`);
  const headers = {};
  const rawHeaders = [];
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(line)}`);
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    rawHeaders.push([name, value]);
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const status = Number(m[2]);
  let pos = end + 4;
  let body = Buffer.alloc(0);
  const noBody = head || (status >= 100 && status < 200) || status === 204 || status === 304;
  if (!noBody) {
    if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      for (;;) {
        const le = buf.indexOf('\r\n', pos);
        if (le < 0) return null;
        const size = parseInt(buf.subarray(pos, le).toString('latin1'), 16);
        if (Number.isNaN(size)) throw new Error('bad chunk size in response');
        if (buf.length < le + 2 + size + 2) return null;
        if (size === 0) {
          const te = buf.indexOf('\r\n\r\n', le);
          if (te < 0) return null;
          pos = te + 4;
          break;
        }
        parts.push(buf.subarray(le + 2, le + 2 + size));
        pos = le + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const len = Number(headers['content-length']);
      if (buf.length < pos + len) return { need: pos + len };
      body = buf.subarray(pos, pos + len);
      pos += len;
    } else {
      if (!closed) return null;
      body = buf.subarray(pos);
      pos = buf.length;
    }
  }
  const res = {
    httpVersion: m[1],
    status,
    reason: m[3] || '',
    headers,
    rawHeaders,
    body: Buffer.from(body),
    get text() {
      return this.body.toString('utf8');
    },
    json() {
      return JSON.parse(this.body.toString('utf8'));
    },
  };
  return { res, used: pos };
}

/* One request on a fresh connection. Returns the response plus `closed` (whether the
 * server closed the connection right after it). */
export async function request(port, { method = 'GET', path: p = '/', headers = {}, body, timeout = 3000, keepOpen = false } = {}) {
  const sock = await RawSocket.connect(port);
  try {
    sock.write(buildRequest({ method, path: p, headers, body }));
    const res = await sock.readResponse({ head: method === 'HEAD', timeout });
    if (keepOpen) {
      res.socket = sock;
    }
    return res;
  } finally {
    if (!keepOpen) sock.destroy();
  }
}

/* Builds a request; Host is added unless headers.Host === null; Content-Length is
 * added for a body unless a Content-Length or Transfer-Encoding header is given. */
export function buildRequest({ method = 'GET', path: p = '/', headers = {}, body, version = '1.1' } = {}) {
  const h = { Host: '127.0.0.1', ...headers };
  const lower = Object.keys(h).map((k) => k.toLowerCase());
  const bodyBuf = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body);
  if (bodyBuf && !lower.includes('content-length') && !lower.includes('transfer-encoding')) {
    h['Content-Length'] = String(bodyBuf.length);
  }
  let text = `${method} ${p} HTTP/${version}\r\n`;
  for (const [k, v] of Object.entries(h)) {
    if (v === null || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) text += `${k}: ${one}\r\n`;
  }
  text += '\r\n';
  return bodyBuf ? Buffer.concat([Buffer.from(text, 'latin1'), bodyBuf]) : Buffer.from(text, 'latin1');
}

export const get = (port, p, headers = {}) => request(port, { method: 'GET', path: p, headers });

/* ------------------------------------------------------------------------------------ */
/* WebSocket frames                                                                      */
/* ------------------------------------------------------------------------------------ */

export function maskPayload(payload, key) {
  const out = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = payload[i] ^ key[i & 3];
  return out;
}

/* Encodes a client frame. lengthOverride writes a different length into the header
 * than the payload has (to announce a frame without sending it). */
export function encodeFrame({ fin = true, rsv = 0, opcode = 0x1, payload = Buffer.alloc(0), mask = true, maskKey, lengthOverride } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = lengthOverride ?? data.length;
  const parts = [];
  const b0 = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0xf);
  const maskBit = mask ? 0x80 : 0;
  if (len < 126) {
    parts.push(Buffer.from([b0, maskBit | len]));
  } else if (len < 65536) {
    const h = Buffer.alloc(4);
    h[0] = b0;
    h[1] = maskBit | 126;
    h.writeUInt16BE(len, 2);
    parts.push(h);
  } else {
    const h = Buffer.alloc(10);
    h[0] = b0;
    h[1] = maskBit | 127;
    h.writeBigUInt64BE(BigInt(len), 2);
    parts.push(h);
  }
  if (mask) {
    const key = maskKey || crypto.randomBytes(4);
    parts.push(key, maskPayload(data, key));
  } else {
    parts.push(data);
  }
  return Buffer.concat(parts);
}

export function closePayload(code, reason = '') {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

/* Parses one server frame at the front of buf; null when incomplete. */
export function parseFrame(buf) {
  if (buf.length < 2) return null;
  const fin = (buf[0] & 0x80) !== 0;
  const rsv = (buf[0] >> 4) & 7;
  const opcode = buf[0] & 0xf;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f;
  let pos = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    pos = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    pos = 10;
  }
  let key = null;
  if (masked) {
    if (buf.length < pos + 4) return null;
    key = buf.subarray(pos, pos + 4);
    pos += 4;
  }
  if (buf.length < pos + len) return null;
  let payload = Buffer.from(buf.subarray(pos, pos + len));
  if (masked) payload = maskPayload(payload, key);
  return { frame: { fin, rsv, opcode, masked, payload, text: payload.toString('utf8') }, used: pos + len };
}

/* Opens a raw WebSocket: sends the upgrade request (plus `extra` bytes in the same
 * write), checks the 101 and Sec-WebSocket-Accept, and returns the RawSocket with any
 * bytes that followed the 101 still buffered. */
export async function wsRaw(port, { path: p = '/', headers = {}, extra, timeout = 3000 } = {}) {
  const sock = await RawSocket.connect(port);
  const key = crypto.randomBytes(16).toString('base64');
  const req = buildRequest({
    method: 'GET',
    path: p,
    headers: {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
      ...headers,
    },
  });
  sock.write(extra ? Buffer.concat([req, extra]) : req);
  const res = await sock.readResponse({ timeout });
  if (res.status !== 101) {
    sock.destroy();
    throw new Error(`expected 101, got ${res.status} ${res.text}`);
  }
  const expect = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  if (res.headers['sec-websocket-accept'] !== expect) {
    sock.destroy();
    throw new Error(`bad Sec-WebSocket-Accept ${res.headers['sec-websocket-accept']} (expected ${expect})`);
  }
  sock.handshake = res;
  return sock;
}

/* wsRaw() and read the welcome frame. */
export async function wsRawWelcomed(port, opts = {}) {
  const sock = await wsRaw(port, opts);
  sock.welcome = await sock.readJson(opts.timeout || 3000);
  if (sock.welcome.type !== 'welcome') throw new Error(`first frame is not a welcome: ${JSON.stringify(sock.welcome)}`);
  return sock;
}

/* ------------------------------------------------------------------------------------ */
/* `ws` client                                                                           */
/* ------------------------------------------------------------------------------------ */

/* A `ws` client with a message queue. Resolves after the welcome arrived. */
export async function wsClient(url, { timeout = 3000, welcome = true } = {}) {
  const ws = new WebSocket(url, { handshakeTimeout: timeout });
  const c = {
    ws,
    queue: [],
    raw: [],
    waiters: new Set(),
    closeInfo: null,
    send(obj) {
      ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
    },
    /* The next JSON message (or throws after ms). */
    next(ms = 3000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (c.queue.length) {
            done();
            resolve(c.queue.shift());
          } else if (c.closeInfo) {
            done();
            reject(new Error(`socket closed (${c.closeInfo.code} ${c.closeInfo.reason}) while waiting for a message`));
          }
        };
        const t = setTimeout(() => {
          done();
          reject(new Error(`no message within ${ms} ms`));
        }, ms);
        const done = () => {
          clearTimeout(t);
          c.waiters.delete(check);
        };
        c.waiters.add(check);
        check();
      });
    },
    /* Skips messages until one has type `type`. */
    async nextOfType(type, ms = 3000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = await c.next(Math.max(1, deadline - Date.now()));
        if (m.type === type) return m;
      }
    },
    /* Resolves true if no message arrives within ms. */
    async silentFor(ms) {
      try {
        const m = await c.next(ms);
        c.queue.unshift(m);
        return false;
      } catch {
        return c.queue.length === 0;
      }
    },
    closed: null,
    /* Resolves with { code, reason } or null after ms. */
    async waitClose(ms = 3000) {
      let t;
      const r = await Promise.race([c.closed, new Promise((res) => (t = setTimeout(() => res(null), ms)))]);
      clearTimeout(t);
      return r;
    },
    close(code = 1000, reason = '') {
      try {
        ws.close(code, reason);
      } catch {
        ws.terminate();
      }
    },
    terminate() {
      ws.terminate();
    },
  };
  c.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      c.closeInfo = { code, reason: reason.toString(), at: Date.now() };
      for (const w of c.waiters) w();
      resolve(c.closeInfo);
    });
  });
  ws.on('message', (data, isBinary) => {
    const text = data.toString();
    c.raw.push({ text, isBinary, at: Date.now() });
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      msg = { __unparsable: text };
    }
    c.queue.push(msg);
    for (const w of c.waiters) w();
  });
  ws.on('error', () => {
    /* surfaced through close */
  });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`WebSocket open to ${url} timed out`)), timeout);
    ws.once('open', () => {
      clearTimeout(t);
      resolve();
    });
    ws.once('unexpected-response', (req, res) => {
      clearTimeout(t);
      reject(new Error(`unexpected HTTP ${res.statusCode} on upgrade to ${url}`));
    });
    ws.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
  if (welcome) c.welcome = await c.next(timeout);
  return c;
}

/* ------------------------------------------------------------------------------------ */
/* Metrics                                                                               */
/* ------------------------------------------------------------------------------------ */

/* Parses Prometheus text format into [{ name, labels, value }]; throws on a line that
 * is neither a comment nor a sample. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[2]) {
      const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy;
      let lm;
      let consumed = 0;
      while ((lm = re.exec(m[2])) !== null) {
        labels[lm[1]] = lm[2];
        consumed = re.lastIndex;
      }
      if (consumed !== m[2].length) throw new Error(`bad label set in ${JSON.stringify(line)}`);
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad sample value in ${JSON.stringify(line)}`);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/* The value of the series with this name whose labels include `labels`; undefined when
 * there is none. */
export function metricValue(samples, name, labels = {}) {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s ? s.value : undefined;
}

export async function scrape(port) {
  const res = await get(port, '/metrics');
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseMetrics(res.text);
}
