import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RedisKeys } from '../src/redis-keys.js';
import { RedisLedger } from '../src/redis-ledger.js';
import { ledgerNodes, nextRelease, sleep, suiteRedis, uniquePrefix, waitFor } from './helpers/util.js';

const fixture = fileURLToPath(new URL('./fixtures/hold-leases.js', import.meta.url));

describe('RedisLedger: leases of dead nodes expire', { timeout: 30_000 }, () => {
  const db = suiteRedis();

  it('a SIGKILLed node stops counting within the lease ttl (+1 s), and waiters are woken', async (t) => {
    const prefix = uniquePrefix('expiry');
    const ttl = 1500;
    const child = spawn(
      process.execPath,
      [
        fixture,
        JSON.stringify({ url: db.redis.url, prefix, nodeId: 'doomed', ttl, backend: 'mx:25', n: 5, cap: 5 }),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    assert.deepEqual(JSON.parse(line.toString()), { got: 5 });

    const survivor = await RedisLedger.create({
      redis: db.redis.url,
      nodeId: 'survivor',
      leaseTtlMs: ttl,
      onRedisDown: 'reject',
      keyPrefix: prefix,
    });
    try {
      // Let the doomed node beat at least once more, then kill it without any chance to clean up.
      await sleep(ttl / 2);
      assert.equal(await survivor.tryAcquire('mx:25', 5), undefined, 'the live node holds all 5');
      const woken = nextRelease(survivor, 'mx:25', ttl + 2000);
      child.kill('SIGKILL');
      const killedAt = Date.now();
      await once(child, 'exit');
      assert.deepEqual(await db.admin.hgetall(new RedisKeys(prefix).backend('mx:25').counts), {
        doomed: '5',
      });

      let lease = await survivor.tryAcquire('mx:25', 5);
      while (!lease) {
        assert.ok(Date.now() - killedAt <= ttl + 1000, 'the dead node still counts after ttl + 1 s');
        await sleep(50);
        lease = await survivor.tryAcquire('mx:25', 5);
      }
      const freedAfter = Date.now() - killedAt;
      t.diagnostic(`dead node's slots free after ${freedAfter} ms (ttl ${ttl} ms)`);
      await woken;
      assert.equal(survivor.count('mx:25'), 1, 'only the survivor counts now');
      assert.deepEqual(await db.admin.hgetall(new RedisKeys(prefix).backend('mx:25').counts), {
        survivor: '1',
      });
      lease.release();
    } finally {
      child.kill('SIGKILL');
      await survivor.close();
    }
  });

  it('a node that stalled past its ttl and was pruned puts its slots back when it wakes', async () => {
    const prefix = uniquePrefix('lapse');
    const ttl = 600;
    const k = new RedisKeys(prefix).backend('mx:25');
    const [a, b] = await ledgerNodes(prefix, ['a', 'b'], {
      redis: db.redis.url,
      leaseTtlMs: ttl,
      onRedisDown: 'reject',
    });
    try {
      assert.ok((await Promise.all([1, 2].map(() => a!.tryAcquire('mx:25', 2)))).every(Boolean));
      assert.equal(await b!.tryAcquire('mx:25', 2), undefined, 'a holds the whole cap');
      // A stall (GC pause, blocked event loop) longer than the ttl: no heartbeat goes out.
      const until = Date.now() + ttl + 300;
      while (Date.now() < until);
      // b runs first and prunes a as dead: a's two slots stop counting, b gets one.
      assert.ok(await b!.tryAcquire('mx:25', 2));
      // a's next heartbeat finds its lease gone while it still holds 2, and re-asserts them.
      await waitFor('a re-asserted', async () => (await db.admin.hget(k.counts, 'a')) === '2', 3000);
      assert.equal(await b!.tryAcquire('mx:25', 3), undefined, 'the cap counts a again (2 + 1)');
      assert.equal(a!.mode, 'redis');
    } finally {
      await Promise.all([a!.close(), b!.close()]);
    }
  });

  it('a live node that holds slots keeps them past many ttls (its heartbeat renews them)', async () => {
    const prefix = uniquePrefix('renew');
    const ttl = 600;
    const [a, b] = await ledgerNodes(prefix, ['a', 'b'], {
      redis: db.redis.url,
      leaseTtlMs: ttl,
      onRedisDown: 'reject',
    });
    try {
      const leases = await Promise.all([1, 2].map(() => a!.tryAcquire('mx:25', 2)));
      assert.ok(leases.every(Boolean));
      await sleep(ttl * 4);
      assert.equal(await b!.tryAcquire('mx:25', 2), undefined, 'a still counts after 4 ttls');
      assert.equal(b!.count('mx:25'), 2);
    } finally {
      await Promise.all([a!.close(), b!.close()]);
    }
  });
});
