// An idle timer re-armed by every byte kept a 1-byte-per-5-s client connected (issue 11): the front's
// deadlines (front/deadlines.ts, test/regress/slow-data-deadlines.test.ts) cover command lines and
// DATA, but after `220 Ready to start TLS` the session waited for the handshake with no timer at
// all: a client that sent STARTTLS and then nothing, or its ClientHello a byte at a time, kept its
// session for ever. The handshake now has `timeouts.command` from the 220, whatever trickles in
// (as the implicit TLS handshake has `timeouts.idle`).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { selfSignedCert, startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

describe('the STARTTLS handshake has a deadline', { timeout: 60_000 }, () => {
  const cleanup = cleanupAfterAll();
  let lb: TestNode;
  test('set up', async () => {
    const { key, cert } = await selfSignedCert();
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-tls-'));
    writeFileSync(join(dir, 'tls.key'), key);
    writeFileSync(join(dir, 'tls.crt'), cert);
    const backend = await startCaptureBackend();
    cleanup.push(() => backend.close());
    lb = await startNode(
      simpleConfig([backend.address], {
        extraListener: [
          `    tls: { cert: "${join(dir, 'tls.crt')}", key: "${join(dir, 'tls.key')}" }`,
          '    timeouts: { idle: 30s, command: 1s }',
        ].join('\n'),
      }),
    );
    cleanup.push(() => lb.stop());
  });

  for (const how of ['silent', 'a byte every 200 ms'] as const) {
    test(`STARTTLS, then ${how}: the node closes after timeouts.command, with a log line`, async () => {
      const c = (await SmtpDialog.open(lb.port)).noDelay();
      await c.read();
      await c.cmd('EHLO client.test');
      assert.equal((await c.cmd('STARTTLS')).code, 220);
      const started = Date.now();
      // The first bytes of a TLS 1.2 ClientHello record, trickled.
      const hello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
      for (let i = 0; how !== 'silent' && i < hello.length && !c.closed; i++) {
        c.write(hello.subarray(i, i + 1));
        await sleep(200);
      }
      await c.waitClosed(10_000);
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 8_000, `closed after ${took} ms`);
      assert.ok(
        lb.logs.some((l) => l.msg === 'TLS failed' && JSON.stringify(l).includes('handshake not complete')),
      );
    });
  }
});
