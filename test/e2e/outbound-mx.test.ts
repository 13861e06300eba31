// An `mx` pool: each recipient domain's mail goes to that domain's MX hosts, found by a real dnsmasq,
// each host a capture backend on its own 127.0.0.x address. The client sees each destination's own
// replies; a dead first MX falls back to the next; null MX, a domain that does not exist, a denied
// destination and the node itself are refused without any connection; broken DNS is a 451 4.4.3.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  type Dnsmasq,
  freePort,
  type HostileDns,
  startCaptureBackend,
  startDnsmasq,
  startHostileDns,
} from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const T = { timeout: 60_000 };
const cleanup = cleanupAfterAll();

let port: number;
let dns: Dnsmasq;
let lb: TestNode;
const mx: Record<string, CaptureBackend> = {};

/** A capture backend standing for one MX host, on its own loopback address and the shared port. */
async function mxHost(name: string, address: string, over: Parameters<typeof startCaptureBackend>[0] = {}) {
  const b = await startCaptureBackend({
    host: address,
    port,
    hostname: name,
    reply: (ctx) =>
      ctx.verb === 'RCPT' && ctx.arg.toLowerCase().includes('unknown@')
        ? `550 5.1.1 <${ctx.arg.slice(4, -1)}>: no such user here (${name})`
        : undefined,
    dataReply: () => `250 Ok: queued at ${name}`,
    ...over,
  });
  cleanup.push(() => b.close());
  mx[name] = b;
  return b;
}

before(async () => {
  port = await freePort('127.0.0.2');
  await mxHost('mx1.a.test', '127.0.0.2');
  await mxHost('mx2.a.test', '127.0.0.3');
  await mxHost('mx.b.test', '127.0.0.4');
  await mxHost('mx2.c.test', '127.0.0.6');
  await mxHost('internal.test', '127.0.0.9');
  dns = await startDnsmasq({
    local: ['test'],
    mx: {
      'a.test': [
        { host: 'mx2.a.test', preference: 20 },
        { host: 'mx1.a.test', preference: 10 },
      ],
      'b.test': [{ host: 'mx.b.test', preference: 5 }],
      // The first MX has nothing listening: the second takes the mail.
      'c.test': [
        { host: 'mx1.c.test', preference: 10 },
        { host: 'mx2.c.test', preference: 20 },
      ],
      'dead.test': [{ host: 'mx1.c.test', preference: 10 }],
      'null.test': 'null',
      'deny.test': [{ host: 'internal.test', preference: 10 }],
      'loop.test': [{ host: 'self.test', preference: 10 }],
    },
    hosts: {
      'mx1.a.test': ['127.0.0.2'],
      'mx2.a.test': ['127.0.0.3'],
      'mx.b.test': ['127.0.0.4'],
      'mx1.c.test': ['127.0.0.5'],
      'mx2.c.test': ['127.0.0.6'],
      'internal.test': ['127.0.0.9'],
      'self.test': ['127.0.0.7'],
    },
  });
  cleanup.push(() => dns.stop());
  // The node listens on 127.0.0.7 and the MX port: loop.test's MX is the node itself.
  lb = await startNode(`
node: { id: outbound-mx }
listeners:
  - { name: out, listen: 127.0.0.7:${port}, hostname: relay.test, pool: internet }
pools:
  internet:
    mx: { port: ${port}, resolvers: [${dns.address}], timeout: 2s, denyDestinations: [127.0.0.9/32] }
    tls: none
    timeouts: { connect: 2s }
log: { level: info }
admin: { listen: 127.0.0.1:0 }
`);
  cleanup.push(() => lb.stop());
});

async function session(): Promise<SmtpDialog> {
  const c = await SmtpDialog.open(port, '127.0.0.7');
  cleanup.push(() => c.close());
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  return c;
}

async function send(c: SmtpDialog, from: string, to: string[], body = 'Subject: t\r\n\r\nhello\r\n') {
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
  const rcpts = [];
  for (const r of to) rcpts.push(await c.cmd(`RCPT TO:<${r}>`));
  if (!rcpts.some((r) => r.code === 250)) {
    await c.cmd('RSET');
    return { rcpts, data: undefined };
  }
  assert.equal((await c.cmd('DATA')).code, 354);
  const data = await c.cmd(`${body}.`);
  return { rcpts, data };
}

describe('mx pool', () => {
  test('each domain reaches its own MX, by preference; the replies are the destinations own', T, async () => {
    const c = await session();
    const first = await send(c, 'me@client.test', ['ann@a.test', 'bob@b.test', 'Cid@A.Test']);
    // smtp-server's own RCPT text, and the one its onData gave after the dot.
    assert.equal(first.rcpts[0]!.raw, '250 2.1.5 Accepted\r\n');
    assert.match(first.rcpts[1]!.raw, /^452 4\.5\.3 /, 'another domain waits for its own transaction');
    assert.equal(first.rcpts[2]!.raw, '250 2.1.5 Accepted\r\n');
    assert.equal(first.data!.raw, '250 2.6.0 Ok: queued at mx1.a.test\r\n');
    const second = await send(c, 'me@client.test', ['bob@b.test']);
    assert.equal(second.rcpts[0]!.raw, '250 2.1.5 Accepted\r\n');
    assert.equal(second.data!.raw, '250 2.6.0 Ok: queued at mx.b.test\r\n');
    const unknown = await send(c, 'me@client.test', ['unknown@a.test']);
    assert.equal(unknown.rcpts[0]!.raw, '550 5.1.1 <unknown@a.test>: no such user here (mx1.a.test)\r\n');
    await c.cmd('QUIT');

    assert.deepEqual(
      mx['mx1.a.test']!.messages.map((m) => m.rcptTo),
      [['ann@a.test', 'Cid@A.Test']],
    );
    assert.deepEqual(
      mx['mx.b.test']!.messages.map((m) => m.rcptTo),
      [['bob@b.test']],
    );
    assert.equal(mx['mx2.a.test']!.sessions.length, 0, 'the second MX of a.test was never needed');
  });

  test('a dead first MX falls back to the second', T, async () => {
    const c = await session();
    const r = await send(c, 'me@client.test', ['dan@c.test']);
    assert.equal(r.rcpts[0]!.raw, '250 2.1.5 Accepted\r\n');
    assert.equal(r.data!.raw, '250 2.6.0 Ok: queued at mx2.c.test\r\n');
    assert.deepEqual(
      mx['mx2.c.test']!.messages.map((m) => m.rcptTo),
      [['dan@c.test']],
    );
    c.close();
  });

  test('no reachable MX host: 451 4.4.1 and a log line', T, async () => {
    const c = await session();
    const r = await send(c, 'me@client.test', ['eve@dead.test']);
    assert.match(r.rcpts[0]!.raw, /^451 4\.4\.1 /);
    assert.ok(lb.logs.some((l) => l.msg === 'backend failed before the session reached it; trying another'));
    c.close();
  });

  test('null MX 556 5.1.10, a domain that does not exist 550 5.1.2', T, async () => {
    const c = await session();
    const r = await send(c, 'me@client.test', ['fay@null.test', 'gus@nowhere.test']);
    assert.match(r.rcpts[0]!.raw, /^556 5\.1\.10 /);
    assert.match(r.rcpts[1]!.raw, /^550 5\.1\.2 /);
    c.close();
  });

  test(
    'a denied destination and the node itself are refused with 554 5.7.1, never connected to',
    T,
    async () => {
      const c = await session();
      const r = await send(c, 'me@client.test', ['hal@deny.test', 'ivy@loop.test']);
      assert.match(r.rcpts[0]!.raw, /^554 5\.7\.1 /);
      assert.match(r.rcpts[1]!.raw, /^554 5\.7\.1 /);
      c.close();
      assert.equal(mx['internal.test']!.sessions.length, 0);
      const refused = lb.logs.filter((l) => l.msg === 'MX host address refused');
      assert.deepEqual(
        refused.map((l) => l.why),
        ['denyDestinations', 'one of our own listeners'],
      );
      assert.ok(refused.every((l) => typeof l.sid === 'string' && typeof l.client === 'string'));
    },
  );
});

describe('mx pool with broken DNS', () => {
  let bad: HostileDns;
  let node: TestNode;
  before(async () => {
    bad = await startHostileDns((q) => {
      const n = q.name.toLowerCase();
      if (n === 'servfail.test') return { rcode: 2 };
      if (n === 'silent.test') return 'drop';
      if (n === 'loop.test' || n === 'loop2.test')
        return {
          answers: [
            { type: 'CNAME', name: n, ttl: 60, data: n === 'loop.test' ? 'loop2.test' : 'loop.test' },
          ],
        };
      if (n === 'many.test' && q.type === 'MX')
        return {
          answers: Array.from({ length: 100 }, (_, i) => ({
            type: 'MX' as const,
            name: n,
            ttl: 60,
            data: { preference: i, exchange: `mx${i}.many.test` },
          })),
        };
      // Every MX host of many.test is an address where nothing listens.
      if (n.endsWith('.many.test') && q.type === 'A')
        return {
          answers: [
            { type: 'A', name: n, ttl: 60, data: `127.0.3.${Number(n.slice(2, n.indexOf('.'))) + 1}` },
          ],
        };
      return { rcode: 0 };
    });
    cleanup.push(() => bad.stop());
    node = await startNode(`
node: { id: outbound-bad-dns }
listeners:
  - { name: out, listen: 127.0.0.1:0, hostname: relay.test, pool: internet }
pools:
  internet:
    mx: { port: ${port}, resolvers: [${bad.address}], timeout: 300ms, maxHosts: 5, denyDestinations: [] }
    tls: none
    timeouts: { connect: 1s }
log: { level: info }
admin: { listen: 127.0.0.1:0 }
`);
    cleanup.push(() => node.stop());
  });

  test('SERVFAIL, silence and a CNAME loop: 451 4.4.3 and a log line each; the node goes on', T, async () => {
    const c = await SmtpDialog.open(node.port);
    cleanup.push(() => c.close());
    await c.read();
    await c.cmd('EHLO client.test');
    const r = await send(c, 'me@client.test', ['a@servfail.test', 'b@silent.test', 'c@loop.test']);
    for (const x of r.rcpts) assert.match(x.raw, /^451 4\.4\.3 /);
    const failed = node.logs.filter((l) => l.msg === 'DNS lookup of the recipient domain failed');
    assert.deepEqual(
      failed.map((l) => l.reason),
      ['servfail', 'timeout', 'cname-loop'],
    );
    assert.equal((await c.cmd('NOOP')).code, 250);
    c.close();
  });

  test('100 MX records, none reachable: at most maxHosts tried, then 451 4.4.1', T, async () => {
    const c = await SmtpDialog.open(node.port);
    cleanup.push(() => c.close());
    await c.read();
    await c.cmd('EHLO client.test');
    const before = node.logs.length;
    const r = await send(c, 'me@client.test', ['d@many.test']);
    assert.match(r.rcpts[0]!.raw, /^451 4\.4\.1 /);
    const tried = node.logs
      .slice(before)
      .filter((l) => l.msg === 'backend failed before the session reached it; trying another')
      .map((l) => l.backend);
    assert.deepEqual(
      tried,
      [1, 2, 3, 4, 5].map((i) => `127.0.3.${i}:${port}`),
      'in order of preference',
    );
    c.close();
  });
});
