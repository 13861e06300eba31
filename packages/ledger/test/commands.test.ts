import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { commandName, defineLedgerCommands, loadScripts } from '../src/commands.js';
import { LedgerError } from '../src/errors.js';
import { RedisKeys } from '../src/redis-keys.js';
import { RedisLedger } from '../src/redis-ledger.js';
import { suiteRedis, uniquePrefix } from './helpers/util.js';

type Script = (...args: Array<string | number>) => Promise<number[]>;
const script = (client: Redis, name: string) =>
  (client as unknown as Record<string, Script>)[name]!.bind(client);

describe('Lua scripts', () => {
  it('one file per command, each opening with its KEYS, ARGV and return values', () => {
    const scripts = loadScripts();
    assert.deepEqual(scripts.map((s) => s.name).sort(), [
      'acquire',
      'heartbeat',
      'leave',
      'node-beat',
      'reassert',
      'release',
    ]);
    for (const s of scripts) {
      assert.match(s.lua, /^--\[\[/, `${s.name} starts with a comment block`);
      const header = s.lua.slice(0, s.lua.indexOf(']]'));
      for (let k = 1; k <= s.numberOfKeys; k++) assert.match(header, new RegExp(`KEYS\\[${k}\\]`), s.name);
      assert.doesNotMatch(
        header,
        new RegExp(`KEYS\\[${s.numberOfKeys + 1}\\]`),
        `${s.name}: file name key count`,
      );
      assert.match(header, /ARGV\[1\]/);
      assert.match(header, /Returns/);
      assert.doesNotMatch(s.lua, /-- @include/, 'includes are resolved');
      assert.doesNotMatch(
        s.lua,
        /\berror\s*\(|redis\.error_reply/,
        `${s.name} returns codes, never Lua errors`,
      );
    }
  });

  it('versioned command names', () => {
    assert.equal(commandName('acquire'), 'smtpLbAcquireV2');
    assert.equal(commandName('node-beat', 3), 'smtpLbNodeBeatV3');
  });

  describe('against Redis', () => {
    const db = suiteRedis();

    it('two versions of the scripts coexist on one client and one Redis, over the same keys', async () => {
      const prefix = uniquePrefix('versions');
      const ledger = await RedisLedger.create({
        redis: db.redis.url,
        nodeId: 'v1-node',
        leaseTtlMs: 10_000,
        onRedisDown: 'reject',
        keyPrefix: prefix,
      });
      try {
        defineLedgerCommands(db.admin, 2);
        // A "next release": same contract, different script body (so a different SHA in Redis).
        for (const s of loadScripts()) {
          db.admin.defineCommand(commandName(s.name, 3), {
            numberOfKeys: s.numberOfKeys,
            lua: `-- release 2\n${s.lua}`,
          });
        }
        const commands = db.admin as unknown as Record<string, Script>;
        assert.notEqual(commands.smtpLbAcquireV2, commands.smtpLbAcquireV3, 'defining V3 did not replace V2');
        const cur = script(db.admin, 'smtpLbAcquireV2');
        const next = script(db.admin, 'smtpLbAcquireV3');
        const k = new RedisKeys(prefix).backend('b:25');
        const args = (node: string) => [k.counts, k.nodes, node, 10_000, k.released, 'PUBLISH', 'b:25', 3];
        assert.ok(await ledger.tryAcquire('b:25', 3), 'ledger (V2)');
        assert.deepEqual(await cur(...args('old-node')), [1, 2, 0]);
        assert.deepEqual(await next(...args('new-node')), [1, 3, 0]);
        assert.deepEqual(
          (await next(...args('new-node'))).slice(0, 2),
          [2, 3],
          'V3 sees the V2 counts: full',
        );
        assert.equal(await ledger.tryAcquire('b:25', 3), undefined, 'V2 sees the V3 count: full');
        assert.deepEqual(await db.admin.hgetall(k.counts), {
          'v1-node': '1',
          'old-node': '1',
          'new-node': '1',
        });
      } finally {
        await ledger.close();
      }
    });

    it('a bad argument comes back as a code, not a Lua error', async () => {
      defineLedgerCommands(db.admin);
      const k = new RedisKeys(uniquePrefix('args')).backend('b:25');
      const acquire = script(db.admin, commandName('acquire'));
      for (const bad of [
        [k.counts, k.nodes, 'n', 'soon', 'ch', 'PUBLISH', 'b:25', 3],
        [k.counts, k.nodes, 'n', 1000, 'ch', 'PUBLISH', 'b:25', 'nan'],
        [k.counts, k.nodes, '', 1000, 'ch', 'PUBLISH', 'b:25', 3],
        [k.counts, k.nodes, 'n', 1000, 'ch', 'PUBLISH', 'b:25', 2.5],
        [k.counts, k.nodes, 'n', 1000, 'ch', 'FLUSHALL', 'b:25', 3],
      ]) {
        assert.deepEqual(await acquire(...bad), [-1, 0, 0], JSON.stringify(bad));
      }
    });

    it('a key of another type maps to LEDGER_WRONG_TYPE through the ledger', async () => {
      const prefix = uniquePrefix('wrongtype');
      await db.admin.set(new RedisKeys(prefix).backend('b:25').counts, 'not a hash');
      const ledger = await RedisLedger.create({
        redis: db.redis.url,
        nodeId: 'n1',
        leaseTtlMs: 10_000,
        onRedisDown: 'reject',
        keyPrefix: prefix,
      });
      const errors: string[] = [];
      ledger.onError((e) => errors.push(e.code));
      try {
        await assert.rejects(
          ledger.tryAcquire('b:25', 5),
          (e: unknown) =>
            e instanceof LedgerError && e.code === 'LEDGER_WRONG_TYPE' && e.command === 'acquire',
        );
        assert.deepEqual(errors, ['LEDGER_WRONG_TYPE'], 'reported through onError (the errors metric)');
        assert.equal(ledger.mode, 'redis', 'foreign data is an error, not an outage');
        assert.ok(await ledger.tryAcquire('c:25', 5), 'other backends still work');
      } finally {
        await ledger.close();
      }
    });
  });
});
