// A `role: outbound` listener relays for the hosts of its `clients` networks only: anyone else gets
// 554 5.7.1 instead of the greeting, a log line, and no backend ever sees it. Behind a trusted
// interceptor the PROXY header's source is the client that counts.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { startNode, type TestNode } from '../helpers/node.js';
import { proxyV2 } from '../helpers/proxy-v2.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const T = { timeout: 60_000 };
const cleanup = cleanupAfterAll();

let lb: TestNode;
let relay: CaptureBackend;
let direct: number;
let intercepted: number;

before(async () => {
  relay = await startCaptureBackend();
  cleanup.push(() => relay.close());
  lb = await startNode(`
node: { id: outbound-listener }
listeners:
  - { name: direct, role: outbound, listen: 127.0.0.1:0, hostname: relay.test, clients: [127.0.0.2/32] }
  - name: intercepted
    role: outbound
    listen: 127.0.0.1:0
    hostname: relay.test
    clients: [10.0.0.0/8]
    proxyProtocol: { trusted: [127.0.0.1] }
pools:
  smarthost:
    static: [{ address: ${relay.address} }]
    tls: none
log: { level: info }
admin: { listen: 127.0.0.1:0 }
`);
  cleanup.push(() => lb.stop());
  direct = lb.node.addresses.get('direct')!.port;
  intercepted = lb.node.addresses.get('intercepted')!.port;
});

async function relayOne(c: SmtpDialog): Promise<void> {
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO host.lan')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<me@lan.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<you@example.org>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: x\r\n\r\nhi\r\n.')).code, 250);
  await c.cmd('QUIT');
}

async function refused(c: SmtpDialog): Promise<void> {
  const r = await c.read();
  assert.equal(r.raw, '554 5.7.1 relay.test Relaying through this host is for its own network only\r\n');
  await c.waitClosed();
}

describe('outbound listener', () => {
  test('a host of its network sends; another host is refused before the greeting', T, async () => {
    const inside = await SmtpDialog.open(direct, '127.0.0.1', '127.0.0.2');
    cleanup.push(() => inside.close());
    await relayOne(inside);
    const sessions = relay.sessions.length;
    const outside = await SmtpDialog.open(direct, '127.0.0.1', '127.0.0.3');
    cleanup.push(() => outside.close());
    await refused(outside);
    assert.equal(relay.sessions.length, sessions, 'the refused host reached no backend');
    const line = lb.logs.find((l) => l.msg === "client not in the outbound listener's clients; refused");
    assert.ok(line, 'a log line');
    assert.match(String(line.client), /^127\.0\.0\.3:/);
  });

  test("behind a trusted interceptor the PROXY header's source is checked", T, async () => {
    const inside = await SmtpDialog.open(intercepted);
    cleanup.push(() => inside.close());
    inside.write(proxyV2({ address: '10.9.8.7', port: 5000 }, { address: '192.0.2.25', port: 25 }));
    await relayOne(inside);
    const outside = await SmtpDialog.open(intercepted);
    cleanup.push(() => outside.close());
    outside.write(proxyV2({ address: '198.51.100.7', port: 5000 }, { address: '192.0.2.25', port: 25 }));
    await refused(outside);
    assert.ok(
      lb.logs.some(
        (l) =>
          l.msg === "client not in the outbound listener's clients; refused" &&
          l.client === '198.51.100.7:5000',
      ),
    );
    const scrape = await fetch(`http://127.0.0.1:${lb.node.adminAddress!.port}/metrics`).then((r) =>
      r.text(),
    );
    assert.match(scrape, /smtp_lb_sessions_total\{listener="intercepted",outcome="refused-not-a-client"\} 1/);
  });
});
