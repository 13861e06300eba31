// Capabilities promised that the bound backend lacks (issue 11): the node accepted REQUIRETLS
// (RFC 8689) and relayed such a message to a backend over plaintext, and passed an 8BITMIME body to a
// backend that does not offer 8BITMIME, dropping the parameter. Both are now refused at the RCPT that
// binds the backend, before anything is sent to it: 550 5.7.30 and 550 5.6.3, with a log line; so is
// SMTPUTF8 to a backend without it (553 5.6.7). DSN's parameters: test/e2e/dsn.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { replies, wireReply } from '@smtp-lb/proxy';
import {
  defaultWireCapabilities,
  selfSignedCert,
  startCaptureBackend,
  startWireBackend,
} from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

/** Reads one whole reply (its last line) from `s`. */
function replyOf(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no reply: ${text}`)), 10_000);
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (/(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(text)) {
        clearTimeout(timer);
        s.off('data', onData);
        resolve(text);
      }
    };
    s.on('data', onData);
  });
}

describe('MAIL parameters the bound backend cannot honour are refused, not dropped', {
  timeout: 60_000,
}, () => {
  const cleanup = cleanupAfterAll();

  test('REQUIRETLS to a backend reached in plaintext: 550 5.7.30, nothing sent to it', async () => {
    const { key, cert } = await selfSignedCert();
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-requiretls-'));
    writeFileSync(join(dir, 'tls.key'), key);
    writeFileSync(join(dir, 'tls.crt'), cert);
    // smtp-server offers REQUIRETLS only inside TLS; a plaintext backend that offers it is the wire recorder.
    const backend = await startWireBackend({
      capabilities: [...defaultWireCapabilities, 'REQUIRETLS'],
    });
    cleanup.push(() => backend.close());
    const lb = await startNode(
      simpleConfig([backend.address], {
        extraListener: `    tls: { cert: "${join(dir, 'tls.crt')}", key: "${join(dir, 'tls.key')}" }`,
      }),
    );
    cleanup.push(() => lb.stop());
    const plain = connect(lb.port, '127.0.0.1');
    await replyOf(plain);
    plain.write('EHLO client.test\r\n');
    await replyOf(plain);
    plain.write('STARTTLS\r\n');
    assert.match(await replyOf(plain), /^220 /);
    const s = tlsConnect({ socket: plain, rejectUnauthorized: false });
    await new Promise((r) => s.once('secureConnect', r));
    s.write('EHLO client.test\r\n');
    assert.match(await replyOf(s), /250-REQUIRETLS/);
    s.write('MAIL FROM:<a@example.org> REQUIRETLS\r\n');
    assert.match(await replyOf(s), /^250 /);
    s.write('RCPT TO:<b@example.test>\r\n');
    assert.equal(await replyOf(s), wireReply(replies.requireTlsUnsupported()));
    s.write('QUIT\r\n');
    await replyOf(s);
    s.destroy();
    assert.equal(
      backend.sessions.flatMap((x) => x.lines).filter((l) => /^(MAIL|RCPT)/i.test(l)).length,
      0,
      'no MAIL or RCPT reached the plaintext backend',
    );
    assert.ok(
      lb.logs.some((l) => l.msg === 'the backend cannot honour a parameter'),
      'a log line',
    );
  });

  test('BODY=8BITMIME to a backend without 8BITMIME: 550 5.6.3; 7BIT still goes through', async () => {
    const backend = await startCaptureBackend({ hide: ['8BITMIME'] });
    cleanup.push(() => backend.close());
    const lb = await startNode(simpleConfig([backend.address]));
    cleanup.push(() => lb.stop());
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO client.test');
    assert.equal((await c.cmd('MAIL FROM:<a@example.org> BODY=8BITMIME')).code, 250);
    const r = await c.cmd('RCPT TO:<b@example.test>');
    assert.equal(r.raw, wireReply(replies.eightBitUnsupported()));
    assert.equal((await c.cmd('RSET')).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<a@example.org> BODY=7BIT')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal((await c.cmd('Subject: 7bit\r\n\r\nplain\r\n.')).code, 250);
    await c.cmd('QUIT');
    c.close();
    assert.equal(backend.messages.length, 1);
  });

  test('SMTPUTF8 to a backend without SMTPUTF8: 553 5.6.7, nothing sent to it', async () => {
    const backend = await startCaptureBackend({ hide: ['SMTPUTF8'] });
    cleanup.push(() => backend.close());
    const lb = await startNode(simpleConfig([backend.address]));
    cleanup.push(() => lb.stop());
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO client.test');
    assert.equal((await c.cmd('MAIL FROM:<a@example.org> SMTPUTF8')).code, 250);
    const r = await c.cmd('RCPT TO:<b@example.test>');
    assert.equal(r.raw, wireReply(replies.utf8Unsupported()));
    await c.cmd('QUIT');
    c.close();
    assert.equal(
      backend.sessions.flatMap((x) => x.lines).filter((l) => /^(MAIL|RCPT)/i.test(l)).length,
      0,
      'no MAIL or RCPT reached the backend',
    );
  });
});
