// Redis recipient maps connect as the ledger does (issue 18): through Sentinel (the ledger's, or
// their own) and over TLS (their own `tls`, or the ledger's with its target), against real
// redis-server and redis-sentinel processes. A server certificate the map cannot verify is a
// failing lookup, never a crash, also when the client is closed in the middle of a handshake.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  freePort,
  makeTempDir,
  pollUntil,
  type RedisSentinelSetup,
  type RedisServer,
  selfSignedCert,
  startRedis,
  startRedisSentinel,
  type TempDir,
} from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { Metrics } from '../src/metrics.js';
import { RecipientMaps, redisMapClient } from '../src/recipient-maps.js';
import { configOf, silent } from './wiring.js';

/** The maps of a config with one listener and the given `ledger:` and `recipientMaps:` sections. */
function mapsConfig(ledger: string, maps: string) {
  return configOf(`
listeners: [{ name: in, listen: 127.0.0.1:0, hostname: mx.test, pool: p }]
pools: { p: { static: [{ address: 127.0.0.1:1 }] } }
${ledger}
recipientMaps:
${maps}
`);
}

async function openMaps(ledger: string, maps: string): Promise<RecipientMaps> {
  return RecipientMaps.create(mapsConfig(ledger, maps).recipientMaps, silent, new Metrics());
}

describe('redis recipient maps: Sentinel and TLS, as the ledger connects', { timeout: 90_000 }, () => {
  let dir: TempDir;
  let tls: RedisServer;
  let tlsPort: number;
  let caFile: string;
  let sentinel: RedisSentinelSetup;

  before(async () => {
    dir = await makeTempDir('rcptmap-redis-tls');
    const { key, cert } = await selfSignedCert();
    caFile = join(dir.path, 'ca.pem');
    await writeFile(join(dir.path, 'key.pem'), key);
    await writeFile(caFile, cert);
    tlsPort = await freePort();
    tls = await startRedis({
      args: [
        ...['--tls-port', String(tlsPort), '--tls-auth-clients', 'no'],
        ...['--tls-cert-file', caFile, '--tls-key-file', join(dir.path, 'key.pem')],
        ...['--tls-ca-cert-file', caFile],
      ],
    });
    const admin = new Redis(tls.url);
    await admin.set('tls:rcpt:alice@example.com', 'sales');
    admin.disconnect();
    sentinel = await startRedisSentinel({ password: 's3cret' });
    const m = await sentinel.master();
    const master = new Redis({ ...m, password: 's3cret' });
    await master.set('ha:rcpt:bob@example.com', 'eng');
    await master.wait(1, 5000); // on the replica too, before any failover
    master.disconnect();
  });
  after(async () => {
    await sentinel?.stop();
    await tls?.stop();
    await dir?.remove();
  });

  const sentinelLedger = () =>
    `ledger: { redisSentinel: { sentinels: [${sentinel.sentinels.map((s) => `"${s.host}:${s.port}"`).join(', ')}], masterName: ${sentinel.masterName}, password: s3cret } }`;

  test("the map's own TLS with the CA finds the key; the ledger's TLS is taken with the ledger's Redis", async () => {
    const own = await openMaps(
      '',
      `  m: { redis: { url: "rediss://127.0.0.1:${tlsPort}", prefix: "tls:rcpt:", tls: { ca: ${caFile} } } }`,
    );
    try {
      const r = await own.get('m')!.lookup('alice@example.com');
      assert.deepEqual(r, { status: 'found', key: 'alice@example.com', value: 'sales', cached: false });
    } finally {
      await own.close();
    }
    const inherited = await openMaps(
      `ledger: { redis: "rediss://127.0.0.1:${tlsPort}", tls: { ca: ${caFile} } }`,
      '  m: { redis: { prefix: "tls:rcpt:" } }',
    );
    try {
      const r = await inherited.get('m')!.lookup('alice+tag@example.com');
      assert.equal(r.status, 'found');
    } finally {
      await inherited.close();
    }
  });

  test('a server certificate the map cannot verify: the lookup fails (451 for the session), nothing crashes', async () => {
    const maps = await openMaps(
      '',
      `  m: { redis: { url: "rediss://127.0.0.1:${tlsPort}", prefix: "tls:rcpt:" }, timeout: 500ms }`,
    );
    try {
      const r = await maps.get('m')!.lookup('alice@example.com');
      assert.equal(r.status, 'error');
      assert.equal(maps.status()[0]?.state, 'failing');
    } finally {
      await maps.close();
    }
  });

  test('closed in the middle of its TLS handshakes, many times over, the client crashes nothing', async () => {
    // As the ledger's (8fbe016): a socket ended mid-handshake whose certificate check then fails
    // emits a second error after ioredis' one-shot listeners are spent; varied delays put the
    // close in every phase of the retried handshakes.
    const deadline = Date.now() + 15_000;
    for (let i = 0; i < 40 && Date.now() < deadline; i++) {
      const c = redisMapClient('abort', {
        url: `rediss://127.0.0.1:${tlsPort}`,
        prefix: 'tls:rcpt:',
      });
      await delay(5 + ((i * 37) % 150));
      await c.close();
    }
    await delay(300); // a late socket error would be uncaught here, and fail this test
  });

  test("through the ledger's Sentinel, and its own: found; after a failover, found on the promoted master", async () => {
    const viaLedger = await openMaps(sentinelLedger(), '  m: { redis: { prefix: "ha:rcpt:" }, cacheTtl: 0 }');
    const own = await openMaps(
      '',
      `  m:
    redis:
      prefix: "ha:rcpt:"
      sentinel: { sentinels: [${sentinel.sentinels.map((s) => `"${s.host}:${s.port}"`).join(', ')}], masterName: ${sentinel.masterName}, password: s3cret }
    cacheTtl: 0`,
    );
    try {
      for (const maps of [viaLedger, own]) {
        assert.equal((await maps.get('m')!.lookup('bob@example.com')).status, 'found');
        assert.equal((await maps.get('m')!.lookup('nobody@example.com')).status, 'unknown');
      }
      await sentinel.failover();
      for (const maps of [viaLedger, own]) {
        const seen = new Set<string>();
        await pollUntil(
          'found on the promoted master',
          async () => {
            const r = await maps.get('m')!.lookup('bob@example.com');
            seen.add(r.status);
            return r.status === 'found' || undefined;
          },
          { timeoutMs: 30_000, intervalMs: 200 },
        );
        // Never a false "unknown" (a 550) while the master moved: found or failed (451).
        assert.ok(!seen.has('unknown'), [...seen].join());
      }
    } finally {
      await viaLedger.close();
      await own.close();
    }
  });
});
