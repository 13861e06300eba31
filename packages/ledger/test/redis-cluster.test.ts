import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RedisCluster, startRedisCluster } from '@smtp-lb/testkit';
import { Cluster } from 'ioredis';
import { RedisKeys } from '../src/redis-keys.js';
import { RedisLedger } from '../src/redis-ledger.js';
import { hammer } from './helpers/hammer.js';
import { nextRelease, uniquePrefix, waitFor } from './helpers/util.js';

describe('RedisLedger on a 3-master Redis Cluster', { timeout: 90_000 }, () => {
  let cluster: RedisCluster;
  let admin: Cluster;
  before(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    admin = new Cluster(cluster.nodes.map(({ host, port }) => ({ host, port })));
  });
  after(async () => {
    admin.disconnect();
    await cluster.stop();
  });

  const three = (prefix: string) =>
    Promise.all(
      ['c1', 'c2', 'c3'].map((nodeId) =>
        RedisLedger.create({
          redis: { cluster: [...cluster.urls] },
          nodeId,
          leaseTtlMs: 10_000,
          onRedisDown: 'reject',
          keyPrefix: prefix,
        }),
      ),
    );

  it('500 concurrent sessions over 3 nodes never hold more than the cap of 20', async (t) => {
    const prefix = uniquePrefix('cluster-caps');
    const ledgers = await three(prefix);
    try {
      const r = await hammer(ledgers, 'mx1:25', 20, 500);
      t.diagnostic(`granted ${r.granted}, refusals ${r.refusals}, max concurrent ${r.maxConcurrent}`);
      assert.equal(r.granted, 500);
      assert.ok(r.maxConcurrent <= 20, `at most 20 at once, saw ${r.maxConcurrent}`);
      assert.equal(r.maxConcurrent, 20, 'the cap was reached');
    } finally {
      await Promise.all(ledgers.map((l) => l.close()));
    }
  });

  it('backends spread over the masters; releases reach every node whichever master publishes', async () => {
    const prefix = uniquePrefix('cluster-wake');
    const ledgers = await three(prefix);
    const [a, b] = ledgers;
    try {
      const keys = new RedisKeys(prefix);
      // Find backends whose keys live on different masters (slots differ by hash tag).
      const masters = new Set<string>();
      const backends: string[] = [];
      for (let i = 0; backends.length < 3 && i < 100; i++) {
        const id = `mx${i}:25`;
        const slot = Number(await admin.cluster('KEYSLOT', keys.backend(id).counts));
        assert.equal(
          Number(await admin.cluster('KEYSLOT', keys.backend(id).nodes)),
          slot,
          'one slot per backend',
        );
        const owner = (admin.slots[slot] ?? [])[0] ?? '';
        if (!masters.has(owner)) {
          masters.add(owner);
          backends.push(id);
        }
      }
      assert.equal(backends.length, 3, 'three backends on three masters');
      for (const id of backends) {
        const lease = await a!.tryAcquire(id, 1);
        assert.ok(lease);
        assert.equal(await b!.tryAcquire(id, 1), undefined);
        const woken = nextRelease(b!, id, 3000);
        lease.release();
        await woken;
        await waitFor(`b sees ${id} free`, () => b!.count(id) === 0);
        assert.ok(await b!.tryAcquire(id, 1));
      }
    } finally {
      await Promise.all(ledgers.map((l) => l.close()));
    }
  });
});
