// A real Postfix behind the node (its own config dir; XCLIENT authorised for 127.0.0.1), relaying
// what it accepts to a capture backend so the test can read the delivered bytes. Clients are swaks
// and nodemailer, bound to 127.0.0.2 so the client's address differs from the node's (127.0.0.1).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  finalDataReply,
  type PostfixInstance,
  replyTo,
  runSwaks,
  startCaptureBackend,
  startPostfix,
} from '@smtp-lb/testkit';
import nodemailer from 'nodemailer';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

describe('Postfix as the backend', { timeout: 120_000 }, () => {
  let sink: CaptureBackend;
  let postfix: PostfixInstance;
  let lb: TestNode;

  before(async () => {
    sink = await startCaptureBackend();
    postfix = await startPostfix({
      relayTo: sink.address,
      mainCf: {
        smtpd_recipient_restrictions:
          'check_recipient_access inline:{{nobody@example.test=550 5.1.1 User unknown}, {later@example.test=DEFER_IF_PERMIT Service is unavailable}}, permit_mynetworks, reject_unauth_destination',
        smtpd_sender_restrictions: 'check_sender_access inline:{{spammer@example.org=REJECT Go away}}',
        message_size_limit: '10240000',
      },
    });
    lb = await startNode(simpleConfig([postfix.address]));
  });
  after(async () => {
    await lb?.stop();
    await postfix?.stop();
    await sink?.close();
  });

  test("swaks through the node: Postfix logs the client's address, not the node's", async () => {
    const res = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'alice@example.org',
      to: 'bob@example.test',
      extraArgs: ['--local-interface', '127.0.0.2', '--helo', 'client.example.org'],
      timeoutMs: 30_000,
    });
    const final = finalDataReply(res.transcript);
    assert.equal(final?.code, 250, res.stdout);
    const queueId = /queued as ([0-9A-Za-z]+)/.exec(final!.text)?.[1];
    assert.ok(queueId, final!.text);
    const [line] = await postfix.waitForLog(new RegExp(`${queueId}: client=[^\\n]*`), 10_000);
    assert.match(line, /client=unknown\[127\.0\.0\.2\]/);
    assert.doesNotMatch(line, /\[127\.0\.0\.1\]/);
    const [helo] = await postfix
      .waitForLog(new RegExp(`${queueId}: [^\\n]*helo=<[^>]*>`), 10_000)
      .catch(() => ['']);
    if (helo) assert.match(helo, /helo=<client\.example\.org>/);
    const msgs = await sink.waitForMessages(1, 20_000);
    assert.ok(msgs.some((m) => m.rcptTo.includes('bob@example.test')));
  });

  test("Postfix's rejections reach the client verbatim", async () => {
    const unknown = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'alice@example.org',
      to: 'nobody@example.test',
      timeoutMs: 30_000,
    });
    assert.equal(
      replyTo(unknown.transcript, 'RCPT')?.lines.join('\n'),
      '550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown',
    );
    const spammer = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'spammer@example.org',
      to: 'bob@example.test',
      timeoutMs: 30_000,
    });
    // MAIL is answered by the node; Postfix's refusal of the sender answers the first RCPT.
    const rcpt = replyTo(spammer.transcript, 'RCPT');
    assert.equal(rcpt?.code, 554, spammer.stdout);
    assert.match(
      rcpt!.lines.join('\n'),
      /^554 5\.7\.1 <spammer@example\.org>: Sender address rejected: Go away/,
    );
  });

  test('nodemailer: several recipients, one refused, the rest delivered', async () => {
    const before = sink.messages.length;
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: lb.port,
      ignoreTLS: true,
      localAddress: '127.0.0.2',
    });
    const info = await transport.sendMail({
      from: 'alice@example.org',
      to: ['one@example.test', 'nobody@example.test', 'two@example.test'],
      subject: 'several',
      text: 'hello\n.\nstill the same message\n',
    });
    assert.deepEqual(info.accepted, ['one@example.test', 'two@example.test']);
    assert.deepEqual(info.rejected, ['nobody@example.test']);
    const msgs = (await sink.waitForMessages(before + 1, 20_000)).slice(before);
    assert.deepEqual(msgs[0]!.rcptTo.sort(), ['one@example.test', 'two@example.test']);
    assert.match(msgs[0]!.data.toString(), /hello\r\n\.\r\nstill the same message/);
  });

  test('smuggling through to Postfix: one message out, no hidden command obeyed', async () => {
    const before = sink.messages.length;
    const c = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.2');
    await c.read();
    await c.cmd('EHLO x.test');
    await c.cmd('MAIL FROM:<alice@example.org>');
    assert.equal((await c.cmd('RCPT TO:<bob@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(
      'Subject: smuggle\r\n\r\nhello\n.\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\n' +
        'DATA\r\nSubject: smuggled\r\n\r\nI should not exist\r\n',
    );
    const r = await c.cmd('.');
    assert.equal(r.code, 250, r.raw);
    await c.cmd('QUIT');
    c.close();
    const msgs = await sink.waitForMessages(before + 1, 20_000);
    await new Promise((res) => setTimeout(res, 500));
    const out = sink.messages.slice(before);
    assert.equal(out.length, 1, 'exactly one message left Postfix');
    assert.deepEqual(out[0]!.rcptTo, ['bob@example.test']);
    assert.ok(!msgs.some((m) => m.rcptTo.includes('victim@example.test')));
    assert.match(out[0]!.data.toString(), /I should not exist/);
  });
});
