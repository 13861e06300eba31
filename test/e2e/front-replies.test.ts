// Every reply the SMTP front and the session make on their own, made to happen through a running
// node (a capture backend behind it, a raw client in front) and compared byte for byte with its
// catalogue entry (packages/proxy/src/replies.ts). The README's table is checked against the
// catalogue by packages/proxy/test/replies.test.ts; this is the "each has a test" side.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { replies, wireReply } from '@smtp-lb/proxy';
import { type CaptureBackend, selfSignedCert, startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

type Made = ReturnType<(typeof replies)[keyof typeof replies]>;
const cleanup = cleanupAfterAll();
let backend: CaptureBackend;
let lb: TestNode;

before(async () => {
  backend = await startCaptureBackend();
  lb = await startNode(
    simpleConfig([backend.address], {
      extraListener: '    maxMessageSize: 1000\n    maxRecipients: 100\n    bareNewlines: reject',
    }),
  );
  cleanup.push(
    () => lb.stop(),
    () => backend.close(),
  );
});

async function open(ehlo = true): Promise<SmtpDialog> {
  const c = await SmtpDialog.open(lb.port);
  assert.equal((await c.read()).raw, wireReply(replies.greeting('mx.test')));
  if (ehlo) assert.equal((await c.cmd('EHLO client.test')).code, 250);
  return c;
}

/** Writes `line` (if any) and resolves with the next whole reply as it came (every line). */
function replyReader(socket: Socket | TLSSocket): (line?: string) => Promise<string> {
  let buf = '';
  let wake: (() => void) | undefined;
  socket.on('data', (b: Buffer) => {
    buf += b.toString('latin1');
    wake?.();
  });
  return async (line) => {
    if (line) socket.write(line);
    for (let i = 0; i < 500; i++) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3} [^\r\n]*\r\n/.exec(buf);
      if (m) {
        buf = buf.slice(m[0].length);
        return m[0];
      }
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 20);
      });
    }
    throw new Error(`no reply; have ${JSON.stringify(buf)}`);
  };
}

async function expect(c: SmtpDialog, line: string, made: Made): Promise<void> {
  const got = await c.cmd(line);
  assert.equal(got.raw, wireReply(made), `after ${JSON.stringify(line)}`);
}

describe('the replies the node makes itself, each made to happen', { timeout: 120_000 }, () => {
  test('greeting, EHLO and HELO, and the commands that need no backend', async () => {
    const c = await open(false);
    const ehlo = await c.cmd('EHLO client.test');
    assert.equal(
      ehlo.raw,
      wireReply(
        replies.hello('mx.test', '127.0.0.1', [
          'PIPELINING',
          '8BITMIME',
          'SMTPUTF8',
          'ENHANCEDSTATUSCODES',
          'DSN',
          'SIZE 1000',
        ]),
      ),
    );
    await expect(c, 'HELO client.test', replies.hello('mx.test', '127.0.0.1', []));
    await expect(c, 'NOOP', replies.noop());
    await expect(c, 'RSET', replies.reset());
    await expect(c, 'VRFY postmaster', replies.vrfy());
    await expect(c, 'HELP', replies.help());
    await expect(c, 'FROB', replies.unrecognized());
    await expect(c, 'STARTTLS', replies.unrecognized()); // no certificate on this listener
    await expect(c, 'XCLIENT ADDR=192.0.2.1', replies.identityCommand('XCLIENT'));
    await expect(c, 'XFORWARD NAME=x', replies.identityCommand('XFORWARD'));
    await expect(c, 'QUIT', replies.bye());
  });

  test('sequence and syntax errors', async () => {
    const early = await open(false);
    await expect(early, 'MAIL FROM:<a@example.org>', replies.helloFirst());
    await expect(early, 'EHLO', replies.helloSyntax('EHLO'));
    await expect(early, 'HELO a b', replies.helloSyntax('HELO'));
    await expect(early, 'EHLO bad\x01name', replies.helloName());
    early.close();

    const c = await open();
    await expect(c, 'RCPT TO:<b@example.test>', replies.needMail());
    await expect(c, 'DATA', replies.needMail());
    await expect(
      c,
      'MAIL FROM:a@example.org',
      replies.pathSyntax('Bad address syntax: the address must be in <>'),
    );
    await expect(c, 'MAIL FROM:<a@example.org> SIZE=ten', replies.sizeSyntax());
    await expect(c, 'MAIL FROM:<a@example.org> SIZE=1001', replies.tooBig(1000));
    await expect(c, 'MAIL FROM:<a@example.org> BODY=9BIT', replies.bodySyntax());
    await expect(c, 'MAIL FROM:<a@example.org> SMTPUTF8=yes', replies.smtputf8Syntax());
    await expect(c, 'MAIL FROM:<a@example.org> RET=ALL', replies.retSyntax());
    await expect(c, 'MAIL FROM:<a@example.org> REQUIRETLS', replies.requireTlsWithoutTls());
    // Lines go out as latin1 (a byte per character): \xc3\xa4 is a UTF-8 ä, \xe4 alone is not UTF-8.
    await expect(c, 'MAIL FROM:<\xc3\xa4@example.org>', replies.utf8NotAllowed());
    await expect(c, 'MAIL FROM:<\xe4@example.org> SMTPUTF8', replies.addressNotUtf8());
    await expect(c, 'MAIL FROM:<a@example.org>', replies.mailAccepted());
    await expect(c, 'MAIL FROM:<a@example.org>', replies.nestedMail());
    await expect(c, 'DATA', replies.needRcpt());
    await expect(c, 'RCPT TO:<>', replies.recipientSyntax());
    await expect(c, 'RCPT TO:<b@example.test> NOTIFY=SOMETIMES', replies.notifySyntax());
    await expect(c, 'RCPT TO:<b@example.test> NOTIFY=NEVER,DELAY', replies.notifyNeverCombined());
    await expect(c, 'RCPT TO:<b@example.test> ORCPT=nonsense', replies.orcptSyntax());
    await expect(c, 'RCPT TO:<\xc3\xb6@example.test>', replies.utf8NotAllowed());
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    await expect(c, 'DATA now', replies.dataSyntax());
    assert.equal((await c.cmd('DATA')).raw, wireReply(replies.sendData()));
    c.close();
  });

  test('content the node refuses: too big, a bare LF under bareNewlines: reject', async () => {
    const c = await open();
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.test>');
    await c.cmd('DATA');
    c.write(`${`${'x'.repeat(76)}\r\n`.repeat(26)}.\r\n`); // 2028 bytes in lines of 78
    assert.equal((await c.read()).raw, wireReply(replies.tooBig(1000)));
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.test>');
    await c.cmd('DATA');
    c.write('a bare\nLF\r\n.\r\n');
    assert.equal((await c.read()).raw, wireReply(replies.bareNewline()));
    c.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n');
    for (let i = 0; i < 3; i++) await c.read();
    c.write('a NUL \x00 here\r\n.\r\n');
    assert.equal((await c.read()).raw, wireReply(replies.nulByte()));
    c.close();
  });

  test('a backend that goes mid-transaction: 451 4.4.2', async () => {
    const dying = await startCaptureBackend({ kill: 'mid-data' });
    const node = await startNode(simpleConfig([dying.address]));
    cleanup.push(
      () => node.stop(),
      () => dying.close(),
    );
    const c = await SmtpDialog.open(node.port);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@example.org>');
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    await c.cmd('DATA');
    c.write('Subject: x\r\n\r\nbody\r\n.\r\n');
    assert.equal((await c.read()).raw, wireReply(replies.backendLost()));
    c.close();
  });

  test('a flood of unknown commands, an HTTP request and a line over 16 KiB end the session', async () => {
    const flood = await open();
    for (let i = 0; i < 9; i++) assert.equal((await flood.cmd(`FROB${i}`)).code, 500);
    await expect(flood, 'FROB9', replies.tooManyUnrecognized());
    await flood.waitClosed();
    const http = await open(false);
    await expect(http, 'GET / HTTP/1.1', replies.httpRequest());
    await http.waitClosed();
    const long = await open(false);
    long.write(`NOOP ${'x'.repeat(17 * 1024)}`);
    assert.equal((await long.read()).raw, wireReply(replies.lineTooLong()));
    await long.waitClosed();
  });

  test('STARTTLS: a syntax error, 220 2.0.0, and TLS already active inside it', async () => {
    const { key, cert } = await selfSignedCert();
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-front-replies-'));
    writeFileSync(join(dir, 'tls.key'), key);
    writeFileSync(join(dir, 'tls.crt'), cert);
    const node = await startNode(
      simpleConfig([backend.address], {
        extraListener: `    tls: { cert: "${join(dir, 'tls.crt')}", key: "${join(dir, 'tls.key')}" }`,
      }),
    );
    cleanup.push(() => node.stop());
    const plain = await new Promise<Socket>((resolve) => {
      const s = connect(node.port, '127.0.0.1', () => resolve(s));
    });
    const say = replyReader(plain);
    await say();
    assert.equal((await say('EHLO client.test\r\n')).slice(0, 4), '250-');
    assert.equal(await say('STARTTLS now\r\n'), wireReply(replies.startTlsSyntax()));
    assert.equal(await say('STARTTLS\r\n'), wireReply(replies.startTls()));
    plain.removeAllListeners('data');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((r) => secure.once('secureConnect', () => r()));
    const inside = replyReader(secure);
    assert.equal((await inside('EHLO client.test\r\n')).slice(0, 4), '250-');
    assert.equal(await inside('STARTTLS\r\n'), wireReply(replies.tlsActive()));
    secure.destroy();
  });

  test('idle timeout: 421 4.4.2 with our name, then the close', async () => {
    const node = await startNode(
      simpleConfig([backend.address], { extraListener: '    timeouts: { idle: 1s }' }),
    );
    cleanup.push(() => node.stop());
    const c = await SmtpDialog.open(node.port);
    await c.read();
    assert.equal((await c.read(5000)).raw, wireReply(replies.idleTimeout('mx.test')));
    await c.waitClosed();
  });

  test('a drain: an idle session gets 421 4.3.2', async () => {
    const node = await startNode(simpleConfig([backend.address]));
    cleanup.push(() => node.stop());
    const c = await SmtpDialog.open(node.port);
    await c.read();
    await c.cmd('EHLO client.test');
    const drained = node.node.drain();
    assert.equal((await c.read(5000)).raw, wireReply(replies.draining()));
    await c.waitClosed();
    await drained;
  });
});
