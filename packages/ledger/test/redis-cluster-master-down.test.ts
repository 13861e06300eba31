// One master of a 3-master Redis Cluster stops answering (SIGSTOP: connections stay open, nothing
// comes back, as with a host that froze): only the backends whose keys it holds degrade. The others
// keep exact cluster-wide caps, their leases and the expiry of a dead node's slots; the liveness key
// `{nodes}:live` is on the stopped master too, and nothing depends on it while it is away.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type RedisCluster, startRedisCluster } from '@smtp-lb/testkit';
import { Cluster } from 'ioredis';
import { RedisKeys } from '../src/redis-keys.js';
import { RedisLedger } from '../src/redis-ledger.js';
import type { Lease } from '../src/types.js';
import { hammer } from './helpers/hammer.js';
import { sleep, uniquePrefix, waitFor } from './helpers/util.js';

const fixture = fileURLToPath(new URL('./fixtures/hold-leases.js', import.meta.url));

describe('RedisLedger: one Redis Cluster master away', { timeout: 120_000 }, () => {
  let cluster: RedisCluster;
  let admin: Cluster;
  before(async () => {
    // Redis' default (full coverage) would stop every master answering once one is marked failed.
    cluster = await startRedisCluster({ masters: 3, requireFullCoverage: false });
    admin = new Cluster(cluster.nodes.map(({ host, port }) => ({ host, port })));
    admin.on('error', () => undefined);
  });
  after(async () => {
    admin.disconnect();
    await cluster.stop();
  });

  /** Index in cluster.nodes of the master holding `key`'s slot. */
  async function masterOf(key: string): Promise<number> {
    const slot = Number(await admin.cluster('KEYSLOT', key));
    const owner = (admin.slots[slot] ?? [])[0] ?? '';
    const i = cluster.nodes.findIndex((n) => `${n.host}:${n.port}` === owner);
    assert.ok(i >= 0, `master of slot ${slot} (${owner}) is one of ours`);
    return i;
  }

  it('degrades only the backends on that master; the others keep exact caps and dead nodes expire', async (t) => {
    const prefix = uniquePrefix('master-down');
    const keys = new RedisKeys(prefix);
    await admin.cluster('SLOTS'); // the slot map is loaded
    await waitFor('admin knows the slots', () => admin.slots.length > 0);
    const down = await masterOf(keys.liveNodes);
    // A on the master that goes away (with the liveness key); B, C and D elsewhere (D for the
    // SIGKILLed node).
    const pick = async (wanted: (m: number) => boolean, not: string[]) => {
      for (let i = 0; i < 200; i++) {
        const id = `mx${i}:25`;
        if (!not.includes(id) && wanted(await masterOf(keys.backend(id).counts))) return id;
      }
      throw new Error('no backend id found for that master');
    };
    const A = await pick((m) => m === down, []);
    const B = await pick((m) => m === (down + 1) % 3, [A]);
    const C = await pick((m) => m === (down + 2) % 3, [A, B]);
    const D = await pick((m) => m !== down, [A, B, C]);
    const ttl = 3000;
    const ledgers = await Promise.all(
      ['n1', 'n2', 'n3'].map((nodeId) =>
        RedisLedger.create({
          redis: { cluster: [...cluster.urls] },
          nodeId,
          leaseTtlMs: ttl,
          onRedisDown: 'local-share',
          keyPrefix: prefix,
        }),
      ),
    );
    const child = spawn(
      process.execPath,
      [
        fixture,
        JSON.stringify({ cluster: cluster.urls, prefix, nodeId: 'doomed', ttl, backend: D, n: 3, cap: 3 }),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let resumed = false;
    try {
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      assert.deepEqual(JSON.parse(line.toString()), { got: 3 });
      await waitFor('every node sees 4 live nodes', () => ledgers.every((l) => l.liveNodes === 4));
      // Every node holds one slot of A before its master goes away.
      const heldA: Lease[] = [];
      for (const l of ledgers) {
        const lease = await l.tryAcquire(A, 12);
        assert.ok(lease);
        heldA.push(lease);
        for (const id of [B, C, D]) l.count(id);
      }
      await waitFor('every node has a lease on every backend', async () => {
        const n = await Promise.all([A, B, C, D].map((id) => admin.zcard(keys.backend(id).nodes)));
        return n.slice(0, 3).every((x) => x === 3) && n[3] === 4;
      });

      cluster.nodes[down]!.pause();
      const pausedAt = Date.now();
      // The heartbeat (ttl/3) or an acquire finds A out of reach within a second or two.
      // (A reply slower than 1 s on a loaded machine degrades a backend too, until the next beat:
      // hence a wait for the state, not a check at one instant.)
      await waitFor(
        'A degraded on every node, and only A',
        () => ledgers.every((l) => l.mode === 'degraded' && l.degradedBackends.join() === A),
        15_000,
      );
      // B and C: exact caps, cluster-wide, while A's master is away (and the other masters have
      // marked it failed: cluster-node-timeout is 3 s).
      // Reaching the cap exactly also shows B and C were counted in Redis: degraded, 3 nodes (of 4
      // seen) would keep to floor(10 / 4) = 2 each on B.
      const [rb, rc] = await Promise.all([hammer(ledgers, B, 10, 300), hammer(ledgers, C, 7, 300)]);
      t.diagnostic(`B: max ${rb.maxConcurrent} of 10; C: max ${rc.maxConcurrent} of 7`);
      assert.equal(rb.granted, 300);
      assert.equal(rc.granted, 300);
      assert.equal(rb.maxConcurrent, 10, 'B reached its cap and never went above it');
      assert.equal(rc.maxConcurrent, 7, 'C reached its cap and never went above it');

      // A dead node's slots on D stop counting within the ttl (+1 s), A's master away meanwhile.
      assert.equal(await ledgers[0]!.tryAcquire(D, 3), undefined, 'the doomed node holds D');
      child.kill('SIGKILL');
      const killedAt = Date.now();
      await once(child, 'exit');
      let lease = await ledgers[0]!.tryAcquire(D, 3);
      while (!lease) {
        assert.ok(Date.now() - killedAt <= ttl + 1000, 'the dead node still counts on D after ttl + 1 s');
        await sleep(50);
        lease = await ledgers[0]!.tryAcquire(D, 3);
      }
      t.diagnostic(`D: the dead node's slots free after ${Date.now() - killedAt} ms (ttl ${ttl} ms)`);
      lease.release();

      // A meanwhile: a node reuses only what Redis still counts for it while its lease there may
      // live, then keeps to floor(12 / live nodes it last saw).
      const share = Math.floor(12 / ledgers[0]!.liveNodes);
      await waitFor('a lease ttl since A last answered', () => Date.now() - pausedAt > ttl + 500, 10_000);
      const extraA: Lease[] = [];
      for (const l of ledgers) {
        for (let i = 0; i < 20; i++) {
          const x = await l.tryAcquire(A, 12);
          if (!x) break;
          extraA.push(x);
        }
        assert.equal(l.nodeCount(A), share, `${l.nodeId} keeps to its share of A (${share})`);
      }
      assert.ok(share * 3 <= 12);

      cluster.nodes[down]!.resume();
      resumed = true;
      await waitFor('A back on every node', () => ledgers.every((l) => l.mode === 'redis'), 30_000);
      // The counts in Redis are what the nodes hold (set, not incremented: the re-asserts that
      // queued up on the frozen connection ran after the acquires that timed out).
      const counts = await admin.hgetall(keys.backend(A).counts);
      assert.deepEqual(counts, { n1: String(share), n2: String(share), n3: String(share) });
      for (const x of [...heldA, ...extraA]) x.release();
      await waitFor(
        'A free again',
        async () => Object.keys(await admin.hgetall(keys.backend(A).counts)).length === 0,
      );
    } finally {
      if (!resumed) cluster.nodes[down]!.resume();
      child.kill('SIGKILL');
      await Promise.all(ledgers.map((l) => l.close()));
    }
  });
});
