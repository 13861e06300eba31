// Per-client counters: MemoryClientLimits (one node) and RedisClientLimits (cluster-wide, real
// Redis): session caps per address and per prefix across two nodes, release, expiry of a dead
// node's sessions, the sliding-window rate, and fail-open when Redis is gone.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RedisServer, startRedis } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import {
  type ClientLimits,
  clientLimitsCommand,
  loadClientLimitsScripts,
  MemoryClientLimits,
  RedisClientLimits,
  SlidingWindow,
} from '../src/client-limits-redis.js';
import { sleep, uniquePrefix, waitFor } from './helpers/util.js';

const caps = { perAddress: 2, perPrefix: 3 };

async function sessionCaps(a: ClientLimits, b: ClientLimits): Promise<void> {
  const s1 = await a.openSession('192.0.2.1', '192.0.2.0/24', caps);
  const s2 = await b.openSession('192.0.2.1', '192.0.2.0/24', caps);
  assert.ok(s1.ok && s2.ok);
  const third = await a.openSession('192.0.2.1', '192.0.2.0/24', caps);
  assert.deepEqual(third, { ok: false, limit: 'address', address: 2, prefix: 2 });
  const neighbour = await b.openSession('192.0.2.9', '192.0.2.0/24', caps);
  assert.ok(neighbour.ok);
  const prefixFull = await a.openSession('192.0.2.10', '192.0.2.0/24', caps);
  assert.deepEqual(prefixFull, { ok: false, limit: 'prefix', address: 0, prefix: 3 });
  const otherNet = await a.openSession('198.51.100.1', '198.51.100.0/24', caps);
  assert.ok(otherNet.ok);
  s1.slot.release();
  s1.slot.release(); // idempotent: frees one session, not two
  await waitFor(
    'a freed address slot',
    async () => (await a.openSession('192.0.2.10', '192.0.2.0/24', caps)).ok,
  );
  assert.equal((await b.openSession('192.0.2.11', '192.0.2.0/24', caps)).ok, false, 'prefix full again');
  for (const s of [s2, neighbour, otherNet]) if (s.ok) s.slot.release();
}

describe('MemoryClientLimits', () => {
  it('caps sessions per address and per prefix, and releases them', async () => {
    const m = new MemoryClientLimits();
    await sessionCaps(m, m);
  });

  it('rates: a sliding window over two fixed ones', async () => {
    let now = 10_000;
    const m = new MemoryClientLimits({ now: () => now });
    for (let i = 1; i <= 5; i++) assert.deepEqual(await m.hit('conn', 'a', 5, 1000), { ok: true, count: i });
    assert.deepEqual(await m.hit('conn', 'a', 5, 1000), { ok: false, count: 6 });
    assert.equal((await m.hit('conn', 'b', 5, 1000)).ok, true, 'keys are separate');
    now += 1500; // half of the previous window (6 hits) still overlaps: 3 + this one
    assert.deepEqual(await m.hit('conn', 'a', 5, 1000), { ok: true, count: 4 });
    now += 2000; // two windows later nothing is left
    assert.deepEqual(await m.hit('conn', 'a', 5, 1000), { ok: true, count: 1 });
    // Across a window edge: 3 events just before it and 1 just after are still over a limit of 3.
    now = 999_999;
    for (let i = 0; i < 3; i++) await m.hit('edge', 'a', 3, 1000);
    now = 1_000_001;
    assert.deepEqual(await m.hit('edge', 'a', 3, 1000), { ok: false, count: 3 });
  });

  it('peek tells whether one more event would be over the limit, without counting it', async () => {
    let now = 10_000;
    const m = new MemoryClientLimits({ now: () => now });
    assert.deepEqual(await m.peek('fail', 'a', 2, 1000), { ok: true, count: 0 });
    await m.hit('fail', 'a', 2, 1000);
    assert.deepEqual(await m.peek('fail', 'a', 2, 1000), { ok: true, count: 1 });
    await m.hit('fail', 'a', 2, 1000);
    assert.deepEqual(await m.peek('fail', 'a', 2, 1000), { ok: false, count: 2 });
    assert.deepEqual(await m.peek('fail', 'a', 2, 1000), { ok: false, count: 2 }, 'peeking counts nothing');
    await m.reset('fail', 'a');
    assert.deepEqual(await m.peek('fail', 'a', 2, 1000), { ok: true, count: 0 }, 'reset forgets');
    await m.hit('fail', 'a', 2, 1000);
    await m.hit('fail', 'a', 2, 1000);
    now += 2500;
    assert.deepEqual(await m.peek('fail', 'a', 2, 1000), { ok: true, count: 0 });
  });

  it('SlidingWindow forgets a window that is not the one just before', () => {
    const w = new SlidingWindow();
    assert.equal(w.hit(0, 100), 1);
    assert.equal(w.hit(50, 100), 2);
    assert.equal(w.hit(110, 100), 2 * 0.9 + 1, 'the previous window weighted by its overlap');
    assert.equal(w.hit(350, 100), 1);
  });
});

describe('RedisClientLimits against Redis', { timeout: 60_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  const make = (nodeId: string, keyPrefix: string, leaseTtlMs = 10_000) =>
    RedisClientLimits.create({ redis: redis.url, nodeId, leaseTtlMs, keyPrefix });

  it('one file per command with its KEYS/ARGV/Returns header, versioned names', () => {
    const scripts = loadClientLimitsScripts();
    assert.deepEqual(scripts.map((s) => s.name).sort(), [
      'rate-hit',
      'rate-peek',
      'rate-reset',
      'session-close',
      'session-open',
      'session-renew',
    ]);
    for (const s of scripts) {
      const header = s.lua.slice(0, s.lua.indexOf(']]'));
      assert.match(header, /^--\[\[/);
      for (let k = 1; k <= s.numberOfKeys; k++) assert.match(header, new RegExp(`KEYS\\[${k}\\]`), s.name);
      assert.match(header, /ARGV\[1\]/);
      assert.match(header, /Returns/);
      assert.doesNotMatch(s.lua, /\berror\s*\(|redis\.error_reply/, `${s.name} returns codes`);
    }
    assert.equal(clientLimitsCommand('session-open'), 'smtpLbClientSessionOpenV1');
  });

  it('caps hold across two nodes sharing Redis', async () => {
    const prefix = uniquePrefix('clients');
    const [a, b] = await Promise.all([make('node-a', prefix), make('node-b', prefix)]);
    try {
      await sessionCaps(a, b);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('peek in Redis agrees with hit and counts nothing', async () => {
    const a = await make('node-a', uniquePrefix('peek'));
    try {
      assert.deepEqual(await a.peek('fail', 'u', 2, 60_000), { ok: true, count: 0 });
      await a.hit('fail', 'u', 2, 60_000);
      await a.hit('fail', 'u', 2, 60_000);
      assert.deepEqual(await a.peek('fail', 'u', 2, 60_000), { ok: false, count: 2 });
      assert.deepEqual(await a.peek('fail', 'u', 2, 60_000), { ok: false, count: 2 });
      assert.deepEqual(await a.hit('fail', 'u', 2, 60_000), { ok: false, count: 3 });
      await a.reset('fail', 'u');
      assert.deepEqual(await a.peek('fail', 'u', 2, 60_000), { ok: true, count: 0 }, 'reset forgets');
    } finally {
      await a.close();
    }
  });

  it('an address and its prefix share one hash tag', async () => {
    const a = await make('node-a', 'p');
    try {
      const [addr, net] = a.keys('2001:db8::1', '2001:db8::/64');
      assert.equal(addr, 'p:client:{2001:db8::/64}:addr:2001:db8::1');
      assert.equal(net, 'p:client:{2001:db8::/64}:net');
    } finally {
      await a.close();
    }
  });

  it("a dead node's sessions stop counting after the lease ttl; a live node's are renewed", async () => {
    const prefix = uniquePrefix('expiry');
    const live = await make('node-live', prefix, 600);
    const raw = new Redis(redis.url);
    try {
      const s = await live.openSession('192.0.2.5', '192.0.2.0/24', { perAddress: 2, perPrefix: 0 });
      assert.ok(s.ok);
      // A node that opened a session and then died: its member is never renewed.
      for (const sc of loadClientLimitsScripts())
        raw.defineCommand(clientLimitsCommand(sc.name), { numberOfKeys: sc.numberOfKeys, lua: sc.lua });
      const [addrKey, netKey] = live.keys('192.0.2.5', '192.0.2.0/24');
      const open = (raw as unknown as Record<string, (...a: unknown[]) => Promise<number[]>>)
        .smtpLbClientSessionOpenV1!;
      assert.deepEqual(await open.call(raw, addrKey, netKey, 'node-dead x-1', 600, 0, 0), [1, 2, 2]);
      assert.equal(
        (await live.openSession('192.0.2.5', '192.0.2.0/24', { perAddress: 2, perPrefix: 0 })).ok,
        false,
      );
      await sleep(1200);
      const again = await live.openSession('192.0.2.5', '192.0.2.0/24', { perAddress: 2, perPrefix: 0 });
      assert.ok(again.ok, 'the dead node no longer counts');
      assert.equal(again.address, 2, 'the live session, renewed, still counts');
      assert.equal(live.heldSessions, 2);
      if (again.ok) again.slot.release();
      s.slot.release();
    } finally {
      raw.disconnect();
      await live.close();
    }
  });

  it('rates are shared by the nodes, and a window later the client is let in again', async () => {
    const prefix = uniquePrefix('rate');
    const [a, b] = await Promise.all([make('node-a', prefix), make('node-b', prefix)]);
    try {
      assert.equal((await a.hit('conn', '192.0.2.7', 3, 1000)).ok, true);
      assert.equal((await b.hit('conn', '192.0.2.7', 3, 1000)).ok, true);
      assert.equal((await a.hit('conn', '192.0.2.7', 3, 1000)).ok, true);
      assert.deepEqual(await b.hit('conn', '192.0.2.7', 3, 1000), { ok: false, count: 4 });
      assert.equal((await a.hit('msg', '192.0.2.7', 3, 1000)).ok, true, 'kinds are separate');
      await sleep(2100);
      assert.deepEqual(await a.hit('conn', '192.0.2.7', 3, 1000), { ok: true, count: 1 });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('fails open, and reports, when Redis is gone', async () => {
    const own = await startRedis();
    const errors: string[] = [];
    const limits = await RedisClientLimits.create({
      redis: own.url,
      nodeId: 'n',
      leaseTtlMs: 3000,
      keyPrefix: 'x',
      commandTimeoutMs: 300,
      onError: (e) => errors.push(e.code),
    });
    try {
      await own.stop();
      const r = await limits.openSession('192.0.2.1', '192.0.2.0/24', { perAddress: 1, perPrefix: 1 });
      assert.equal(r.ok, true);
      assert.equal((await limits.hit('conn', '192.0.2.1', 0, 1000)).ok, true);
      assert.ok(errors.length > 0);
    } finally {
      await limits.close();
    }
  });
});
