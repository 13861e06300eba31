// HAProxy (Debian's) as the L4 interceptor, with the project's own deploy/interception/haproxy.cfg:
// it passes an intercepted connection to an outbound node with `send-proxy-v2`, so the destination
// the node relays to is set by a real program. Kernel TPROXY needs privileges and routing changes,
// so here HAProxy's test-only `set-dst` stands in for it (the header carries the address the
// kernel would have kept); the node's pool is `originalDestination`.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type CaptureBackend,
  freePort,
  startCaptureBackend,
  startProcess,
  waitForPort,
} from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const T = { timeout: 60_000 };
const CONFIG = fileURLToPath(new URL('../../../deploy/interception/haproxy.cfg', import.meta.url));
const cleanup = cleanupAfterAll();

let lb: TestNode;
let mta: CaptureBackend;
let intercept: number;
let mtaPort: number;

before(async () => {
  mtaPort = await freePort('127.0.0.2');
  mta = await startCaptureBackend({
    host: '127.0.0.2',
    port: mtaPort,
    hostname: 'mx.destination.test',
    dataReply: () => '250 Ok, the destination MTA speaking',
  });
  cleanup.push(() => mta.close());
  lb = await startNode(`
node: { id: outbound-haproxy }
listeners:
  - name: intercepted
    role: outbound
    listen: 127.0.0.1:0
    hostname: relay.test
    clients: [127.0.0.0/8]
    proxyProtocol: { trusted: [127.0.0.1] }
    pool: intercepted
pools:
  intercepted:
    originalDestination: { denyDestinations: [127.0.0.9/32] }
    tls: none
log: { level: debug }
admin: { listen: 127.0.0.1:0 }
`);
  cleanup.push(() => lb.stop());
  intercept = await freePort();
  const haproxy = startProcess('haproxy', 'haproxy', ['-db', '-f', CONFIG], {
    env: {
      ...process.env,
      SMTP_LB_INTERCEPT_BIND: `127.0.0.1:${intercept}`,
      SMTP_LB_NODE: `127.0.0.1:${lb.port}`,
      SMTP_LB_TEST_DST: '127.0.0.2',
      SMTP_LB_TEST_DST_PORT: String(mtaPort),
    },
  });
  cleanup.push(() => haproxy.stop());
  await waitForPort(intercept, { process: haproxy });
});

describe('HAProxy send-proxy-v2 in front of an outbound node', () => {
  test('the intercepted session reaches the original destination, its replies verbatim', T, async () => {
    const c = await SmtpDialog.open(intercept);
    cleanup.push(() => c.close());
    assert.match((await c.read()).raw, /^220 relay\.test /);
    assert.equal((await c.cmd('EHLO host.lan')).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<me@lan.test>')).code, 250);
    // smtp-server's own RCPT reply, and the text its onData gave: the destination's replies, verbatim.
    assert.equal((await c.cmd('RCPT TO:<you@destination.test>')).raw, '250 2.1.5 Accepted\r\n');
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal(
      (await c.cmd('Subject: via HAProxy\r\n\r\nhello\r\n.')).raw,
      '250 2.6.0 Ok, the destination MTA speaking\r\n',
    );
    await c.cmd('QUIT');
    const [m] = await mta.waitForMessages(1);
    assert.deepEqual(m!.rcptTo, ['you@destination.test']);
    assert.match(m!.data.toString('latin1'), /Subject: via HAProxy/);
    const opened = lb.logs.find((l) => l.msg === 'PROXY header read');
    assert.equal(opened?.version, 2, 'HAProxy spoke PROXY v2');
    const relayed = lb.logs.find((l) => l.msg === 'message relayed');
    assert.equal(relayed?.backend, `127.0.0.2:${mtaPort}`);
  });
});
