// The PROXY header the node sends to a backend (a pool with `proxyProtocol`) carries the client and
// the address it dialled as the balancer's PROXY header gave them, not the node's own address: the
// original destination travels with the client from the front door to the backend.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import { startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

let backend: CaptureBackend;
let lb: TestNode;

before(async () => {
  backend = await startCaptureBackend({ expectProxyHeader: true });
  lb = await startNode(`
listeners:
  - name: inbound
    listen: 127.0.0.1:0
    hostname: mx.test
    pool: default
    proxyProtocol: { trusted: [127.0.0.2/32] }
pools:
  default:
    static: [{ address: ${backend.address} }]
    tls: none
    xclient: off
    proxyProtocol: v1
admin: { listen: 127.0.0.1:0 }
`);
});
after(async () => {
  await lb?.stop();
  await backend?.close();
});

test('PROXY v1 to the backend: source and destination from the PROXY header that came in', async () => {
  const c = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.2');
  c.write('PROXY TCP4 203.0.113.7 198.51.100.25 41000 25\r\n');
  assert.equal((await c.read()).code, 220);
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
  await c.cmd('QUIT');
  const header = backend.sessions.at(-1)?.proxyHeader?.toString('latin1');
  assert.equal(header, 'PROXY TCP4 203.0.113.7 198.51.100.25 41000 25\r\n');
});
