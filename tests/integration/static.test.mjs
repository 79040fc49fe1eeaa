// Static files from http.publicDir: content types, ETag/If-None-Match, index.html,
// directory redirects, HEAD, large files, and no way out of the root.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { RawSocket, SLACK_MS, STARTUP_MS, get, request, startServer } from './helpers.mjs';

const T = { timeout: 5000 + SLACK_MS };
const SECRET = 'TOP-SECRET-OUTSIDE-THE-ROOT-' + crypto.randomBytes(8).toString('hex');
const BIG = crypto.randomBytes(3 * 1024 * 1024 + 17);
const INDEX = '<!doctype html><title>shop</title><h1>root index</h1>\n';
const SUB_INDEX = '<!doctype html><h1>sub index</h1>\n';

const FILES = {
  'index.html': INDEX,
  'style.css': 'body { color: red; }\n',
  'app.js': 'console.log("hi");\n',
  'data.json': '{"a":1}\n',
  'notes.txt': 'plain text\n',
  'logo.svg': '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
  'pixel.png': Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4a80000000049454e44ae426082', 'hex'),
  'page.htm': '<p>htm</p>',
  'hello world.txt': 'spaced name\n',
  'sub/index.html': SUB_INDEX,
  'sub/deeper/file.txt': 'deep\n',
  'big.bin': BIG,
};

let srv;
let root;
before(async () => {
  srv = await startServer({
    files: FILES,
    setup: ({ dir, publicDir }) => {
      fs.writeFileSync(path.join(dir, 'secret.txt'), SECRET);
      fs.mkdirSync(path.join(dir, 'outside-dir'));
      fs.writeFileSync(path.join(dir, 'outside-dir', 'secret.txt'), SECRET);
      fs.symlinkSync(path.join(dir, 'secret.txt'), path.join(publicDir, 'secret-link.txt'));
      fs.symlinkSync(path.join(dir, 'outside-dir'), path.join(publicDir, 'outside-link'));
      fs.symlinkSync('/etc', path.join(publicDir, 'etc-link'));
      fs.symlinkSync('../secret.txt', path.join(publicDir, 'relative-link.txt'));
    },
  });
  root = srv.publicDir;
}, { timeout: STARTUP_MS + 2000 });
after(async () => {
  await srv?.stopAndCheck();
});

/* Raw GET with the target exactly as given (no normalisation by a client library). */
async function rawGet(target, headers = '') {
  const s = await RawSocket.connect(srv.port);
  try {
    s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);
    return await s.readResponse();
  } finally {
    s.destroy();
  }
}

describe('static: serving', () => {
  test('GET / serves index.html as text/html', T, async () => {
    const r = await get(srv.port, '/');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/html/);
    assert.equal(r.text, INDEX);
  });

  test('GET /index.html serves the same file', T, async () => {
    const r = await get(srv.port, '/index.html');
    assert.equal(r.status, 200);
    assert.equal(r.text, INDEX);
  });

  const types = [
    ['/style.css', /^text\/css/],
    ['/app.js', /^(text|application)\/javascript/],
    ['/data.json', /^application\/json/],
    ['/notes.txt', /^text\/plain/],
    ['/logo.svg', /^image\/svg\+xml/],
    ['/pixel.png', /^image\/png$/],
    ['/page.htm', /^text\/html/],
  ];
  for (const [p, re] of types) {
    test(`content type of ${p} matches ${re}`, T, async () => {
      const r = await get(srv.port, p);
      assert.equal(r.status, 200);
      assert.match(r.headers['content-type'] || '(none)', re);
      assert.deepEqual(r.body, Buffer.isBuffer(FILES[p.slice(1)]) ? FILES[p.slice(1)] : Buffer.from(FILES[p.slice(1)]));
    });
  }

  test('percent-encoded file names are decoded (%20)', T, async () => {
    const r = await rawGet('/hello%20world.txt');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'spaced name\n');
  });

  test('/sub/ serves sub/index.html', T, async () => {
    const r = await get(srv.port, '/sub/');
    assert.equal(r.status, 200);
    assert.equal(r.text, SUB_INDEX);
  });

  test('/sub (directory without slash) redirects 301 to /sub/', T, async () => {
    const r = await get(srv.port, '/sub');
    assert.equal(r.status, 301);
    assert.match(r.headers.location || '', /^(http:\/\/[^/]+)?\/sub\/$/);
  });

  test('nested file is served', T, async () => {
    const r = await get(srv.port, '/sub/deeper/file.txt');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'deep\n');
  });

  test('missing file gives 404 JSON NOT_FOUND', T, async () => {
    const r = await get(srv.port, '/no-such-file.css');
    assert.equal(r.status, 404);
    assert.equal(r.json().error.code, 'NOT_FOUND');
  });

  test('a 3 MiB file arrives complete and intact', T, async () => {
    const r = await get(srv.port, '/big.bin');
    assert.equal(r.status, 200);
    assert.equal(Number(r.headers['content-length']), BIG.length);
    assert.ok(r.body.equals(BIG), 'body differs from the file');
  });

  test('HEAD of a file gives its Content-Length and no body', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      s.write('HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\n');
      const h = await s.readResponse({ head: true });
      assert.equal(h.status, 200);
      assert.equal(Number(h.headers['content-length']), BIG.length);
      const g = await s.readResponse();
      assert.equal(g.status, 200, 'response after HEAD mis-framed: HEAD sent a body?');
      assert.equal(g.text, FILES['style.css']);
    } finally {
      s.destroy();
    }
  });

  test('files are served on a keep-alive connection several times in a row', T, async () => {
    const s = await RawSocket.connect(srv.port);
    try {
      for (let i = 0; i < 5; i++) {
        s.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /notes.txt HTTP/1.1\r\nHost: x\r\n\r\n');
        const a = await s.readResponse();
        assert.ok(a.body.equals(BIG));
        const b = await s.readResponse();
        assert.equal(b.text, 'plain text\n');
      }
    } finally {
      s.destroy();
    }
  });
});

describe('static: ETag', () => {
  test('a file has an ETag; If-None-Match with it gives 304 without body', T, async () => {
    const r = await get(srv.port, '/style.css');
    const etag = r.headers.etag;
    assert.ok(etag, 'no ETag header');
    assert.match(etag, /^(W\/)?"[^"]*"$/, `ETag is not a quoted string: ${etag}`);
    const s = await RawSocket.connect(srv.port);
    try {
      s.write(`GET /style.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\n\r\nGET /notes.txt HTTP/1.1\r\nHost: x\r\n\r\n`);
      const n = await s.readResponse();
      assert.equal(n.status, 304);
      assert.equal(n.headers.etag, etag);
      const next = await s.readResponse();
      assert.equal(next.status, 200, '304 carried a body?');
      assert.equal(next.text, 'plain text\n');
    } finally {
      s.destroy();
    }
  });

  test('If-None-Match with a list containing the ETag, or *, gives 304', T, async () => {
    const etag = (await get(srv.port, '/app.js')).headers.etag;
    assert.equal((await get(srv.port, '/app.js', { 'If-None-Match': `"nope", ${etag}` })).status, 304);
    assert.equal((await get(srv.port, '/app.js', { 'If-None-Match': '*' })).status, 304);
  });

  test('If-None-Match with another ETag gives 200', T, async () => {
    const r = await get(srv.port, '/app.js', { 'If-None-Match': '"definitely-not-it"' });
    assert.equal(r.status, 200);
    assert.equal(r.text, FILES['app.js']);
  });

  test('different files have different ETags', T, async () => {
    const a = (await get(srv.port, '/style.css')).headers.etag;
    const b = (await get(srv.port, '/app.js')).headers.etag;
    assert.notEqual(a, b);
  });

  test('changing a file changes its ETag and content', T, async () => {
    const p = path.join(root, 'changing.txt');
    fs.writeFileSync(p, 'one\n');
    const a = await get(srv.port, '/changing.txt');
    assert.equal(a.text, 'one\n');
    fs.writeFileSync(p, 'two, longer\n');
    const past = new Date(Date.now() + 5000);
    fs.utimesSync(p, past, past);
    const b = await get(srv.port, '/changing.txt');
    assert.equal(b.text, 'two, longer\n');
    assert.notEqual(a.headers.etag, b.headers.etag);
    assert.equal((await get(srv.port, '/changing.txt', { 'If-None-Match': a.headers.etag })).status, 200, 'old ETag still matched');
  });
});

describe('static: no way out of the root', () => {
  const attacks = [
    '/../secret.txt',
    '/../../../../../../../../etc/passwd',
    '/%2e%2e/secret.txt',
    '/%2E%2E/secret.txt',
    '/%2e%2e%2fsecret.txt',
    '/..%2fsecret.txt',
    '/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd',
    '/sub/../../secret.txt',
    '/sub/%2e%2e/%2e%2e/secret.txt',
    '/./../secret.txt',
    '/..\\secret.txt',
    '/%5c..%5csecret.txt',
    '/secret-link.txt',
    '/relative-link.txt',
    '/outside-link/secret.txt',
    '/outside-link/',
    '/etc-link/passwd',
    '/etc-link/hostname',
    '/index.html%00.png',
    '//etc/passwd',
  ];
  for (const target of attacks) {
    test(`${target} is refused (404 or 400) and leaks nothing`, T, async () => {
      const r = await rawGet(target);
      assert.ok([400, 404].includes(r.status), `status ${r.status} for ${target}; body starts ${JSON.stringify(r.text.slice(0, 80))}`);
      assert.ok(!r.text.includes(SECRET), 'secret content leaked');
      assert.ok(!/root:.*:0:0:/.test(r.text), '/etc/passwd leaked');
    });
  }

  test('server still serves after the attacks', T, async () => {
    assert.equal((await get(srv.port, '/')).text, INDEX);
  });

  test('a dot-dot that stays inside the root may be served, but only root files', T, async () => {
    const r = await rawGet('/sub/../style.css');
    assert.ok([200, 400, 404].includes(r.status), `got ${r.status}`);
    if (r.status === 200) assert.equal(r.text, FILES['style.css']);
  });

  test('POST to a static file path is not served', T, async () => {
    const r = await request(srv.port, { method: 'POST', path: '/style.css', body: 'x' });
    assert.ok([404, 405].includes(r.status), `got ${r.status}`);
  });
});
