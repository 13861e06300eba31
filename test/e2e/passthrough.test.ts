// A node in front of capture backends: what the client sees and what the backend receives, byte
// for byte (DESIGN.md invariants 1, 4 and 7).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  runSwaks,
  startCaptureBackend,
  startWireBackend,
  type WireBackend,
} from '@smtp-lb/testkit';
import nodemailer from 'nodemailer';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

async function envelope(c: SmtpDialog, from = 'a@example.org', to = ['b@example.test']): Promise<void> {
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
  for (const r of to) assert.equal((await c.cmd(`RCPT TO:<${r}>`)).code, 250);
}

describe('pass-through to smtp-server', { timeout: 120_000 }, () => {
  let backend: CaptureBackend;
  let lb: TestNode;

  before(async () => {
    backend = await startCaptureBackend();
    lb = await startNode(simpleConfig([backend.address]));
  });
  after(async () => {
    await lb?.stop();
    await backend?.close();
  });

  test('nodemailer: the backend gets the message byte for byte and the client its queue id', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: lb.port, ignoreTLS: true });
    const before = backend.messages.length;
    const info = await transport.sendMail({
      envelope: { from: 'alice@example.org', to: ['bob@example.test', 'carol@example.test'] },
      raw: 'Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\nbody \xe9\r\n',
    });
    const [msg] = (await backend.waitForMessages(before + 1)).slice(before);
    assert.match(info.response, /^250 2\.6\.0 Ok: queued as \d+$/);
    assert.equal(msg!.mailFrom, 'alice@example.org');
    assert.deepEqual(msg!.rcptTo, ['bob@example.test', 'carol@example.test']);
    assert.equal(
      msg!.data.toString('latin1'),
      'Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\nbody \xc3\xa9\r\n',
    );
    const session = backend.sessions.find((s) => s.id === msg!.sessionId)!;
    assert.equal(session.xclient.ADDR, '127.0.0.1', 'XCLIENT carried the client address');
  });

  test('swaks: a message goes through and swaks sees the backend reply', async () => {
    const res = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'swaks@example.org',
      to: 'rcpt@example.test',
      timeoutMs: 30_000,
    });
    assert.equal(res.code, 0, res.stderr + res.stdout);
    assert.match(res.stdout, /<- +250 2\.6\.0 Ok: queued as \d+/);
    assert.match(res.stdout, /<- +220 mx\.test ESMTP\n/);
  });

  test('8-bit body, 998-character lines and dot lines arrive unchanged', async () => {
    const long = 'x'.repeat(998);
    const body = `Subject: long\r\n\r\n${long}\r\n.\r\n..\r\n.x\r\n\xff\xfe\x80 8bit\r\n${long}\r\n`;
    const c = await SmtpDialog.open(lb.port);
    await envelope(c);
    assert.equal((await c.cmd('DATA')).code, 354);
    const stuffed = body.replace(/^\./gm, '..');
    const before = backend.messages.length;
    const reply = await c.cmd(`${stuffed}.`);
    assert.equal(reply.code, 250, reply.raw);
    const [msg] = (await backend.waitForMessages(before + 1)).slice(before);
    // smtp-server removes one dot of each stuffed line: a dot not stuffed ends the message early, one
    // stuffed twice shows here as `..`.
    assert.equal(msg!.data.toString('latin1'), body, 'dots re-stuffed exactly once towards the backend');
    c.close();
  });

  test('commands reach the backend CRLF-terminated when the client used bare LF', async () => {
    const c = await SmtpDialog.open(lb.port);
    assert.equal((await c.read()).code, 220);
    c.write('EHLO lf.test\n');
    assert.equal((await c.read()).code, 250);
    c.write('MAIL FROM:<lf@example.org>\n');
    assert.equal((await c.read()).code, 250);
    const sessionsBefore = backend.sessions.length;
    c.write('RCPT TO:<lf@example.test>\n');
    assert.equal((await c.read()).code, 250);
    const session = backend.sessions[sessionsBefore]!;
    const raw = Buffer.concat(session.raw).toString('latin1');
    assert.match(raw, /MAIL FROM:<lf@example\.org>\r\nRCPT TO:<lf@example\.test>\r\n/);
    assert.doesNotMatch(raw.replace(/\r\n/g, ''), /[\r\n]/, 'no bare CR or LF reached the backend');
    c.close();
  });

  test('XCLIENT from a client is refused with 550 5.7.0 and never reaches a backend', async () => {
    const c = await SmtpDialog.open(lb.port);
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO x.test')).code, 250);
    const r = await c.cmd('XCLIENT ADDR=10.9.9.9');
    assert.equal(r.code, 550);
    assert.match(r.lines[0]!, /^5\.7\.0 /);
    assert.ok(!backend.sessions.some((s) => s.lines.some((l) => l.includes('10.9.9.9'))));
    c.close();
  });

  test('EHLO advertises the extensions the issue lists and never CHUNKING', async () => {
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    const r = await c.cmd('EHLO x.test');
    const kw = r.lines.slice(1).map((l) => l.split(' ')[0]);
    for (const k of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'SIZE', 'ENHANCEDSTATUSCODES'])
      assert.ok(kw.includes(k), k);
    assert.ok(!kw.includes('CHUNKING'));
    assert.ok(!kw.includes('STARTTLS'), 'no STARTTLS without a certificate');
    c.close();
  });

  test('the backend connection is kept for the next transaction of the session', async () => {
    const c = await SmtpDialog.open(lb.port);
    const sessionsBefore = backend.sessions.length;
    await envelope(c);
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal((await c.cmd('Subject: 1\r\n\r\none\r\n.')).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<a2@example.org>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<b2@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal((await c.cmd('Subject: 2\r\n\r\ntwo\r\n.')).code, 250);
    assert.equal((await c.cmd('QUIT')).code, 221);
    assert.equal(backend.sessions.length - sessionsBefore, 1, 'one backend connection for two messages');
    c.close();
  });

  test('non-ASCII address without SMTPUTF8 gets 553 5.6.7', async () => {
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO x.test');
    const r = await c.cmd('MAIL FROM:<j\xc3\xb6rg@example.org>');
    assert.equal(r.code, 553);
    assert.match(r.lines[0]!, /^5\.6\.7 /);
    c.close();
  });
});

// Replies of the test's choosing, multi-line and with their own enhanced codes: the wire recorder
// (smtp-server writes one line with its own enhanced code).
describe('backend replies reach the client verbatim', { timeout: 60_000 }, () => {
  let backend: WireBackend;
  let lb: TestNode;

  before(async () => {
    backend = await startWireBackend({
      reply: ({ verb, arg }) => {
        if (verb === 'MAIL' && arg.includes('tempfail@')) return '451 4.7.1 Greylisted, come back later';
        if (verb === 'MAIL' && arg.includes('refused@')) return '553 5.7.1 Sender address rejected';
        if (verb === 'RCPT' && arg.includes('nouser@'))
          return '550-5.1.1 The email account does not exist\r\n550 5.1.1 Please check the address';
        if (verb === 'RCPT' && arg.includes('full@')) return '452 4.2.2 Mailbox full';
        return undefined;
      },
      dataReply: (msg) =>
        msg.data.includes('virus')
          ? '554 5.7.1 Message rejected: virus found'
          : msg.data.includes('later')
            ? '451 4.3.0 Try later'
            : undefined,
    });
    lb = await startNode(simpleConfig([backend.address]));
  });
  after(async () => {
    await lb?.stop();
    await backend?.close();
  });

  async function rcptReply(from: string, to: string) {
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO x.test');
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250, 'MAIL is answered locally');
    const r = await c.cmd(`RCPT TO:<${to}>`);
    c.close();
    return r;
  }

  test('a 4xx to MAIL comes back as the reply to the first RCPT', async () => {
    const r = await rcptReply('tempfail@example.org', 'x@example.test');
    assert.equal(r.raw, '451 4.7.1 Greylisted, come back later\r\n');
  });

  test('a 5xx to MAIL comes back with its text', async () => {
    const r = await rcptReply('refused@example.org', 'x@example.test');
    assert.equal(r.raw, '553 5.7.1 Sender address rejected\r\n');
  });

  test('a multi-line 5xx to RCPT comes back line for line, enhanced code once', async () => {
    const r = await rcptReply('a@example.org', 'nouser@example.test');
    assert.equal(
      r.raw,
      '550-5.1.1 The email account does not exist\r\n550 5.1.1 Please check the address\r\n',
    );
  });

  test('a 4xx to RCPT comes back and the session goes on', async () => {
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO x.test');
    await c.cmd('MAIL FROM:<a@example.org>');
    assert.equal((await c.cmd('RCPT TO:<full@example.test>')).raw, '452 4.2.2 Mailbox full\r\n');
    assert.equal((await c.cmd('RCPT TO:<ok@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.match((await c.cmd('Subject: x\r\n\r\nok\r\n.')).raw, /^250 2\.0\.0 Ok: queued as \d+\r\n$/);
    c.close();
  });

  test('5xx and 4xx at the end of DATA reach the client, never a 250', async () => {
    for (const [text, expected] of [
      ['this has a virus', '554 5.7.1 Message rejected: virus found\r\n'],
      ['deliver later', '451 4.3.0 Try later\r\n'],
    ] as const) {
      const c = await SmtpDialog.open(lb.port);
      await c.read();
      await c.cmd('EHLO x.test');
      await c.cmd('MAIL FROM:<a@example.org>');
      await c.cmd('RCPT TO:<b@example.test>');
      assert.equal((await c.cmd('DATA')).code, 354);
      assert.equal((await c.cmd(`Subject: t\r\n\r\n${text}\r\n.`)).raw, expected);
      // The session goes on: a new transaction on the same connection works.
      assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
      assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
      c.close();
    }
  });
});
