// Command line: --version/--help, configuration errors (one `shopd: ` line on stderr,
// exit 2), and the precedence flag > environment > config file > default.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { BIN, STARTUP_MS, canConnect, VERSION, freePort, get, makeTempDir, runCli, startServer } from './helpers.mjs';

const T = { timeout: STARTUP_MS + 5000 };
const tmp = makeTempDir('shopd-cli-');
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeConfig(name, text) {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, typeof text === 'string' ? text : JSON.stringify(text));
  return p;
}

/* The contract for every startup error: exit status 2 and exactly one stderr line that
 * starts with "shopd: ". Returns that line. */
function assertUsageError(r, what) {
  assert.equal(r.timedOut, false, `${what}: shopd did not exit (still running after the timeout); stderr: ${r.stderr}`);
  assert.equal(r.code, 2, `${what}: expected exit status 2, got code=${r.code} signal=${r.signal}; stderr: ${JSON.stringify(r.stderr)}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `${what}: expected exactly one stderr line, got ${lines.length}: ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0], /^shopd: \S/, `${what}: stderr line must start with "shopd: "`);
  return lines[0];
}

const serveArgs = (...rest) => ['serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', path.join(tmp, 'data'), ...rest];

describe('cli: version and help', () => {
  test('--version prints "shopd <VERSION>" and exits 0', T, async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `shopd ${VERSION}\n`);
  });

  test('--help prints usage naming the serve command to stdout and exits 0', T, async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0, `stderr: ${r.stderr}`);
    assert.match(r.stdout, /usage/i);
    assert.match(r.stdout, /serve/);
    assert.match(r.stdout, /--port/);
  });

  test('binary under test exists', () => {
    assert.ok(fs.existsSync(BIN), `${BIN} does not exist (set SHOPD_BIN or run make)`);
  });
});

describe('cli: usage errors exit 2 with one "shopd: " line', () => {
  test('unknown subcommand', T, async () => {
    const line = assertUsageError(await runCli(['frobnicate']), 'unknown subcommand');
    assert.match(line, /frobnicate/);
  });

  test('unknown flag', T, async () => {
    const line = assertUsageError(await runCli(serveArgs('--no-such-flag')), 'unknown flag');
    assert.match(line, /--no-such-flag/);
  });

  test('missing flag value (--port at the end)', T, async () => {
    assertUsageError(await runCli(['serve', '--host', '127.0.0.1', '--port']), 'missing value');
  });

  test('missing flag value (--config at the end)', T, async () => {
    assertUsageError(await runCli(['serve', '--port', '0', '--config']), 'missing value');
  });

  test('non-numeric port', T, async () => {
    assertUsageError(await runCli(serveArgs('--port', 'eighty')), 'port "eighty"');
  });

  test('port above 65535', T, async () => {
    assertUsageError(await runCli(serveArgs('--port', '65536')), 'port 65536');
  });

  test('negative port', T, async () => {
    assertUsageError(await runCli(serveArgs('--port', '-1')), 'port -1');
  });

  test('port with trailing garbage', T, async () => {
    assertUsageError(await runCli(serveArgs('--port', '80x')), 'port 80x');
  });

  test('bad SHOPD_PORT in the environment', T, async () => {
    assertUsageError(
      await runCli(['serve', '--host', '127.0.0.1'], { env: { SHOPD_PORT: 'nope' } }),
      'SHOPD_PORT=nope',
    );
  });

  test('unknown --log-format value', T, async () => {
    assertUsageError(await runCli(serveArgs('--log-format', 'xml')), '--log-format xml');
  });

  test('unreadable config file', T, async () => {
    const line = assertUsageError(await runCli(serveArgs('--config', path.join(tmp, 'does-not-exist.json'))), 'missing config');
    assert.match(line, /does-not-exist\.json/);
  });

  test('config path that is a directory', T, async () => {
    assertUsageError(await runCli(serveArgs('--config', tmp)), 'config is a directory');
  });

  test('invalid JSON names line and column', T, async () => {
    const p = writeConfig('broken.json', '{\n  "port": 0,\n  oops: 1\n}\n');
    const line = assertUsageError(await runCli(serveArgs('--config', p)), 'invalid JSON');
    assert.match(line, /(line\D{0,3}3\b|:3:\d+)/i, `expected the line number 3 in: ${line}`);
    assert.match(line, /(col(umn)?\D{0,3}\d+|:3:\d+)/i, `expected a column in: ${line}`);
  });

  test('empty config file is invalid JSON', T, async () => {
    const p = writeConfig('empty.json', '');
    assertUsageError(await runCli(serveArgs('--config', p)), 'empty config');
  });

  test('config that is not an object', T, async () => {
    const p = writeConfig('array.json', '[1,2]');
    assertUsageError(await runCli(serveArgs('--config', p)), 'array config');
  });

  const wrongTypes = [
    ['$.port', { port: 'eighty' }],
    ['$.port', { port: 70000 }],
    ['$.host', { host: 5 }],
    ['$.path', { path: 7 }],
    ['$.name', { name: ['x'] }],
    ['$.dataDir', { dataDir: false }],
    ['$.maxPayloadBytes', { maxPayloadBytes: 'big' }],
    ['$.heartbeat', { heartbeat: 5 }],
    ['$.heartbeat.intervalMs', { heartbeat: { intervalMs: 'x', timeoutMs: 100 } }],
    ['$.heartbeat.timeoutMs', { heartbeat: { intervalMs: 1000, timeoutMs: null } }],
    ['$.backpressure.maxBufferedBytes', { backpressure: { maxBufferedBytes: '1M' } }],
    ['$.backpressure.highWaterMark', { backpressure: { highWaterMark: 'high' } }],
    ['$.shutdown.gracePeriodMs', { shutdown: { gracePeriodMs: '5s' } }],
    ['$.http.maxBodyBytes', { http: { maxBodyBytes: true } }],
    ['$.http.headerTimeoutMs', { http: { headerTimeoutMs: 'soon' } }],
    ['$.http.idleTimeoutMs', { http: { idleTimeoutMs: {} } }],
    ['$.http.maxConnections', { http: { maxConnections: 'many' } }],
    ['$.http.publicDir', { http: { publicDir: 1 } }],
  ];
  for (const [jsonPath, cfg] of wrongTypes) {
    test(`wrong type names its JSON path ${jsonPath} (${JSON.stringify(cfg)})`, T, async () => {
      const p = writeConfig(`wrong-${jsonPath.replace(/\W/g, '_')}-${Math.random().toString(36).slice(2)}.json`, cfg);
      const line = assertUsageError(await runCli(serveArgs('--config', p)), jsonPath);
      assert.ok(line.includes(jsonPath), `expected "${jsonPath}" in: ${line}`);
    });
  }

  test('port already in use', T, async () => {
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    try {
      const { port } = blocker.address();
      const r = await runCli(['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', path.join(tmp, 'data')]);
      const line = assertUsageError(r, `port ${port} in use`);
      assert.match(line, new RegExp(`${port}|in use`, 'i'));
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});

describe('cli: serve', () => {
  test('--port 0 prints exactly one stdout line "listening on http://HOST:PORT"', T, async () => {
    const srv = await startServer();
    try {
      const res = await get(srv.port, '/healthz');
      assert.equal(res.status, 200);
      assert.deepEqual(srv.stdoutLines, [`listening on http://127.0.0.1:${srv.port}`]);
      assert.ok(srv.port > 0 && srv.port < 65536);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('unknown top-level config fields are accepted', T, async () => {
    const srv = await startServer({
      config: {
        name: 'it-shop',
        database: 'sqlite',
        buckets: { products: { key: 'id', schema: {} } },
        rules: [],
        somethingFromTheFuture: { a: [1, 2, 3] },
      },
    });
    try {
      assert.equal((await get(srv.port, '/healthz')).status, 200);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('a config with every field used by the foundation starts', T, async () => {
    const srv = await startServer({
      config: {
        name: 'full',
        host: '127.0.0.1',
        port: 0,
        path: '/rt',
        maxPayloadBytes: 65536,
        heartbeat: { intervalMs: 30000, timeoutMs: 10000 },
        backpressure: { maxBufferedBytes: 1048576, highWaterMark: 0.8 },
        shutdown: { gracePeriodMs: 300 },
        http: { maxBodyBytes: 4096, headerTimeoutMs: 5000, idleTimeoutMs: 5000, maxConnections: 100 },
      },
    });
    try {
      assert.equal((await get(srv.port, '/healthz')).status, 200);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('--log-level warn silences per-request info lines', T, async () => {
    const srv = await startServer({ args: ['--log-level', 'warn'] });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await get(srv.port, '/healthz')).status, 200);
      await new Promise((r) => setTimeout(r, 200));
      const reqLines = srv.stderrLines.filter((l) => /req=/.test(l));
      assert.deepEqual(reqLines, [], 'no request log lines expected at warn level');
    } finally {
      await srv.stopAndCheck();
    }
  });
});

describe('cli: precedence flag > env > config > default', () => {
  test('public dir: SHOPD_PUBLIC_DIR beats http.publicDir; --public-dir beats SHOPD_PUBLIC_DIR', T, async () => {
    const dirs = {};
    for (const k of ['config', 'env', 'flag']) {
      dirs[k] = path.join(tmp, `public-${k}`);
      fs.mkdirSync(dirs[k], { recursive: true });
      fs.writeFileSync(path.join(dirs[k], 'index.html'), `from ${k}\n`);
    }
    const a = await startServer({ config: { http: { publicDir: dirs.config } }, env: { SHOPD_PUBLIC_DIR: dirs.env } });
    try {
      assert.equal((await get(a.port, '/')).text, 'from env\n');
    } finally {
      await a.stopAndCheck();
    }
    const b = await startServer({ config: { http: { publicDir: dirs.config } }, env: { SHOPD_PUBLIC_DIR: dirs.env }, args: ['--public-dir', dirs.flag] });
    try {
      assert.equal((await get(b.port, '/')).text, 'from flag\n');
    } finally {
      await b.stopAndCheck();
    }
    const c = await startServer({ config: { http: { publicDir: dirs.config } } });
    try {
      assert.equal((await get(c.port, '/')).text, 'from config\n');
    } finally {
      await c.stopAndCheck();
    }
  });

  test('without any port setting the default port is 8080', T, async (t) => {
    if (await canConnect(8080)) {
      t.skip('something already listens on 127.0.0.1:8080');
      return;
    }
    const probe = net.createServer();
    const free = await new Promise((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(8080, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (!free) {
      t.skip('127.0.0.1:8080 cannot be bound here');
      return;
    }
    const srv = await startServer({ portArg: null, probePorts: [8080] });
    try {
      assert.equal(srv.port, 8080);
      assert.equal((await get(8080, '/healthz')).status, 200);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('SHOPD_PORT beats the config file port', T, async () => {
    const [pc, pe] = [await freePort(), await freePort()];
    const srv = await startServer({ config: { port: pc }, portArg: null, env: { SHOPD_PORT: String(pe) }, probePorts: [pe, pc] });
    try {
      assert.equal(srv.port, pe, `listens on ${srv.port}; config port ${pc}, env port ${pe}`);
      assert.equal((await get(pe, '/healthz')).status, 200);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('--port beats SHOPD_PORT', T, async () => {
    const [pe, pf] = [await freePort(), await freePort()];
    const srv = await startServer({ portArg: String(pf), env: { SHOPD_PORT: String(pe) }, probePorts: [pf, pe] });
    try {
      assert.equal(srv.port, pf, `listens on ${srv.port}; env port ${pe}, flag port ${pf}`);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('config file port is used when no flag or env is given', T, async () => {
    const pc = await freePort();
    const srv = await startServer({ config: { port: pc }, portArg: null, probePorts: [pc] });
    try {
      assert.equal((await get(pc, '/healthz')).status, 200);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('--port 0 beats SHOPD_PORT (listening line shows a fresh port)', T, async () => {
    const pe = await freePort();
    const srv = await startServer({ env: { SHOPD_PORT: String(pe) } });
    try {
      assert.notEqual(srv.port, pe);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('SHOPD_HOST beats the config host; --host beats SHOPD_HOST', T, async () => {
    // 127.0.0.0/8 is all loopback on Linux, so three distinct addresses are available.
    const a = await startServer({ hostArg: null, config: { host: '127.0.0.3' }, env: { SHOPD_HOST: '127.0.0.2' } });
    try {
      assert.equal(a.host, '127.0.0.2', `listening line: ${a.listenLine}`);
      assert.equal(await canConnect(a.port, '127.0.0.2'), true, 'cannot connect to 127.0.0.2');
      assert.equal(await canConnect(a.port, '127.0.0.3'), false, 'must not listen on the config host 127.0.0.3');
    } finally {
      await a.stopAndCheck();
    }
    const b = await startServer({ hostArg: '127.0.0.1', config: { host: '127.0.0.3' }, env: { SHOPD_HOST: '127.0.0.2' } });
    try {
      assert.equal(b.host, '127.0.0.1', `listening line: ${b.listenLine}`);
    } finally {
      await b.stopAndCheck();
    }
  });

  test('config host is used when no flag or env is given', T, async () => {
    const srv = await startServer({ hostArg: null, config: { host: '127.0.0.3' } });
    try {
      assert.equal(srv.host, '127.0.0.3', `listening line: ${srv.listenLine}`);
    } finally {
      await srv.stopAndCheck();
    }
  });

  test('SHOPD_CONFIG names the config file; --config beats it', T, async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const envCfg = writeConfig('env-config.json', { port: p1 });
    const a = await startServer({ configArg: false, portArg: null, env: { SHOPD_CONFIG: envCfg }, probePorts: [p1] });
    try {
      assert.equal(a.port, p1);
    } finally {
      await a.stopAndCheck();
    }
    const b = await startServer({ config: { port: p2 }, portArg: null, env: { SHOPD_CONFIG: envCfg }, probePorts: [p2, p1] });
    try {
      assert.equal(b.port, p2, `--config (port ${p2}) should beat SHOPD_CONFIG (port ${p1})`);
    } finally {
      await b.stopAndCheck();
    }
  });

  test('SHOPD_LOG_FORMAT=json gives JSON log lines; --log-format text beats it', T, async () => {
    const a = await startServer({ env: { SHOPD_LOG_FORMAT: 'json' } });
    try {
      await get(a.port, '/healthz');
      await a.waitForStderr(/\n/);
    } finally {
      await a.stopAndCheck();
    }
    assert.ok(a.stderrLines.length > 0);
    for (const l of a.stderrLines) assert.doesNotThrow(() => JSON.parse(l), `not JSON: ${l}`);

    const b = await startServer({ env: { SHOPD_LOG_FORMAT: 'json' }, args: ['--log-format', 'text'] });
    try {
      await get(b.port, '/healthz');
      await b.waitForStderr(/req=/);
    } finally {
      await b.stopAndCheck();
    }
    assert.ok(b.stderrLines.some((l) => !l.startsWith('{')), `expected text lines: ${b.stderr}`);
  });
});
