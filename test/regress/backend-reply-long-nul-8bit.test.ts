// Backend reply lines of 5 KiB, or with NUL or 8-bit bytes, were relayed to the client without a log
// line (issue 11). Now a line over 512 octets (RFC 5321 4.5.3.1.5, its code and CRLF included) is
// split into lines of the same reply, the enhanced code on each; control bytes (NUL, a bare CR, ESC)
// become `?`; text that is not UTF-8 reaches the client byte for byte (it was rewritten to U+FFFD);
// each with a log line and smtp_lb_backend_reply_defects_total{backend,defect}. A clean reply, UTF-8
// included, passes as it came and is not logged.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { startScriptedBackend } from '../helpers/scripted-backend.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const LONG_TEXT = Array.from({ length: 700 }, (_, i) => `w${i}`).join(' '); // ~3.6 KB
const LONG = `550 5.1.1 <long@example.test>: ${LONG_TEXT} ${'x'.repeat(1500)}\r\n`; // > 5 KiB
let dataReply = Buffer.from('250 2.0.0 Ok: queued\r\n');

async function session(port: number) {
  const c = await SmtpDialog.open(port);
  await c.read();
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  return c;
}

async function defects(lb: TestNode): Promise<Record<string, number>> {
  const m = (await lb.node.metrics.registry.getMetricsAsJSON()).find(
    (x) => x.name === 'smtp_lb_backend_reply_defects_total',
  );
  return Object.fromEntries((m?.values ?? []).map((v) => [String(v.labels.defect), v.value]));
}

describe('backend replies on their way to the client', { timeout: 60_000 }, () => {
  const cleanup = cleanupAfterAll();
  let lb: TestNode;
  test('set up', async () => {
    const backend = await startScriptedBackend({
      rcpt: (line) => {
        const to = line.toString('latin1');
        if (to.includes('<long@')) return LONG;
        if (to.includes('<ctl@'))
          return Buffer.from('250 2.1.5 Ok\x00 then\rmore \x1b[2Jcleared\r\n', 'latin1');
        return undefined;
      },
      data: () => dataReply,
    });
    cleanup.push(() => backend.close());
    lb = await startNode(simpleConfig([backend.address]));
    cleanup.push(() => lb.stop());
  });

  test('a 5 KiB line: split into lines of at most 512 octets, the enhanced code on each, all text kept', async () => {
    const c = await session(lb.port);
    const r = await c.cmd('RCPT TO:<long@example.test>');
    assert.equal(r.code, 550);
    const lines = r.raw.split('\r\n').slice(0, -1);
    assert.ok(lines.length >= 10, `${lines.length} lines`);
    lines.forEach((l, i) => {
      assert.ok(Buffer.byteLength(l, 'latin1') + 2 <= 512, `line ${i}: ${l.length + 2} octets`);
      assert.ok(l.startsWith(i < lines.length - 1 ? '550-5.1.1 ' : '550 5.1.1 '), l.slice(0, 20));
    });
    const text = r.lines.map((l, i) => (i === 0 ? l : l.slice('5.1.1 '.length))).join('');
    assert.equal(`550 ${text}\r\n`, LONG, 'the text, split, is all there');
    c.close();
    assert.ok(
      lb.logs.some(
        (l) =>
          l.msg === 'backend reply repaired for the client' &&
          JSON.stringify(l.defects) === '["long-line"]' &&
          l.command === 'RCPT',
      ),
      'a log line',
    );
    assert.equal((await defects(lb))['long-line'], 1);
  });

  test('NUL, a bare CR and ESC in a reply: `?` instead, and a log line', async () => {
    const c = await session(lb.port);
    const r = await c.cmd('RCPT TO:<ctl@example.test>');
    assert.equal(r.raw, '250 2.1.5 Ok? then?more ?[2Jcleared\r\n');
    c.close();
    assert.ok(
      lb.logs.some(
        (l) =>
          l.msg === 'backend reply repaired for the client' &&
          JSON.stringify(l.defects) === '["control-bytes"]',
      ),
    );
    assert.equal((await defects(lb))['control-bytes'], 1);
  });

  test('text that is not UTF-8 reaches the client byte for byte (not U+FFFD), with a log line', async () => {
    const c = await session(lb.port);
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    dataReply = Buffer.from('250 2.0.0 Ok: mis en file d\xe9j\xe0 \xff\xfe\r\n', 'latin1');
    const r = await c.cmd('Subject: x\r\n\r\nhi\r\n.');
    assert.deepEqual(Buffer.from(r.raw, 'latin1'), dataReply);
    assert.ok(
      lb.logs.some(
        (l) =>
          l.msg === 'backend reply text is not UTF-8: relayed as it came' &&
          JSON.stringify(l.defects) === '["not-utf8"]' &&
          l.command === 'DATA',
      ),
    );
    assert.equal((await defects(lb))['not-utf8'], 1);

    // UTF-8 is clean: the same bytes, and no log line about it.
    const logged = lb.logs.length;
    dataReply = Buffer.from('250 2.0.0 Zugestellt, schöne Grüße ✉\r\n', 'utf8');
    assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    const u = await c.cmd('Subject: y\r\n\r\nhi\r\n.');
    assert.deepEqual(Buffer.from(u.raw, 'latin1'), dataReply);
    assert.ok(!lb.logs.slice(logged).some((l) => String(l.msg).startsWith('backend reply')));
    await c.cmd('QUIT');
    c.close();
  });
});
