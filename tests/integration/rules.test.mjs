// Rules engine over the realtime protocol (§5): events and topic subscriptions, facts
// and fact patterns, rule administration, rules from the config file, store / fact /
// event triggers, loop cut-off, failing actions, stats and cleanup on disconnect.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { H, T, assertErr, client, closeAll, eventually, sleep } from './auth-helpers.mjs';
import { makeTempDir, runCli, startServer } from './helpers.mjs';
import { PRODUCTS, SEED_PRODUCTS, startOnDataDir } from './store-helpers.mjs';

const ORDERS = { key: 'id', schema: { id: { type: 'string' }, total: { type: 'number' } } };
const AUDIT = {
  key: 'id',
  schema: { id: { type: 'string', generated: 'uuid' }, note: { type: 'string', required: true } },
};

const LOW_STOCK = {
  name: 'low-stock-alert',
  enabled: true,
  priority: 0,
  when: { store: { bucket: 'products', ops: ['update'] } },
  if: [
    { path: 'record.stock', op: 'lt', value: 5 },
    { path: 'previous.stock', op: 'gte', value: 5 },
  ],
  then: [
    {
      emit: 'inventory.low_stock',
      data: { productId: '{{record.id}}', currentStock: '{{record.stock}}', note: 'Low: {{record.title}} ({{record.stock}})' },
    },
    { setFact: 'product:{{record.id}}:low', value: true },
  ],
};

const CONFIG_RULES = [
  LOW_STOCK,
  {
    name: 'order-paid',
    when: { fact: 'order:*:status' },
    if: [{ path: 'fact.value', op: 'eq', value: 'paid' }],
    then: [{ emit: 'order.paid', data: { key: '{{fact.key}}', previous: '{{fact.previous}}', value: '{{fact.value}}' } }],
  },
  {
    name: 'confirm-order',
    when: { event: 'order.placed' },
    then: [{ emit: 'order.confirmed', data: { orderId: '{{event.data.orderId}}', total: '{{event.data.total}}' } }],
  },
  {
    name: 'vip-ack',
    when: { event: 'vip.check' },
    if: [{ fact: 'flags:vip', op: 'eq', value: true }],
    then: [{ emit: 'vip.ack', data: {} }],
  },
  { name: 'ping-pong-loop', when: { event: 'loop.ping' }, then: [{ emit: 'loop.ping', data: { again: true } }] },
  {
    name: 'audit-orders-broken',
    when: { store: { bucket: 'orders', ops: ['insert'] } },
    // audit.note is required: this action fails validation every time.
    then: [{ store: { op: 'insert', bucket: 'audit', data: { id: 'audit-{{record.id}}' } } }],
  },
];

function rulesConfig(extra = {}) {
  return {
    buckets: { products: PRODUCTS, orders: ORDERS, audit: AUDIT },
    seed: { products: SEED_PRODUCTS },
    rules: CONFIG_RULES,
    ...extra,
  };
}

let srv;
before(async () => {
  srv = await startServer({ config: rulesConfig() });
}, H);
after(async () => {
  await srv?.stopAndCheck();
});

/* Collects event pushes for ms and returns them (leaves none queued). */
async function drainPushes(c, ms) {
  await sleep(ms);
  return c.pushes.splice(0);
}

describe('rules.emit', () => {
  test('answers the event {id,topic,data,timestamp}; ids are evt-N and distinct; data defaults to {}', T, async () => {
    const c = await client(srv);
    try {
      const t0 = Date.now();
      const e1 = await c.ok('rules.emit', { topic: 'misc.thing', data: { a: 1, nested: { b: [1, 2] } } });
      assert.deepEqual(Object.keys(e1).sort(), ['data', 'id', 'timestamp', 'topic']);
      assert.match(e1.id, /^evt-\d+$/);
      assert.equal(e1.topic, 'misc.thing');
      assert.deepEqual(e1.data, { a: 1, nested: { b: [1, 2] } });
      assert.ok(Number.isInteger(e1.timestamp) && Math.abs(e1.timestamp - t0) < 5000, `timestamp ${e1.timestamp}`);

      const e2 = await c.ok('rules.emit', { topic: 'misc' });
      assert.deepEqual(e2.data, {});
      assert.match(e2.id, /^evt-\d+$/);
      assert.notEqual(e2.id, e1.id);
      assert.ok(Number(e2.id.slice(4)) > Number(e1.id.slice(4)), `ids not increasing: ${e1.id}, ${e2.id}`);

      const e3 = await c.ok('rules.emit', { topic: 'misc', data: null });
      assert.deepEqual(e3.data, {}, 'data null is treated as absent');
    } finally {
      c.close();
    }
  });

  test('correlationId and causationId are echoed when given and absent otherwise', T, async () => {
    const c = await client(srv);
    try {
      const e = await c.ok('rules.emit', { topic: 'misc.corr', correlationId: 'corr-1', causationId: 'cause-1' });
      assert.equal(e.correlationId, 'corr-1');
      assert.equal(e.causationId, 'cause-1');
      assert.deepEqual(Object.keys(e).sort(), ['causationId', 'correlationId', 'data', 'id', 'timestamp', 'topic']);
      const only = await c.ok('rules.emit', { topic: 'misc.corr', correlationId: 'corr-2' });
      assert.equal(only.correlationId, 'corr-2');
      assert.equal('causationId' in only, false);
    } finally {
      c.close();
    }
  });

  test('bad topic, data or ids → VALIDATION_ERROR', T, async () => {
    const c = await client(srv);
    try {
      for (const f of [
        {},
        { topic: '' },
        { topic: 5 },
        { topic: 'a..b' },
        { topic: '.a' },
        { topic: 'a.' },
        { topic: 'order.*' },
        { topic: '*' },
        { topic: 'ok', data: [1, 2] },
        { topic: 'ok', data: 'text' },
        { topic: 'ok', data: 7 },
        { topic: 'ok', correlationId: 5 },
        { topic: 'ok', causationId: { x: 1 } },
      ]) {
        const m = await c.err('rules.emit', f);
        assertErr(m, 'VALIDATION_ERROR');
      }
      const missing = await c.err('rules.emit', {});
      assert.equal(missing.message, 'Missing or invalid "topic": expected non-empty string');
      // The connection is still fine.
      await c.ok('rules.emit', { topic: 'ok' });
    } finally {
      c.close();
    }
  });
});

describe('rules.subscribe / rules.unsubscribe', () => {
  test('an emitted event is pushed to a matching subscription on another connection with the exact shape', T, async () => {
    const a = await client(srv);
    const b = await client(srv);
    try {
      const sub = await a.ok('rules.subscribe', { pattern: 'shop.*' });
      assert.deepEqual(Object.keys(sub), ['subscriptionId'], 'rules.subscribe answers only the id (no initial data)');
      assert.equal(typeof sub.subscriptionId, 'string');
      const ev = await b.ok('rules.emit', { topic: 'shop.opened', data: { by: 'b' }, correlationId: 'k' });
      const p = await a.push();
      assert.deepEqual(p, { type: 'push', channel: 'event', subscriptionId: sub.subscriptionId, data: { topic: 'shop.opened', event: ev } });
      await b.noPush(100, 'the emitter has no subscription');
    } finally {
      closeAll(a, b);
    }
  });

  test("'*' matches exactly one segment: order.* gets order.placed-like topics, not order.x.eu nor order", T, async () => {
    const a = await client(srv);
    const b = await client(srv);
    try {
      const { subscriptionId } = await a.ok('rules.subscribe', { pattern: 'parcel.*' });
      await b.ok('rules.emit', { topic: 'parcel.sent.eu' });
      await b.ok('rules.emit', { topic: 'parcel' });
      await b.ok('rules.emit', { topic: 'parcelx.sent' });
      await b.ok('rules.emit', { topic: 'parcel.sent' });
      const p = await a.push();
      assert.equal(p.subscriptionId, subscriptionId);
      assert.equal(p.data.topic, 'parcel.sent');
      await a.noPush(150, 'only parcel.sent matches parcel.*');

      const mid = await a.ok('rules.subscribe', { pattern: 'box.*.eu' });
      await b.ok('rules.emit', { topic: 'box.sent.us' });
      await b.ok('rules.emit', { topic: 'box.sent.eu' });
      const q = await a.push();
      assert.equal(q.subscriptionId, mid.subscriptionId);
      assert.equal(q.data.topic, 'box.sent.eu');
      await a.noPush(150);
    } finally {
      closeAll(a, b);
    }
  });

  test("the pattern '*' alone matches one-segment topics only", T, async () => {
    const a = await client(srv);
    const b = await client(srv);
    try {
      const { subscriptionId } = await a.ok('rules.subscribe', { pattern: '*' });
      await b.ok('rules.emit', { topic: 'two.segments' });
      await b.ok('rules.emit', { topic: 'single' });
      const p = await a.push();
      assert.equal(p.subscriptionId, subscriptionId);
      assert.equal(p.data.topic, 'single');
      await a.noPush(150);
    } finally {
      closeAll(a, b);
    }
  });

  test('exact patterns, several subscriptions on one connection each get their own push', T, async () => {
    const a = await client(srv);
    const b = await client(srv);
    try {
      const s1 = await a.ok('rules.subscribe', { pattern: 'cart.item.added' });
      const s2 = await a.ok('rules.subscribe', { pattern: 'cart.*.added' });
      assert.notEqual(s1.subscriptionId, s2.subscriptionId);
      await b.ok('rules.emit', { topic: 'cart.item.added', data: { sku: 'x' } });
      const got = [await a.push(), await a.push()];
      assert.deepEqual(got.map((p) => p.subscriptionId).sort(), [s1.subscriptionId, s2.subscriptionId].sort());
      assert.ok(got.every((p) => p.data.event.data.sku === 'x'));
      await a.noPush(150);
    } finally {
      closeAll(a, b);
    }
  });

  test("the emitter's own subscription is pushed after the emit's result", T, async () => {
    const a = await client(srv);
    try {
      const { subscriptionId } = await a.ok('rules.subscribe', { pattern: 'self.*' });
      const ev = await a.ok('rules.emit', { topic: 'self.note' });
      const p = await a.push();
      assert.equal(p.subscriptionId, subscriptionId);
      assert.equal(p.data.event.id, ev.id);
      // Order on the wire: result first, then the push.
      const texts = a.ws.raw.map((r) => JSON.parse(r.text)).filter((m) => m.type === 'result' || m.type === 'push');
      const iRes = texts.findIndex((m) => m.type === 'result' && m.data?.id === ev.id);
      const iPush = texts.findIndex((m) => m.type === 'push' && m.data?.event?.id === ev.id);
      assert.ok(iRes >= 0 && iPush > iRes, `push (${iPush}) must follow the result (${iRes})`);
    } finally {
      a.close();
    }
  });

  test('patterns with empty segments (or not a string) → VALIDATION_ERROR', T, async () => {
    const a = await client(srv);
    try {
      for (const pattern of ['', 'a..b', '.a', 'a.', '..', 5, null, 'a.**', 'a*.b']) {
        const m = await a.err('rules.subscribe', { pattern });
        assertErr(m, 'VALIDATION_ERROR');
      }
      assertErr(await a.err('rules.subscribe', {}), 'VALIDATION_ERROR', 'Missing or invalid "pattern": expected non-empty string');
    } finally {
      a.close();
    }
  });

  test('unsubscribe: {unsubscribed:true}, no more pushes; unknown or repeated id → NOT_FOUND', T, async () => {
    const a = await client(srv);
    const b = await client(srv);
    try {
      const { subscriptionId } = await a.ok('rules.subscribe', { pattern: 'unsub.*' });
      await b.ok('rules.emit', { topic: 'unsub.one' });
      await a.push();
      assert.deepEqual(await a.ok('rules.unsubscribe', { subscriptionId }), { unsubscribed: true });
      await b.ok('rules.emit', { topic: 'unsub.two' });
      await a.noPush(200, 'after unsubscribe');
      assertErr(await a.err('rules.unsubscribe', { subscriptionId }), 'NOT_FOUND');
      assertErr(await a.err('rules.unsubscribe', { subscriptionId: 'sub-999' }), 'NOT_FOUND');
      assertErr(await a.err('rules.unsubscribe', {}), 'VALIDATION_ERROR');
      // Another connection cannot cancel a's subscription.
      const s2 = await a.ok('rules.subscribe', { pattern: 'unsub.*' });
      assertErr(await b.err('rules.unsubscribe', { subscriptionId: s2.subscriptionId }), 'NOT_FOUND');
      await b.ok('rules.emit', { topic: 'unsub.three' });
      assert.equal((await a.push()).subscriptionId, s2.subscriptionId);
    } finally {
      closeAll(a, b);
    }
  });

  test('subscriptions end with the connection (server.stats and rules.stats counts drop)', T, async () => {
    const watcher = await client(srv);
    const a = await client(srv);
    try {
      const base = await watcher.ok('server.stats');
      const baseRules = (await watcher.ok('rules.stats')).subscriptions;
      for (const pattern of ['gone.a', 'gone.*', '*']) await a.ok('rules.subscribe', { pattern });
      const during = await watcher.ok('server.stats');
      assert.equal(during.connections.totalRulesSubscriptions, base.connections.totalRulesSubscriptions + 3);
      assert.equal((await watcher.ok('rules.stats')).subscriptions, baseRules + 3);
      await a.end();
      await eventually(async () => (await watcher.ok('server.stats')).connections.totalRulesSubscriptions === base.connections.totalRulesSubscriptions, 2000, 'server.stats totalRulesSubscriptions back to base');
      await eventually(async () => (await watcher.ok('rules.stats')).subscriptions === baseRules, 2000, 'rules.stats subscriptions back to base');
      // Emitting to the dead subscriptions' topics is harmless.
      await watcher.ok('rules.emit', { topic: 'gone.a' });
      await watcher.ok('rules.emit', { topic: 'gone' });
    } finally {
      closeAll(watcher, a);
    }
  });
});

describe('facts', () => {
  test('setFact answers {key,value}; getFact returns the value of any JSON type, null when missing', T, async () => {
    const c = await client(srv);
    try {
      const values = [42, 'text', true, false, null, { a: { b: [1, 'x'] } }, [1, 2, 3], 0.5, ''];
      for (const [i, value] of values.entries()) {
        const key = `facttype:${i}`;
        assert.deepEqual(await c.ok('rules.setFact', { key, value }), { key, value });
        assert.deepEqual(await c.ok('rules.getFact', { key }), value);
      }
      assert.equal(await c.ok('rules.getFact', { key: 'facttype:nothing:here' }), null);
      // Overwrite.
      await c.ok('rules.setFact', { key: 'facttype:0', value: 43 });
      assert.equal(await c.ok('rules.getFact', { key: 'facttype:0' }), 43);
    } finally {
      c.close();
    }
  });

  test('missing value, bad keys → VALIDATION_ERROR', T, async () => {
    const c = await client(srv);
    try {
      assertErr(await c.err('rules.setFact', { key: 'k:1' }), 'VALIDATION_ERROR');
      for (const key of ['', 'a::b', ':a', 'a:', 'a:*', 5, null]) {
        assertErr(await c.err('rules.setFact', { key, value: 1 }), 'VALIDATION_ERROR');
      }
      assertErr(await c.err('rules.setFact', { value: 1 }), 'VALIDATION_ERROR', 'Missing or invalid "key": expected non-empty string');
      assertErr(await c.err('rules.getFact', {}), 'VALIDATION_ERROR', 'Missing or invalid "key": expected non-empty string');
      assertErr(await c.err('rules.deleteFact', {}), 'VALIDATION_ERROR', 'Missing or invalid "key": expected non-empty string');
      assertErr(await c.err('rules.queryFacts', {}), 'VALIDATION_ERROR', 'Missing or invalid "pattern": expected non-empty string');
      assert.equal(await c.ok('rules.getFact', { key: 'k:1' }), null, 'a refused setFact stored nothing');
    } finally {
      c.close();
    }
  });

  test('a huge fact value is refused and not stored; the connection stays usable', T, async () => {
    const c = await client(srv);
    try {
      const m = await c.err('rules.setFact', { key: 'huge:1', value: 'x'.repeat(300 * 1024) });
      assertErr(m, 'VALIDATION_ERROR');
      assert.equal(await c.ok('rules.getFact', { key: 'huge:1' }), null);
      const big = await c.err('rules.setFact', { key: 'huge:2', value: { list: Array.from({ length: 20000 }, (_, i) => i) } });
      assertErr(big, 'VALIDATION_ERROR');
      assert.deepEqual(await c.ok('rules.setFact', { key: 'huge:3', value: 'x'.repeat(1000) }), { key: 'huge:3', value: 'x'.repeat(1000) });
    } finally {
      c.close();
    }
  });

  test('deleteFact answers {deleted:true} then {deleted:false}', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.setFact', { key: 'del:me', value: 1 });
      assert.deepEqual(await c.ok('rules.deleteFact', { key: 'del:me' }), { deleted: true });
      assert.equal(await c.ok('rules.getFact', { key: 'del:me' }), null);
      assert.deepEqual(await c.ok('rules.deleteFact', { key: 'del:me' }), { deleted: false });
      assert.deepEqual(await c.ok('rules.deleteFact', { key: 'del:never' }), { deleted: false });
    } finally {
      c.close();
    }
  });

  test("queryFacts: '*' matches exactly one ':' segment", T, async () => {
    const c = await client(srv);
    try {
      const keys = ['qf:1:name', 'qf:2:name', 'qf:1', 'qf:1:name:x', 'qf:1:email', 'qfx:1:name'];
      for (const key of keys) await c.ok('rules.setFact', { key, value: key.length });
      const r = await c.ok('rules.queryFacts', { pattern: 'qf:*:name' });
      assert.deepEqual(
        [...r].sort((x, y) => x.key.localeCompare(y.key)),
        [
          { key: 'qf:1:name', value: 9 },
          { key: 'qf:2:name', value: 9 },
        ],
      );
      const two = await c.ok('rules.queryFacts', { pattern: 'qf:*' });
      assert.deepEqual(two.map((f) => f.key), ['qf:1']);
      const exact = await c.ok('rules.queryFacts', { pattern: 'qf:1:email' });
      assert.deepEqual(exact, [{ key: 'qf:1:email', value: 10 }]);
      const all3 = await c.ok('rules.queryFacts', { pattern: '*:1:*' });
      assert.deepEqual(all3.map((f) => f.key).sort(), ['qf:1:email', 'qf:1:name', 'qfx:1:name']);
      assert.deepEqual(await c.ok('rules.queryFacts', { pattern: 'nothing:*' }), []);
      for (const pattern of ['qf::name', ':qf', 'qf:', 'qf:**']) assertErr(await c.err('rules.queryFacts', { pattern }), 'VALIDATION_ERROR');
    } finally {
      c.close();
    }
  });

  test("'*' alone matches every one-segment key; getAllFacts lists every fact", T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.setFact', { key: 'solo1', value: 'a' });
      await c.ok('rules.setFact', { key: 'solo2', value: 'b' });
      await c.ok('rules.setFact', { key: 'solo3:x', value: 'c' });
      const ones = await c.ok('rules.queryFacts', { pattern: '*' });
      assert.ok(ones.every((f) => !f.key.includes(':')), `'*' returned multi-segment keys: ${JSON.stringify(ones.map((f) => f.key))}`);
      assert.ok(ones.some((f) => f.key === 'solo1') && ones.some((f) => f.key === 'solo2'));
      const all = await c.ok('rules.getAllFacts');
      assert.ok(Array.isArray(all));
      for (const f of all) assert.deepEqual(Object.keys(f).sort(), ['key', 'value']);
      const byKey = Object.fromEntries(all.map((f) => [f.key, f.value]));
      assert.equal(byKey.solo1, 'a');
      assert.equal(byKey['solo3:x'], 'c');
      const stats = await c.ok('rules.stats');
      assert.equal(stats.factsCount, all.length, 'rules.stats factsCount equals the number of facts');
    } finally {
      c.close();
    }
  });

  test('facts survive a restart on the same data directory', T, async () => {
    const dataDir = makeTempDir('shopd-rules-data-');
    const config = { buckets: { products: PRODUCTS }, seed: {} };
    try {
      let s = await startOnDataDir(dataDir, config);
      try {
        const c = await client(s);
        await c.ok('rules.setFact', { key: 'persist:a', value: { n: 1, list: ['x'] } });
        await c.ok('rules.setFact', { key: 'persist:b', value: 'bee' });
        await c.ok('rules.setFact', { key: 'persist:gone', value: 1 });
        await c.ok('rules.deleteFact', { key: 'persist:gone' });
        c.close();
      } finally {
        await s.stopAndCheck();
      }
      s = await startOnDataDir(dataDir, config);
      try {
        const c = await client(s);
        assert.deepEqual(await c.ok('rules.getFact', { key: 'persist:a' }), { n: 1, list: ['x'] });
        assert.equal(await c.ok('rules.getFact', { key: 'persist:b' }), 'bee');
        assert.equal(await c.ok('rules.getFact', { key: 'persist:gone' }), null);
        assert.deepEqual((await c.ok('rules.queryFacts', { pattern: 'persist:*' })).map((f) => f.key).sort(), ['persist:a', 'persist:b']);
        c.close();
      } finally {
        await s.stopAndCheck();
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('rule administration', () => {
  const rule = (name, extra = {}) => ({
    name,
    when: { event: `adm.${name}.in` },
    then: [{ emit: `adm.${name}.out`, data: { n: '{{event.data.n}}' } }],
    ...extra,
  });

  test('registerRule answers the normalised rule; it fires; getRule/getRules show it', T, async () => {
    const c = await client(srv);
    try {
      const reg = await c.ok('rules.registerRule', { rule: rule('r1') });
      assert.equal(reg.name, 'r1');
      assert.equal(reg.enabled, true, 'enabled defaults to true');
      assert.equal(reg.priority, 0, 'priority defaults to 0');
      assert.deepEqual(reg.when, { event: 'adm.r1.in' });
      const got = await c.ok('rules.getRule', { name: 'r1' });
      assert.deepEqual(got, reg);
      const all = await c.ok('rules.getRules');
      assert.ok(Array.isArray(all));
      assert.deepEqual(all.find((r) => r.name === 'r1'), reg);

      assertErr(await c.err('rules.registerRule', { rule: rule('r1') }), 'ALREADY_EXISTS');
      await c.ok('rules.subscribe', { pattern: 'adm.r1.out' });
      const ev = await c.ok('rules.emit', { topic: 'adm.r1.in', data: { n: 7 } });
      const p = await c.push();
      assert.equal(p.data.topic, 'adm.r1.out');
      assert.deepEqual(p.data.event.data, { n: 7 }, 'a lone placeholder keeps the number type');
      assert.equal(p.data.event.causationId, ev.id);
    } finally {
      c.close();
    }
  });

  test('an invalid rule is refused with VALIDATION_ERROR and not registered', T, async () => {
    const c = await client(srv);
    try {
      const bad = { name: 'bad1', when: { evnt: 'x' }, then: 5 };
      const m = await c.err('rules.registerRule', { rule: bad });
      assertErr(m, 'VALIDATION_ERROR');
      assertErr(await c.err('rules.getRule', { name: 'bad1' }), 'NOT_FOUND');
      assertErr(await c.err('rules.registerRule', {}), 'VALIDATION_ERROR');
      assertErr(await c.err('rules.registerRule', { rule: 'x' }), 'VALIDATION_ERROR');
      for (const r of [
        { ...rule('bad2'), then: [] },
        { ...rule('bad3'), when: { event: 'a..b' } },
        { ...rule('bad4'), if: [{ path: 'event.data.n', op: 'around', value: 1 }] },
        { ...rule('bad5'), then: [{ launch: 'rockets' }] },
        { ...rule('bad6'), when: { store: { bucket: 'products', ops: ['upsert'] } } },
        { ...rule('bad7'), if: [{ path: 'event.data.n', op: 'matches', value: '(' }] },
        { ...rule('bad8'), name: '' },
      ]) {
        assertErr(await c.err('rules.registerRule', { rule: r }), 'VALIDATION_ERROR');
      }
      const names = (await c.ok('rules.getRules')).map((r) => r.name);
      assert.ok(!names.some((n) => /^bad/.test(n)), `invalid rules were registered: ${names}`);
    } finally {
      c.close();
    }
  });

  test('validateRule answers {valid, errors} without registering', T, async () => {
    const c = await client(srv);
    try {
      const ok = await c.ok('rules.validateRule', { rule: rule('v1') });
      assert.deepEqual(ok, { valid: true, errors: [] });
      assertErr(await c.err('rules.getRule', { name: 'v1' }), 'NOT_FOUND', undefined);
      const bad = await c.ok('rules.validateRule', { rule: { name: 'v2', when: { evnt: 'x' }, then: 5 } });
      assert.equal(bad.valid, false);
      assert.ok(Array.isArray(bad.errors) && bad.errors.length >= 2, `expected every problem listed: ${JSON.stringify(bad.errors)}`);
      assert.ok(bad.errors.every((e) => typeof e === 'string' && e.length > 0));
      assertErr(await c.err('rules.getRule', { name: 'v2' }), 'NOT_FOUND');
    } finally {
      c.close();
    }
  });

  test('disableRule stops it firing, enableRule restarts it', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.registerRule', { rule: rule('r2') });
      await c.ok('rules.subscribe', { pattern: 'adm.r2.out' });
      const dis = await c.ok('rules.disableRule', { name: 'r2' });
      assert.equal(dis.enabled, false);
      assert.equal((await c.ok('rules.getRule', { name: 'r2' })).enabled, false);
      await c.ok('rules.emit', { topic: 'adm.r2.in', data: { n: 1 } });
      await c.noPush(200, 'a disabled rule fired');
      const en = await c.ok('rules.enableRule', { name: 'r2' });
      assert.equal(en.enabled, true);
      await c.ok('rules.emit', { topic: 'adm.r2.in', data: { n: 2 } });
      assert.deepEqual((await c.push()).data.event.data, { n: 2 });
      assertErr(await c.err('rules.enableRule', { name: 'nope' }), 'NOT_FOUND');
      assertErr(await c.err('rules.disableRule', { name: 'nope' }), 'NOT_FOUND');
      assertErr(await c.err('rules.disableRule', {}), 'VALIDATION_ERROR');
    } finally {
      c.close();
    }
  });

  test('a rule registered disabled does not fire', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.registerRule', { rule: rule('r2off', { enabled: false }) });
      await c.ok('rules.subscribe', { pattern: 'adm.r2off.out' });
      await c.ok('rules.emit', { topic: 'adm.r2off.in', data: { n: 1 } });
      await c.noPush(200);
    } finally {
      c.close();
    }
  });

  test('updateRule replaces the definition; unknown name → NOT_FOUND; invalid → VALIDATION_ERROR', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.registerRule', { rule: rule('r3') });
      await c.ok('rules.subscribe', { pattern: 'adm.r3.*' });
      const upd = await c.ok('rules.updateRule', {
        name: 'r3',
        rule: { name: 'r3', when: { event: 'adm.r3.in' }, then: [{ emit: 'adm.r3.changed', data: { v: 2 } }] },
      });
      assert.equal(upd.name, 'r3');
      assert.deepEqual(upd.then, [{ emit: 'adm.r3.changed', data: { v: 2 } }]);
      assert.deepEqual((await c.ok('rules.getRule', { name: 'r3' })).then, upd.then);
      await c.ok('rules.emit', { topic: 'adm.r3.in' });
      const p = await c.push();
      assert.equal(p.data.topic, 'adm.r3.in', 'the subscription also sees the trigger');
      const q = await c.push();
      assert.equal(q.data.topic, 'adm.r3.changed');
      assert.deepEqual(q.data.event.data, { v: 2 });
      await c.noPush(150, 'the old action (adm.r3.out) must be gone');
      assertErr(await c.err('rules.updateRule', { name: 'nope', rule: rule('nope') }), 'NOT_FOUND');
      assertErr(await c.err('rules.updateRule', { name: 'r3', rule: { name: 'r3', when: { event: 'x' }, then: [] } }), 'VALIDATION_ERROR');
      assert.deepEqual((await c.ok('rules.getRule', { name: 'r3' })).then, upd.then, 'a refused update changed nothing');
    } finally {
      c.close();
    }
  });

  test('unregisterRule removes it (no more firing, getRule NOT_FOUND, second time NOT_FOUND)', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.registerRule', { rule: rule('r4') });
      const before = (await c.ok('rules.stats')).rulesCount;
      const un = await c.ok('rules.unregisterRule', { name: 'r4' });
      assert.equal(un.name, 'r4');
      assert.equal((await c.ok('rules.stats')).rulesCount, before - 1);
      assertErr(await c.err('rules.getRule', { name: 'r4' }), 'NOT_FOUND');
      assertErr(await c.err('rules.unregisterRule', { name: 'r4' }), 'NOT_FOUND');
      await c.ok('rules.subscribe', { pattern: 'adm.r4.out' });
      await c.ok('rules.emit', { topic: 'adm.r4.in', data: { n: 1 } });
      await c.noPush(200, 'an unregistered rule fired');
    } finally {
      c.close();
    }
  });

  test('a store action in a rule writes the record', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.registerRule', {
        rule: {
          name: 'audit-ok',
          when: { event: 'adm.audit' },
          then: [{ store: { op: 'insert', bucket: 'audit', data: { id: 'aud-{{event.data.n}}', note: 'n={{event.data.n}}' } } }],
        },
      });
      await c.ok('rules.emit', { topic: 'adm.audit', data: { n: 5 } });
      const rec = await eventually(() => c.ok('store.get', { bucket: 'audit', key: 'aud-5' }), 1500, 'audit record');
      assert.equal(rec.note, 'n=5');
    } finally {
      c.close();
    }
  });
});

describe('conditions and trigger contexts', () => {
  const hit = (name) => ({ emit: `cond.${name}.hit`, data: { v: '{{event.data.v}}' } });
  const CASES = [
    // [name, condition, data that holds, data that does not]
    ['eq', { path: 'event.data.v', op: 'eq', value: 'a' }, { v: 'a' }, { v: 'b' }],
    ['eqobj', { path: 'event.data.v', op: 'eq', value: { k: [1, 2] } }, { v: { k: [1, 2] } }, { v: { k: [2, 1] } }],
    ['neq', { path: 'event.data.v', op: 'neq', value: 1 }, { v: 2 }, { v: 1 }],
    ['gt', { path: 'event.data.v', op: 'gt', value: 10 }, { v: 11 }, { v: 10 }],
    ['gte', { path: 'event.data.v', op: 'gte', value: 10 }, { v: 10 }, { v: 9.5 }],
    ['lt', { path: 'event.data.v', op: 'lt', value: 0 }, { v: -1 }, { v: 0 }],
    ['lte', { path: 'event.data.v', op: 'lte', value: 0 }, { v: 0 }, { v: 1 }],
    ['in', { path: 'event.data.v', op: 'in', value: ['x', 'y'] }, { v: 'y' }, { v: 'z' }],
    ['exists', { path: 'event.data.v', op: 'exists' }, { v: 0 }, { w: 1 }],
    ['not_exists', { path: 'event.data.v', op: 'not_exists' }, { w: 1 }, { v: false }],
    ['matches', { path: 'event.data.v', op: 'matches', value: '^SKU-[0-9]+$' }, { v: 'SKU-12' }, { v: 'xSKU-12' }],
  ];

  test('condition operators eq, neq, gt, gte, lt, lte, in, exists, not_exists, matches', T, async () => {
    const c = await client(srv);
    try {
      for (const [name, cond] of CASES) {
        await c.ok('rules.registerRule', { rule: { name: `cond-${name}`, when: { event: `cond.${name}` }, if: [cond], then: [hit(name)] } });
      }
      await c.ok('rules.subscribe', { pattern: 'cond.*.hit' });
      for (const [name, , yes, no] of CASES) {
        await c.ok('rules.emit', { topic: `cond.${name}`, data: no });
        await c.noPush(60, `${name} fired for ${JSON.stringify(no)}`);
        await c.ok('rules.emit', { topic: `cond.${name}`, data: yes });
        const p = await c.push(1000).catch(() => null);
        assert.ok(p, `${name} did not fire for ${JSON.stringify(yes)}`);
        assert.equal(p.data.topic, `cond.${name}.hit`);
      }
    } finally {
      c.close();
    }
  });

  test('fact triggers fire on delete too, with the previous value', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.registerRule', {
        rule: { name: 'temp-watch', when: { fact: 'temp:*' }, then: [{ emit: 'temp.changed', data: { key: '{{fact.key}}', previous: '{{fact.previous}}' } }] },
      });
      await c.ok('rules.subscribe', { pattern: 'temp.changed' });
      await c.ok('rules.setFact', { key: 'temp:1', value: 5 });
      assert.deepEqual((await c.push()).data.event.data, { key: 'temp:1', previous: null });
      await c.ok('rules.deleteFact', { key: 'temp:1' });
      assert.deepEqual((await c.push()).data.event.data, { key: 'temp:1', previous: 5 });
      await c.ok('rules.deleteFact', { key: 'temp:1' });
      await c.noPush(150, 'deleting a missing fact is no change');
    } finally {
      c.close();
    }
  });

  test('store triggers: insert and delete contexts (bucket, op, key, record, previous)', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.registerRule', {
        rule: {
          name: 'product-changes',
          when: { store: { bucket: 'products', ops: ['insert', 'delete'] } },
          then: [{ emit: 'product.changed', data: { bucket: '{{bucket}}', op: '{{op}}', key: '{{key}}', title: '{{record.title}}', was: '{{previous.title}}' } }],
        },
      });
      await c.ok('rules.subscribe', { pattern: 'product.changed' });
      await c.ok('store.insert', { bucket: 'products', data: { id: 'pc1', title: 'Chair', price: 5 } });
      const ins = (await c.push()).data.event.data;
      assert.equal(ins.bucket, 'products');
      assert.equal(ins.op, 'insert');
      assert.equal(ins.key, 'pc1');
      assert.equal(ins.title, 'Chair');
      await c.ok('store.update', { bucket: 'products', key: 'pc1', data: { price: 6 } });
      await c.noPush(150, 'update is not in ops');
      await c.ok('store.delete', { bucket: 'products', key: 'pc1' });
      const del = (await c.push()).data.event.data;
      assert.equal(del.op, 'delete');
      assert.equal(del.key, 'pc1');
      assert.equal(del.was, 'Chair');
      await c.ok('rules.unregisterRule', { name: 'product-changes' });
    } finally {
      c.close();
    }
  });
});

describe('rule persistence and config validation', () => {
  test('rules registered at run time survive a restart', T, async () => {
    const dataDir = makeTempDir('shopd-rules-data-');
    const config = { buckets: { products: PRODUCTS }, seed: {} };
    try {
      let s = await startOnDataDir(dataDir, config);
      try {
        const c = await client(s);
        await c.ok('rules.registerRule', { rule: { name: 'kept', when: { event: 'k.in' }, then: [{ emit: 'k.out' }] } });
        c.close();
      } finally {
        await s.stopAndCheck();
      }
      s = await startOnDataDir(dataDir, config);
      try {
        const c = await client(s);
        assert.equal((await c.ok('rules.getRule', { name: 'kept' })).name, 'kept');
        await c.ok('rules.subscribe', { pattern: 'k.out' });
        await c.ok('rules.emit', { topic: 'k.in' });
        assert.equal((await c.push()).data.topic, 'k.out');
        c.close();
      } finally {
        await s.stopAndCheck();
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('an invalid rule in the config file: exit status 2 and one line naming rules[i]', T, async () => {
    const dir = makeTempDir('shopd-rules-cfg-');
    try {
      const cfgPath = path.join(dir, 'config.json');
      fs.writeFileSync(cfgPath, JSON.stringify({ buckets: {}, rules: [CONFIG_RULES[2], { name: 'broken', when: { event: 'a..b' }, then: [] }] }));
      const r = await runCli(['serve', '--config', cfgPath, '--port', '0', '--host', '127.0.0.1', '--data-dir', path.join(dir, 'data')]);
      assert.equal(r.code, 2, `exit ${r.code}; stderr: ${r.stderr}`);
      assert.match(r.stderr, /rules\[1\]/);
      assert.doesNotMatch(r.stdout, /listening on/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('rules from the config file and triggers', () => {
  test("the config's rules are registered at start", T, async () => {
    const c = await client(srv);
    try {
      const names = (await c.ok('rules.getRules')).map((r) => r.name);
      for (const r of CONFIG_RULES) assert.ok(names.includes(r.name), `config rule ${r.name} missing from ${names}`);
      const low = await c.ok('rules.getRule', { name: 'low-stock-alert' });
      assert.deepEqual(low.when, LOW_STOCK.when);
      assert.deepEqual(low.if, LOW_STOCK.if);
      assert.deepEqual(low.then, LOW_STOCK.then);
    } finally {
      c.close();
    }
  });

  test('store trigger: stock falling below 5 emits inventory.low_stock with typed interpolation and sets a fact', T, async () => {
    const c = await client(srv);
    const w = await client(srv);
    try {
      const { subscriptionId } = await c.ok('rules.subscribe', { pattern: 'inventory.low_stock' });
      await w.ok('store.update', { bucket: 'products', key: 'p3', data: { stock: 3 } }); // 12 → 3
      const p = await c.push();
      assert.equal(p.type, 'push');
      assert.equal(p.channel, 'event');
      assert.equal(p.subscriptionId, subscriptionId);
      assert.equal(p.data.topic, 'inventory.low_stock');
      assert.match(p.data.event.id, /^evt-\d+$/);
      assert.deepEqual(p.data.event.data, { productId: 'p3', currentStock: 3, note: 'Low: Lamp (3)' });
      assert.equal(typeof p.data.event.data.currentStock, 'number', 'a lone placeholder keeps the JSON type');
      assert.equal(await c.ok('rules.getFact', { key: 'product:p3:low' }), true);

      await w.ok('store.update', { bucket: 'products', key: 'p3', data: { stock: 2 } }); // previous 3: no
      await w.ok('store.update', { bucket: 'products', key: 'p2', data: { stock: 1 } }); // previous 0: no
      await w.ok('store.update', { bucket: 'products', key: 'p2', data: { title: 'Pan 2' } }); // no stock change
      await w.ok('store.insert', { bucket: 'products', data: { id: 'p9', title: 'New', price: 1, stock: 1 } }); // insert: not watched
      await c.noPush(250, 'only the crossing below 5 fires');

      await w.ok('store.update', { bucket: 'products', key: 'p1', data: { stock: 4 } }); // 5 → 4: fires
      const q = await c.push();
      assert.deepEqual(q.data.event.data, { productId: 'p1', currentStock: 4, note: 'Low: Mug (4)' });
    } finally {
      closeAll(c, w);
    }
  });

  test('store trigger through a transaction fires too', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('store.insert', { bucket: 'products', data: { id: 'ptx', title: 'Tx', price: 1, stock: 10 } });
      await c.ok('rules.subscribe', { pattern: 'inventory.low_stock' });
      await c.ok('store.transaction', { operations: [{ op: 'update', bucket: 'products', key: 'ptx', data: { stock: 0 } }] });
      const p = await c.push();
      assert.deepEqual(p.data.event.data, { productId: 'ptx', currentStock: 0, note: 'Low: Tx (0)' });
    } finally {
      c.close();
    }
  });

  test('fact trigger: setting order:<id>:status to paid emits order.paid with key and previous', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.subscribe', { pattern: 'order.paid' });
      await c.ok('rules.setFact', { key: 'order:42:status', value: 'pending' });
      await c.noPush(150, 'condition fact.value == paid does not hold');
      await c.ok('rules.setFact', { key: 'order:42:status', value: 'paid' });
      const p = await c.push();
      assert.deepEqual(p.data.event.data, { key: 'order:42:status', previous: 'pending', value: 'paid' });
      await c.ok('rules.setFact', { key: 'order:42:status:x', value: 'paid' });
      await c.ok('rules.setFact', { key: 'order:43', value: 'paid' });
      await c.noPush(150, 'keys not matching order:*:status');
    } finally {
      c.close();
    }
  });

  test('a condition can read a fact ({"fact": key})', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.subscribe', { pattern: 'vip.ack' });
      await c.ok('rules.emit', { topic: 'vip.check' });
      await c.noPush(150, 'flags:vip is not set yet');
      await c.ok('rules.setFact', { key: 'flags:vip', value: true });
      await c.ok('rules.emit', { topic: 'vip.check' });
      assert.equal((await c.push()).data.topic, 'vip.ack');
    } finally {
      c.close();
    }
  });

  test('events a rule emits carry causationId = trigger id and the same correlationId', T, async () => {
    const c = await client(srv);
    try {
      await c.ok('rules.subscribe', { pattern: 'order.confirmed' });
      const ev = await c.ok('rules.emit', { topic: 'order.placed', data: { orderId: 'o-1', total: 12.5 }, correlationId: 'flow-77' });
      const p = await c.push();
      const out = p.data.event;
      assert.equal(out.topic, 'order.confirmed');
      assert.deepEqual(out.data, { orderId: 'o-1', total: 12.5 });
      assert.equal(out.causationId, ev.id);
      assert.equal(out.correlationId, 'flow-77');
      assert.notEqual(out.id, ev.id);
    } finally {
      c.close();
    }
  });

  test('a self-triggering rule is cut off; the server stays responsive', T, async () => {
    const c = await client(srv);
    const other = await client(srv);
    try {
      await c.ok('rules.subscribe', { pattern: 'loop.ping' });
      const t0 = Date.now();
      await c.ok('rules.emit', { topic: 'loop.ping' });
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 1000, `emit took ${elapsed} ms`);
      const s0 = Date.now();
      await other.ok('store.count', { bucket: 'products' });
      assert.ok(Date.now() - s0 < 500, 'another client waited too long');
      const first = await drainPushes(c, 300);
      assert.ok(first.length >= 2, `the rule never fired (${first.length} events)`);
      assert.ok(first.length <= 40, `chain not cut off: ${first.length} events`);
      assert.ok(first.every((p) => p.data.topic === 'loop.ping'));
      const later = await drainPushes(c, 300);
      assert.equal(later.length, 0, `the loop went on: ${later.length} more events`);
      // Each event in the chain is caused by the previous one.
      for (let i = 1; i < first.length; i++) assert.equal(first[i].data.event.causationId, first[i - 1].data.event.id);
      assert.ok((await other.ok('rules.stats')).rulesCount >= CONFIG_RULES.length);
    } finally {
      closeAll(c, other);
    }
  });

  test('a rule action that fails validation does not undo the triggering write', T, async () => {
    const c = await client(srv);
    try {
      const before = await c.ok('rules.stats');
      const rec = await c.ok('store.insert', { bucket: 'orders', data: { id: 'o-fail', total: 10 } });
      assert.equal(rec.id, 'o-fail');
      await sleep(100);
      assert.equal((await c.ok('store.get', { bucket: 'orders', key: 'o-fail' }))?.total, 10, 'the order was undone');
      assert.equal(await c.ok('store.get', { bucket: 'audit', key: 'audit-o-fail' }), null, 'the invalid audit record was stored');
      const after = await c.ok('rules.stats');
      if ('actionsFailed' in after) assert.ok(after.actionsFailed > before.actionsFailed, 'actionsFailed did not grow');
      // The server goes on working normally.
      await c.ok('store.insert', { bucket: 'orders', data: { id: 'o-fail-2', total: 11 } });
      assert.equal(await c.ok('store.count', { bucket: 'orders' }), 2);
    } finally {
      c.close();
    }
  });
});

describe('rules.stats', () => {
  test('has rulesCount, factsCount, eventsProcessed; eventsProcessed grows with each event', T, async () => {
    const c = await client(srv);
    try {
      const s1 = await c.ok('rules.stats');
      for (const k of ['rulesCount', 'factsCount', 'eventsProcessed']) assert.ok(Number.isInteger(s1[k]) && s1[k] >= 0, `${k}: ${s1[k]}`);
      assert.equal(s1.rulesCount, (await c.ok('rules.getRules')).length);
      await c.ok('rules.emit', { topic: 'stats.one' });
      await c.ok('rules.emit', { topic: 'stats.two' });
      const s2 = await c.ok('rules.stats');
      assert.ok(s2.eventsProcessed >= s1.eventsProcessed + 2, `eventsProcessed ${s1.eventsProcessed} → ${s2.eventsProcessed}`);
      await c.ok('rules.setFact', { key: 'stats:new', value: 1 });
      assert.equal((await c.ok('rules.stats')).factsCount, s2.factsCount + 1);
      await c.ok('rules.deleteFact', { key: 'stats:new' });
      assert.equal((await c.ok('rules.stats')).factsCount, s2.factsCount);
    } finally {
      c.close();
    }
  });
});
