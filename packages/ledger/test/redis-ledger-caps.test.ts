import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RedisKeys } from '../src/redis-keys.js';
import type { RedisLedger } from '../src/redis-ledger.js';
import { hammer } from './helpers/hammer.js';
import { ledgerNodes, nextRelease, sleep, suiteRedis, uniquePrefix, waitFor } from './helpers/util.js';

describe('RedisLedger: cluster-wide caps', { timeout: 60_000 }, () => {
  const db = suiteRedis();

  /** Connections subscribed to the backend's release channel (what Redis itself reports). */
  const subscribers = async (prefix: string, backend: string) => {
    const [, n] = (await db.admin.pubsub('NUMSUB', new RedisKeys(prefix).backend(backend).released)) as [
      string,
      number,
    ];
    return n;
  };

  const three = (prefix: string, ttl = 10_000) =>
    ledgerNodes(prefix, ['n1', 'n2', 'n3'], { redis: db.redis.url, leaseTtlMs: ttl, onRedisDown: 'reject' });

  it('500 concurrent sessions over 3 nodes never hold more than the cap of 20', async (t) => {
    const prefix = uniquePrefix('caps');
    const ledgers = await three(prefix);
    try {
      const r = await hammer(ledgers, 'mx1:25', 20, 500);
      t.diagnostic(`granted ${r.granted}, refusals ${r.refusals}, max concurrent ${r.maxConcurrent}`);
      assert.equal(r.granted, 500, 'every session got a slot in the end');
      assert.ok(r.maxConcurrent <= 20, `at most 20 at once, saw ${r.maxConcurrent}`);
      assert.equal(r.maxConcurrent, 20, 'the cap was reached, so exceeding it was possible');
      assert.ok(r.refusals > 0, 'the cap refused sessions');
      const k = new RedisKeys(prefix).backend('mx1:25');
      await waitFor(
        'all releases applied',
        async () => Object.keys(await db.admin.hgetall(k.counts)).length === 0,
      );
      for (const l of ledgers) assert.equal(l.nodeCount('mx1:25'), 0);
    } finally {
      await Promise.all(ledgers.map((l) => l.close()));
    }
  });

  it('counts are cluster-wide: count() shows other nodes, nodeCount() only this one', async () => {
    const prefix = uniquePrefix('counts');
    const all = await three(prefix);
    const [a, b] = all;
    try {
      const la = await Promise.all([1, 2, 3].map(() => a!.tryAcquire('mx:25', 10)));
      const lb = await b!.tryAcquire('mx:25', 10);
      assert.ok(la.every(Boolean) && lb);
      assert.equal(b!.count('mx:25'), 4, 'b learnt the total from its acquire reply');
      assert.equal(b!.nodeCount('mx:25'), 1);
      assert.equal(a!.nodeCount('mx:25'), 3);
      const k = new RedisKeys(prefix).backend('mx:25');
      assert.deepEqual(await db.admin.hgetall(k.counts), { n1: '3', n2: '1' });
      lb.release();
      lb.release();
      await waitFor('a hears b release', () => a!.count('mx:25') === 3);
      assert.deepEqual(await db.admin.hgetall(k.counts), { n1: '3' }, 'a double release decrements once');
    } finally {
      // close() frees this node's slots at once (checked below through the hash).
      await Promise.all(all.map((l) => l.close()));
    }
    assert.deepEqual(await db.admin.hgetall(new RedisKeys(prefix).backend('mx:25').counts), {});
  });

  it('a release on one node wakes a waiter on another through pub/sub, not by polling', async () => {
    const prefix = uniquePrefix('wake');
    // A 60 s ttl: the heartbeat (every 20 s) cannot be what wakes the waiter.
    const all = await three(prefix, 60_000);
    const [a, b] = all;
    try {
      const lease = await a!.tryAcquire('mx:25', 1);
      assert.ok(lease);
      assert.equal(await b!.tryAcquire('mx:25', 1), undefined, 'full');
      assert.equal(b!.count('mx:25'), 1);
      // a and b are at the cap: both listen on the backend's channel before a releases (the wake-up
      // each gets once its subscription is in place is not the one this test waits for).
      await waitFor('a and b subscribed', async () => (await subscribers(prefix, 'mx:25')) === 2);
      await sleep(50);
      const woken = nextRelease(b!, 'mx:25', 3000);
      lease.release();
      const ms = await woken;
      assert.ok(ms < 2000, `woken after ${ms} ms`);
      assert.equal(b!.count('mx:25'), 0, 'the message carried the new total');
      assert.ok(await b!.tryAcquire('mx:25', 1), 'the slot is free for b now');
    } finally {
      await Promise.all(all.map((l) => l.close()));
    }
  });

  it('close() of a node wakes waiters elsewhere: its slots are free at once', async () => {
    const prefix = uniquePrefix('leave');
    const all = await three(prefix, 60_000);
    const [a, b] = all;
    try {
      assert.ok(await a!.tryAcquire('mx:25', 1));
      assert.equal(await b!.tryAcquire('mx:25', 1), undefined);
      const woken = nextRelease(b!, 'mx:25', 3000);
      await a!.close();
      await woken;
      assert.ok(await b!.tryAcquire('mx:25', 1));
    } finally {
      await Promise.all(all.map((l) => l.close()));
    }
  });

  it('a node listens on a backend only while it has waiters there or is near the cap', async () => {
    const prefix = uniquePrefix('listen');
    // Channels are left at the heartbeat (every ttl/3 = 1 s here), not at once.
    const all = await three(prefix, 3000);
    const [a, b, c] = all as [RedisLedger, RedisLedger, RedisLedger];
    const heard = () => all.map((l) => l.messagesReceived);
    try {
      // Cap 20, headroom 2: far from it, nobody listens, and releases reach nobody.
      const leases = await Promise.all([1, 2, 3].map(() => a.tryAcquire('mx:25', 20)));
      assert.ok(await b.tryAcquire('mx:25', 20));
      assert.equal(await subscribers(prefix, 'mx:25'), 0);
      const before = heard();
      for (const l of leases) l!.release();
      await waitFor('the releases were applied', () => b.count('mx:25') <= 4 && a.nodeCount('mx:25') === 0);
      await sleep(200);
      assert.deepEqual(heard(), before, 'no node received a release message');

      // A waiter on c: c listens, and hears the next release at once.
      const unwatch = c.watch('mx:25');
      await waitFor('c subscribed', async () => (await subscribers(prefix, 'mx:25')) === 1);
      assert.deepEqual([...c.listeningTo], ['mx:25']);
      const woken = nextRelease(c, 'mx:25', 3000);
      (await a.tryAcquire('mx:25', 20))!.release();
      await woken;
      unwatch();
      await waitFor('c left the channel', async () => (await subscribers(prefix, 'mx:25')) === 0);

      // Near the cap (18 of 20): every node whose view says so listens without a waiter.
      const many = [];
      for (let i = 0; i < 17; i++) many.push(await a.tryAcquire('mx:25', 20));
      assert.equal(a.count('mx:25'), 18);
      assert.ok(a.listeningTo.has('mx:25'));
      await waitFor('a subscribed', async () => (await subscribers(prefix, 'mx:25')) === 1);
      // ... and stops below twice the headroom (16), not at the first release.
      many.pop()!.release();
      await sleep(1500);
      assert.ok(a.listeningTo.has('mx:25'), 'at 17 a still listens (hysteresis)');
      for (const l of many.splice(0, 3)) l!.release();
      await waitFor('a left the channel', async () => (await subscribers(prefix, 'mx:25')) === 0);
      for (const l of many) l!.release();
    } finally {
      await Promise.all(all.map((l) => l.close()));
    }
  });

  it('acquire + release round trip (printed, not asserted)', async (t) => {
    const prefix = uniquePrefix('rtt');
    const all = await three(prefix);
    const [a] = all;
    try {
      const n = 2000;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const lease = await a!.tryAcquire('mx:25', 5);
        assert.ok(lease);
        lease.release();
      }
      const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
      t.diagnostic(
        `acquire + release: ${us.toFixed(0)} µs per pair over ${n} sequential pairs (loopback Redis)`,
      );
    } finally {
      await Promise.all(all.map((l) => l.close()));
    }
  });
});
