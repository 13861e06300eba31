// Real redis-server instances: one answers PING, goes away on stop() and comes back empty on the same
// port after restart(); a three-master cluster spreads keys of different hash slots over all masters.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import {
  freePort,
  type RedisCluster,
  type RedisServer,
  startRedis,
  startRedisCluster,
  type TestkitError,
} from '../src/index.js';

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('startRedis', { timeout: 30_000 }, () => {
  let redis: RedisServer | undefined;
  after(() => redis?.stop());

  test('answers PING, stops, and restarts empty on the same port', async () => {
    redis = await startRedis();
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    const first = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      assert.equal(await first.ping(), 'PONG');
      await first.set('testkit:k', 'v');
      assert.equal(await first.get('testkit:k'), 'v');
    } finally {
      first.disconnect();
    }

    await redis.restart();
    const second = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      assert.equal(await second.ping(), 'PONG');
      assert.equal(await second.get('testkit:k'), null, 'nothing is persisted across a restart');
    } finally {
      second.disconnect();
    }

    const port = redis.port;
    await redis.stop();
    assert.ok(await refused(port), 'nothing listens after stop()');
  });

  test('uses a given port, and fails loudly when that port is taken', async () => {
    const port = await freePort();
    const pinned = await startRedis({ port });
    try {
      assert.equal(pinned.port, port);
      const client = new Redis(pinned.url, { maxRetriesPerRequest: 1 });
      try {
        assert.equal(await client.ping(), 'PONG');
      } finally {
        client.disconnect();
      }
      await assert.rejects(startRedis({ port }), (err: TestkitError) => {
        assert.equal(err.code, 'TESTKIT_EXITED');
        assert.match(err.message, /in use/);
        return true;
      });
    } finally {
      await pinned.stop();
    }
  });
});

describe('startRedisCluster', { timeout: 60_000 }, () => {
  let cluster: RedisCluster | undefined;
  after(() => cluster?.stop());

  test('three masters take keys of different hash slots', async () => {
    cluster = await startRedisCluster({ masters: 3 });
    assert.equal(cluster.nodes.length, 3);
    const client = new Cluster(cluster.nodes.map(({ host, port }) => ({ host, port })));
    try {
      // Slots: b 3300, c 7365, a 15495: one in each third of 0..16383, so one on each master.
      for (const key of ['a', 'b', 'c']) await client.set(key, `value-${key}`);
      for (const key of ['a', 'b', 'c']) assert.equal(await client.get(key), `value-${key}`);
      const sizes = await Promise.all(
        cluster.nodes.map(async ({ port }) => {
          const node = new Redis(port, '127.0.0.1');
          try {
            return await node.dbsize();
          } finally {
            node.disconnect();
          }
        }),
      );
      assert.deepEqual(sizes, [1, 1, 1]);
    } finally {
      client.disconnect();
    }
  });
});
