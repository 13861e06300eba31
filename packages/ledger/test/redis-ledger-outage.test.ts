import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '@smtp-lb/testkit';
import { RedisKeys } from '../src/redis-keys.js';
import { RedisLedger } from '../src/redis-ledger.js';
import type { Lease, LedgerMode } from '../src/types.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { ledgerNodes, nextRelease, suiteRedis, uniquePrefix, waitFor } from './helpers/util.js';

async function takeAll(ledger: RedisLedger, backend: string, cap: number, max = 100): Promise<Lease[]> {
  const got: Lease[] = [];
  for (let i = 0; i < max; i++) {
    const lease = await ledger.tryAcquire(backend, cap);
    if (!lease) break;
    got.push(lease);
  }
  return got;
}

async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  const v = await p;
  return [v, Date.now() - t0];
}

describe('RedisLedger: Redis outages', { timeout: 60_000 }, () => {
  // The admin client survives the restarts below: ioredis reconnects on its own.
  const db = suiteRedis({ survivesRestarts: true });

  it('Redis lost, back empty: local share floor(cap / nodes) meanwhile, then counts re-asserted exactly', async () => {
    const prefix = uniquePrefix('lost');
    const k = new RedisKeys(prefix).backend('mx:25');
    // All three nodes reach Redis through one relay: cutting it is Redis going away for all.
    const proxy = await startTcpProxy(db.redis.port);
    const ledgers = await ledgerNodes(prefix, ['n1', 'n2', 'n3'], {
      redis: proxy.url,
      leaseTtlMs: 3000,
      onRedisDown: 'local-share',
    });
    const [n1, n2, n3] = ledgers as [RedisLedger, RedisLedger, RedisLedger];
    const modes: LedgerMode[] = [];
    n1.onModeChange((m) => modes.push(m));
    try {
      await waitFor('every node sees 3 live nodes', () => ledgers.every((l) => l.liveNodes === 3));
      const a = await takeAll(n1, 'mx:25', 20, 2);
      const b = await takeAll(n2, 'mx:25', 20, 3);
      await takeAll(n3, 'mx:25', 20, 1);
      assert.deepEqual(await db.admin.hgetall(k.counts), { n1: '2', n2: '3', n3: '1' });

      const lastReply = Date.now();
      proxy.cut();
      const [first, ms] = await timed(n1.tryAcquire('mx:25', 20));
      assert.ok(ms < 1500, `tryAcquire with Redis down answered after ${ms} ms`);
      assert.equal(n1.mode, 'degraded');
      assert.equal(n1.degraded, true);
      assert.equal(n1.backendMode('mx:25'), 'degraded');
      assert.deepEqual(modes, ['degraded']);
      // For a lease ttl after its last reply Redis may still count n1's 2 and the other nodes may
      // still be counting there (a slow reply, a partition of n1 alone): n1 reuses only those 2.
      assert.equal(first, undefined, 'nothing beyond what Redis still counts for n1');
      a[1]!.release();
      const reused = await n1.tryAcquire('mx:25', 20);
      assert.ok(reused, 'a slot n1 gave back while degraded is still counted for it in Redis');
      assert.equal(await n1.tryAcquire('mx:25', 20), undefined);
      // After that, floor(20 / 3) = 6 for n1, counting the 2 it holds: 4 more.
      let share: Lease | undefined;
      await waitFor('n1 keeps to its share once its lease there has run out', async () => {
        share = await n1.tryAcquire('mx:25', 20);
        return share !== undefined;
      });
      const waited = Date.now() - lastReply;
      assert.ok(waited >= 3000 - 500, `the share applied ${waited} ms after the last reply (ttl 3000)`);
      const more = await takeAll(n1, 'mx:25', 20);
      assert.equal(1 + more.length, 4);
      assert.equal(n1.nodeCount('mx:25'), 6);
      assert.equal(n1.count('mx:25'), 6, 'degraded: count is what this node holds');
      a[1] = reused;
      // n2 gives back 2 of its 3 while Redis cannot hear it.
      b[0]!.release();
      b[1]!.release();
      assert.equal(n2.nodeCount('mx:25'), 1);

      await db.redis.restart(); // nothing persisted: the counts must come back from the nodes
      assert.deepEqual(await db.admin.hgetall(k.counts), {});
      proxy.heal();
      await waitFor('all nodes back in redis mode', () => ledgers.every((l) => l.mode === 'redis'), 10_000);
      assert.deepEqual(modes, ['degraded', 'redis']);
      assert.deepEqual(await db.admin.hgetall(k.counts), { n1: '6', n2: '1', n3: '1' });
      assert.equal(await n1.tryAcquire('mx:25', 8), undefined, 'the re-asserted total (8) is enforced');

      // Pub/sub came back too: n1's release wakes n2.
      const woken = nextRelease(n2, 'mx:25', 3000);
      a[0]!.release();
      await woken;
      await waitFor('n2 sees the new total', () => n2.count('mx:25') === 7);
    } finally {
      await Promise.all(ledgers.map((l) => l.close()));
      await proxy.close();
    }
  });

  it('a real Redis restart: nodes notice, reconnect and re-assert their counts', async () => {
    const prefix = uniquePrefix('restart');
    const k = new RedisKeys(prefix).backend('mx:25');
    const opts = { redis: db.redis.url, leaseTtlMs: 30_000, onRedisDown: 'local-share' as const };
    // r2 first, so that r1's first heartbeat already counts two live nodes (with a 30 s ttl the next
    // one is 10 s away): created together, r1 may believe it is alone, and its share is the whole cap.
    const [r2] = await ledgerNodes(prefix, ['r2'], opts);
    const [r1] = await ledgerNodes(prefix, ['r1'], opts);
    const ledgers = [r1!, r2!];
    assert.equal(r1!.liveNodes, 2, 'r1 counts both nodes before the outage');
    const seen = ledgers.map((l) => {
      const modes: LedgerMode[] = [];
      l.onModeChange((m) => modes.push(m));
      return modes;
    });
    try {
      await takeAll(ledgers[0]!, 'mx:25', 10, 4);
      await takeAll(ledgers[1]!, 'mx:25', 10, 1);
      await db.redis.restart();
      // A 30 s ttl: the heartbeat is far off, so the reconnect itself must trigger the resync.
      await waitFor('both nodes went degraded and came back', () =>
        seen.every((m) => m.join() === 'degraded,redis'),
      );
      assert.deepEqual(await db.admin.hgetall(k.counts), { r1: '4', r2: '1' });
      // For one ttl after the outage each node also keeps to its allowance (its share, and no more
      // than it held plus its part of the headroom it last saw): r1 holds 4, above its share of 3.
      assert.equal(await ledgers[0]!.tryAcquire('mx:25', 6), undefined, 'r1 is above its share');
      // r2 (1 held) may take what is left under the cap, depending on which node re-asserted
      // first; either way the cluster stays within it.
      await ledgers[1]!.tryAcquire('mx:25', 6);
      const total = Object.values(await db.admin.hgetall(k.counts)).reduce((n, v) => n + Number(v), 0);
      assert.ok(total <= 6, `cluster-wide ${total} connections, cap 6`);
    } finally {
      await Promise.all(ledgers.map((l) => l.close()));
    }
  });

  it('a partition heals: the node sets its entry to its real count, with no double counting', async () => {
    const prefix = uniquePrefix('partition');
    const k = new RedisKeys(prefix).backend('mx:25');
    const proxy = await startTcpProxy(db.redis.port);
    const opts = { leaseTtlMs: 5000, onRedisDown: 'local-share' as const };
    const [a] = await ledgerNodes(prefix, ['a'], { ...opts, redis: proxy.url });
    const [b] = await ledgerNodes(prefix, ['b'], { ...opts, redis: db.redis.url });
    try {
      await waitFor('a sees 2 live nodes', () => a!.liveNodes === 2);
      const held = await takeAll(a!, 'mx:25', 10, 3);
      await takeAll(b!, 'mx:25', 10, 2);
      proxy.cut();
      await waitFor('a degraded', () => a!.degraded, 3000);
      // Redis (still up) keeps a's pre-partition count of 3 meanwhile.
      held[0]!.release();
      held[1]!.release();
      const extra = await takeAll(a!, 'mx:25', 10, 1);
      assert.equal(extra.length, 1);
      assert.equal(a!.nodeCount('mx:25'), 2);
      assert.deepEqual(await db.admin.hgetall(k.counts), { a: '3', b: '2' });

      proxy.heal();
      await waitFor('a back in redis mode', () => a!.mode === 'redis', 10_000);
      assert.deepEqual(await db.admin.hgetall(k.counts), { a: '2', b: '2' }, 'set, not incremented');
      await waitFor('b hears the new total', () => b!.count('mx:25') === 4);
    } finally {
      await Promise.all([a!.close(), b!.close()]);
      await proxy.close();
    }
  });

  it("Redis hangs: tryAcquire answers within a second ('reject' mode); a late acquire is corrected", async () => {
    const prefix = uniquePrefix('hang');
    const k = new RedisKeys(prefix).backend('mx:25');
    const proxy = await startTcpProxy(db.redis.port);
    const [a] = await ledgerNodes(prefix, ['a'], {
      redis: proxy.url,
      leaseTtlMs: 1500,
      onRedisDown: 'reject',
    });
    try {
      await takeAll(a!, 'mx:25', 10, 2);
      proxy.freeze();
      try {
        const [lease, ms] = await timed(a!.tryAcquire('mx:25', 10));
        assert.equal(lease, undefined, "'reject' takes no slot while Redis is away");
        assert.ok(ms < 2000, `answered after ${ms} ms`);
        assert.equal(a!.mode, 'degraded');
        assert.equal(await a!.tryAcquire('mx:25', 10), undefined);
        assert.deepEqual(await db.admin.hgetall(k.counts), { a: '2' }, 'nothing reached Redis yet');
      } finally {
        proxy.thaw();
      }
      // The acquire that timed out still runs once Redis wakes up (a phantom slot); the resync
      // that follows sets the entry back to what the node really holds.
      await waitFor('a back in redis mode', () => a!.mode === 'redis', 10_000);
      assert.deepEqual(await db.admin.hgetall(k.counts), { a: '2' });
      assert.ok(await a!.tryAcquire('mx:25', 10));
    } finally {
      await a!.close();
      await proxy.close();
    }
  });

  it('create() fails fast with LEDGER_UNAVAILABLE when Redis is not there', async () => {
    const nobody = await freePort('127.0.0.1');
    const [err, ms] = await timed(
      RedisLedger.create({
        redis: `redis://127.0.0.1:${nobody}`,
        nodeId: 'x',
        leaseTtlMs: 3000,
        onRedisDown: 'local-share',
        keyPrefix: uniquePrefix('gone'),
        connectTimeoutMs: 800,
      }).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    assert.equal((err as { code?: string } | undefined)?.code, 'LEDGER_UNAVAILABLE');
    assert.ok(ms < 3000, `gave up after ${ms} ms`);
  });
});
