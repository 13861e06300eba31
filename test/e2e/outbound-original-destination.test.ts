// An `originalDestination` pool: the session goes to the destination of the trusted PROXY v2 header
// (what an interceptor says the client dialled), the client sees that destination's own replies;
// without a trusted header, to a denied network or to the node itself nothing is connected to.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { type CaptureBackend, freePort, startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { startNode, type TestNode } from '../helpers/node.js';
import { proxyV2 } from '../helpers/proxy-v2.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const T = { timeout: 60_000 };
const cleanup = cleanupAfterAll();

let port: number;
let lb: TestNode;
let destination: CaptureBackend;
let internal: CaptureBackend;
let direct: number;

before(async () => {
  port = await freePort('127.0.0.2');
  destination = await startCaptureBackend({
    host: '127.0.0.2',
    port,
    dataReply: () => '250 Ok at the dialled host',
  });
  internal = await startCaptureBackend({ host: '127.0.0.9', port });
  cleanup.push(
    () => destination.close(),
    () => internal.close(),
  );
  lb = await startNode(`
node: { id: outbound-od }
listeners:
  - name: intercepted
    listen: 127.0.0.1:0
    hostname: relay.test
    pool: intercepted
    proxyProtocol: { trusted: [127.0.0.1] }
  - { name: direct, listen: 127.0.0.1:0, hostname: relay.test, pool: intercepted }
pools:
  intercepted:
    originalDestination: { denyDestinations: [127.0.0.9/32] }
    tls: none
log: { level: info }
admin: { listen: 127.0.0.1:0 }
`);
  cleanup.push(() => lb.stop());
  direct = lb.node.addresses.get('direct')!.port;
});

async function intercepted(dst: { address: string; port: number }): Promise<SmtpDialog> {
  const c = await SmtpDialog.open(lb.port);
  cleanup.push(() => c.close());
  c.write(proxyV2({ address: '10.20.30.40', port: 40000 }, dst));
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO host.lan')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<me@lan.test>')).code, 250);
  return c;
}

describe('originalDestination pool', () => {
  test('the session goes where the client dialled, with its replies verbatim', T, async () => {
    const c = await intercepted({ address: '127.0.0.2', port });
    // smtp-server's own RCPT replies, and the text its onData gave after the dot.
    assert.equal((await c.cmd('RCPT TO:<ann@a.test>')).raw, '250 2.1.5 Accepted\r\n');
    assert.equal((await c.cmd('RCPT TO:<bob@b.test>')).raw, '250 2.1.5 Accepted\r\n');
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal((await c.cmd('Subject: x\r\n\r\nhi\r\n.')).raw, '250 2.6.0 Ok at the dialled host\r\n');
    await c.cmd('QUIT');
    const [m] = await destination.waitForMessages(1);
    assert.deepEqual(m!.rcptTo, ['ann@a.test', 'bob@b.test']);
  });

  test('a denied destination and the node itself: 554 5.7.1, never connected to', T, async () => {
    for (const dst of [
      { address: '127.0.0.9', port },
      { address: '127.0.0.1', port: direct },
    ]) {
      const c = await intercepted(dst);
      assert.match((await c.cmd('RCPT TO:<ann@a.test>')).raw, /^554 5\.7\.1 /);
      c.close();
    }
    assert.equal(internal.sessions.length, 0);
    const refused = lb.logs.filter((l) => l.msg === 'original destination refused');
    assert.deepEqual(
      refused.map((l) => [l.destination, l.why]),
      [
        [`127.0.0.9:${port}`, 'denyDestinations'],
        [`127.0.0.1:${direct}`, 'one of our own listeners'],
      ],
    );
  });

  test('without a trusted PROXY header: 451 4.3.0 and a log line', T, async () => {
    const c = await SmtpDialog.open(direct);
    cleanup.push(() => c.close());
    await c.read();
    await c.cmd('EHLO host.lan');
    await c.cmd('MAIL FROM:<me@lan.test>');
    assert.match((await c.cmd('RCPT TO:<ann@a.test>')).raw, /^451 4\.3\.0 /);
    c.close();
    assert.ok(
      lb.logs.some(
        (l) => l.msg === 'no original destination: the session did not come with a trusted PROXY header',
      ),
    );
  });
});
