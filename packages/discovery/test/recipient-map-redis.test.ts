// Redis recipient maps against a real redis-server: keys under a prefix and a hash, a change seen
// by the next uncached lookup without any reload, and Redis gone: an error (451 upstream), never
// "unknown".
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type RedisServer, startRedis } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { createRecipientMap, type RecipientMap } from '../src/index.js';

const T = { timeout: 30_000 };
let redis: RedisServer;
let admin: Redis;
const maps: RecipientMap[] = [];

before(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
});
after(async () => {
  await Promise.all(maps.map((m) => m.close()));
  admin.disconnect();
  await redis.stop();
});

async function redisMap(name: string, redisConf: { prefix: string; hash?: string }, cacheTtl = 0) {
  const client = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  await new Promise((resolve) => client.once('ready', resolve));
  const map = await createRecipientMap(
    {
      name,
      redis: { url: redis.url, ...redisConf },
      cacheTtl,
      negativeCacheTtl: cacheTtl,
      cacheSize: 1000,
      recipientDelimiter: '+',
      timeout: 1000,
    },
    { redis: () => ({ client, close: async () => client.disconnect() }) },
  );
  maps.push(map);
  return map;
}

test('keys mode: GET <prefix><key> in lookup order; a new key is seen without reload', T, async () => {
  const map = await redisMap('keys', { prefix: 't1:rcpt:' });
  await admin.set('t1:rcpt:alice@example.com', 'sales');
  await admin.set('t1:rcpt:@example.org', 'default');
  assert.deepEqual(await map.lookup('Alice+x@example.com'), {
    status: 'found',
    key: 'alice@example.com',
    value: 'sales',
    cached: false,
  });
  assert.equal((await map.lookup('anyone@example.org')).status, 'found');
  assert.equal((await map.lookup('bob@example.com')).status, 'unknown');
  await admin.set('t1:rcpt:bob@example.com', 'eng');
  assert.deepEqual(await map.lookup('bob@example.com'), {
    status: 'found',
    key: 'bob@example.com',
    value: 'eng',
    cached: false,
  });
});

test('hash mode: HMGET <hash> <keys>', T, async () => {
  const map = await redisMap('hash', { prefix: 'unused:', hash: 't2:recipients' });
  await admin.hset('t2:recipients', 'carol@example.com', 'eng', '@example.net', 'sales');
  assert.equal((await map.lookup('carol@example.com')).status, 'found');
  assert.deepEqual(await map.lookup('dan@example.net'), {
    status: 'found',
    key: '@example.net',
    value: 'sales',
    cached: false,
  });
  assert.equal((await map.lookup('dan@example.com')).status, 'unknown');
  assert.equal(map.status().detail, 'hash t2:recipients');
});

test('Redis down: every uncached lookup is an error; back: answers again', T, async () => {
  const map = await redisMap('outage', { prefix: 't3:' }, 60_000);
  await admin.set('t3:erin@example.com', 'sales');
  assert.equal((await map.lookup('erin@example.com')).status, 'found');
  await redis.down();
  try {
    assert.equal((await map.lookup('erin@example.com')).status, 'found', 'a cached answer still serves');
    const r = await map.lookup('frank@example.com');
    assert.equal(r.status, 'error');
    assert.equal(map.status().state, 'failing');
  } finally {
    await redis.restart();
  }
  await admin.set('t3:frank@example.com', 'eng');
  for (let i = 0; i < 100; i++) {
    if ((await map.lookup('frank@example.com')).status === 'found') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await map.lookup('frank@example.com')).status, 'found');
});
