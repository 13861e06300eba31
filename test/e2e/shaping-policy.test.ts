// The policy service: Postfix's policy delegation protocol against a real postgrey (greylisting):
// the first attempt is deferred with postgrey's text, a retry after the delay is accepted and
// delivered. A policy server that is down fails open (or defers, as configured). At the end of
// DATA a refusal keeps the message from the backend (no final dot) and the client sees the reply.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  freePort,
  type Postgrey,
  startCaptureBackend,
  startPostgrey,
} from '@smtp-lb/testkit';
import type { TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';
import { sleep, startShapingNode, waitForLog } from './shaping-helpers.js';

async function attempt(port: number, rcpt: string, body = 'hello') {
  const c = await SmtpDialog.open(port, '127.0.0.1', '127.0.0.2');
  await c.read();
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<alice@example.org>');
  const r = await c.cmd(`RCPT TO:<${rcpt}>`);
  let data: Awaited<ReturnType<SmtpDialog['cmd']>> | undefined;
  if (r.code === 250) {
    assert.equal((await c.cmd('DATA')).code, 354);
    data = await c.cmd(`Subject: t\r\n\r\n${body}\r\n.`);
  }
  c.close();
  return { rcpt: r, data };
}

describe('policy service', { timeout: 60_000 }, () => {
  let postgrey: Postgrey;
  let backend: CaptureBackend;
  let fake: Server;
  let fakePort: number;
  const asked: string[] = [];
  let connections = 0;
  const nodes: TestNode[] = [];
  before(async () => {
    postgrey = await startPostgrey({ delay: 2 });
    backend = await startCaptureBackend();
    // A small policy server of our own for END-OF-MESSAGE: refuses messages over 100 bytes.
    fake = createServer((s) => {
      connections++;
      let buf = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        buf += d;
        for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
          const req = Object.fromEntries(
            buf
              .slice(0, end)
              .split('\n')
              .map((l) => l.split(/=(.*)/s).slice(0, 2)),
          );
          buf = buf.slice(end + 2);
          asked.push(`${req.protocol_state} ${req.size}`);
          const big = req.protocol_state === 'END-OF-MESSAGE' && Number(req.size) > 100;
          s.write(big ? 'action=552 5.3.4 Message too big for policy\n\n' : 'action=DUNNO\n\n');
        }
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    fakePort = (fake.address() as { port: number }).port;
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    fake?.close();
    await postgrey?.stop();
    await backend?.close();
  });
  const start = async (shaping: string) => {
    const n = await startShapingNode({ backend: backend.address, shaping });
    nodes.push(n);
    return n;
  };

  test('postgrey: deferred first, accepted and delivered after the delay', async () => {
    const lb = await start(`  policy: { address: ${postgrey.address}, timeout: 3s }
`);
    const first = await attempt(lb.port, 'bob@example.test');
    assert.equal(first.rcpt.code, 450, first.rcpt.raw);
    assert.match(first.rcpt.raw, /^450 4\.7\.1 <bob@example\.test>: Recipient address rejected: Greylisted/);
    const line = await waitForLog(lb, 'policy service refused');
    assert.match(String(line.action), /^DEFER_IF_PERMIT Greylisted/);
    assert.equal(backend.messages.length, 0);
    // Too early: still deferred.
    assert.equal((await attempt(lb.port, 'bob@example.test')).rcpt.code, 450);
    await sleep(2600);
    const retry = await attempt(lb.port, 'bob@example.test');
    assert.equal(retry.rcpt.code, 250, retry.rcpt.raw);
    assert.equal(retry.data?.code, 250);
    assert.ok(backend.messages.some((m) => m.rcptTo.includes('bob@example.test')));
  });

  test('a policy server that is down: fail open by default, 451 4.3.5 with onError defer', async () => {
    const dead = await freePort();
    const open = await start(`  policy: { address: 127.0.0.1:${dead}, timeout: 500ms }
`);
    const a = await attempt(open.port, 'carol@example.test');
    assert.equal(a.rcpt.code, 250);
    assert.equal(a.data?.code, 250);
    await waitForLog(open, 'policy service failed', (l) => l.onError === 'accept');
    const closed = await start(`  policy: { address: 127.0.0.1:${dead}, timeout: 500ms, onError: defer }
`);
    const b = await attempt(closed.port, 'dave@example.test');
    assert.equal(b.rcpt.code, 451);
    assert.match(b.rcpt.raw, /^451 4\.3\.5 /);
  });

  test('at the end of DATA: a refusal keeps the message from the backend; the connection is reused', async () => {
    const lb = await start(`  policy: { address: 127.0.0.1:${fakePort}, at: [rcpt, data] }
`);
    const before = backend.messages.length;
    const small = await attempt(lb.port, 'erin@example.test', 'short');
    assert.equal(small.data?.code, 250);
    assert.equal(backend.messages.length, before + 1);
    const big = await attempt(lb.port, 'erin@example.test', 'x'.repeat(500));
    assert.equal(big.data?.code, 552, big.data?.raw);
    assert.match(big.data!.raw, /^552 5\.3\.4 Message rejected: Message too big for policy/);
    assert.equal(backend.messages.length, before + 1, 'the backend never got the big message');
    await waitForLog(lb, 'message refused by the policy service');
    assert.deepEqual(
      asked.map((a) => a.split(' ')[0]),
      ['RCPT', 'END-OF-MESSAGE', 'RCPT', 'END-OF-MESSAGE'],
    );
    assert.equal(connections, 1, 'four requests over one kept connection');
  });
});
