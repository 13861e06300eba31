// Invalid UTF-8 in an SMTPUTF8 address was rewritten to U+FFFD on the way to the backend (issue 11):
// the front decoded command lines with toString('utf8'). It now keeps every byte (wire-text.ts):
// UTF-8 reaches the backend exactly as the client sent it, and an address with bytes that are not
// UTF-8 is refused with 553 5.6.7 (RFC 6531; with or without SMTPUTF8) before anything reaches the
// backend; such bytes in a MAIL parameter get 501 5.5.4. Against a real Postfix, whose log shows the
// envelope as it received it. (The other half, a backend's reply text that is not UTF-8, is in
// backend-reply-long-nul-8bit.test.ts.)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { replies, wireReply } from '@smtp-lb/proxy';
import { type PostfixInstance, startPostfix } from '@smtp-lb/testkit';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

/** Writes `line` as UTF-8 (strings) or exactly (Buffers) and reads the reply, raw bytes in latin1. */
async function cmd(c: SmtpDialog, line: string | Buffer) {
  c.write(Buffer.concat([typeof line === 'string' ? Buffer.from(line, 'utf8') : line, Buffer.from('\r\n')]));
  return c.read();
}
const latin1 = (s: string) => Buffer.from(s, 'latin1');
const utf8Wire = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

describe('addresses keep their bytes, or are refused', { timeout: 90_000 }, () => {
  let postfix: PostfixInstance;
  let lb: TestNode;
  before(async () => {
    postfix = await startPostfix();
    lb = await startNode(simpleConfig([postfix.address]));
  });
  after(async () => {
    await lb?.stop();
    await postfix?.stop();
  });

  test('UTF-8 addresses with SMTPUTF8 reach Postfix byte for byte', async () => {
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO client.test');
    assert.equal((await cmd(c, 'MAIL FROM:<jöran@exämple.org> SMTPUTF8')).code, 250);
    const rcpt = await cmd(c, 'RCPT TO:<bø.✉@example.test>');
    assert.equal(rcpt.code, 250, rcpt.raw);
    assert.equal((await c.cmd('DATA')).code, 354);
    const done = await c.cmd('Subject: utf8\r\n\r\nhi\r\n.');
    assert.equal(done.code, 250, done.raw);
    const queueId = /queued as (\w+)/.exec(done.raw)![1]!;
    await c.cmd('QUIT');
    c.close();
    // The log file as bytes, read as latin1: each byte one character.
    const [from] = await postfix.waitForLog(new RegExp(`${queueId}: from=<[^>]*>`), 10_000);
    assert.equal(
      Buffer.from(from.slice(from.indexOf('from=')), 'utf8').toString('latin1'),
      `from=<${utf8Wire('jöran@exämple.org')}>`,
    );
    const [to] = await postfix.waitForLog(new RegExp(`${queueId}: to=<[^>]*>`), 10_000);
    assert.ok(to.endsWith('to=<bø.✉@example.test>'), to);
  });

  test('an address that is not UTF-8: 553 5.6.7, with or without SMTPUTF8, and Postfix sees nothing of it', async () => {
    const before = await postfix.queueIds();
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO client.test');
    const refused = wireReply(replies.addressNotUtf8());
    assert.equal((await cmd(c, latin1('MAIL FROM:<j\xf6ran@example.org> SMTPUTF8'))).raw, refused);
    assert.equal((await cmd(c, latin1('MAIL FROM:<j\xf6ran@example.org>'))).raw, refused);
    assert.equal(
      (await cmd(c, latin1('MAIL FROM:<a@example.org> ENVID=\xff'))).raw,
      wireReply(replies.pathSyntax('Bad parameter syntax')),
    );
    assert.equal((await cmd(c, 'MAIL FROM:<a@example.org> SMTPUTF8')).code, 250);
    assert.equal((await cmd(c, latin1('RCPT TO:<b\xf8@example.test>'))).raw, refused);
    assert.equal((await cmd(c, latin1('RCPT TO:<b\xc3@example.test>'))).raw, refused, 'a truncated sequence');
    await c.cmd('QUIT');
    c.close();
    assert.ok(lb.logs.some((l) => l.msg === 'MAIL address is not UTF-8'));
    assert.ok(lb.logs.some((l) => l.msg === 'RCPT address is not UTF-8'));
    assert.deepEqual(await postfix.queueIds(), before, 'no message');
    const log = await postfix.log();
    assert.ok(!log.includes('\ufffd'), 'no U+FFFD reached Postfix');
    assert.ok(!/j.ran@example\.org/.test(log), 'the refused sender never reached Postfix');
  });
});
