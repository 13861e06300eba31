// The HA Redis set-ups people run, configured the way a user writes them: node processes that find
// the master through Sentinel (`ledger.redisSentinel`) keep serving through a real failover, and keep
// the cap once the replica is promoted; a node that talks to Redis over TLS with a private CA, a
// client certificate and a server name (`ledger.tls`) counts there.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { NodeStatus } from '@smtp-lb/proxy';
import {
  freePort,
  makeTempDir,
  selfSignedCert,
  startCaptureBackend,
  startRedis,
  startRedisSentinel,
} from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { type CliNode, startCliNode } from '../helpers/cli-node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const cleanup = cleanupAfterAll();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pool(address: string, cap: number, ledger: string): string {
  return `pools:
  default:
    static: [{ address: "${address}", maxConnections: ${cap} }]
    tls: none
    xclient: off
admission: { queueTimeout: 20s, maxWaiting: 1000 }
${ledger}
`;
}

/** The node's /status; the admin port opens just after the SMTP port startCliNode waits for. */
async function statusOf(node: CliNode): Promise<NodeStatus> {
  for (let i = 0; ; i++) {
    try {
      return await node.status();
    } catch (err) {
      if (i >= 50) throw err;
      await sleep(100);
    }
  }
}

/** The node's last ledger log lines, for a failure message. */
const ledgerLines = (output: string) =>
  output
    .split('\n')
    .filter((l) => l.includes('ledger'))
    .slice(-8)
    .join('\n');

/** One message through the node; the reply code to the end of DATA (or to whatever failed first). */
async function send(port: number, id: string): Promise<{ id: string; code: number; raw: string }> {
  let c: SmtpDialog | undefined;
  try {
    c = await SmtpDialog.open(port);
    await c.read(30_000);
    await c.cmd('EHLO ha.test', 30_000);
    await c.cmd('MAIL FROM:<ha@example.org>', 30_000);
    const rcpt = await c.cmd(`RCPT TO:<${id}@example.test>`, 30_000);
    if (rcpt.code !== 250) return { id, code: rcpt.code, raw: rcpt.raw };
    await c.cmd('DATA', 30_000);
    const r = await c.cmd(`X-Id: ${id}\r\n\r\nha\r\n.`, 30_000);
    await c.cmd('QUIT', 5000).catch(() => undefined);
    return { id, code: r.code, raw: r.raw };
  } catch (err) {
    return { id, code: 0, raw: String(err) };
  } finally {
    c?.close();
  }
}

describe('ledger on HA Redis set-ups', { timeout: 180_000 }, () => {
  test('two nodes through Sentinel: a failover under load, nodes stay up, the cap holds after it', async () => {
    const setup = await startRedisSentinel({ password: 's3cret' });
    cleanup.push(() => setup.stop());
    const backend = await startCaptureBackend();
    cleanup.push(() => backend.close());
    const ttl = 2000;
    const cap = 4;
    const sentinels = setup.sentinels.map((s) => `"${s.host}:${s.port}"`).join(', ');
    const ledger = `ledger:
  redisSentinel: { sentinels: [${sentinels}], masterName: ${setup.masterName}, password: s3cret }
  leaseTtl: ${ttl}ms
  keyPrefix: ha-sentinel
  onRedisDown: local-share`;
    const nodes: CliNode[] = [];
    for (const id of ['ha-a', 'ha-b']) {
      const node = await startCliNode(id, pool(backend.address, cap, ledger));
      cleanup.push(() => node.kill());
      nodes.push(node);
    }
    for (const s of await Promise.all(nodes.map(statusOf))) assert.equal(s.ledger.mode, 'redis');

    const samples: Array<[number, number]> = [];
    const probe = setInterval(() => samples.push([Date.now(), backend.current]), 2);
    let stop = false;
    const results: Array<{ id: string; code: number; raw: string }> = [];
    const loop = async (i: number) => {
      for (let round = 0; !stop; round++) results.push(await send(nodes[i % 2]!.port, `s${i}-${round}`));
    };
    const load = Promise.all(Array.from({ length: 16 }, (_, i) => loop(i)));
    try {
      await sleep(1500);
      await setup.failover();
      const deadline = Date.now() + 20_000;
      while (!(await Promise.all(nodes.map(statusOf))).every((s) => s.ledger.mode === 'redis')) {
        if (Date.now() > deadline) {
          const logs = nodes.map((n) => ledgerLines(n.output())).join('\n');
          assert.fail(`the nodes did not find the promoted master within 20 s:\n${logs}`);
        }
        await sleep(100);
      }
      const settledAt = Date.now() + ttl;
      await sleep(ttl + 2000);
      stop = true;
      await load;
      clearInterval(probe);
      for (const n of nodes) assert.equal(n.child.exitCode, null, `${n.id} survived the failover`);
      const after = samples.filter(([t]) => t > settledAt).map(([, n]) => n);
      assert.ok(after.length > 0);
      assert.ok(
        Math.max(...after) <= cap,
        `after the failover the backend saw ${Math.max(...after)}, cap ${cap}`,
      );
      assert.equal(Math.max(...after), cap, 'the backend was kept busy up to its cap');
      const got = new Set(backend.messages.map((m) => /X-Id: (\S+)/.exec(m.data.toString())![1]!));
      for (const r of results) {
        if (r.code === 250) assert.ok(got.has(r.id), `${r.id} got 250 but the backend does not have it`);
        else assert.ok(r.code >= 400 && r.code < 500, `${r.id}: ${r.raw}`);
      }
      assert.ok(results.filter((r) => r.code === 250).length > 20, 'mail flowed');
    } finally {
      stop = true;
      clearInterval(probe);
      await load;
    }
  });

  test('TLS to Redis with a private CA, a client certificate and a server name', async () => {
    const dir = await makeTempDir('redis-tls');
    cleanup.push(() => dir.remove());
    const { key, cert } = await selfSignedCert();
    const [certFile, keyFile] = [join(dir.path, 'cert.pem'), join(dir.path, 'key.pem')];
    await writeFile(certFile, cert);
    await writeFile(keyFile, key);
    const tlsPort = await freePort();
    // tls-auth-clients yes: a client without the certificate is turned away.
    const redis = await startRedis({
      args: [
        ...['--tls-port', String(tlsPort), '--tls-auth-clients', 'yes'],
        ...['--tls-cert-file', certFile, '--tls-key-file', keyFile, '--tls-ca-cert-file', certFile],
      ],
    });
    cleanup.push(() => redis.stop());
    const backend = await startCaptureBackend();
    cleanup.push(() => backend.close());
    const node = await startCliNode(
      'tls-node',
      pool(
        backend.address,
        5,
        `ledger:
  redis: "rediss://127.0.0.1:${tlsPort}"
  tls: { ca: "${certFile}", cert: "${certFile}", key: "${keyFile}", servername: localhost }
  keyPrefix: ha-tls`,
      ),
    );
    cleanup.push(() => node.kill());
    assert.equal((await statusOf(node)).ledger.mode, 'redis');
    const admin = new Redis(redis.url);
    cleanup.push(() => admin.disconnect());
    const c = await SmtpDialog.open(node.port);
    try {
      await c.read();
      await c.cmd('EHLO tls.test');
      await c.cmd('MAIL FROM:<a@example.org>');
      assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
      // The slot the session holds is counted in Redis, reached over TLS.
      assert.deepEqual(await admin.hgetall(`ha-tls:{${backend.address}}:counts`), { 'tls-node': '1' });
    } finally {
      c.close();
    }
  });
});
