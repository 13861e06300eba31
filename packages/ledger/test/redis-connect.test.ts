import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  freePort,
  type ManagedProcess,
  makeTempDir,
  type RedisServer,
  selfSignedCert,
  startProcess,
  startRedis,
  type TempDir,
} from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { RedisKeys } from '../src/redis-keys.js';
import { RedisLedger, type RedisLedgerOptions } from '../src/redis-ledger.js';
import { uniquePrefix } from './helpers/util.js';

const base = { nodeId: 'n1', leaseTtlMs: 10_000, onRedisDown: 'reject' } as const;

async function roundTrip(opts: Pick<RedisLedgerOptions, 'redis'>, admin: Redis): Promise<void> {
  const prefix = uniquePrefix('connect');
  const ledger = await RedisLedger.create({ ...base, ...opts, keyPrefix: prefix });
  try {
    const lease = await ledger.tryAcquire('mx:25', 1);
    assert.ok(lease);
    assert.equal(ledger.mode, 'redis');
    assert.deepEqual(await admin.hgetall(new RedisKeys(prefix).backend('mx:25').counts), { n1: '1' });
    lease.release();
  } finally {
    await ledger.close();
  }
}

describe('RedisLedger connection options', { timeout: 30_000 }, () => {
  let redis: RedisServer;
  let admin: Redis;
  before(async () => {
    redis = await startRedis({ args: ['--requirepass', 's3cret/pw'] });
    admin = new Redis({ port: redis.port, host: '127.0.0.1', password: 's3cret/pw' });
  });
  after(async () => {
    admin.disconnect();
    await redis.stop();
  });

  it('a redis:// URL with the (URL-encoded) password in it', async () => {
    await roundTrip({ redis: `redis://:s3cret%2Fpw@127.0.0.1:${redis.port}/0` }, admin);
  });

  it('a wrong password fails create() with LEDGER_UNAVAILABLE rather than hanging', async () => {
    await assert.rejects(
      RedisLedger.create({
        ...base,
        redis: `redis://:wrong@127.0.0.1:${redis.port}`,
        keyPrefix: uniquePrefix('badpw'),
        connectTimeoutMs: 1500,
      }),
      (e: unknown) => (e as { code?: string }).code === 'LEDGER_UNAVAILABLE',
    );
  });

  describe('over TLS (rediss://)', () => {
    let dir: TempDir;
    let tlsRedis: RedisServer;
    let tlsPort: number;
    let ca: string;
    let tlsAdmin: Redis;
    before(async () => {
      dir = await makeTempDir('redis-tls');
      const { key, cert } = await selfSignedCert();
      ca = cert;
      await writeFile(join(dir.path, 'key.pem'), key);
      await writeFile(join(dir.path, 'cert.pem'), cert);
      tlsPort = await freePort();
      tlsRedis = await startRedis({
        args: [
          ...['--tls-port', String(tlsPort), '--tls-auth-clients', 'no'],
          ...['--tls-cert-file', join(dir.path, 'cert.pem'), '--tls-key-file', join(dir.path, 'key.pem')],
          ...['--tls-ca-cert-file', join(dir.path, 'cert.pem')],
        ],
      });
      tlsAdmin = new Redis(tlsRedis.url);
    });
    after(async () => {
      tlsAdmin.disconnect();
      await tlsRedis.stop();
      await dir.remove();
    });

    it('connects with the CA given, and counts there', async () => {
      await roundTrip({ redis: { url: `rediss://127.0.0.1:${tlsPort}`, tls: { ca } } }, tlsAdmin);
    });

    it('refuses a server certificate it cannot verify', async () => {
      await assert.rejects(
        RedisLedger.create({
          ...base,
          redis: `rediss://127.0.0.1:${tlsPort}`,
          keyPrefix: uniquePrefix('tls-untrusted'),
          connectTimeoutMs: 1500,
        }),
        (e: unknown) => (e as { code?: string }).code === 'LEDGER_UNAVAILABLE',
      );
    });

    it('giving up on that server mid-handshake, many times over, crashes nothing', async () => {
      // A create() that times out disconnects whatever TLS handshake is under way; the failed
      // certificate check and then the server's alert for the half-closed handshake were two
      // socket errors, the second one uncaught (a flake of the test above in loaded runs). The
      // short, varied timeouts put the disconnect in every phase of the retried handshakes.
      const deadline = Date.now() + 10_000;
      for (let i = 0; i < 40 && Date.now() < deadline; i++) {
        await assert.rejects(
          RedisLedger.create({
            ...base,
            redis: `rediss://127.0.0.1:${tlsPort}`,
            keyPrefix: uniquePrefix('tls-abort'),
            connectTimeoutMs: 10 + ((i * 37) % 150),
          }),
          (e: unknown) => (e as { code?: string }).code === 'LEDGER_UNAVAILABLE',
        );
      }
      await delay(300); // a late socket error would be uncaught here, and fail this test
    });
  });

  describe('through Sentinel', () => {
    let dir: TempDir;
    let sentinel: ManagedProcess;
    let sentinelPort: number;
    before(async () => {
      dir = await makeTempDir('sentinel');
      sentinelPort = await freePort();
      const conf = join(dir.path, 'sentinel.conf');
      await writeFile(
        conf,
        [
          `port ${sentinelPort}`,
          'bind 127.0.0.1',
          `dir ${dir.path}`,
          `sentinel monitor smtplb 127.0.0.1 ${redis.port} 1`,
          'sentinel auth-pass smtplb s3cret/pw',
          '',
        ].join('\n'),
      );
      sentinel = startProcess('redis-sentinel', 'redis-server', [conf, '--sentinel']);
      await sentinel.waitForOutput(/\+monitor master smtplb/, 10_000);
    });
    after(async () => {
      await sentinel.stop();
      await dir.remove();
    });

    it('finds the master by name and counts there', async () => {
      await roundTrip(
        { redis: { sentinels: [`127.0.0.1:${sentinelPort}`], name: 'smtplb', password: 's3cret/pw' } },
        admin,
      );
    });
  });
});
