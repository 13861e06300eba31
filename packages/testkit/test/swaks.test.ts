// runSwaks drives the real swaks and its transcript parser pairs every server reply with the command
// it answers: greeting, multi-line EHLO, rejections marked '<**', the reply after the message content.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  finalDataReply,
  freePort,
  parseSwaksTranscript,
  replyTo,
  runSwaks,
  type SmtpSink,
  startSmtpSink,
} from '../src/index.js';
import { type CaptureListener, startCaptureListener } from './smtp-helpers.js';

// Verbatim from swaks 20201014 against `smtp-sink -f RCPT`.
const REJECTED_AT_RCPT = `=== Trying 127.0.0.1:2702...
=== Connected to 127.0.0.1.
<-  220 smtp-sink ESMTP
 -> EHLO vm
<-  250-smtp-sink
<-  250-8BITMIME
<-  250 
 -> MAIL FROM:<a@b.test>
<-  250 2.1.0 Ok
 -> RCPT TO:<c@d.test>
<** 500 5.3.0 Error: command failed
 -> QUIT
<-  221 Bye
=== Connection closed with remote host.
`;

// Shaped like swaks --pipeline output: three commands sent before their replies; the content holds a
// line that looks like a command and must not be taken for one.
const PIPELINED = `<-  220 mx.test ESMTP
 -> EHLO client
<-  250-mx.test
<-  250 PIPELINING
 -> MAIL FROM:<a@b.test>
 -> RCPT TO:<c@d.test>
 -> DATA
<-  250 2.1.0 Ok
<-  250 2.1.5 Ok
<-  354 End data with <CR><LF>.<CR><LF>
 -> Subject: x
 -> 
 -> RCPT TO:<smuggled@d.test>
 -> .
<-  250 2.0.0 Ok: queued as ABC123
 -> QUIT
<-  221 2.0.0 Bye
`;

describe('parseSwaksTranscript', () => {
  test('pairs replies with commands, keeps multi-line replies and marks rejections', () => {
    const t = parseSwaksTranscript(REJECTED_AT_RCPT);
    assert.deepEqual(
      t.map((x) => [x.verb, x.reply.code]),
      [
        ['(connect)', 220],
        ['EHLO', 250],
        ['MAIL', 250],
        ['RCPT', 500],
        ['QUIT', 221],
      ],
    );
    assert.deepEqual(replyTo(t, 'ehlo')?.lines, ['250-smtp-sink', '250-8BITMIME', '250 ']);
    assert.deepEqual(replyTo(t, 'RCPT'), {
      code: 500,
      enhanced: '5.3.0',
      text: 'Error: command failed',
      lines: ['500 5.3.0 Error: command failed'],
    });
    assert.equal(t[3]?.command, 'RCPT TO:<c@d.test>');
    assert.equal(finalDataReply(t), undefined);
  });

  test('handles pipelined commands and skips message content', () => {
    const t = parseSwaksTranscript(PIPELINED);
    assert.deepEqual(
      t.map((x) => [x.verb, x.reply.code]),
      [
        ['(connect)', 220],
        ['EHLO', 250],
        ['MAIL', 250],
        ['RCPT', 250],
        ['DATA', 354],
        ['.', 250],
        ['QUIT', 221],
      ],
    );
    assert.equal(finalDataReply(t)?.text, 'Ok: queued as ABC123');
    assert.equal(replyTo(t, 'RCPT')?.enhanced, '2.1.5');
  });
});

describe('runSwaks', { timeout: 30_000 }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    await Promise.all(cleanups.map((c) => c()));
  });
  const sink = async (args: string[]): Promise<SmtpSink> => {
    const s = await startSmtpSink({ args });
    cleanups.push(() => s.stop());
    return s;
  };

  test('reports the reply to the end of DATA and swaks exit code when the server rejects the message', async () => {
    const s = await sink(['-f', '.']);
    const r = await runSwaks({ server: s.address, from: 'a@example.org', to: 'b@example.test', body: 'x' });
    assert.equal(r.code, 26);
    assert.equal(replyTo(r.transcript, 'DATA')?.code, 354);
    assert.deepEqual(finalDataReply(r.transcript), {
      code: 500,
      enhanced: '5.3.0',
      text: 'Error: command failed',
      lines: ['500 5.3.0 Error: command failed'],
    });
  });

  test('sends `data` as the message, dot-stuffed on the wire', async () => {
    const capture: CaptureListener = await startCaptureListener();
    cleanups.push(() => capture.close());
    const r = await runSwaks({
      server: `127.0.0.1:${capture.port}`,
      from: 'a@example.org',
      to: ['b@example.test', 'c@example.test'],
      data: 'Subject: raw\r\n\r\n.leading dot\r\nlast\r\n',
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(finalDataReply(r.transcript)?.text, 'captured');
    assert.equal(capture.messages.length, 1);
    assert.deepEqual(capture.messages[0]?.to, ['b@example.test', 'c@example.test']);
    assert.match(capture.messages[0]?.data ?? '', /^Subject: raw\r\n\r\n\.\.leading dot\r\nlast\r\n/);
  });

  test('a refused connection shows in errors and a non-zero code', async () => {
    const r = await runSwaks({
      server: `127.0.0.1:${await freePort()}`,
      from: 'a@example.org',
      to: 'b@example.test',
    });
    assert.notEqual(r.code, 0);
    assert.deepEqual(r.transcript, []);
    assert.match(r.errors.join('\n'), /Connection refused/);
  });
});
