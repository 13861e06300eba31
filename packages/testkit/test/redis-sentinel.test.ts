// A real Sentinel set-up: a client finds the master by name, the replica follows it, and when the
// master's process stops the sentinels promote the replica, which then has the data and takes writes.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { type RedisSentinelSetup, startRedisSentinel } from '../src/index.js';

describe('startRedisSentinel', { timeout: 60_000 }, () => {
  let setup: RedisSentinelSetup | undefined;
  after(() => setup?.stop());

  test('the master is found by name, and after failover() the promoted replica has the data', async () => {
    setup = await startRedisSentinel({ password: 'pw' });
    assert.equal(setup.sentinels.length, 3);
    const first = setup.servers[0]!;
    assert.deepEqual(await setup.master(), { host: '127.0.0.1', port: first.port });
    const client = new Redis({
      sentinels: [...setup.sentinels],
      name: setup.masterName,
      password: 'pw',
      maxRetriesPerRequest: 1,
    });
    client.on('error', () => undefined);
    try {
      await client.set('testkit:sentinel', 'v');
      await client.wait(1, 2000); // on the replica before the master goes
      const promoted = await setup.failover();
      assert.equal(promoted.port, setup.servers[1]!.port);
      const after = new Redis({ sentinels: [...setup.sentinels], name: setup.masterName, password: 'pw' });
      try {
        assert.equal(await after.get('testkit:sentinel'), 'v');
        assert.equal(await after.set('testkit:sentinel', 'w'), 'OK', 'the new master takes writes');
      } finally {
        after.disconnect();
      }
    } finally {
      client.disconnect();
    }
  });
});
