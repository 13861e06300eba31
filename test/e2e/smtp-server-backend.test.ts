// Our upstream checked by an SMTP server we did not write: Nodemailer's smtp-server as the backend.
// A client behind a trusted balancer (PROXY v2 to the node) must reach smtp-server with its own
// address, by XCLIENT (smtp-server's parser of it) or by a PROXY v1 header (smtp-server's reader of
// it), and the message must come out of smtp-server's own DATA parser exactly as the client wrote it.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { type SmtpServerBackend, startSmtpServerBackend } from '@smtp-lb/testkit';
import { startNode, type TestNode } from '../helpers/node.js';
import { proxyV2 } from '../helpers/proxy-v2.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const BODY = 'Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\tdot and tab\r\nend\r\n';

async function sendThrough(node: TestNode, client: string): Promise<string> {
  const c = await SmtpDialog.open(node.port, '127.0.0.1', '127.0.0.2');
  try {
    c.write(proxyV2({ address: client, port: 40_000 }, { address: '192.0.2.25', port: 25 }));
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO client.example')).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<alice@example.org>')).code, 250);
    const rcpt = await c.cmd('RCPT TO:<bob@example.test>');
    assert.equal(rcpt.code, 250, rcpt.raw);
    assert.equal((await c.cmd('DATA')).code, 354);
    // Dot-stuffed on the wire, as the client must send it.
    const end = await c.cmd(`${BODY.replace(/^\./gm, '..')}.`);
    assert.equal(end.code, 250, end.raw);
    return end.raw;
  } finally {
    c.close();
  }
}

function nodeFor(backend: SmtpServerBackend, pool: string): Promise<TestNode> {
  return startNode(`
node: { id: oracle }
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
${pool}
log: { level: warn }
admin: { listen: 127.0.0.1:0 }
`);
}

describe('smtp-server as the backend', { timeout: 60_000 }, () => {
  const stops: Array<() => Promise<void>> = [];
  after(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  test('XCLIENT: smtp-server takes the client address, port and HELO; content un-stuffed exactly', async () => {
    const backend = await startSmtpServerBackend();
    stops.push(() => backend.close());
    const node = await nodeFor(backend, '    xclient: auto');
    stops.push(() => node.stop());
    const reply = await sendThrough(node, '198.51.100.7');
    // smtp-server's reply, passed through verbatim.
    assert.match(reply, /^250 2\.6\.0 Ok: queued as 1\r\n$/);
    const [msg] = await backend.waitForMessages(1);
    assert.equal(msg!.client.address, '198.51.100.7');
    assert.equal(msg!.client.port, 40_000);
    assert.equal(msg!.xclient.ADDR, '198.51.100.7');
    assert.equal(msg!.xclient.HELO, 'client.example');
    assert.equal(msg!.mailFrom, 'alice@example.org');
    assert.deepEqual(msg!.rcptTo, ['bob@example.test']);
    assert.equal(msg!.data.toString('latin1'), BODY);
  });

  test('PROXY v1 to the backend: smtp-server reads the client address from our header', async () => {
    const backend = await startSmtpServerBackend({ proxyProtocol: true });
    stops.push(() => backend.close());
    const node = await nodeFor(backend, '    xclient: off\n    proxyProtocol: v1');
    stops.push(() => node.stop());
    await sendThrough(node, '203.0.113.44');
    const [msg] = await backend.waitForMessages(1);
    assert.equal(msg!.client.address, '203.0.113.44');
    assert.equal(msg!.client.port, 40_000);
    assert.deepEqual(msg!.xclient, {});
    assert.equal(msg!.data.toString('latin1'), BODY);
  });
});
