// Cluster-wide caps (DESIGN.md invariants 2 and 3): three node processes share one Redis; the capture
// backends' own record of concurrent connections never exceeds their caps, every 250 is a message the
// backend has, slots of a SIGKILLed node free up within leaseTtl + 1 s, a Redis outage leaves the
// nodes up, within their local share, with the counts right afterwards, and on a Redis Cluster one
// master stopped degrades only the backend whose keys it holds.
import assert from 'node:assert/strict';
import { before, describe, type TestContext, test } from 'node:test';
import {
  type CaptureBackend,
  type RedisServer,
  startCaptureBackend,
  startRedis,
  startRedisCluster,
} from '@smtp-lb/testkit';
import { Cluster } from 'ioredis';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { type CliNode, startCliNode } from '../helpers/cli-node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const cleanup = cleanupAfterAll();

function poolOf(backends: Array<{ b: CaptureBackend; cap: number }>, ledger: string, extra = ''): string {
  return `pools:
  default:
    static:
${backends.map(({ b, cap }) => `      - { address: "${b.address}", maxConnections: ${cap} }`).join('\n')}
    tls: none
    xclient: off
${ledger}
admission: { queueTimeout: 20s, maxWaiting: 1000 }
${extra}`;
}

async function startNodes(n: number, body: string, prefix: string): Promise<CliNode[]> {
  const nodes: CliNode[] = [];
  for (let i = 0; i < n; i++) {
    const node = await startCliNode(`${prefix}-${i}`, body);
    cleanup.push(() => node.kill());
    nodes.push(node);
  }
  return nodes;
}

interface Outcome {
  id: string;
  code: number;
  raw: string;
}

/** One client session: `messages` transactions, each tagged so the backend copy can be found. */
async function client(port: number, tag: string, messages: number): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let c: SmtpDialog | undefined;
  try {
    c = await SmtpDialog.open(port);
    const greet = await c.read(60_000);
    if (greet.code !== 220) return [{ id: `${tag}-0`, code: greet.code, raw: greet.raw }];
    await c.cmd('EHLO load.test', 60_000);
    for (let m = 0; m < messages; m++) {
      const id = `${tag}-${m}`;
      await c.cmd('MAIL FROM:<load@example.org>', 60_000);
      const rcpt = await c.cmd(`RCPT TO:<${id}@example.test>`, 60_000);
      if (rcpt.code !== 250) {
        out.push({ id, code: rcpt.code, raw: rcpt.raw });
        await c.cmd('RSET', 60_000);
        continue;
      }
      await c.cmd('DATA', 60_000);
      const r = await c.cmd(`Subject: ${id}\r\nX-Id: ${id}\r\n\r\nload\r\n.`, 60_000);
      out.push({ id, code: r.code, raw: r.raw });
    }
    await c.cmd('QUIT', 60_000).catch(() => undefined);
  } catch (err) {
    out.push({ id: `${tag}-error`, code: 0, raw: String(err) });
  } finally {
    c?.close();
  }
  return out;
}

function delivered(backends: CaptureBackend[]): Set<string> {
  const ids = new Set<string>();
  for (const b of backends) for (const m of b.messages) ids.add(/X-Id: (\S+)/.exec(m.data.toString())![1]!);
  return ids;
}

async function capTest(t: TestContext, ledger: string, prefix: string): Promise<void> {
  const a = await startCaptureBackend();
  const b = await startCaptureBackend();
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  const nodes = await startNodes(
    3,
    poolOf(
      [
        { b: a, cap: 20 },
        { b, cap: 5 },
      ],
      ledger,
      'balancing: { policy: least-connections }',
    ),
    prefix,
  );
  const clients = 300;
  const results = (
    await Promise.all(
      Array.from({ length: clients }, (_, i) => client(nodes[i % 3]!.port, `${prefix}c${i}`, 3)),
    )
  ).flat();
  // Invariant 2 holds while Redis is reachable, also when a loaded machine makes a Redis Cluster
  // reply later than the ledger's 1 s: the node that counts it as an outage only reuses the slots
  // Redis still counts for it until its lease there runs out (before, it took its local share on top
  // of what the others held: 21-38 for cap 20 at load 14-22).
  const degraded = nodes.filter((n) => n.output().includes('"msg":"ledger degraded'));
  if (degraded.length > 0)
    t.diagnostic(
      `${degraded.length} node(s) degraded (Redis reply over 1 s); backend A saw ${a.maxConcurrent} (cap 20), B ${b.maxConcurrent} (cap 5)`,
    );
  assert.ok(a.maxConcurrent <= 20, `backend A saw ${a.maxConcurrent} connections at once, cap 20`);
  assert.ok(b.maxConcurrent <= 5, `backend B saw ${b.maxConcurrent} connections at once, cap 5`);
  assert.ok(a.maxConcurrent >= 10 && b.maxConcurrent >= 1, 'both backends were used');
  const got = delivered([a, b]);
  const accepted = results.filter((r) => r.code === 250);
  for (const r of accepted) assert.ok(got.has(r.id), `${r.id} got 250 but no backend has it`);
  for (const r of results.filter((x) => x.code !== 250))
    assert.ok(r.code >= 400 && r.code < 500, `${r.id}: ${r.raw}`);
  assert.ok(accepted.length > results.length / 2, `only ${accepted.length} of ${results.length} accepted`);
  for (const n of nodes) assert.equal(n.child.exitCode, null, `node ${n.id} still runs`);
}

describe('cluster-wide caps', { timeout: 240_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
    cleanup.push(() => redis.stop());
  });

  test('three nodes, 300 clients, caps 20 and 5 hold on one Redis', async (t) => {
    await capTest(t, `ledger: { redis: "${redis.url}", leaseTtl: 3s, keyPrefix: caps1 }`, 'r');
  });

  test('the same on a three-master Redis Cluster', async (t) => {
    const cluster = await startRedisCluster({ masters: 3 });
    cleanup.push(() => cluster.stop());
    await capTest(
      t,
      `ledger: { redisCluster: [${cluster.urls.map((u) => `"${u}"`).join(', ')}], leaseTtl: 3s, keyPrefix: caps2 }`,
      'k',
    );
  });

  test('a three-master Cluster, the master of backend A stopped: B and C keep exact caps, A its local share', async () => {
    // Without full coverage a master marked failed stops only its own slots (Redis' default stops
    // the whole cluster); the ledger then needs no other master for a backend than its keys' one.
    const cluster = await startRedisCluster({ masters: 3, requireFullCoverage: false });
    cleanup.push(() => cluster.stop());
    const admin = new Cluster(cluster.nodes.map(({ host, port }) => ({ host, port })));
    admin.on('error', () => undefined);
    cleanup.push(() => admin.disconnect());
    const prefix = 'caps3';
    const masterOf = async (backend: CaptureBackend) => {
      const slot = Number(await admin.cluster('KEYSLOT', `${prefix}:{${backend.address}}:counts`));
      const owner = (admin.slots[slot] ?? [])[0];
      return cluster.nodes.findIndex((n) => `${n.host}:${n.port}` === owner);
    };
    await admin.cluster('INFO');
    // Three backends whose keys are on three different masters (the slot follows the address).
    const byMaster = new Map<number, CaptureBackend>();
    for (let i = 0; i < 40 && byMaster.size < 3; i++) {
      const b = await startCaptureBackend();
      cleanup.push(() => b.close());
      const m = await masterOf(b);
      assert.ok(m >= 0, 'the slot map is known');
      if (!byMaster.has(m)) byMaster.set(m, b);
    }
    assert.equal(byMaster.size, 3, 'backends on three masters');
    const [[downIndex, a], [, b], [, c]] = [...byMaster] as [
      [number, CaptureBackend],
      [number, CaptureBackend],
      [number, CaptureBackend],
    ];
    const ledger = `ledger: { redisCluster: [${cluster.urls.map((u) => `"${u}"`).join(', ')}], leaseTtl: 3s, keyPrefix: ${prefix}, onRedisDown: local-share }`;
    const nodes = await startNodes(
      3,
      poolOf(
        [
          { b: a!, cap: 9 },
          { b: b!, cap: 5 },
          { b: c!, cap: 4 },
        ],
        ledger,
        'balancing: { policy: least-connections }',
      ),
      'm',
    );
    // One session per node first: every node then knows (and holds a lease on) every backend.
    for (const [i, n] of nodes.entries()) {
      const [r] = await client(n.port, `m-warm${i}`, 1);
      assert.equal(r?.code, 250, r?.raw);
    }
    const backendOf = async (n: CliNode, id: string) =>
      (await n.status()).pools[0]!.backends.find((x) => x.id === id)!;

    // The share divides by the live nodes a node has seen: wait until each has seen all three.
    const seen = Date.now() + 20_000;
    while (!(await Promise.all(nodes.map((n) => n.status()))).every((s) => s.ledger.liveNodes === 3)) {
      assert.ok(Date.now() < seen, 'the nodes never saw each other');
      await new Promise((r) => setTimeout(r, 100));
    }
    cluster.nodes[downIndex!]!.pause();
    let resumed = false;
    cleanup.push(() => {
      if (!resumed) cluster.nodes[downIndex!]!.resume();
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const all = await Promise.all(nodes.map((n) => n.status()));
      if (all.every((s) => s.ledger.degradedBackends.join() === a!.address)) break;
      assert.ok(Date.now() < deadline, `A never degraded alone: ${JSON.stringify(all.map((s) => s.ledger))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const x of [a!, b!, c!]) x.maxConcurrent = x.current;
    const samples: number[] = [];
    const probe = setInterval(() => samples.push(a!.current), 2);
    let overShare = '';
    const maxHeld: Record<string, number> = {};
    let watching = true;
    const watch = (async () => {
      while (watching) {
        for (const n of nodes) {
          const s = await n.status();
          for (const x of s.pools[0]!.backends) {
            if (x.id === a!.address && x.nodeConnections > 3)
              overShare = `${n.id} held ${x.nodeConnections} of A`;
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const during = (
      await Promise.all(Array.from({ length: 150 }, (_, i) => client(nodes[i % 3]!.port, `m-out${i}`, 3)))
    ).flat();
    watching = false;
    await watch;
    clearInterval(probe);
    // Exactly the caps: counted cluster-wide in Redis (degraded, each node would keep to
    // floor(5 / 3) = 1 on B and floor(4 / 3) = 1 on C).
    assert.equal(b!.maxConcurrent, 5, 'B reached its cap of 5 and never went above it');
    assert.equal(c!.maxConcurrent, 4, 'C reached its cap of 4 and never went above it');
    const mostA = Math.max(...samples);
    assert.equal(overShare, '', 'each node kept to floor(9 / 3) = 3 on A');
    assert.ok(
      mostA <= 9,
      `A saw ${mostA} at once while its master was stopped, cap 9 (most held by each node: ${JSON.stringify(maxHeld)})`,
    );
    for (const n of nodes) assert.equal((await backendOf(n, a!.address)).ledger, 'degraded');

    cluster.nodes[downIndex!]!.resume();
    resumed = true;
    const back = Date.now() + 30_000;
    while (!(await Promise.all(nodes.map((n) => n.status()))).every((s) => s.ledger.mode === 'redis')) {
      assert.ok(Date.now() < back, 'the nodes never came back to redis mode on A');
      await new Promise((r) => setTimeout(r, 200));
    }
    // Past the settling ttl, A is counted cluster-wide again and reaches its cap of 9 (the local
    // shares add up to 9 as well, so the cap, not the share, is what is checked: never above it).
    await new Promise((r) => setTimeout(r, 3500));
    a!.maxConcurrent = a!.current;
    const after = (
      await Promise.all(Array.from({ length: 150 }, (_, i) => client(nodes[i % 3]!.port, `m-back${i}`, 3)))
    ).flat();
    assert.ok(a!.maxConcurrent <= 9, `A saw ${a!.maxConcurrent} at once after its master came back, cap 9`);
    const results = [...during, ...after];
    const got = delivered([a!, b!, c!]);
    for (const r of results.filter((x) => x.code === 250))
      assert.ok(got.has(r.id), `${r.id} got 250 but is missing`);
    for (const r of results.filter((x) => x.code !== 250))
      assert.ok(r.code >= 400 && r.code < 500, `${r.id}: ${r.raw}`);
    assert.ok(
      during.filter((r) => r.code === 250).length > during.length / 2,
      'most mail went through while A was degraded',
    );
    // Idle now: every node sees zero everywhere, A included (its counts were re-asserted exactly).
    const idle = Date.now() + 10_000;
    for (;;) {
      const all = await Promise.all(nodes.map((n) => n.status()));
      const busy = all.flatMap((s) =>
        s.pools[0]!.backends.filter((x) => x.clusterConnections !== 0 || x.nodeConnections !== 0),
      );
      if (busy.length === 0) break;
      if (Date.now() > idle) {
        const counts = await admin.hgetall(`${prefix}:{${a.address}}:counts`);
        const logs = nodes.map((n) =>
          n
            .output()
            .split('\n')
            .filter((l) => l.includes('ledger'))
            .join('\n'),
        );
        assert.fail(
          `still counted: ${JSON.stringify(busy)}; A in Redis: ${JSON.stringify(counts)}\n${logs.join('\n---\n')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const n of nodes) assert.equal(n.child.exitCode, null, `${n.id} still runs`);
  });

  test('slots of a SIGKILLed node count again within leaseTtl + 1 s', async () => {
    const c = await startCaptureBackend();
    cleanup.push(() => c.close());
    const ledger = `ledger: { redis: "${redis.url}", leaseTtl: 2s, keyPrefix: kill }`;
    const [victim, survivor] = await startNodes(2, poolOf([{ b: c, cap: 3 }], ledger), 'kill');
    const held: SmtpDialog[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await SmtpDialog.open(victim!.port);
      await s.read();
      await s.cmd('EHLO held.test');
      await s.cmd('MAIL FROM:<a@example.org>');
      assert.equal((await s.cmd('RCPT TO:<b@example.test>')).code, 250);
      held.push(s);
    }
    const waiting = await SmtpDialog.open(survivor!.port);
    await waiting.read();
    await waiting.cmd('EHLO wait.test');
    await waiting.cmd('MAIL FROM:<a@example.org>');
    const reply = waiting.cmd('RCPT TO:<b@example.test>', 30_000);
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    victim!.kill('SIGKILL');
    const r = await reply;
    const waited = Date.now() - killedAt;
    assert.equal(r.code, 250, r.raw);
    assert.ok(waited <= 3000, `the slot came back after ${waited} ms (leaseTtl 2 s + 1 s)`);
    assert.ok(c.maxConcurrent <= 3);
    for (const s of held) s.close();
    waiting.close();
  });

  test('Redis stopped and restarted under load: nodes stay up, keep to their share, counts are right after', async () => {
    // DESIGN.md invariant 2: the cap holds cluster-wide while Redis is reachable; without it each
    // node keeps to floor(cap / live nodes). The backend's own count is sampled all along.
    const d = await startCaptureBackend();
    cleanup.push(() => d.close());
    const ttl = 2000;
    const ledger = `ledger: { redis: "${redis.url}", leaseTtl: ${ttl}ms, keyPrefix: outage, onRedisDown: local-share }`;
    const nodes = await startNodes(3, poolOf([{ b: d, cap: 9 }], ledger), 'out');
    const samples: Array<[number, number]> = [];
    const probe = setInterval(() => samples.push([Date.now(), d.current]), 2);
    let stop = false;
    const results: Outcome[] = [];
    const loop = async (i: number) => {
      for (let round = 0; !stop; round++)
        results.push(...(await client(nodes[i % 3]!.port, `o${i}-${round}`, 1)));
    };
    const load = Promise.all(Array.from({ length: 30 }, (_, i) => loop(i)));

    await new Promise((r) => setTimeout(r, 1500));
    const downAt = Date.now();
    await redis.down();
    for (const wait of [1500, 1000]) {
      await new Promise((r) => setTimeout(r, wait));
      for (const s of await Promise.all(nodes.map((n) => n.status()))) {
        assert.equal(s.ledger.mode, 'degraded', `${s.node} knows Redis is down`);
        const held = s.pools[0]!.backends[0]!.nodeConnections;
        assert.ok(held <= 3, `${s.node} holds ${held} while Redis is down; its share is floor(9 / 3) = 3`);
      }
    }
    const okDuring = results.filter((r) => r.code === 250).length;
    await redis.restart();
    const upAt = Date.now();
    await new Promise((r) => setTimeout(r, 2 * ttl + 1000));
    stop = true;
    await load;
    clearInterval(probe);
    for (const n of nodes) assert.equal(n.child.exitCode, null, `${n.id} survived the outage`);
    // Reachable: before the outage, and once every node has re-asserted (one ttl after the return).
    const reachable = samples.filter(([t]) => t < downAt || t > upAt + ttl);
    const most = Math.max(...reachable.map(([, n]) => n));
    assert.ok(most <= 9, `the backend saw ${most} connections at once while Redis was reachable, cap 9`);
    assert.ok(most >= 3, 'the backend was busy');
    assert.ok(results.filter((r) => r.code === 250).length > okDuring, 'traffic flowed after Redis returned');
    for (const r of results.filter((x) => x.code !== 250))
      assert.ok(r.code >= 400 && r.code < 500, `${r.id}: ${r.raw}`);
    const got = delivered([d]);
    for (const r of results.filter((x) => x.code === 250))
      assert.ok(got.has(r.id), `${r.id} got 250 but is missing`);
    // Idle now: every node and the cluster count agree on zero.
    await new Promise((r) => setTimeout(r, 1500));
    for (const n of nodes) {
      const s = await n.status();
      assert.equal(s.ledger.mode, 'redis');
      const backend = s.pools[0]!.backends[0]!;
      assert.equal(backend.nodeConnections, 0, `${n.id} holds nothing`);
      assert.equal(backend.clusterConnections, 0, `${n.id} sees zero cluster-wide`);
    }
  });

  test('least-connections picks the backend that is least loaded cluster-wide', async () => {
    const a = await startCaptureBackend();
    const b = await startCaptureBackend();
    cleanup.push(
      () => a.close(),
      () => b.close(),
    );
    const ledger = `ledger: { redis: "${redis.url}", leaseTtl: 3s, keyPrefix: lc }\nbalancing: { policy: least-connections }`;
    // The first node only knows A, so its sessions all land there: the load is uneven.
    const [loaded] = await startNodes(1, poolOf([{ b: a, cap: 50 }], ledger), 'lc-a');
    const [fresh] = await startNodes(
      1,
      poolOf(
        [
          { b: a, cap: 50 },
          { b, cap: 50 },
        ],
        ledger,
      ),
      'lc-b',
    );
    const held: SmtpDialog[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await SmtpDialog.open(loaded!.port);
      await s.read();
      await s.cmd('EHLO held.test');
      await s.cmd('MAIL FROM:<a@example.org>');
      assert.equal((await s.cmd('RCPT TO:<b@example.test>')).code, 250);
      held.push(s);
    }
    // Wait until the other node's view of the cluster shows A's load.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const s = await fresh!.status();
      if (s.pools[0]!.backends.find((x) => x.id === a.address)!.clusterConnections === 4) break;
      assert.ok(Date.now() < deadline, 'the second node never saw the first node load A');
      await new Promise((r) => setTimeout(r, 100));
    }
    const before = { a: a.sessions.length, b: b.sessions.length };
    for (let i = 0; i < 3; i++) {
      const s = await SmtpDialog.open(fresh!.port);
      await s.read();
      await s.cmd('EHLO next.test');
      await s.cmd('MAIL FROM:<a@example.org>');
      assert.equal((await s.cmd('RCPT TO:<b@example.test>')).code, 250);
      held.push(s);
    }
    assert.equal(b.sessions.length - before.b, 3, 'all three new sessions went to the idle backend B');
    assert.equal(a.sessions.length - before.a, 0);
    for (const s of held) s.close();
  });
});
