// Lines over 998 octets reached the backend unchanged (issue 11), and a backend that reads DATA in
// 1000-byte records (fgets() into a fixed buffer) cuts such a line: a tail that starts with `.` CRLF
// ends its DATA there and the rest of the body runs as commands, a second message with a forged
// sender. The node now refuses such a message (`longLines: reject`, the default: 550 5.6.0, the
// backend gets no final dot and no message); `longLines: pass` sends the line as it is, which is
// safe only in front of backends that read lines of any length (Postfix, Exim, smtp-server).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { replies, wireReply } from '@smtp-lb/proxy';
import { startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { startLaxBackend } from '../helpers/lax-backend.js';
import { simpleConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const FORGED =
  'MAIL FROM:<ceo@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n' +
  'Subject: forged\r\n\r\nwire the money\r\n';
/** 1000 octets, then `.` CRLF: a 1000-byte record reader sees a `.` line. */
const ATTACK = `Subject: hello\r\n\r\n${'x'.repeat(1000)}.\r\n${FORGED}`;

async function send(port: number, content: string): Promise<{ reply: string; next: number }> {
  const c = await SmtpDialog.open(port);
  await c.read();
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  const rcpt = await c.cmd('RCPT TO:<b@example.test>');
  assert.equal(rcpt.code, 250, rcpt.raw);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(`${content}.\r\n`);
  const reply = (await c.read()).raw;
  // The session goes on: the next transaction is answered as usual.
  const next = (await c.cmd('MAIL FROM:<a@example.org>')).code;
  await c.cmd('QUIT');
  c.close();
  return { reply, next };
}

describe('lines over 998 octets', { timeout: 60_000 }, () => {
  const cleanup = cleanupAfterAll();

  test('refused by default (550 5.6.0): a 1000-byte-record backend gets no message, no forged sender', async () => {
    const lax = await startLaxBackend({ recordBytes: 1000 });
    cleanup.push(() => lax.close());
    const lb = await startNode(simpleConfig([lax.address]));
    cleanup.push(() => lb.stop());

    const { reply, next } = await send(lb.port, ATTACK);
    assert.equal(reply, wireReply(replies.longLine()));
    assert.equal(next, 250);
    await sleep(200);
    assert.deepEqual(lax.messages, [], 'the backend took no message');
    assert.deepEqual(lax.mails, ['MAIL FROM:<a@example.org>'], 'the backend saw no forged sender');
    assert.ok(
      lb.logs.some((l) => JSON.stringify(l).includes('a message line longer than 998 octets')),
      'a log line',
    );
  });

  test('998 octets still pass, also after a stuffed dot (999 on the wire) and split into records', async () => {
    const lax = await startLaxBackend({ recordBytes: 1000 });
    cleanup.push(() => lax.close());
    const lb = await startNode(simpleConfig([lax.address]));
    cleanup.push(() => lb.stop());

    const content = `Subject: edge\r\n\r\n${'y'.repeat(998)}\r\n.${'z'.repeat(997)}\r\n`;
    const { reply } = await send(lb.port, content);
    assert.match(reply, /^250 /, reply);
    assert.equal(lax.messages.length, 1);
    assert.equal(lax.messages[0]!.data.toString('latin1'), content);
  });

  test('`longLines: pass` sends a 5000-octet line unchanged to a backend that reads any length', async () => {
    const strict = await startCaptureBackend();
    cleanup.push(() => strict.close());
    const lb = await startNode(simpleConfig([strict.address], { extraListener: '    longLines: pass' }));
    cleanup.push(() => lb.stop());

    const content = `Subject: long\r\n\r\n${'w'.repeat(5000)}\r\n`;
    const { reply } = await send(lb.port, content);
    assert.match(reply, /^250 /, reply);
    const [m] = await strict.waitForMessages(1);
    assert.equal(m!.data.toString('latin1'), content);
  });

  test('what `longLines: pass` risks: the record backend runs the tail of the line as a second message', async () => {
    const lax = await startLaxBackend({ recordBytes: 1000 });
    cleanup.push(() => lax.close());
    const lb = await startNode(simpleConfig([lax.address], { extraListener: '    longLines: pass' }));
    cleanup.push(() => lb.stop());

    await send(lb.port, ATTACK);
    await sleep(200);
    assert.ok(
      lax.mails.includes('MAIL FROM:<ceo@example.test>'),
      `the reason for the default: ${JSON.stringify(lax.mails)}`,
    );
  });
});
