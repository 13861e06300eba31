// Per-host limits and lock-out of outbound listeners, cluster-wide: two nodes on one Redis. A host of
// the network over its message limit on node A is locked out on node B too (554 5.7.1), listed by B's
// admin API and lifted there (token required); a host whose mail draws too many 5xx replies is
// locked out as well, and the replies it got are counted by class per host.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { type CaptureBackend, type RedisServer, startCaptureBackend, startRedis } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const T = { timeout: 60_000 };
const TOKEN = 'hosts-admin-token';
const cleanup = cleanupAfterAll();

let redis: RedisServer;
let relay: CaptureBackend;
let a: TestNode;
let b: TestNode;

function config(id: string): string {
  return `
node: { id: ${id} }
listeners:
  - { name: out, role: outbound, listen: 127.0.0.1:0, hostname: ${id}.test, clients: [127.0.0.0/8] }
pools:
  relay:
    static: [{ address: ${relay.address} }]
    tls: none
hosts:
  limits: { messages: { limit: 2, window: 1h } }
  rejections: { limit: 2, window: 1h }
  lockout: 1h
ledger: { redis: ${redis.url}, keyPrefix: lockout-test }
admin: { listen: 127.0.0.1:0, token: ${TOKEN} }
log: { level: info }
`;
}

const admin = (lb: TestNode) => `http://127.0.0.1:${lb.node.adminAddress!.port}`;

async function open(lb: TestNode, from: string): Promise<SmtpDialog> {
  const c = await SmtpDialog.open(lb.port, '127.0.0.1', from);
  cleanup.push(() => c.close());
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO host.lan')).code, 250);
  return c;
}

async function message(c: SmtpDialog, to = 'you@example.org'): Promise<string> {
  const mail = await c.cmd('MAIL FROM:<me@lan.test>');
  if (mail.code !== 250) return mail.raw;
  const rcpt = await c.cmd(`RCPT TO:<${to}>`);
  if (rcpt.code !== 250) {
    await c.cmd('RSET');
    return rcpt.raw;
  }
  await c.cmd('DATA');
  return (await c.cmd('Subject: x\r\n\r\nhi\r\n.')).raw;
}

before(async () => {
  redis = await startRedis();
  cleanup.push(() => redis.stop());
  relay = await startCaptureBackend({
    reply: (ctx) =>
      ctx.verb === 'RCPT' && ctx.arg.includes('unknown')
        ? '550 5.1.1 No such user at the destination'
        : undefined,
  });
  cleanup.push(() => relay.close());
  a = await startNode(config('node-a'));
  cleanup.push(() => a.stop());
  b = await startNode(config('node-b'));
  cleanup.push(() => b.stop());
});

describe('outbound host limits on two nodes sharing Redis', () => {
  test('over its message limit on A, the host is locked out on B too; B lifts it', T, async () => {
    const onA = await open(a, '127.0.0.2');
    assert.match(await message(onA), /^250 /);
    assert.match(await message(onA), /^250 /);
    assert.equal(await message(onA), '554 5.7.1 Host locked out for abuse, contact the postmaster\r\n');
    const onB = await open(b, '127.0.0.2');
    assert.equal(await message(onB), '554 5.7.1 Host locked out for abuse, contact the postmaster\r\n');
    const other = await open(b, '127.0.0.3');
    assert.match(await message(other), /^250 /, 'another host is not affected');
    assert.equal(relay.messages.length, 3);

    const list = (await fetch(`${admin(b)}/hosts/locked`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    }).then((r) => r.json())) as {
      locked: Array<{ host: string; reason: string; node: string; until: number }>;
    };
    assert.deepEqual(
      list.locked.map((l) => [l.host, l.reason, l.node]),
      [['127.0.0.2', 'messages over 2 per 3600s', 'node-a']],
    );
    assert.ok(list.locked[0]!.until > Date.now() + 3_500_000);
    assert.equal((await fetch(`${admin(b)}/hosts/locked/127.0.0.2`, { method: 'DELETE' })).status, 401);
    const lifted = await fetch(`${admin(b)}/hosts/locked/127.0.0.2`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(lifted.status, 200);
    assert.match(await message(onA), /^250 /, 'lifted: the host sends again, its counts afresh');
    assert.ok(a.logs.some((l) => l.msg === 'host locked out' && l.host === '127.0.0.2'));
  });

  test('too many 5xx replies lock a host out; the replies are counted by class per host', T, async () => {
    const c = await open(a, '127.0.0.4');
    assert.match(await message(c), /^250 /);
    // One transaction (the message limit is 2): three recipients the destination does not know.
    assert.equal((await c.cmd('MAIL FROM:<me@lan.test>')).code, 250);
    for (let i = 0; i < 3; i++) {
      assert.equal(
        (await c.cmd(`RCPT TO:<unknown${i}@example.org>`)).raw,
        '550 5.1.1 No such user at the destination\r\n',
      );
    }
    await c.cmd('RSET');
    // The rejections are counted after each reply went out: the lock-out follows at once.
    let reply = '';
    for (let i = 0; i < 20 && !reply.startsWith('554'); i++) {
      reply = (await c.cmd('MAIL FROM:<me@lan.test>')).raw;
      if (!reply.startsWith('554')) {
        await c.cmd('RSET');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.equal(reply, '554 5.7.1 Host locked out for abuse, contact the postmaster\r\n');
    assert.ok(
      a.logs.some(
        (l) =>
          l.msg === 'host locked out' && l.host === '127.0.0.4' && String(l.reason).startsWith('rejections'),
      ),
    );
    const scrape = await fetch(`${admin(a)}/metrics`).then((r) => r.text());
    assert.match(
      scrape,
      /smtp_lb_destination_replies_total\{client="127\.0\.0\.4",command="RCPT",class="5xx"\} 3/,
    );
    assert.match(
      scrape,
      /smtp_lb_destination_replies_total\{client="127\.0\.0\.4",command="DATA",class="2xx"\} 1/,
    );
    assert.match(scrape, /smtp_lb_host_lockouts_total 2/);
  });
});
