// The ledger through a real Sentinel set-up (one master, one replica, three sentinels) while the
// master's process goes away: sessions keep asking for slots the whole time. Nothing crashes, every
// tryAcquire answers within its bound, and once the sentinels have promoted the replica and a lease
// ttl has passed, the cap holds cluster-wide on the new master (and is reached: with 3 nodes and a cap
// of 10 the local shares add up to 9, so 10 at once means the counting is in Redis again).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RedisSentinelSetup, startRedisSentinel } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { RedisKeys } from '../src/redis-keys.js';
import type { RedisLedger } from '../src/redis-ledger.js';
import { ledgerNodes, sleep, uniquePrefix, Waiters, waitFor } from './helpers/util.js';

const CAP = 10;
const TTL = 3000;

type Phase = 'before' | 'outage' | 'settling' | 'after';

describe('RedisLedger through Sentinel: a failover', { timeout: 90_000 }, () => {
  let setup: RedisSentinelSetup;
  before(async () => {
    setup = await startRedisSentinel({ password: 's3cret' });
  });
  after(() => setup.stop());

  it('caps hold on the promoted replica within the lease ttl, and nothing crashes meanwhile', async (t) => {
    const prefix = uniquePrefix('sentinel');
    const target = {
      sentinels: setup.sentinels.map((s) => `${s.host}:${s.port}`),
      name: setup.masterName,
      password: 's3cret',
    };
    const ledgers = await ledgerNodes(prefix, ['s1', 's2', 's3'], {
      redis: target,
      leaseTtlMs: TTL,
      onRedisDown: 'local-share',
    });
    const waiters = ledgers.map((l) => new Waiters(l, 'mx:25'));
    let phase: Phase = 'before';
    let held = 0;
    const max: Record<Phase, number> = { before: 0, outage: 0, settling: 0, after: 0 };
    let slowest = 0;
    let stop = false;
    const worker = async (k: number) => {
      const ledger = ledgers[k % ledgers.length] as RedisLedger;
      while (!stop) {
        const t0 = Date.now();
        const lease = await ledger.tryAcquire('mx:25', CAP);
        slowest = Math.max(slowest, Date.now() - t0);
        if (!lease) {
          await waiters[k % ledgers.length]!.wait(250);
          continue;
        }
        held += 1;
        max[phase] = Math.max(max[phase], held);
        await sleep(5 + (k % 4) * 5);
        held -= 1;
        lease.release();
      }
    };
    const workers = Array.from({ length: 30 }, (_, k) => worker(k));
    try {
      await sleep(1000);
      phase = 'outage';
      const promoted = await setup.failover();
      await waitFor('every node back in redis mode', () => ledgers.every((l) => l.mode === 'redis'), 20_000);
      phase = 'settling';
      await sleep(TTL + 200);
      phase = 'after';
      await sleep(2000);
      stop = true;
      await Promise.all(workers);
      t.diagnostic(`max held per phase ${JSON.stringify(max)}, slowest tryAcquire ${slowest} ms`);
      assert.equal(max.before, CAP, 'before: the cap is reached and not passed');
      assert.ok(max.after <= CAP, `after the failover at most ${CAP} at once, saw ${max.after}`);
      assert.equal(max.after, CAP, 'after: the cap is reached again (more than the local shares allow)');
      assert.ok(slowest < 2500, `every tryAcquire answered within its bound, slowest ${slowest} ms`);

      const admin = new Redis({ host: promoted.host, port: promoted.port, password: 's3cret' });
      try {
        const k = new RedisKeys(prefix).backend('mx:25');
        await waitFor('every release reached the new master', async () => {
          const counts = await admin.hgetall(k.counts);
          return Object.values(counts).every((v) => v === '0') || Object.keys(counts).length === 0;
        });
      } finally {
        admin.disconnect();
      }
      for (const l of ledgers) assert.equal(l.nodeCount('mx:25'), 0);
    } finally {
      stop = true;
      await Promise.all(workers);
      await Promise.all(ledgers.map((l) => l.close()));
    }
  });
});
