// Sender suspensions: in memory, and in Redis shared by two nodes (a suspension made through one is
// seen and lifted through the other), the first record kept, foreign data at the key refused, and
// the answer during a Redis outage (what the node last saw, never a silent lift).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  MemorySuspensions,
  RedisSuspensions,
  type Suspensions,
  sendersCommand,
} from '../src/suspensions-redis.js';
import { suiteRedis, uniquePrefix } from './helpers/util.js';

const T = { timeout: 20_000 };

async function roundTrip(a: Suspensions, b: Suspensions): Promise<void> {
  assert.equal(await a.get('alice@example.com'), undefined);
  const rec = { user: 'alice@example.com', since: 1000, reason: 'messages over 5/1h', node: 'a' };
  assert.equal(await a.suspend(rec), true);
  assert.equal(await b.suspend({ ...rec, since: 2000, node: 'b' }), false, 'already suspended');
  assert.deepEqual(await b.get('alice@example.com'), rec, 'the first record is kept');
  await a.suspend({ user: 'bob@example.com', since: 500, reason: 'r', node: 'a' });
  assert.deepEqual(
    (await b.list()).map((s) => s.user),
    ['bob@example.com', 'alice@example.com'],
  );
  assert.equal(await b.lift('alice@example.com'), true);
  assert.equal(await b.lift('alice@example.com'), false);
  assert.equal(await a.get('alice@example.com'), undefined);
}

describe('MemorySuspensions', () => {
  it('suspends, lists and lifts', T, async () => {
    const m = new MemorySuspensions();
    await roundTrip(m, m);
  });

  it('a suspension with an end is over after it', T, async () => {
    const m = new MemorySuspensions();
    await m.suspend({ user: 'h', since: 1, reason: 'r', node: 'a', until: Date.now() - 1 });
    assert.equal(await m.get('h'), undefined);
    assert.equal(
      await m.suspend({ user: 'h', since: 2, reason: 'r', node: 'a', until: Date.now() + 60_000 }),
      true,
    );
    assert.equal((await m.list()).length, 1);
  });
});

describe('RedisSuspensions', () => {
  const s = suiteRedis();
  const open: Suspensions[] = [];
  after(() => Promise.all(open.map((o) => o.close())));
  const make = async (keyPrefix: string, nodeId: string) => {
    const r = await RedisSuspensions.create({ redis: s.redis.url, nodeId, keyPrefix });
    open.push(r);
    return r;
  };

  it('two nodes share one view; scripts have versioned names', T, async () => {
    const prefix = uniquePrefix('senders');
    await roundTrip(await make(prefix, 'a'), await make(prefix, 'b'));
    assert.equal(sendersCommand('suspend'), 'smtpLbSendersSuspendV1');
  });

  it('a kind of its own (the outbound lock-outs) and suspensions that end by themselves', T, async () => {
    const prefix = uniquePrefix('senders');
    const senders = await make(prefix, 'a');
    const hosts = await RedisSuspensions.create({
      redis: s.redis.url,
      nodeId: 'b',
      keyPrefix: prefix,
      kind: 'hosts',
    });
    open.push(hosts);
    const now = Date.now();
    await hosts.suspend({ user: '10.0.0.7', since: now, reason: 'messages', node: 'b', until: now + 60_000 });
    assert.equal(await senders.get('10.0.0.7'), undefined, 'another kind, another key');
    assert.equal((await hosts.get('10.0.0.7'))?.until, now + 60_000);
    assert.ok(await s.admin.exists(`${prefix}:hosts:{suspended}`));
    await hosts.suspend({ user: '10.0.0.8', since: now - 2000, reason: 'r', node: 'b', until: now - 1000 });
    assert.equal(await hosts.get('10.0.0.8'), undefined, 'over by itself');
    assert.deepEqual(
      (await hosts.list()).map((x) => x.user),
      ['10.0.0.7'],
    );
    assert.equal(
      await hosts.suspend({ user: '10.0.0.8', since: now, reason: 'again', node: 'b', until: now + 1000 }),
      true,
      'an expired lock-out is replaced by a new one',
    );
    assert.equal((await hosts.get('10.0.0.8'))?.reason, 'again');
  });

  it('refuses a key holding foreign data instead of overwriting it', T, async () => {
    const prefix = uniquePrefix('senders');
    await s.admin.set(`${prefix}:senders:{suspended}`, 'not a hash');
    const errors: string[] = [];
    const r = await RedisSuspensions.create({
      redis: s.redis.url,
      nodeId: 'a',
      keyPrefix: prefix,
      onError: (e) => errors.push(e.code),
    });
    open.push(r);
    await assert.rejects(r.list(), { code: 'LEDGER_WRONG_TYPE' });
    assert.deepEqual(errors, ['LEDGER_WRONG_TYPE']);
  });

  it('while Redis is unreachable a node keeps refusing what it saw suspended', T, async () => {
    const prefix = uniquePrefix('senders');
    const r = await RedisSuspensions.create({
      redis: s.redis.url,
      nodeId: 'a',
      keyPrefix: prefix,
      commandTimeoutMs: 300,
    });
    open.push(r);
    await r.suspend({ user: 'mallory@example.com', since: 1, reason: 'r', node: 'a' });
    await s.admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    assert.equal((await r.get('mallory@example.com'))?.user, 'mallory@example.com');
    assert.equal(await r.get('alice@example.com'), undefined);
    await assert.rejects(r.lift('mallory@example.com'), { code: 'LEDGER_TIMEOUT' });
  });
});
