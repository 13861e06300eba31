// Slow DATA held a backend slot for ever (issue 11): one byte every few seconds in DATA kept the idle
// timer alive, and with `maxConnections: 1` every other client of that pool got 451 4.3.2. DATA now
// has to keep up `timeouts.minDataRate` (451 4.4.2, the message dropped without a final dot at the
// backend, the session closed) and a command line must be complete within `timeouts.command` of its
// first byte (421 4.4.2), as Postfix's smtpd_min_data_rate and smtpd_per_request_deadline.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { type RawReply, SmtpDialog } from '../helpers/smtp-dialog.js';

/** Sends `text` a byte at a time every `ms` until the node closes or the text is out. */
async function trickle(c: SmtpDialog, text: string, ms: number): Promise<void> {
  for (const ch of text) {
    if (c.closed) return;
    c.write(ch);
    await sleep(ms);
  }
}

async function transaction(port: number): Promise<SmtpDialog> {
  const c = (await SmtpDialog.open(port)).noDelay();
  await c.read();
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  const r = await c.cmd('RCPT TO:<b@example.test>');
  assert.equal(r.code, 250, r.raw);
  assert.equal((await c.cmd('DATA')).code, 354);
  return c;
}

describe('slow clients cannot hold a session or a backend slot', { timeout: 60_000 }, () => {
  let backend: CaptureBackend;
  let lb: TestNode;
  before(async () => {
    backend = await startCaptureBackend();
    lb = await startNode(
      simpleConfig([{ address: backend.address, maxConnections: 1 }], {
        extraListener: '    timeouts: { idle: 30s, command: 1s, minDataRate: 1000 }',
        extraTop: 'admission: { queueTimeout: 20s }',
      }),
    );
  });
  after(async () => {
    await lb?.stop();
    await backend?.close();
  });

  test('one byte every 200 ms in DATA: 451 4.4.2, no message, and the slot goes to the next client', async () => {
    const slow = await transaction(lb.port);
    const started = Date.now();
    const slowReply = (async (): Promise<RawReply> => {
      const t = trickle(slow, 'Subject: slow\r\n\r\n'.repeat(20), 200);
      const r = await slow.read(20_000);
      await t;
      return r;
    })();
    // The other client waits for the pool's only slot, held by the slow one.
    await sleep(100);
    const other = await transaction(lb.port);
    const r = await slowReply;
    assert.match(r.raw, /^451 4\.4\.2 /, r.raw);
    await slow.waitClosed(5_000);
    assert.ok(Date.now() - started < 10_000, 'cut off long before the idle timeout');
    other.write('Subject: next\r\n\r\nbody\r\n.\r\n');
    assert.equal((await other.read()).code, 250);
    assert.equal((await other.cmd('QUIT')).code, 221);
    other.close();
    const got = await backend.waitForMessages(1);
    assert.deepEqual(
      got.map((m) => /Subject: (\w+)/.exec(m.data.toString())?.[1]),
      ['next'],
      'the slow message never completed at the backend',
    );
    assert.ok(
      lb.logs.some((l) => l.msg === 'DATA slower than the minimum rate'),
      'a log line',
    );
  });

  test('a command line trickled a byte every 200 ms: 421 4.4.2 after `timeouts.command`', async () => {
    const c = (await SmtpDialog.open(lb.port)).noDelay();
    await c.read();
    await c.cmd('EHLO client.test');
    const started = Date.now();
    const t = trickle(c, 'MAIL FROM:<someone@example.org>', 200);
    const r = await c.read(10_000);
    await t;
    assert.match(r.raw, /^421 4\.4\.2 /, r.raw);
    await c.waitClosed(5_000);
    const took = Date.now() - started;
    assert.ok(took >= 900 && took < 5_000, `closed after ${took} ms`);
    assert.ok(
      lb.logs.some((l) => l.msg === 'command line not complete in time'),
      'a log line',
    );
  });

  test('a client at a normal pace is not affected: a 300 KB message in pieces, pauses between commands', async () => {
    const c = await transaction(lb.port);
    const line = `${'x'.repeat(76)}\r\n`;
    for (let i = 0; i < 4; i++) {
      c.write(line.repeat(1000));
      await sleep(100);
    }
    c.write('.\r\n');
    assert.equal((await c.read()).code, 250);
    await sleep(1_500); // longer than `timeouts.command`, shorter than idle: between commands it is idle
    assert.equal((await c.cmd('NOOP')).code, 250);
    assert.equal((await c.cmd('QUIT')).code, 221);
    c.close();
  });
});
