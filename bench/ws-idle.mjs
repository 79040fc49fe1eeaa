#!/usr/bin/env node
// Opens N idle WebSocket connections to shopd and reports the server's resident memory
// with them. Used by bench/run.sh; runs on its own too:
//
//   node bench/ws-idle.mjs --url ws://127.0.0.1:8080/ --pid <shopd pid> [--count 10000]
//        [--batch 250] [--hold-ms 2000] [--timeout-ms 120000]
//
// Connections are opened in batches (each batch fully welcomed before the next) so the
// listen backlog never overflows. Each client answers the server's JSON pings, so a
// long hold is not cut short by the heartbeat. Prints one JSON line on stdout:
// { count, opened, failed, rssBeforeKiB, rssKiB, bytesPerConn, openMs }.
//
// Needs more file descriptors than the usual soft limit of 1024: when started without
// WS_IDLE_RAISED=1 it re-runs itself under `ulimit -n` raised to the hard limit.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const url = args.url;
const pid = Number(args.pid);
const count = Number(args.count ?? 10000);
const batch = Number(args.batch ?? 250);
const holdMs = Number(args['hold-ms'] ?? 2000);
const timeoutMs = Number(args['timeout-ms'] ?? 120000);

if (!url || !pid) {
  console.error('usage: ws-idle.mjs --url ws://HOST:PORT/PATH --pid PID [--count N] [--batch N] [--hold-ms MS]');
  process.exit(2);
}

if (process.env.WS_IDLE_RAISED !== '1') {
  const self = fileURLToPath(import.meta.url);
  const quoted = [process.execPath, self, ...process.argv.slice(2)].map((a) => `'${String(a).replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync('bash', ['-c', `ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec ${quoted}`], {
    stdio: 'inherit',
    env: { ...process.env, WS_IDLE_RAISED: '1' },
  });
  process.exit(r.status ?? 1);
}

function rssKiB(p) {
  const m = fs.readFileSync(`/proc/${p}/status`, 'utf8').match(/^VmRSS:\s+(\d+)\s+kB/m);
  if (!m) throw new Error(`no VmRSS for pid ${p}`);
  return Number(m[1]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const deadline = Date.now() + timeoutMs;
const sockets = [];
let failed = 0;
let firstError = null;

function openOne() {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10000 });
    let welcomed = false;
    const done = (ok, err) => {
      if (welcomed) return;
      welcomed = true;
      if (!ok) {
        failed++;
        firstError ??= err;
        ws.terminate();
      }
      resolve(ok);
    };
    ws.on('message', (data) => {
      const text = data.toString();
      if (!welcomed) {
        done(text.includes('"welcome"'), `first frame was not a welcome: ${text.slice(0, 100)}`);
        return;
      }
      if (text.includes('"ping"')) {
        try {
          const m = JSON.parse(text);
          if (m.type === 'ping') ws.send(JSON.stringify({ type: 'pong', timestamp: m.timestamp }));
        } catch {
          /* not ours */
        }
      }
    });
    ws.on('error', (e) => done(false, e.message));
    ws.on('close', (code) => done(false, `closed with ${code} before the welcome`));
    sockets.push(ws);
  });
}

const rssBeforeKiB = rssKiB(pid);
const t0 = Date.now();
let opened = 0;
while (opened + failed < count) {
  if (Date.now() > deadline) {
    console.error(`ws-idle: timed out after ${timeoutMs} ms with ${opened} open`);
    break;
  }
  const n = Math.min(batch, count - opened - failed);
  const results = await Promise.all(Array.from({ length: n }, openOne));
  opened += results.filter(Boolean).length;
  if (failed > count * 0.01) {
    console.error(`ws-idle: too many failures (${failed}); first: ${firstError}`);
    break;
  }
}
const openMs = Date.now() - t0;
await sleep(holdMs);
const stillOpen = sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length;
const rss = rssKiB(pid);
const result = {
  count,
  opened,
  stillOpen,
  failed,
  firstError,
  rssBeforeKiB,
  rssKiB: rss,
  bytesPerConn: opened ? Math.round(((rss - rssBeforeKiB) * 1024) / opened) : null,
  openMs,
};
for (const ws of sockets) ws.terminate();
console.log(JSON.stringify(result));
process.exit(opened === count && stillOpen === count ? 0 : 1);
